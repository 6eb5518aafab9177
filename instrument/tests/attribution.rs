//! Attribution against the simulator's ground truth.

use wattlens_instrument::sim::{
    demo_workload, simulate, GpuModel, KernelSpec, SimRun, WorkItem, Workload,
};
use wattlens_instrument::*;

const T0: u64 = 1_800_000_000_000_000_000;

fn truth_by_signature(run: &SimRun, name: &str) -> f64 {
    run.trace
        .spans
        .iter()
        .zip(&run.truth.span_above_idle_mj)
        .filter(|(s, _)| s.is_device_work() && run.trace.str(s.name) == name)
        .map(|(_, mj)| mj)
        .sum()
}

#[test]
fn demo_kernels_are_within_5_percent_of_truth_and_copies_are_bounded() {
    for seed in [1, 2] {
        let run = simulate(
            &demo_workload(40),
            &GpuModel::h200(),
            &SensorProfile::default(),
            seed,
            T0,
        );
        let a = attribute(&run.trace, 0).unwrap();
        assert!(a.simulated);
        let idle_w = a.idle_power.mw / 1000.0;
        assert!((idle_w - 124.0).abs() < 124.0 * 0.01, "idle {idle_w} W");
        assert!(
            a.idle_power.low_mw <= 124_000.0 && 124_000.0 <= a.idle_power.high_mw + 300.0,
            "{:?} {} windows",
            a.idle_power,
            a.idle_windows
        );
        let mut measured = 0;
        for s in &a.signatures {
            let truth = truth_by_signature(&run, &s.name);
            match s.dynamic.coverage {
                Coverage::Measured | Coverage::Estimated => {
                    measured += 1;
                    let err = (s.dynamic.mj - truth).abs() / truth;
                    assert!(
                        err < 0.05,
                        "seed {seed} {}: {:.0} mJ vs truth {truth:.0} mJ",
                        s.name,
                        s.dynamic.mj
                    );
                }
                Coverage::Unresolved => assert!(
                    truth <= s.dynamic.high_mj,
                    "{}: truth above the bound",
                    s.name
                ),
                Coverage::Uncovered => panic!("{} uncovered", s.name),
            }
        }
        assert!(measured >= 11, "{measured} kernels resolved");
        let c = a.closure;
        assert!(c.residual_mj.abs() < 0.02 * c.counter_mj, "{c:?}");
        let ops: f64 = a.ops.iter().map(|o| o.dynamic.mj).sum();
        let sigs: f64 = a.signatures.iter().map(|s| s.dynamic.mj).sum();
        assert!((ops - sigs).abs() < 1e-6 * sigs);
    }
}

fn kernel(stream: u32, mw: u32) -> WorkItem {
    WorkItem::Kernel(KernelSpec {
        name: format!("k{stream}"),
        op_class: OpClass::Matmul,
        stream,
        duration_ns: 1_000_000_000,
        dynamic_mw: mw,
        launch: LaunchShape {
            grid: [132, 1, 1],
            block: [128, 1, 1],
            shared_mem_bytes: 0,
        },
        region: String::new(),
        count: 1,
        gap_ns: 0,
    })
}

#[test]
fn concurrent_spans_split_static_energy() {
    let w = Workload {
        name: "two streams".into(),
        lead_idle_ns: 1_000_000_000,
        tail_idle_ns: 500_000_000,
        items: vec![kernel(0, 200_000), kernel(1, 100_000)],
    };
    let run = simulate(&w, &GpuModel::h200(), &SensorProfile::default(), 3, T0);
    let a = attribute(&run.trace, 0).unwrap();
    assert_eq!(a.signatures.len(), 2);
    for s in &a.signatures {
        let expect = a.idle_power.mw * 0.5;
        assert!(
            (s.static_share.mj - expect).abs() < 1e-6 * expect,
            "{}: {} vs {expect}",
            s.name,
            s.static_share.mj
        );
    }
    // Fully collinear: only the sum of their powers is identifiable, and the CIs must say so.
    let total: f64 = a.signatures.iter().map(|s| s.dynamic.mj).sum();
    assert!((total - 300_000.0).abs() < 0.05 * 300_000.0, "{total}");
}

#[test]
fn missing_idle_or_counter_data_is_a_clear_error() {
    let busy = Workload {
        name: "busy".into(),
        lead_idle_ns: 0,
        tail_idle_ns: 0,
        items: vec![kernel(0, 200_000)],
    };
    let run = simulate(&busy, &GpuModel::h200(), &SensorProfile::default(), 3, T0);
    let err = attribute(&run.trace, 0).unwrap_err();
    assert!(matches!(err, AttributionError::NoIdle(0)), "{err}");
    assert!(err.to_string().contains("leave the GPU idle"));

    let mut no_counter = run.trace.clone();
    no_counter
        .power
        .retain(|r| !matches!(r, PowerReading::Energy { .. }));
    assert!(matches!(
        attribute(&no_counter, 0),
        Err(AttributionError::NoCounter(0))
    ));
    assert!(matches!(
        attribute(&run.trace, 4),
        Err(AttributionError::NoSuchDevice(4))
    ));
}

/// An unmodified program's steady mix: two kernels that always run together, so the sensors
/// cannot tell them apart, but the counter pins their sum.
#[test]
fn a_steady_mix_is_resolved_as_a_whole_though_not_kernel_by_kernel() {
    let kernel = |name: &str, duration_ns: u64, dynamic_mw: u32| {
        WorkItem::Kernel(KernelSpec {
            name: name.into(),
            op_class: OpClass::Elementwise,
            stream: 0,
            duration_ns,
            dynamic_mw,
            launch: LaunchShape {
                grid: [132, 1, 1],
                block: [256, 1, 1],
                shared_mem_bytes: 0,
            },
            region: format!("step/{name}"),
            count: 1,
            gap_ns: 5_000,
        })
    };
    let mut items = Vec::new();
    for _ in 0..6000 {
        items.push(kernel("gemm", 300_000, 400_000));
        items.push(kernel("relu", 30_000, 150_000));
    }
    let workload = Workload {
        name: "steady mix".into(),
        lead_idle_ns: 1_000_000_000,
        tail_idle_ns: 1_000_000_000,
        items,
    };
    for seed in [1, 2, 3] {
        let run = simulate(
            &workload,
            &GpuModel::h200(),
            &SensorProfile::default(),
            seed,
            T0,
        );
        let a = attribute(&run.trace, 0).unwrap();
        let truth = truth_by_signature(&run, "gemm") + truth_by_signature(&run, "relu");
        let step = a.regions.iter().find(|r| r.path == "step").unwrap();
        assert!(
            step.dynamic.low_mj <= truth && truth <= step.dynamic.high_mj,
            "seed {seed}: truth {truth} mJ outside {:?}",
            step.dynamic
        );
        assert_eq!(
            step.dynamic.coverage,
            Coverage::Measured,
            "{:?}",
            step.dynamic
        );
        let half = |e: &EnergyEstimate| (e.high_mj - e.low_mj) / 2.0;
        let kernels: f64 = a.signatures.iter().map(|s| half(&s.dynamic)).sum();
        assert!(
            half(&step.dynamic) < kernels,
            "the sum is tighter than its parts: {} vs {kernels}",
            half(&step.dynamic)
        );
    }
}

//! Calibration and the repetition harness, checked on the simulated GPU against its profile
//! and its ground truth.

use wattlens_instrument::calibrate::{
    calibration_plan, fit_profile, phases_from, CalibrationStep, CALIBRATION_CPU_BUDGET,
};
use wattlens_instrument::repeat::{analyze, plan, Batch, RepeatConfig};
use wattlens_instrument::sim::{
    simulate, simulate_with_budget, GpuModel, KernelSpec, WorkItem, Workload,
};
use wattlens_instrument::{Interval, LaunchShape, OpClass, SensorProfile, SpanKind};

const T0: u64 = 1_800_000_000_000_000_000;

fn spin(duration_ns: u64, count: u32, dynamic_mw: u32) -> WorkItem {
    WorkItem::Kernel(KernelSpec {
        name: "spin".into(),
        op_class: OpClass::Unknown,
        stream: 0,
        duration_ns,
        dynamic_mw,
        launch: LaunchShape {
            grid: [528, 1, 1],
            block: [256, 1, 1],
            shared_mem_bytes: 0,
        },
        region: String::new(),
        count,
        gap_ns: 0,
    })
}

#[test]
fn calibration_recovers_the_simulated_profile() {
    let truth = SensorProfile::default();
    let plan = calibration_plan();
    let items: Vec<WorkItem> = plan
        .iter()
        .map(|&(_, step)| match step {
            CalibrationStep::Idle(ns) => WorkItem::Gap {
                stream: 0,
                duration_ns: ns,
            },
            CalibrationStep::On(ns) => spin(ns, 1, 246_000),
        })
        .collect();
    let w = Workload {
        name: "calibration".into(),
        lead_idle_ns: 0,
        tail_idle_ns: 500_000_000,
        items,
    };
    let run = simulate_with_budget(&w, &GpuModel::h200(), &truth, 3, T0, CALIBRATION_CPU_BUDGET);
    // Rebuild each step's time from the kernels (gaps fill the rest).
    let kernels: Vec<(u64, u64)> = run
        .trace
        .spans
        .iter()
        .filter(|s| s.kind == SpanKind::Kernel)
        .map(|s| (s.start_ns, s.end_ns))
        .collect();
    let mut executed = Vec::new();
    let (mut t, mut k) = (T0, 0);
    for &(kind, step) in &plan {
        let (a, b) = match step {
            CalibrationStep::Idle(ns) => (t, t + ns),
            CalibrationStep::On(_) => {
                k += 1;
                kernels[k - 1]
            }
        };
        executed.push((kind, step, Interval::new(a, b)));
        t = b;
    }
    let cal = fit_profile(&run.trace, 0, &phases_from(&executed)).unwrap();
    let p = &cal.profile;
    let rel = |a: f64, b: f64| (a - b).abs() / b;
    assert!(
        rel(p.sample_tau_ns as f64, truth.sample_tau_ns as f64) < 0.15,
        "{p:?}"
    );
    assert!(rel(p.sample_period_ns as f64, truth.sample_period_ns as f64) < 0.03);
    assert!(rel(p.counter_period_ns as f64, truth.counter_period_ns as f64) < 0.001);
    assert!(rel(cal.idle_mw, 124_000.0) < 0.005, "idle {}", cal.idle_mw);
    assert!(rel(p.sample_noise_sd_mw, truth.sample_noise_sd_mw) < 0.3);
    assert!(rel(p.sample_displaced_fraction, truth.sample_displaced_fraction) < 0.35);
    assert_eq!(p.counter_resolution_mj, 1);
    assert!(p.instant_lag_max_ns >= truth.instant_lag_min_ns);
    assert!(p.instant_lag_max_ns <= truth.instant_lag_max_ns + 2 * truth.instant_period_ns);
}

#[test]
fn repetition_harness_matches_the_truth_per_launch() {
    let profile = SensorProfile::default();
    let config = RepeatConfig::default();
    let gaps = plan(&config, profile.counter_period_ns);
    let launch_ns = 180_000u64;
    let per_batch = (config.batch_ns / launch_ns) as u32;
    let mut items = Vec::new();
    for &g in &gaps {
        items.push(WorkItem::Gap {
            stream: 0,
            duration_ns: g,
        });
        items.push(spin(launch_ns, per_batch, 310_000));
    }
    let w = Workload {
        name: "repeat".into(),
        lead_idle_ns: 1_000_000_000,
        tail_idle_ns: 500_000_000,
        items,
    };
    let run = simulate(&w, &GpuModel::h200(), &profile, 11, T0);
    let spans: Vec<usize> = (0..run.trace.spans.len())
        .filter(|&i| run.trace.spans[i].kind == SpanKind::Kernel)
        .collect();
    let mut batches = Vec::new();
    let mut prev_end = T0 + 1_000_000_000 - gaps[0];
    for (b, chunk) in spans.chunks(per_batch as usize).enumerate() {
        let start = run.trace.spans[chunk[0]].start_ns;
        let end = run.trace.spans[*chunk.last().unwrap()].end_ns;
        batches.push(Batch {
            start_ns: start,
            end_ns: end,
            launches: chunk.len() as u64,
            gap_start_ns: start - gaps[b].min(start - prev_end.min(start)),
            kernel_ns: Some(
                chunk
                    .iter()
                    .map(|&i| run.trace.spans[i].duration_ns())
                    .sum(),
            ),
        });
        prev_end = end;
    }
    let flops = 1.0e9;
    let r = analyze(
        &run.trace.power,
        0,
        &profile,
        &batches,
        &config,
        Some(flops),
    )
    .unwrap();
    let truth: f64 = spans
        .iter()
        .map(|&i| run.truth.span_above_idle_mj[i])
        .sum::<f64>()
        / spans.len() as f64;
    let err = (r.dynamic_per_launch.mj - truth).abs() / truth;
    assert!(
        err < 0.03,
        "{} mJ vs truth {truth} mJ",
        r.dynamic_per_launch.mj
    );
    assert!(
        r.dynamic_per_launch.low_mj <= truth * 1.03 && truth * 0.97 <= r.dynamic_per_launch.high_mj
    );
}

//! Energy per request against the simulator's truth: ranges as requests over their wall-clock
//! windows, requests of two sizes, and requests batched into shared steps.

use wattlens_instrument::attribution::SplitRule;
use wattlens_instrument::sim::{
    simulate_with_budget, GpuModel, KernelSpec, SimRun, WorkItem, Workload,
};
use wattlens_instrument::*;

const T0: u64 = 1_800_000_000_000_000_000;

fn kernel(
    name: &str,
    stream: u32,
    (duration_ns, dynamic_mw): (u64, u32),
    region: &str,
) -> WorkItem {
    WorkItem::Kernel(KernelSpec {
        name: name.into(),
        op_class: OpClass::Matmul,
        stream,
        duration_ns,
        dynamic_mw,
        launch: LaunchShape {
            grid: [132, 1, 1],
            block: [128, 1, 1],
            shared_mem_bytes: 0,
        },
        region: region.into(),
        count: 1,
        gap_ns: 20_000,
    })
}

/// One request of the long kind (64 decode steps, 64 tokens) or the short one (8 steps, 8
/// tokens), each step 3 launches (and a read-back of `step_readback_ns` where given), then
/// 3 ms of host time.
fn push_request(items: &mut Vec<WorkItem>, long: bool, step_readback_ns: Option<u64>) {
    let (name, steps) = if long { ("long", 64) } else { ("short", 8) };
    let region = format!("{name} tokens={steps}");
    for _ in 0..steps {
        items.push(kernel("attn", 0, (300_000, 150_000), &region));
        items.push(kernel("mlp", 0, (500_000, 250_000), &region));
        items.push(kernel("norm", 0, (20_000, 40_000), &region));
        if let Some(host_ns) = step_readback_ns {
            items.push(WorkItem::Sync {
                host_ns,
                lead_ns: 0,
            });
        }
    }
    items.push(WorkItem::Sync {
        host_ns: 3_000_000,
        lead_ns: 0,
    });
}

/// `items` with a second of idle before and after.
fn requests_workload(name: &str, items: Vec<WorkItem>) -> Workload {
    Workload {
        name: name.into(),
        lead_idle_ns: 1_000_000_000,
        tail_idle_ns: 1_000_000_000,
        items,
    }
}

/// Requests of two kinds, one at a time and alternating: a short one (8 decode steps, 8
/// tokens) and a long one (64 steps, 64 tokens, 8× longer), each step 3 launches, with host
/// time between requests.
pub fn two_kinds() -> Workload {
    let mut items = Vec::new();
    for r in 0..40 {
        push_request(&mut items, r % 2 == 0, None);
    }
    requests_workload("two request kinds", items)
}

/// The true energy above idle over `[a, b]` plus the true idle power over it, mJ.
fn true_window_mj(run: &SimRun, a: u64, b: u64) -> f64 {
    run.truth.energy_between_mj(a, b)
}

#[test]
fn a_request_costs_its_windows_energy_and_each_kind_its_tokens() {
    let run = simulate_with_budget(
        &two_kinds(),
        &GpuModel::h200(),
        &SensorProfile::default(),
        3,
        T0,
        wattlens_instrument::power::nvml::DEFAULT_CPU_BUDGET,
    );
    let a = attribute(&run.trace, 0).unwrap();
    let r = &a.requests;
    let long = r.ranges.iter().find(|g| g.path == "long").unwrap();
    let short = r.ranges.iter().find(|g| g.path == "short").unwrap();
    assert_eq!((long.count, short.count), (20, 20));
    assert_eq!(
        long.tokens,
        Some(20 * 64),
        "tokens from `tokens=N` in the name"
    );
    assert_eq!(long.split, SplitRule::Alone);
    for g in [long, short] {
        let truth: f64 = r
            .instances
            .iter()
            .filter(|e| e.path == g.path)
            .map(|e| true_window_mj(&run, e.start_ns, e.end_ns))
            .sum::<f64>()
            / g.count as f64;
        let err = (g.mean.mj - truth) / truth;
        println!(
            "{}: {:?} vs truth {truth:.1} mJ ({:+.2}%)",
            g.path,
            g.mean,
            100.0 * err
        );
        assert!(err.abs() < 0.03, "{}: {err}", g.path);
        assert!(
            g.mean.low_mj <= truth && truth <= g.mean.high_mj,
            "{}: {:?} vs {truth}",
            g.path,
            g.mean
        );
        let per_token = g.per_token.unwrap();
        assert!((per_token.mj * g.tokens.unwrap() as f64 - g.total.mj).abs() < 1e-6);
        assert!(g.p50.low_mj <= g.p50.mj && g.p50.mj <= g.p50.high_mj);
    }
    // Idle held counts: the long request is mostly the GPU's idle between launches.
    let one = r.instances.iter().find(|e| e.path == "long").unwrap();
    assert!(one.idle.mj > 0.0 && one.dynamic.mj > 0.0);
    assert!((one.total.mj - one.dynamic.mj - one.idle.mj).abs() < 1e-6);
}

/// Requests batched as a continuous-batching server runs them: each step's launches on one
/// stream, and each request's range (on its own stream, as threads would hold them) spans the
/// steps it takes part in. The requests' energies add up to the steps' energy, and each
/// request's share of a step follows its tokens.
#[test]
fn batched_requests_split_the_steps_they_share_by_tokens_and_add_up() {
    // Requests 1..=4 with 10, 20, 30, 40 tokens, all active through 50 decode steps.
    let mut items = Vec::new();
    for step in 0..50 {
        for r in 1..=4u32 {
            // A tiny marker launch on request r's stream keeps its range open over the step.
            items.push(kernel(
                "tag",
                r,
                (1_000, 1_000),
                &format!("request tokens={}", 10 * r),
            ));
        }
        items.push(kernel(
            "step",
            0,
            (2_000_000, 300_000),
            &format!("decode{}", step % 2),
        ));
        // The server waits for the step before the next: every stream moves together.
        items.push(WorkItem::Sync {
            host_ns: 200_000,
            lead_ns: 0,
        });
    }
    let w = Workload {
        name: "batched".into(),
        lead_idle_ns: 1_000_000_000,
        tail_idle_ns: 1_000_000_000,
        items,
    };
    let run = simulate_with_budget(
        &w,
        &GpuModel::h200(),
        &SensorProfile::default(),
        5,
        T0,
        wattlens_instrument::power::nvml::DEFAULT_CPU_BUDGET,
    );
    let a = attribute(&run.trace, 0).unwrap();
    let reqs: Vec<_> = a
        .requests
        .instances
        .iter()
        .filter(|e| e.path == "request")
        .collect();
    assert_eq!(reqs.len(), 4, "{:?}", a.requests.ranges);
    let group = a
        .requests
        .ranges
        .iter()
        .find(|g| g.path == "request")
        .unwrap();
    assert_eq!(group.split, SplitRule::Tokens);
    // The union of the requests' windows, priced as one window: what they must add up to.
    let (from, to) = (
        reqs.iter().map(|e| e.start_ns).min().unwrap(),
        reqs.iter().map(|e| e.end_ns).max().unwrap(),
    );
    let sum: f64 = reqs.iter().map(|e| e.total.mj).sum();
    println!("requests {sum:.1} mJ over [{from}, {to}]");
    assert!(to - from > 50 * 2_000_000, "the requests span the steps");
    let window_truth = run.truth.energy_between_mj(from, to);
    assert!(
        (sum - window_truth).abs() < 0.01 * window_truth,
        "{sum} vs {window_truth}"
    );
    // Shares follow tokens: request k's energy / k is the same for every k, where the four
    // share the same steps.
    let per_token: Vec<f64> = reqs
        .iter()
        .map(|e| e.total.mj / e.tokens.unwrap() as f64)
        .collect();
    let mean = per_token.iter().sum::<f64>() / 4.0;
    for p in &per_token {
        assert!((p - mean).abs() < 0.05 * mean, "{per_token:?}");
    }
}

/// Requests of the two kinds of [`two_kinds`] in a seeded random order, as a server sees them
/// (windows of the energy counter hold different mixes of them), each step's token read back
/// before the next step.
fn two_kinds_mixed(requests: usize) -> Workload {
    let mut items = Vec::new();
    let mut state = 7u64;
    for _ in 0..requests {
        // splitmix64: a plain LCG's top bit alternates too regularly to mix the kinds.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // Each step's token is read back before the next step (as `generate` does).
        push_request(&mut items, z >> 63 == 0, Some(50_000));
    }
    requests_workload("two request kinds, mixed", items)
}

/// The light trace (`wattlens run --light`: ranges and sensors, no work records) of `workload`.
fn light_run(workload: &Workload) -> (SimRun, Trace) {
    let run = simulate_with_budget(
        workload,
        &GpuModel::h200(),
        &SensorProfile::default(),
        3,
        T0,
        wattlens_instrument::power::nvml::DEFAULT_CPU_BUDGET,
    );
    let mut light = run.trace.clone();
    light
        .spans
        .retain(|s| matches!(s.kind, SpanKind::Region { .. }));
    (run, light)
}

/// The mean true energy of `path`'s instances in `report`, mJ.
fn true_mean_mj(
    run: &SimRun,
    report: &wattlens_instrument::attribution::RequestReport,
    path: &str,
) -> f64 {
    let windows: Vec<f64> = report
        .instances
        .iter()
        .filter(|e| e.path == path)
        .map(|e| true_window_mj(run, e.start_ns, e.end_ns))
        .collect();
    windows.iter().sum::<f64>() / windows.len() as f64
}

/// A light trace prices each kind from the counter alone: a kind's power while it runs is
/// fitted over windows of different mixes, so requests shorter than a counter window (the
/// short kind, 10 ms) are priced too, and each kind's mean holds the truth.
#[test]
fn a_light_trace_prices_each_kind_from_the_counter_alone() {
    let (run, light) = light_run(&two_kinds_mixed(200));
    let a = attribute(&light, 0).unwrap();
    assert!(a.light, "no work records: a light trace");
    assert!(a.signatures.is_empty());
    let r = &a.requests;
    for path in ["long", "short"] {
        let g = r.ranges.iter().find(|g| g.path == path).unwrap();
        let truth = true_mean_mj(&run, r, path);
        let err = (g.mean.mj - truth) / truth;
        println!(
            "light {path}: {:?} vs truth {truth:.1} mJ ({:+.2}%)",
            g.mean,
            100.0 * err
        );
        assert!(err.abs() < 0.03, "{path}: {err}");
        assert!(
            g.mean.low_mj <= truth && truth <= g.mean.high_mj,
            "{path}: {:?} vs {truth}",
            g.mean
        );
        assert_eq!(g.mean.coverage, Coverage::Measured, "{path}");
        // The instances of a kind cost its power × their wall time, adding up to the kind.
        let sum: f64 = r
            .instances
            .iter()
            .filter(|e| e.path == path)
            .map(|e| e.total.mj)
            .sum();
        assert!((sum - g.total.mj).abs() < 1e-6 * g.total.mj);
    }
}

/// Kinds that alternate strictly put the same mix in every counter window: the fit cannot tell
/// the short kind from the gaps around it, and says so with an interval that still holds the
/// truth rather than a number it cannot back.
#[test]
fn a_light_trace_of_strictly_alternating_kinds_says_what_it_cannot_resolve() {
    let (run, light) = light_run(&two_kinds());
    let a = attribute(&light, 0).unwrap();
    let r = &a.requests;
    let short = r.ranges.iter().find(|g| g.path == "short").unwrap();
    let truth = true_mean_mj(&run, r, "short");
    // No number (uncovered), or an interval that is not called measured and holds the truth.
    let holds = short.mean.low_mj <= truth && truth <= short.mean.high_mj;
    assert!(
        short.mean.coverage == Coverage::Uncovered
            || (short.mean.coverage != Coverage::Measured && holds),
        "{:?} vs {truth}",
        short.mean
    );
}

//! The simulated GPU behaves like the H200's sensors, as its profile says.

use wattlens_instrument::power::RecordedSource;
use wattlens_instrument::sim::{
    demo_workload, simulate, GpuModel, KernelSpec, SimRun, WorkItem, Workload,
};
use wattlens_instrument::*;

const T0: u64 = 1_800_000_000_000_000_000;
const STEP_START_NS: u64 = 1_000_000_000;
const STEP_MW: u32 = 246_000;

fn step_run(seed: u64) -> SimRun {
    let w = Workload {
        name: "step".into(),
        lead_idle_ns: STEP_START_NS,
        tail_idle_ns: 3_000_000_000,
        items: vec![WorkItem::Kernel(KernelSpec {
            name: "fma_spin".into(),
            op_class: OpClass::Elementwise,
            stream: 0,
            duration_ns: 1_500_000_000,
            dynamic_mw: STEP_MW,
            launch: LaunchShape {
                grid: [1056, 1, 1],
                block: [256, 1, 1],
                shared_mem_bytes: 0,
            },
            region: String::new(),
            count: 1,
            gap_ns: 0,
        })],
    };
    simulate(&w, &GpuModel::h200(), &SensorProfile::default(), seed, T0)
}

fn samples(t: &Trace) -> Vec<(u64, u32)> {
    t.power
        .iter()
        .filter_map(|r| match *r {
            PowerReading::Sample {
                ts_ns, power_mw, ..
            } => Some((ts_ns, power_mw)),
            _ => None,
        })
        .collect()
}

#[test]
fn counter_equals_the_true_integral_within_its_quantisation() {
    for run in [
        step_run(1),
        simulate(
            &demo_workload(5),
            &GpuModel::h200(),
            &SensorProfile::default(),
            9,
            T0,
        ),
    ] {
        // (read start, read end, value) of every counter read.
        let reads: Vec<(u64, u64, u64)> = run
            .trace
            .power
            .iter()
            .filter_map(|r| match *r {
                PowerReading::Energy {
                    ts_ns,
                    read_ns,
                    energy_mj,
                    ..
                } => Some((ts_ns, ts_ns + u64::from(read_ns), energy_mj)),
                _ => None,
            })
            .collect();
        let updates = &run.truth.counter_update_ns;
        // The sampler read the counter (its sparseness is tested with the scheduler).
        assert!(reads.len() > 10, "{} reads", reads.len());
        // Each read that no update straddles shows the exact integral up to its last update.
        let last_update = |t: u64| updates[updates.partition_point(|&u| u <= t) - 1];
        let clean: Vec<(u64, u64)> = reads
            .iter()
            .filter(|&&(s, e, _)| s >= updates[0] && last_update(s) == last_update(e))
            .map(|&(s, _, v)| (last_update(s), v))
            .collect();
        assert!(clean.len() > 10);
        for (i, j) in [(0, 1), (0, clean.len() - 1), (3, clean.len() / 2)] {
            let measured = (clean[j].1 - clean[i].1) as f64;
            let truth = run.truth.energy_between_mj(clean[i].0, clean[j].0);
            assert!(
                (measured - truth).abs() < 1.0,
                "reads {i}..{j}: counter {measured} mJ vs truth {truth} mJ"
            );
        }
        let period: Vec<u64> = updates.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(period
            .iter()
            .all(|&p| p == SensorProfile::default().counter_period_ns));
    }
}

#[test]
fn sample_cadence_matches_the_profile() {
    let profile = SensorProfile::default();
    let s = samples(&step_run(4).trace);
    let mut gaps: Vec<u64> = s.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2] as f64;
    assert!(
        (median - profile.sample_period_ns as f64).abs() < 0.5e6,
        "median interval {median} ns"
    );
    let short = gaps.iter().filter(|&&g| g < 15_000_000).count() as f64 / gaps.len() as f64;
    assert!(
        (0.1..0.3).contains(&short),
        "{short} of intervals are short (displaced samples)"
    );
    assert!(
        gaps[0] > 7_000_000 && *gaps.last().unwrap() < 47_000_000,
        "{:?}",
        (gaps[0], gaps.last())
    );
}

/// The first-order step response the profile describes, above idle, in mW.
fn model_response_mw(profile: &SensorProfile, after_ns: f64) -> f64 {
    f64::from(STEP_MW) * (1.0 - (-after_ns / profile.sample_tau_ns as f64).exp())
}

#[test]
fn sample_step_response_matches_the_profile() {
    let profile = SensorProfile::default();
    let run = step_run(5);
    let idle = f64::from(GpuModel::h200().idle_mw);
    let start = T0 + STEP_START_NS;
    let mut checked = 0;
    for (ts, mw) in samples(&run.trace) {
        if ts > start && ts < start + 150_000_000 {
            let after = (ts - start) as f64;
            let thermal = run.truth.signal.at_mw(ts - T0) - idle - f64::from(STEP_MW);
            let expect = idle + model_response_mw(&profile, after) + thermal.max(0.0);
            let tol = 4.0 * profile.sample_noise_sd_mw + 500.0;
            assert!(
                (f64::from(mw) - expect).abs() < tol,
                "+{:.1} ms: {mw} mW vs {expect:.0} mW",
                after / 1e6
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked}");
}

#[test]
fn the_profile_reproduces_the_measured_h200_step() {
    // README of data/h200-sensor-2026-11-22: idle→370 W, samples 272/344/359 W at +16/+36/+65 ms.
    let profile = SensorProfile::h200_2026_11_22();
    for (after_ms, measured_w) in [(16.0, 272.0), (36.0, 344.0), (65.0, 359.0)] {
        let model_w =
            124.0 + 246.0 * (1.0 - (-after_ms * 1e6 / profile.sample_tau_ns as f64).exp());
        assert!(
            (model_w - measured_w).abs() / measured_w < 0.03,
            "+{after_ms} ms: {model_w:.0} W vs {measured_w} W"
        );
    }
}

#[test]
fn instant_field_lags_the_step() {
    let profile = SensorProfile::default();
    let run = step_run(6);
    let start = T0 + STEP_START_NS;
    for r in &run.trace.power {
        if let PowerReading::Instant {
            ts_ns, power_mw, ..
        } = *r
        {
            if ts_ns > start && ts_ns < start + profile.instant_lag_min_ns {
                assert!(
                    power_mw < 126_000,
                    "field already moved {} ms after the step",
                    (ts_ns - start) / 1_000_000
                );
            }
            // A read returns the field's last update, which can be up to one field period old.
            if ts_ns
                > start
                    + profile.instant_lag_max_ns
                    + profile.instant_window_ns
                    + profile.instant_period_ns
                    + 2_000_000
                && ts_ns < start + 1_000_000_000
            {
                assert!(
                    power_mw > 365_000,
                    "field still low {} ms after the step: {power_mw}",
                    (ts_ns - start) / 1_000_000
                );
            }
        }
    }
}

#[test]
fn load_leaves_a_thermal_tail_that_decays() {
    let run = step_run(7);
    let end = STEP_START_NS + 1_500_000_000;
    let idle = f64::from(run.truth.idle_mw);
    let early = run.truth.signal.at_mw(end + 200_000_000) - idle;
    let late = run.truth.signal.at_mw(end + 2_500_000_000) - idle;
    assert!(early > 1000.0 && early < 15_000.0, "tail {early} mW");
    assert!(late > 0.0 && late < early / 3.0, "tail {early} → {late} mW");
    assert!(run.truth.thermal_mj > 0.0);
}

#[test]
fn same_seed_same_run_other_seed_other_noise() {
    let a = step_run(11).trace;
    let b = step_run(11).trace;
    let c = step_run(12).trace;
    assert_eq!(a, b);
    assert_ne!(a.power, c.power);
    assert_eq!(a.spans, c.spans);
    assert!(a.meta.simulated);
}

#[test]
fn regions_nest_around_their_kernels() {
    let t = simulate(
        &demo_workload(2),
        &GpuModel::h200(),
        &SensorProfile::default(),
        1,
        T0,
    )
    .trace;
    let regions: Vec<&Span> = t
        .spans
        .iter()
        .filter(|s| matches!(s.kind, SpanKind::Region { .. }))
        .collect();
    for k in t
        .spans
        .iter()
        .filter(|s| s.kind == SpanKind::Kernel && s.region.is_some())
    {
        let path = t.str(k.region);
        let leaf = path.rsplit('/').next().unwrap_or(path);
        let depth = path.matches('/').count() as u32;
        // A region span's region is its own full path.
        let inside = regions.iter().any(|r| {
            r.kind == SpanKind::Region { depth }
                && t.str(r.name) == leaf
                && t.str(r.region) == path
                && r.start_ns <= k.start_ns
                && k.end_ns <= r.end_ns
        });
        assert!(
            inside,
            "kernel {} at {} is in no region {path}",
            t.str(k.name),
            k.start_ns
        );
    }
}

#[test]
fn recorded_source_releases_readings_as_they_come_due() {
    let t = step_run(13).trace;
    let mut src = RecordedSource::new(
        t.meta.devices.clone(),
        SensorProfile::default(),
        true,
        t.power.clone(),
    );
    let mut got = Vec::new();
    let mut now = T0;
    while now < T0 + 6_000_000_000 {
        let before = got.len();
        src.poll(now, &mut got).unwrap();
        assert!(got[before..].iter().all(|r| r.ts_ns() <= now));
        now += 2_000_000_000;
    }
    src.poll(u64::MAX, &mut got).unwrap();
    assert_eq!(got.len(), t.power.len());
    assert!(got.windows(2).all(|w| w[0].ts_ns() <= w[1].ts_ns()));
    assert!(src.simulated());
}

#[test]
fn fake_clock_moves_only_when_told() {
    use wattlens_instrument::clock::{Clock, FakeClock, HostClock};
    let c = FakeClock::new(5);
    assert_eq!(c.now_ns(), 5);
    c.advance(10);
    assert_eq!(c.now_ns(), 15);
    let h = HostClock::new();
    let (a, b) = (h.now_ns(), h.now_ns());
    assert!(b >= a && a > 1_600_000_000_000_000_000);
}

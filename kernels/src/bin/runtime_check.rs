//! Measures the instrumentation runtime on a real GPU and prints one JSON line per result:
//! added host time per launch, the slowdown of a 10,000-kernel workload, event/CUPTI
//! durations against in-kernel `%globaltimer`, and clock alignment over a long session.
//!
//! `wattlens-runtime-check [SECONDS]` (the alignment session's length, default 60).

use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::{CudaContext, CudaStream, LaunchConfig, PushKernelArg};
use serde_json::json;
use wattlens_kernels::runtime_checks as k;
use wattlens_runtime::{ProfiledArg, Profiler, ProfilerConfig, TimingChoice};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn config(timing: TimingChoice, power: bool) -> ProfilerConfig {
    ProfilerConfig {
        timing,
        power,
        ..ProfilerConfig::default()
    }
}

const ONE: LaunchConfig = LaunchConfig {
    grid_dim: (1, 1, 1),
    block_dim: (32, 1, 1),
    shared_mem_bytes: 0,
};

/// Median host ns per launch over bursts of 200 launches (synchronising between bursts).
fn host_ns(stream: &Arc<CudaStream>, mut launch: impl FnMut() -> Res<()>) -> Res<f64> {
    let mut per = Vec::new();
    for _ in 0..60 {
        let t = Instant::now();
        for _ in 0..200 {
            launch()?;
        }
        per.push(t.elapsed().as_nanos() as f64 / 200.0);
        stream.synchronize()?;
    }
    Ok(median(per))
}

fn main() -> Res<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let ctx = CudaContext::new(0)?;
    let stream = ctx.default_stream();
    let sms = ctx.attribute(
        cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
    )? as u32;
    let module = ctx.load_module(cudarc::nvrtc::Ptx::from_src(k::PTX))?;
    let empty = module.load_function(k::EMPTY_KERNEL)?;
    let spin = module.load_function(k::STAMPED_SPIN)?;
    let mut stamps = stream.alloc_zeros::<u64>(2)?;
    let durations: Vec<u64> = (0..10_000u64)
        .map(|i| 5_000 + (i * 7_919) % 45_001)
        .collect();
    let spin_cfg = LaunchConfig {
        grid_dim: (sms, 1, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    let plain_workload = |stamps: &mut cudarc::driver::CudaSlice<u64>| -> Res<f64> {
        stream.synchronize()?;
        let t = Instant::now();
        for d in &durations {
            // SAFETY: stamped_spin(u64 *stamps, u64 ns) with a 2-element buffer.
            unsafe {
                stream
                    .launch_builder(&spin)
                    .arg(&mut *stamps)
                    .arg(d)
                    .launch(spin_cfg)
            }?;
        }
        stream.synchronize()?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    for _ in 0..500 {
        // SAFETY: empty_kernel takes no arguments.
        unsafe { stream.launch_builder(&empty).launch(ONE) }?;
    }
    stream.synchronize()?;
    for timing in [TimingChoice::Cupti, TimingChoice::Events] {
        let plain_before = host_ns(&stream, || {
            // SAFETY: as above.
            unsafe { stream.launch_builder(&empty).launch(ONE) }?;
            Ok(())
        })?;
        let plain_wall: Vec<f64> = (0..3)
            .map(|_| plain_workload(&mut stamps))
            .collect::<Res<_>>()?;
        let prof = Profiler::start(config(timing, false))?;
        let m = prof.load_ptx(0, k::PTX)?;
        let pempty = prof.kernel(&m, k::EMPTY_KERNEL)?;
        let pspin = prof.kernel(&m, k::STAMPED_SPIN)?;
        let mut pstamps = prof.alloc_zeros::<u64>(&stream, 2)?;
        let instrumented = host_ns(&stream, || {
            // SAFETY: as above.
            unsafe { prof.launch(&stream, &pempty).launch(ONE) }?;
            Ok(())
        })?;
        let mut inst_wall = Vec::new();
        for _ in 0..3 {
            stream.synchronize()?;
            let t = Instant::now();
            for d in &durations {
                // SAFETY: as above.
                unsafe {
                    prof.launch(&stream, &pspin)
                        .arg(&mut pstamps)
                        .arg(d)
                        .launch(spin_cfg)
                }?;
            }
            stream.synchronize()?;
            inst_wall.push(t.elapsed().as_secs_f64() * 1e3);
        }
        // Accuracy against %globaltimer.
        let mut diffs = Vec::new();
        let mut truth = Vec::new();
        for &ns in &[
            2_000u64, 5_000, 20_000, 50_000, 200_000, 1_000_000, 5_000_000,
        ] {
            for r in 0..10 {
                prof.htod(&stream, &[u64::MAX, 0], &mut pstamps)?;
                if r % 2 == 1 {
                    // SAFETY: as above.
                    unsafe { prof.launch(&stream, &pempty).launch(ONE) }?;
                }
                // SAFETY: as above.
                unsafe {
                    prof.launch(&stream, &pspin)
                        .arg(&mut pstamps)
                        .arg(&ns)
                        .launch(spin_cfg)
                }?;
                let mut h = [0u64; 2];
                prof.dtoh(&stream, &pstamps, &mut h)?;
                truth.push((ns, h[1].saturating_sub(h[0])));
            }
        }
        let finished = prof.finish()?;
        let spins: Vec<_> = finished
            .trace
            .spans
            .iter()
            .filter(|s| finished.trace.str(s.name) == k::STAMPED_SPIN)
            .collect();
        let checked = &spins[spins.len() - truth.len()..];
        for (s, (ns, gt)) in checked.iter().zip(&truth) {
            diffs.push((*ns, s.duration_ns() as f64 - *gt as f64));
        }
        let within = diffs
            .iter()
            .filter(|(ns, d)| d.abs() <= 2_000.0_f64.max(0.01 * *ns as f64))
            .count();
        let per_dur: Vec<_> = [2_000u64, 5_000, 20_000, 50_000, 200_000, 1_000_000, 5_000_000]
            .iter()
            .map(|&ns| {
                let d: Vec<f64> = diffs.iter().filter(|x| x.0 == ns).map(|x| x.1).collect();
                let lo = d.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = d.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                json!({"kernel_ns": ns, "median_diff_ns": median(d), "min_diff_ns": lo, "max_diff_ns": hi})
            })
            .collect();
        let plain_after = host_ns(&stream, || {
            // SAFETY: as above.
            unsafe { stream.launch_builder(&empty).launch(ONE) }?;
            Ok(())
        })?;
        let (pw, iw) = (median(plain_wall), median(inst_wall));
        println!(
            "{}",
            json!({
                "timing": finished.timing.iter().map(|m| m.label()).collect::<Vec<_>>(),
                "host_ns_per_launch": {"plain_before": plain_before, "instrumented": instrumented, "plain_after": plain_after,
                    "added": instrumented - plain_before.min(plain_after)},
                "workload_10k_wall_ms": {"plain": pw, "instrumented": iw, "slowdown_pct": (iw / pw - 1.0) * 100.0},
                "accuracy_vs_globaltimer": {"within_2us_or_1pct": within, "of": diffs.len(), "by_duration": per_dur},
                "untimed": finished.untimed,
            })
        );
    }
    // Clock alignment over a long session: bracketed probes, checked after the fact.
    for timing in [TimingChoice::Cupti, TimingChoice::Events] {
        let prof = Profiler::start(config(timing, timing == TimingChoice::Cupti))?;
        let m = prof.load_ptx(0, k::PTX)?;
        let pempty = prof.kernel(&m, k::EMPTY_KERNEL)?;
        let mut probes = Vec::new();
        let start = Instant::now();
        while start.elapsed().as_secs() < seconds {
            let t0 = prof.now_ns();
            // SAFETY: as above.
            unsafe { prof.launch(&stream, &pempty).launch(ONE) }?;
            prof.synchronize(&stream)?;
            let t1 = prof.now_ns();
            probes.push((t0, t1));
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        let finished = prof.finish()?;
        let spans: Vec<_> = finished
            .trace
            .spans
            .iter()
            .filter(|s| finished.trace.str(s.name) == k::EMPTY_KERNEL)
            .collect();
        let mut worst_violation = 0i64;
        let mut widths = Vec::new();
        for (s, (t0, t1)) in spans.iter().zip(&probes) {
            let v = (*t0 as i64 - s.start_ns as i64).max(s.end_ns as i64 - *t1 as i64);
            worst_violation = worst_violation.max(v);
            widths.push((*t1 - *t0) as f64);
        }
        let bound = finished
            .trace
            .alignments
            .iter()
            .map(|a| a.error_bound_ns)
            .max();
        println!(
            "{}",
            json!({
                "alignment_session_s": seconds, "timing": finished.timing.iter().map(|m| m.label()).collect::<Vec<_>>(), "probes": probes.len(), "spans": spans.len(),
                "worst_bracket_violation_ns": worst_violation, "median_bracket_ns": median(widths),
                "fitted_error_bound_ns": bound,
                "drift_ppb": finished.trace.alignments.first().map(|a| a.drift_ppb),
                "power_readings": finished.trace.power.len(),
            })
        );
    }
    Ok(())
}

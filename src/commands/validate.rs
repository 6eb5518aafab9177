//! `wattlens validate` (hidden): attribution on a real GPU checked against ground it can be
//! checked against. Each kernel is first measured alone with the repetition harness; then a
//! mixed run of all of them, short and long, is attributed and compared per signature, and its
//! total against the energy counter. Last, the sampler's CPU cost and lost samples over a long
//! run. Writes validate.json and the traces.

use std::io::Write;

use serde::Serialize;
use wattlens_instrument::power::nvml::DEFAULT_CPU_BUDGET;
use wattlens_instrument::repeat::{analyze, plan, Batch, RepeatConfig, RepeatResult};
use wattlens_instrument::sim::SimRng;
use wattlens_instrument::{attribute, SensorProfile};

use crate::cli::ValidateArgs;
use crate::error::CliError;
use crate::gpu::{CalibrationSession, Finished, Launch};

/// The kernels of the check: (label, launch).
fn kernels() -> [(&'static str, Launch); 4] {
    [
        (
            "fma_short",
            Launch::SpinFma {
                iters: 20,
                blocks_per_sm: 4,
            },
        ),
        (
            "fma_long",
            Launch::SpinFma {
                iters: 100_000,
                blocks_per_sm: 8,
            },
        ),
        ("copy_1gib", Launch::Copy),
        ("sgemm_2048", Launch::Sgemm),
    ]
}

/// Floating-point operations of one launch (an FMA counts 2), where the kernel computes.
fn flops_per_launch(l: Launch, sm_count: u32) -> Option<f64> {
    let shape = CalibrationSession::shape_for(l, sm_count);
    let threads = (shape.blocks() as f64) * (shape.threads_per_block() as f64);
    match l {
        // Two chains of 256 dependent FMAs per iteration.
        Launch::SpinFma { iters, .. } => Some(threads * f64::from(iters) * 256.0 * 2.0 * 2.0),
        Launch::Sgemm => Some(2.0 * 2048f64.powi(3)),
        _ => None,
    }
}

/// One kernel: alone vs in the mix.
#[derive(Debug, Serialize)]
pub struct KernelCheck {
    /// Label.
    pub label: String,
    /// Mean launch duration alone, µs.
    pub launch_us: f64,
    /// Harness: dynamic energy per launch, mJ, and its 95% CI.
    pub alone_mj: (f64, f64, f64),
    /// Mixed run: dynamic energy per launch, mJ, its 95% CI, and coverage.
    pub mixed_mj: (f64, f64, f64),
    /// Coverage label in the mixed run.
    pub mixed_coverage: String,
    /// Launches in the mixed run.
    pub mixed_launches: u64,
    /// |mixed − alone| / alone.
    pub rel_error: f64,
}

/// Everything `validate` measured.
#[derive(Debug, Serialize)]
pub struct Validation {
    /// GPU.
    pub gpu: String,
    /// Per kernel.
    pub kernels: Vec<KernelCheck>,
    /// Mixed run: counter energy, attributed (idle + dynamic), |residual| / counter.
    pub closure: (f64, f64, f64),
    /// Sampler: seconds, CPU share of a core, lost-sample gaps, readings, errors.
    pub sampler: (f64, f64, u64, u64, Vec<String>),
}

fn measure_alone(
    device: usize,
    label: &str,
    l: Launch,
    args: &ValidateArgs,
) -> Result<RepeatResult, CliError> {
    let profile = SensorProfile::h200_2026_11_22();
    let config = RepeatConfig::default();
    let mut s = CalibrationSession::open(device, profile.clone(), DEFAULT_CPU_BUDGET)?;
    // Estimate one launch's length to fill each batch.
    let t0 = s.now_ns();
    for _ in 0..3 {
        s.launch(l, usize::MAX)?;
    }
    s.host_idle(0)?;
    let est = ((s.now_ns() - t0) / 3).max(1);
    let per_batch = (config.batch_ns / est).clamp(1, 200_000);
    let mut gaps_at = Vec::new();
    for (b, gap) in plan(&config, profile.counter_period_ns)
        .into_iter()
        .enumerate()
    {
        let g0 = s.now_ns();
        s.host_idle(gap)?;
        gaps_at.push(g0);
        for _ in 0..per_batch {
            s.launch(l, b)?;
        }
    }
    s.host_idle(500_000_000)?;
    let Finished {
        trace,
        launches: times,
        ..
    } = s.finish(vec![format!("validate alone {label}")])?;
    super::save_trace(&args.out_dir.join(format!("alone-{label}.wlt")), &trace)?;
    let batches: Vec<Batch> = gaps_at
        .iter()
        .enumerate()
        .filter_map(|(b, &g)| {
            let mine: Vec<&(usize, u64, u64)> = times.iter().filter(|t| t.0 == b).collect();
            Some(Batch {
                start_ns: mine.iter().map(|t| t.1).min()?,
                end_ns: mine.iter().map(|t| t.2).max()?,
                launches: mine.len() as u64,
                gap_start_ns: g,
                kernel_ns: Some(mine.iter().map(|t| t.2 - t.1).sum()),
            })
        })
        .collect();
    let flops = flops_per_launch(l, trace.meta.devices.first().map_or(0, |d| d.sm_count));
    Ok(analyze(
        &trace.power,
        0,
        &profile,
        &batches,
        &config,
        flops,
    )?)
}

/// Run `wattlens validate`.
///
/// # Errors
/// [`CliError`] without a GPU, or when a measurement fails.
pub fn run(args: &ValidateArgs, out: &mut dyn Write) -> Result<(), CliError> {
    std::fs::create_dir_all(&args.out_dir).map_err(|source| CliError::WriteFile {
        path: args.out_dir.clone(),
        source,
    })?;
    if args.sampler_only {
        sampler_cost(args, out)?;
        return Ok(());
    }
    let mut alone = Vec::new();
    for (label, l) in kernels() {
        let r = measure_alone(args.device, label, l, args)?;
        writeln!(
            out,
            "alone {label:<11} {:>10.1} µs/launch  {:>10.3} mJ dynamic/launch  [{:.3}, {:.3}]{}",
            r.launch_ns / 1000.0,
            r.dynamic_per_launch.mj,
            r.dynamic_per_launch.low_mj,
            r.dynamic_per_launch.high_mj,
            r.dynamic_per_gflop.map_or(String::new(), |g| format!(
                "  {:.3} mJ/GFLOP [{:.3}, {:.3}]",
                g.mj, g.low_mj, g.high_mj
            ))
        )?;
        alone.push(r);
    }

    // The mix: bursts of every kernel in random order, random host gaps, idle around it.
    let profile = SensorProfile::h200_2026_11_22();
    let mut s = CalibrationSession::open(args.device, profile, DEFAULT_CPU_BUDGET)?;
    let gpu = s.gpu.name.clone();
    writeln!(out, "sampler read plan: {:?}", s.read_plans)?;
    s.host_idle(3_500_000_000)?;
    let mut rng = SimRng::new(7);
    let t_end = s.now_ns() + 16_000_000_000;
    let ks = kernels();
    while s.now_ns() < t_end {
        let i = (rng.next_u64() % ks.len() as u64) as usize;
        let l = ks[i].1;
        let n = match i {
            // Short kernels in bursts of 5–20 ms, so their total energy is resolvable.
            0 => 100 + rng.next_u64() % 300,
            1 => 1,
            2 => 5 + rng.next_u64() % 20,
            _ => 3 + rng.next_u64() % 10,
        };
        for _ in 0..n {
            s.launch(l, i)?;
        }
        if rng.unit() < 0.3 {
            let gap = (rng.uniform(0.0, 250.0) * 1e6) as u64;
            s.host_idle(gap)?;
        } else {
            // Keep the queue short so the loop's clock tracks the GPU.
            s.host_idle(0)?;
        }
    }
    s.host_idle(1_500_000_000)?;
    let Finished { trace, .. } = s.finish(vec!["validate mixed".into()])?;
    super::save_trace(&args.out_dir.join("mixed.wlt"), &trace)?;
    let a = attribute(&trace, 0)?;
    let mut checks = Vec::new();
    for (k, (label, l)) in ks.iter().enumerate() {
        let name = CalibrationSession::name(*l);
        let sm_count = trace.meta.devices.first().map_or(0, |d| d.sm_count);
        let shape = CalibrationSession::shape_for(*l, sm_count);
        let Some(sig) = a
            .signatures
            .iter()
            .find(|x| x.name == name && x.launch == Some(shape))
        else {
            continue;
        };
        let n = sig.launches.max(1) as f64;
        let alone_r = &alone[k];
        let mixed = sig.dynamic.mj / n;
        checks.push(KernelCheck {
            label: (*label).to_owned(),
            launch_us: alone_r.launch_ns / 1000.0,
            alone_mj: (
                alone_r.dynamic_per_launch.mj,
                alone_r.dynamic_per_launch.low_mj,
                alone_r.dynamic_per_launch.high_mj,
            ),
            mixed_mj: (mixed, sig.dynamic.low_mj / n, sig.dynamic.high_mj / n),
            mixed_coverage: sig.dynamic.coverage.label().to_owned(),
            mixed_launches: sig.launches,
            rel_error: (mixed - alone_r.dynamic_per_launch.mj).abs()
                / alone_r.dynamic_per_launch.mj.max(1e-9),
        });
    }
    let c = a.closure;
    writeln!(
        out,
        "mixed run: idle {:.2} W from {} windows (after: {:?} W), {} counter windows and {} samples in the fit",
        a.idle_power.mw / 1000.0,
        a.idle_windows,
        a.idle_after_power.map(|p| p.mw / 1000.0),
        a.regression_windows,
        a.regression_samples
    )?;
    for k in &checks {
        writeln!(
            out,
            "mixed {:<11} {:>6} launches {:>10.3} mJ/launch [{:.3}, {:.3}] {:<10} vs alone {:.3}: {:.2}%",
            k.label,
            k.mixed_launches,
            k.mixed_mj.0,
            k.mixed_mj.1,
            k.mixed_mj.2,
            k.mixed_coverage,
            k.alone_mj.0,
            k.rel_error * 100.0
        )?;
    }
    writeln!(
        out,
        "closure: counter {:.1} J, idle + attributed {:.1} J, residual {:.3}%",
        c.counter_mj / 1000.0,
        (c.idle_mj + c.dynamic_mj) / 1000.0,
        c.residual_mj.abs() / c.counter_mj * 100.0
    )?;

    let sampler = sampler_cost(args, out)?;
    let v = Validation {
        gpu,
        kernels: checks,
        closure: (
            c.counter_mj,
            c.idle_mj + c.dynamic_mj,
            c.residual_mj.abs() / c.counter_mj,
        ),
        sampler,
    };
    let path = args.out_dir.join("validate.json");
    let json = serde_json::to_string_pretty(&v).map_err(std::io::Error::other)?;
    std::fs::write(&path, json).map_err(|source| CliError::WriteFile { path, source })?;
    Ok(())
}

/// The sampler's cost over a long run with a duty-cycled load: (s, CPU share, gaps,
/// readings, errors).
fn sampler_cost(
    args: &ValidateArgs,
    out: &mut dyn Write,
) -> Result<(f64, f64, u64, u64, Vec<String>), CliError> {
    let mut s = CalibrationSession::open(
        args.device,
        SensorProfile::h200_2026_11_22(),
        DEFAULT_CPU_BUDGET,
    )?;
    let t_end = s.now_ns() + args.sampler_seconds * 1_000_000_000;
    while s.now_ns() < t_end {
        s.launch(Launch::SpinFor(400_000_000), 0)?;
        s.host_idle(600_000_000)?;
    }
    let Finished {
        trace,
        sampler: report,
        ..
    } = s.finish(vec!["validate sampler".into()])?;
    let samples = trace
        .power
        .iter()
        .filter(|r| matches!(r, wattlens_instrument::PowerReading::Sample { .. }))
        .count();
    writeln!(
        out,
        "sampler: {:.1} s, CPU {:.3}% of one core, {} lost-sample gaps, {} samples, {} readings, errors: {:?}",
        report.wall_ns as f64 / 1e9,
        report.cpu_share().unwrap_or(f64::NAN) * 100.0,
        report.gaps,
        samples,
        report.readings,
        report.errors
    )?;
    Ok((
        report.wall_ns as f64 / 1e9,
        report.cpu_share().unwrap_or(f64::NAN),
        report.gaps,
        report.readings,
        report.errors,
    ))
}

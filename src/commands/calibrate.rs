//! `wattlens calibrate`: fit the sensor profile of a real GPU in about 15 s.

use std::io::Write;

use wattlens_instrument::calibrate::{
    calibration_plan, fit_profile, phases_from, profile_file_name, CalibrationStep, PhaseKind,
    CALIBRATION_CPU_BUDGET,
};
use wattlens_instrument::sensor_profile::{user_profile_dir, ENV_PROFILE_DIR};
use wattlens_instrument::{Interval, SensorProfile};

use crate::cli::CalibrateArgs;
use crate::error::CliError;
use crate::gpu::{CalibrationSession, Finished, Launch};

/// Idle steps at least this long leave the GPU truly idle (host sleep) instead of holding it
/// with the idle kernel.
const HOST_IDLE_NS: u64 = 500_000_000;

/// Run `wattlens calibrate`.
///
/// # Errors
/// [`CliError`] without a GPU, NVML or CUDA, or when the files cannot be written.
pub fn run(args: &CalibrateArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let reference = SensorProfile::h200_2026_11_22();
    let mut s = CalibrationSession::open(args.device, reference.clone(), CALIBRATION_CPU_BUDGET)?;
    writeln!(
        out,
        "calibrating {} ({}) for about 15 s…",
        s.gpu.name, s.gpu.uuid
    )?;
    writeln!(out, "sampler read plan: {:?}", s.read_plans)?;
    let plan = calibration_plan();
    let mut host_steps = Vec::new();
    for (i, &(_, step)) in plan.iter().enumerate() {
        match step {
            CalibrationStep::On(ns) => s.launch(Launch::SpinFor(ns), i)?,
            CalibrationStep::Idle(ns) if ns >= HOST_IDLE_NS => {
                let t0 = s.now_ns();
                s.host_idle(ns)?;
                host_steps.push((i, t0, s.now_ns()));
            }
            CalibrationStep::Idle(ns) => s.launch(Launch::IdleFor(ns), i)?,
        }
    }
    let Finished {
        trace,
        launches: times,
        sampler: report,
    } = s.finish(std::env::args().collect())?;
    std::fs::create_dir_all(&args.out_dir).map_err(|source| CliError::WriteFile {
        path: args.out_dir.clone(),
        source,
    })?;
    super::save_trace(&args.out_dir.join("calibration.wlt"), &trace)?;
    let mut executed: Vec<(PhaseKind, CalibrationStep, Interval)> = times
        .iter()
        .chain(host_steps.iter())
        .filter_map(|&(i, a, b)| plan.get(i).map(|&(k, st)| (k, st, Interval::new(a, b))))
        .collect();
    executed.sort_by_key(|e| e.2);
    let cal = fit_profile(&trace, 0, &phases_from(&executed))?;
    let path = args
        .out_dir
        .join("profiles")
        .join(profile_file_name(&cal.gpu, &cal.driver));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| CliError::WriteFile {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let json = serde_json::to_string_pretty(&cal).map_err(std::io::Error::other)?;
    std::fs::write(&path, &json).map_err(|source| CliError::WriteFile {
        path: path.clone(),
        source,
    })?;
    // Where recording looks profiles up: `wattlens run` uses it from now on.
    let installed = user_profile_dir(|k| std::env::var(k).ok()).map(|dir| {
        let file = dir.join(profile_file_name(&cal.gpu, &cal.driver));
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&file, &json))
            .map(|()| file)
    });
    let p = &cal.profile;
    let ms = |ns: u64| ns as f64 / 1e6;
    writeln!(
        out,
        "{:<34} {:>14} {:>22}",
        "", "fitted", "H200 2026-11-22 ref"
    )?;
    let rows: [(&str, String, String); 11] = [
        (
            "sample period (ms)",
            format!("{:.2}", ms(p.sample_period_ns)),
            format!("{:.2}", ms(reference.sample_period_ns)),
        ),
        (
            "displaced samples (share)",
            format!("{:.2}", p.sample_displaced_fraction),
            format!("{:.2}", reference.sample_displaced_fraction),
        ),
        (
            "response τ (ms)",
            format!("{:.1}", ms(p.sample_tau_ns)),
            format!("{:.1}", ms(reference.sample_tau_ns)),
        ),
        (
            "sample noise σ (W)",
            format!("{:.2}", p.sample_noise_sd_mw / 1000.0),
            format!("{:.2}", reference.sample_noise_sd_mw / 1000.0),
        ),
        (
            "ring entries at first drain",
            p.sample_ring_capacity.to_string(),
            reference.sample_ring_capacity.to_string(),
        ),
        (
            "counter period (ms)",
            format!("{:.3}", p.counter_period_ns as f64 / 1e6),
            format!("{:.3}", ms(reference.counter_period_ns)),
        ),
        (
            "counter resolution (mJ)",
            p.counter_resolution_mj.to_string(),
            reference.counter_resolution_mj.to_string(),
        ),
        (
            "field 186 lag, upper (ms)",
            format!("{:.0}", ms(p.instant_lag_max_ns)),
            format!("{:.0}", ms(reference.instant_lag_max_ns)),
        ),
        (
            "NVML field read (ms)",
            format!("{:.2}", ms(p.nvml_read_cost_ns)),
            format!("{:.2}", ms(reference.nvml_read_cost_ns)),
        ),
        (
            "idle power (W)",
            format!("{:.1}", cal.idle_mw / 1000.0),
            "124".to_owned(),
        ),
        (
            "spin power (W)",
            format!("{:.1}", cal.step_mw / 1000.0),
            "370".to_owned(),
        ),
    ];
    for (name, a, b) in rows {
        writeln!(out, "{name:<34} {a:>14} {b:>22}")?;
    }
    writeln!(
        out,
        "square wave 10/10 ms: samples {:.1} W vs counter {:.1} W; τ fit RMS {:.2} W; sampler CPU {:.2}% of a core",
        cal.square_samples_mw / 1000.0,
        cal.square_counter_mw / 1000.0,
        cal.tau_fit_rms_mw / 1000.0,
        report.cpu_share().unwrap_or(f64::NAN) * 100.0
    )?;
    writeln!(
        out,
        "counter: {} reads, {} windows, update grid ±{:.2} ms from {} brackets",
        cal.counter_reads,
        cal.counter_windows,
        cal.counter_grid_error_ns / 1e6,
        cal.counter_brackets
    )?;
    writeln!(out, "profile written to {}", path.display())?;
    match installed {
        Some(Ok(file)) => writeln!(
            out,
            "and to {}, where recording on this GPU model looks it up",
            file.display()
        )?,
        Some(Err(e)) => writeln!(
            out,
            "note: cannot save it where recording looks profiles up ({e}); set {ENV_PROFILE_DIR} to a folder you can write"
        )?,
        None => writeln!(
            out,
            "note: set {ENV_PROFILE_DIR} (or HOME) so that recording finds calibrated profiles"
        )?,
    }
    Ok(())
}

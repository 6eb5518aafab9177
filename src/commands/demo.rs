//! `wattlens demo`: the built-in workload, end to end.

use std::io::Write;
use std::path::{Path, PathBuf};

use wattlens_instrument::sim::{demo_workload, simulate, GpuModel};
use wattlens_instrument::trace::ALONE_BURST_NS;
use wattlens_instrument::SensorProfile;

use crate::cli::DemoArgs;
use crate::error::CliError;
use crate::progress;
use crate::render::{self, analyze, Truth};

/// Run `wattlens demo`.
///
/// # Errors
/// [`CliError`] when the output folder or files cannot be written.
pub fn run(args: &DemoArgs, out: &mut dyn Write) -> Result<(), CliError> {
    std::fs::create_dir_all(&args.out_dir).map_err(|source| CliError::WriteFile {
        path: args.out_dir.clone(),
        source,
    })?;
    let gpus = wattlens_runtime::detect::nvidia_gpus();
    if !gpus.is_empty() && !args.simulate {
        return super::demo_gpu::run(args, out);
    }
    if !args.waste.is_empty() {
        writeln!(
            out,
            "note: --waste plants waste in the GPU pipeline; the simulated demo runs its own workload without it."
        )?;
    }
    let (trace_path, perfetto_path) = output_paths(args);

    let pb = progress::spinner("simulating GPU");
    let workload = if args.measure_alone {
        demo_workload(args.steps).with_alone_bursts(ALONE_BURST_NS)
    } else {
        demo_workload(args.steps)
    };
    let start_unix_ns =
        wattlens_instrument::clock::Clock::now_ns(&wattlens_instrument::clock::HostClock::new());
    let mut run = simulate(
        &workload,
        &GpuModel::h200(),
        &SensorProfile::h200_2026_11_22(),
        args.seed,
        start_unix_ns,
    );
    run.trace.meta.tool_version = concat!("wattlens ", env!("CARGO_PKG_VERSION")).to_owned();
    run.trace.meta.command = std::env::args().collect();
    pb.finish_and_clear();

    // The trace goes to disk before any analysis, so nothing measured is lost if a later step fails.
    super::save_trace(&trace_path, &run.trace)?;
    let report = analyze(&run.trace)?;
    super::save_perfetto(&perfetto_path, &run.trace, &report.waste())?;
    let truth = Truth::from_sim(&run);
    render::table::write(out, &report, Some(&truth))?;
    render::waste::write(out, &report)?;
    print_outputs(out, &trace_path, &perfetto_path)
}

/// Where the demo writes its trace and its Perfetto file.
pub(super) fn output_paths(args: &DemoArgs) -> (PathBuf, PathBuf) {
    (
        args.out_dir.join("demo.wlt"),
        args.out_dir.join("demo.perfetto.json"),
    )
}

/// The closing lines: where the trace and the Perfetto file are.
///
/// # Errors
/// [`CliError::Output`] when standard output fails.
pub(super) fn print_outputs(
    out: &mut dyn Write,
    trace_path: &Path,
    perfetto_path: &Path,
) -> Result<(), CliError> {
    writeln!(out)?;
    writeln!(
        out,
        "trace:    {}  (wattlens report {0})",
        trace_path.display()
    )?;
    writeln!(
        out,
        "perfetto: {}  (open at ui.perfetto.dev)",
        perfetto_path.display()
    )?;
    Ok(())
}

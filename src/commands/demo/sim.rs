//! `wattlens demo` on the simulated GPU: the demo workload, with the simulator's true energies
//! beside the estimates.

use std::io::Write;

use wattlens_instrument::sim::{demo_workload, simulate, GpuModel};
use wattlens_instrument::trace::ALONE_BURST_NS;
use wattlens_instrument::SensorProfile;

use super::output::{output_paths, print_outputs, save_views};
use crate::cli::DemoArgs;
use crate::error::CliError;
use crate::progress;
use crate::render::{self, analyze, Truth};

/// Run the demo on the simulated GPU (the output folder exists).
///
/// # Errors
/// [`CliError`] when the output files cannot be written.
pub(super) fn run(args: &DemoArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if !args.waste.is_empty() {
        writeln!(
            out,
            "note: --waste plants waste in the GPU pipeline; the simulated demo runs its own workload without it."
        )?;
    }
    let paths = output_paths(args);

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
    crate::commands::save_trace(&paths.trace, &run.trace)?;
    let report = analyze(&run.trace)?;
    save_views(&paths, &run.trace, &report)?;
    let truth = Truth::from_sim(&run);
    render::table::write(out, &report, Some(&truth))?;
    render::waste::write(out, &report)?;
    print_outputs(out, &paths)
}

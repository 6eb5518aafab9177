//! `wattlens report`: the energy report of a trace.

use std::io::Write;

use crate::cli::{Format, ReportArgs};
use crate::error::CliError;
use crate::render::{self, Report};

/// Run `wattlens report`.
///
/// # Errors
/// [`CliError`] when the trace cannot be read or attributed, or output fails.
pub fn run(args: &ReportArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let mut traces = Vec::with_capacity(args.traces.len());
    for path in &args.traces {
        traces.push(super::load_trace(path)?);
    }
    let merged = traces.len();
    let trace = wattlens_instrument::merge::merge(traces)?;
    if merged > 1 && args.chosen_format() == Format::Table {
        writeln!(
            out,
            "Merged {merged} traces (one per process) on {} GPU(s), matched by UUID.\n",
            trace.meta.devices.len()
        )?;
    }
    let report = Report::build(&trace)?;
    match args.chosen_format() {
        Format::Table => {
            render::table::write(out, &report, None)?;
            render::waste::write(out, &report)?;
        }
        Format::Json => render::json::write(out, &report)?,
        Format::Csv => render::csv::write(out, &report)?,
    }
    Ok(())
}

//! `wattlens report`: the energy report of a trace.

use std::io::Write;

use wattlens_instrument::Trace;

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
    write(traces, args.chosen_format(), out)
}

/// Merge `traces` (one per process) per GPU and write their report in `format`.
///
/// # Errors
/// [`CliError`] when the traces cannot be merged or attributed, or output fails.
pub fn write(traces: Vec<Trace>, format: Format, out: &mut dyn Write) -> Result<(), CliError> {
    let (traces, repeated) = wattlens_instrument::merge::distinct(traces);
    for (k, first) in &repeated {
        eprintln!(
            "wattlens: warning: trace {} is the same run as trace {} (same host, start and records); it is counted once",
            k + 1,
            first + 1
        );
    }
    let merged = traces.len();
    let trace = wattlens_instrument::merge::merge(traces)?;
    if merged > 1 && format == Format::Table {
        writeln!(
            out,
            "Merged {merged} traces (one per process) on {} GPU(s), matched by UUID.\n",
            trace.meta.devices.len()
        )?;
    }
    let report = Report::build(&trace)?;
    // Stdout flushes at every newline: a large JSON report would be millions of writes.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let out: &mut dyn Write = &mut out;
    match format {
        Format::Table => {
            render::table::write(out, &report, None)?;
            render::waste::write(out, &report)?;
        }
        Format::Json => render::json::write(out, &report)?,
        Format::Csv => render::csv::write(out, &report)?,
    }
    out.flush()?;
    Ok(())
}

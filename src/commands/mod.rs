//! The subcommands, and the trace I/O they share.

pub mod calibrate;
pub mod compare;
pub mod compare_gpu;
pub mod demo;
pub mod demo_gpu;
pub mod export;
pub mod report;
pub mod run;
pub mod validate;

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use wattlens_instrument::format::{read_trace_file, TraceWriter};
use wattlens_instrument::Trace;

use crate::error::CliError;
use crate::progress;

/// Read `path`, keeping the readable prefix of a cut-short trace and warning about it on stderr.
///
/// # Errors
/// [`CliError::ReadTrace`] when not even the header and metadata are readable.
pub fn load_trace(path: &Path) -> Result<Trace, CliError> {
    let pb = progress::spinner("reading trace");
    let rec = read_trace_file(path).map_err(|source| CliError::ReadTrace {
        path: path.to_owned(),
        source,
    });
    pb.finish_and_clear();
    let rec = rec?;
    if let Some(problem) = rec.stopped {
        eprintln!(
            "wattlens: warning: {problem}; reporting the {} spans and {} power readings before that point",
            rec.trace.spans.len(),
            rec.trace.power.len()
        );
    }
    Ok(rec.trace)
}

/// Write `trace` to `path` with a progress bar.
///
/// # Errors
/// [`CliError::WriteTrace`] when the file cannot be written.
pub fn save_trace(path: &Path, trace: &Trace) -> Result<(), CliError> {
    let err = |source| CliError::WriteTrace {
        path: path.to_owned(),
        source,
    };
    let pb = progress::bar(
        (trace.spans.len() + trace.power.len()) as u64,
        "writing trace",
    );
    let mut w = TraceWriter::create(path, &trace.meta).map_err(err)?;
    w.write_body(trace, |done| pb.set_position(done))
        .map_err(err)?;
    w.finish().map_err(err)?;
    pb.finish_and_clear();
    Ok(())
}

/// Write the Perfetto export of `trace` to `path`.
///
/// # Errors
/// [`CliError::WriteFile`] when the file cannot be written.
pub fn save_perfetto(
    path: &Path,
    trace: &Trace,
    findings: &[wattlens_instrument::waste::WasteReport],
) -> Result<(), CliError> {
    let err = |source| CliError::WriteFile {
        path: path.to_owned(),
        source,
    };
    let pb = progress::spinner("writing Perfetto JSON");
    let file = File::create(path).map_err(err)?;
    let r = wattlens_instrument::perfetto::export_with_findings(
        trace,
        findings,
        BufWriter::with_capacity(1 << 16, file),
    )
    .map_err(err);
    pb.finish_and_clear();
    r
}

//! The subcommands, and the trace I/O they share.

pub mod calibrate;
pub mod compare;
pub mod demo;
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

/// The files in `dir` ("" for the current folder) whose names `keep` accepts, sorted.
pub fn files_in(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<std::path::PathBuf> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| keep(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

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
    if rec.trailing_bytes > 0 {
        eprintln!(
            "wattlens: warning: {} has {} bytes after its end marker (another trace appended to it?); only the first trace is read",
            path.display(),
            rec.trailing_bytes
        );
    }
    Ok(rec.trace)
}

/// Refuse to write `output` over one of `inputs`, or over any trace: an export or report
/// must never destroy a recording.
///
/// # Errors
/// [`CliError::Usage`] naming the file.
pub fn refuse_overwriting(output: &Path, inputs: &[&Path]) -> Result<(), CliError> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    };
    if inputs.iter().any(|i| same(output, i)) {
        return Err(CliError::Usage(format!(
            "{} is the trace being read; write the export to another file",
            output.display()
        )));
    }
    let mut head = [0u8; 8];
    let starts_as_trace = File::open(output)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == wattlens_instrument::format::MAGIC;
    if starts_as_trace {
        return Err(CliError::Usage(format!(
            "{} holds a wattlens trace; write the export to another file, or remove it first",
            output.display()
        )));
    }
    Ok(())
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

/// Write the Perfetto export of `trace` to `path`, marking `findings`: Chrome JSON when the
/// name ends in `.json`, else Perfetto's protobuf format.
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
    let pb = progress::spinner("writing the Perfetto trace");
    let file = BufWriter::with_capacity(1 << 16, File::create(path).map_err(err)?);
    let r = if is_json(path) {
        wattlens_instrument::perfetto::export_with_findings(trace, findings, file)
    } else {
        wattlens_instrument::perfetto::proto::export_with_findings(trace, findings, file)
            .map(|_| ())
    }
    .map_err(err);
    pb.finish_and_clear();
    r
}

/// Whether `path` names a JSON file.
pub fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

//! `wattlens export`: convert traces for other tools (Perfetto, Parquet).

use std::io::Write;
use std::path::Path;

use crate::cli::ExportArgs;
use crate::error::CliError;
use crate::render::parquet::{self, RunId};

/// Run `wattlens export`.
///
/// # Errors
/// [`CliError`] when a trace cannot be read or the output cannot be written.
pub fn run(args: &ExportArgs, out: &mut dyn Write) -> Result<(), CliError> {
    match (&args.parquet, &args.output) {
        (Some(dir), _) => to_parquet(dir, &args.traces, out),
        (None, Some(output)) => match args.traces.as_slice() {
            [trace] => to_perfetto(trace, output, out),
            _ => Err(CliError::Usage(
                "--perfetto exports one trace at a time; give one trace file".into(),
            )),
        },
        (None, None) => Err(CliError::Usage(
            "name the Perfetto file with -o FILE, or export Parquet with --parquet DIR".into(),
        )),
    }
}

/// One trace as a Perfetto trace.
fn to_perfetto(trace_path: &Path, output: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    super::refuse_overwriting(output, &[trace_path])?;
    let trace = super::load_trace(trace_path)?;
    // Waste findings are marked where the trace can be attributed; a trace that cannot still
    // exports, unmarked.
    let findings = crate::render::analyze(&trace)
        .map(|r| r.waste())
        .unwrap_or_default();
    super::save_perfetto(output, &trace, &findings)?;
    writeln!(
        out,
        "wrote {} (Perfetto {}: open it at ui.perfetto.dev)",
        output.display(),
        if super::is_json(output) {
            "JSON"
        } else {
            "protobuf trace"
        }
    )?;
    Ok(())
}

/// Every trace as Parquet tables under `dir`, one file per table and run. A trace that cannot
/// be attributed still exports its spans and power readings, with empty report tables.
fn to_parquet(
    dir: &Path,
    traces: &[std::path::PathBuf],
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut runs: Vec<String> = Vec::new();
    for path in traces {
        let run = run_name(path);
        if runs.contains(&run) {
            return Err(CliError::Usage(format!(
                "two traces are named {run}; the Parquet files of a run are named for its trace file, so rename one"
            )));
        }
        runs.push(run);
    }
    for (path, run) in traces.iter().zip(runs) {
        let trace = super::load_trace(path)?;
        let report = match crate::render::analyze(&trace) {
            Ok(r) => Some(r),
            Err(e) => {
                writeln!(out, "{}: {e}; its report tables are empty", path.display())?;
                None
            }
        };
        let id = RunId {
            run,
            host: trace.meta.host.clone(),
        };
        let files = parquet::write(dir, &id, &trace, report.as_ref())?;
        writeln!(
            out,
            "wrote {} Parquet tables of run {} under {}",
            files.len(),
            id.run,
            dir.display()
        )?;
    }
    writeln!(
        out,
        "query them with DuckDB, e.g. SELECT op_class, sum(dynamic_mj + static_mj) / 1000 AS joules FROM '{}/ops/*.parquet' GROUP BY op_class",
        dir.display()
    )?;
    Ok(())
}

/// A run's name: its trace file's stem.
fn run_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".to_owned())
}

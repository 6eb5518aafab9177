//! `wattlens export`: convert a trace for other tools.

use std::io::Write;

use crate::cli::ExportArgs;
use crate::error::CliError;

/// Run `wattlens export`.
///
/// # Errors
/// [`CliError`] when the trace cannot be read or the output cannot be written.
pub fn run(args: &ExportArgs, out: &mut dyn Write) -> Result<(), CliError> {
    super::refuse_overwriting(&args.output, &[&args.trace])?;
    let trace = super::load_trace(&args.trace)?;
    // Waste findings are marked where the trace can be attributed; a trace that cannot still
    // exports, unmarked.
    let findings = crate::render::analyze(&trace)
        .map(|r| r.waste())
        .unwrap_or_default();
    let json = args.output.extension().is_some_and(|e| e == "json");
    if json {
        super::save_perfetto(&args.output, &trace, &findings)?;
    } else {
        save_perfetto_proto(&args.output, &trace, &findings)?;
    }
    writeln!(
        out,
        "wrote {} (Perfetto {}: open it at ui.perfetto.dev)",
        args.output.display(),
        if json { "JSON" } else { "protobuf trace" }
    )?;
    Ok(())
}

/// Write `trace` to `path` in Perfetto's protobuf format, marking `findings`.
///
/// # Errors
/// [`CliError::WriteFile`] when the file cannot be written.
fn save_perfetto_proto(
    path: &std::path::Path,
    trace: &wattlens_instrument::Trace,
    findings: &[wattlens_instrument::waste::WasteReport],
) -> Result<(), CliError> {
    let err = |source| CliError::WriteFile {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::create(path).map_err(err)?;
    wattlens_instrument::perfetto::proto::export_with_findings(
        trace,
        findings,
        std::io::BufWriter::with_capacity(1 << 16, file),
    )
    .map(|_| ())
    .map_err(err)
}

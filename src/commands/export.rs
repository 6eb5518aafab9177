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
    super::save_perfetto(&args.output, &trace, &findings)?;
    writeln!(
        out,
        "wrote {} (Perfetto {}: open it at ui.perfetto.dev)",
        args.output.display(),
        if super::is_json(&args.output) {
            "JSON"
        } else {
            "protobuf trace"
        }
    )?;
    Ok(())
}

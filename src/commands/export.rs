//! `wattlens export`: convert a trace for other tools.

use std::io::Write;

use crate::cli::ExportArgs;
use crate::error::CliError;

/// Run `wattlens export`.
///
/// # Errors
/// [`CliError`] when the trace cannot be read or the output cannot be written.
pub fn run(args: &ExportArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let trace = super::load_trace(&args.trace)?;
    super::save_perfetto(&args.output, &trace)?;
    writeln!(
        out,
        "wrote {} (Perfetto JSON: open it at ui.perfetto.dev)",
        args.output.display()
    )?;
    Ok(())
}

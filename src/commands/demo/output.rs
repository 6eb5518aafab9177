//! Where `wattlens demo` writes its trace, its Perfetto files and its HTML report, and the
//! lines that say so.

use std::io::Write;
use std::path::PathBuf;

use wattlens_instrument::Trace;

use crate::cli::DemoArgs;
use crate::error::CliError;
use crate::render::Report;

/// The demo's files.
pub(super) struct Outputs {
    /// The trace.
    pub trace: PathBuf,
    /// Perfetto's protobuf format, and Chrome JSON.
    pub perfetto: [PathBuf; 2],
    /// The HTML report.
    pub html: PathBuf,
}

/// Where the demo writes its files.
pub(super) fn output_paths(args: &DemoArgs) -> Outputs {
    Outputs {
        trace: args.out_dir.join("demo.wlt"),
        perfetto: [
            args.out_dir.join("demo.pftrace"),
            args.out_dir.join("demo.perfetto.json"),
        ],
        html: args.out_dir.join("demo.html"),
    }
}

/// Write the Perfetto files and the HTML report of `trace` (the trace itself is on disk
/// already). A build without the charting library writes no HTML.
///
/// # Errors
/// [`CliError`] when a file cannot be written.
pub(super) fn save_views(paths: &Outputs, trace: &Trace, report: &Report) -> Result<(), CliError> {
    for p in &paths.perfetto {
        crate::commands::save_perfetto(p, trace, &report.waste())?;
    }
    if crate::render::html::unavailable().is_none() {
        crate::commands::report::write_html(&paths.html, trace, report)?;
    }
    Ok(())
}

/// The closing lines: where the trace, the Perfetto files and the HTML report are.
///
/// # Errors
/// [`CliError::Output`] when standard output fails.
pub(super) fn print_outputs(out: &mut dyn Write, paths: &Outputs) -> Result<(), CliError> {
    writeln!(out)?;
    writeln!(
        out,
        "trace:    {}  (wattlens report {0})",
        paths.trace.display()
    )?;
    writeln!(
        out,
        "perfetto: {}  (open at ui.perfetto.dev; Chrome JSON: {})",
        paths.perfetto[0].display(),
        paths.perfetto[1].display()
    )?;
    match crate::render::html::unavailable() {
        None => writeln!(
            out,
            "html:     {}  (open in a browser; works offline)",
            paths.html.display()
        )?,
        Some(why) => writeln!(out, "html:     none ({why})")?,
    }
    Ok(())
}

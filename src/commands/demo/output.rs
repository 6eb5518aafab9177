//! Where `wattlens demo` writes its trace and its Perfetto file, and the lines that say so.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::DemoArgs;
use crate::error::CliError;

/// Where the demo writes its trace, and its Perfetto files: Perfetto's protobuf format and
/// Chrome JSON.
pub(super) fn output_paths(args: &DemoArgs) -> (PathBuf, [PathBuf; 2]) {
    (
        args.out_dir.join("demo.wlt"),
        [
            args.out_dir.join("demo.pftrace"),
            args.out_dir.join("demo.perfetto.json"),
        ],
    )
}

/// The closing lines: where the trace and the Perfetto file are.
///
/// # Errors
/// [`CliError::Output`] when standard output fails.
pub(super) fn print_outputs(
    out: &mut dyn Write,
    trace_path: &Path,
    perfetto_paths: &[PathBuf; 2],
) -> Result<(), CliError> {
    writeln!(out)?;
    writeln!(
        out,
        "trace:    {}  (wattlens report {0})",
        trace_path.display()
    )?;
    writeln!(
        out,
        "perfetto: {}  (open at ui.perfetto.dev; Chrome JSON: {})",
        perfetto_paths[0].display(),
        perfetto_paths[1].display()
    )?;
    Ok(())
}

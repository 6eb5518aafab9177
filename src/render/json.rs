//! The JSON report: the whole [`Report`] as one document.

use std::io::{self, Write};

use super::Report;

/// Write `report` as pretty JSON.
///
/// # Errors
/// The I/O error of `out`.
pub fn write(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report).map_err(io::Error::other)?;
    writeln!(out)
}

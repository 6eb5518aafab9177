//! Errors of the wattlens command, each one sentence for the user.

use std::path::PathBuf;

use wattlens_instrument::{AttributionError, TraceError};

/// Why a wattlens command stopped.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A trace could not be read.
    #[error("cannot read trace {}: {source}", path.display())]
    ReadTrace {
        /// The trace.
        path: PathBuf,
        /// Why.
        source: TraceError,
    },
    /// A trace could not be written.
    #[error("cannot write trace {}: {source}", path.display())]
    WriteTrace {
        /// The trace.
        path: PathBuf,
        /// Why.
        source: TraceError,
    },
    /// An output file could not be written.
    #[error("cannot write {}: {source}; check that its folder exists and is writable", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Energy could not be attributed.
    #[error("cannot attribute energy: {0}")]
    Attribution(#[from] AttributionError),
    /// The GPU session failed (no GPU, no driver, a lost GPU).
    #[error("{0}")]
    Gpu(#[from] crate::gpu::GpuError),
    /// A calibration run could not be fitted.
    #[error("cannot fit the sensor profile: {0}")]
    Calibration(#[from] wattlens_instrument::calibrate::CalibrationError),
    /// The repetition harness could not measure a kernel.
    #[error("cannot measure a kernel alone: {0}")]
    Repeat(#[from] wattlens_instrument::repeat::RepeatError),
    /// Traces could not be merged.
    #[error("cannot merge the traces: {0}")]
    Merge(#[from] wattlens_instrument::merge::MergeError),
    /// A Parquet export could not be written.
    #[error("cannot export Parquet: {0}")]
    Parquet(#[from] crate::render::parquet::ParquetExportError),
    /// Variants could not be compared.
    #[error("cannot compare the variants: {0}")]
    Compare(#[from] wattlens_instrument::compare::CompareError),
    /// Something wattlens needs is missing from this installation.
    #[error("{0}")]
    Setup(String),
    /// The command line asked for something impossible (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The profiled command exited unsuccessfully; wattlens exits with its code.
    #[error("the profiled command exited with code {0}")]
    ChildExit(u8),
    /// Writing the report to standard output failed.
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The process exit code: 2 for usage errors, the child's own code for a profiled command
    /// that failed, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::ChildExit(code) => *code,
            _ => 1,
        }
    }

    /// True when standard output was closed by the reader (e.g. `| head`): not an error.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

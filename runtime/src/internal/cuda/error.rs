//! Errors of the CUDA side.

use cudarc::driver::DriverError;
use wattlens_instrument::trace::Trace;

use crate::timing::TimerError;

/// Why a CUDA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// The driver library is missing or no GPU is usable.
    #[error(
        "CUDA is not usable here ({0}); check `nvidia-smi`, or run `wattlens demo --simulate`"
    )]
    Unavailable(String),
    /// The ordinal names no device.
    #[error(
        "there is no CUDA device {ordinal} (this machine has {count}); pick one with --device"
    )]
    NoSuchDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// Devices CUDA sees.
        count: i32,
    },
    /// A driver call failed.
    #[error("CUDA call failed while {what}: {source}")]
    Driver {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        source: DriverError,
    },
    /// A kernel launch failed, or a kernel faulted.
    #[error("kernel `{kernel}` ({site}) failed: {message}")]
    Kernel {
        /// The kernel's name.
        kernel: String,
        /// Where it was launched.
        site: String,
        /// What the driver said.
        message: String,
    },
    /// A launch's arguments do not match the kernel's parameters.
    #[error("kernel `{kernel}` ({site}): {problem}; pass the arguments in the kernel's parameter order and types")]
    Arguments {
        /// The kernel's name.
        kernel: String,
        /// Where it was launched.
        site: String,
        /// What does not match.
        problem: String,
    },
    /// A copy or memset does not fit its buffers.
    #[error("{what} at {site}: {problem}")]
    Transfer {
        /// memcpy or memset.
        what: &'static str,
        /// Where it was issued.
        site: String,
        /// What does not fit.
        problem: String,
    },
    /// A stream or buffer belongs to a device the session does not profile.
    #[error("{0}; open the profiler with that device in `ProfilerConfig::devices`")]
    ForeignDevice(String),
    /// Timing failed.
    #[error(transparent)]
    Timer(#[from] TimerError),
}

/// A session that ended in an error, with everything it recorded up to then.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Aborted {
    /// The trace recorded before the failure (spans with GPU times, regions, power).
    pub trace: Box<Trace>,
    /// What went wrong.
    #[source]
    pub error: CudaError,
}

//! The CUDA side, through cudarc's driver API loaded at run time: the profiling session
//! ([`Profiler`]) with its instrumented launches, transfers, buffers and regions.

mod activity_buffers;
mod alone;
mod alone_state;
pub mod checkpoint;
mod cupti;
pub mod cupti_records;
pub mod cupti_result;
mod device;
mod error;
mod events;
mod launch;
mod nvtx;
mod profiler;
mod scalar;
mod transfer;

pub use alone_state::AloneReport;
pub use device::{driver_version, format_uuid};
pub use error::{Aborted, CudaError};
pub use launch::{ProfiledArg, ProfiledLaunch};
pub use profiler::{
    DeviceBuffer, Finished, Kernel, Profiler, ProfilerConfig, RegionGuard, TimingChoice,
};
pub use scalar::Scalar;

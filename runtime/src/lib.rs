//! wattlens-runtime owns the CUDA side of wattlens: the profiling session ([`Profiler`]),
//! instrumented kernel launches through cudarc, GPU timing (CUPTI activity records, or pooled
//! CUDA events where CUPTI is missing) with clock alignment, memcpy/memset capture with content
//! digests, regions (also emitted as NVTX), buffer tracking, and the C ABI for
//! pass-instrumented host code.
//!
//! Everything that does not touch the GPU (recording, buffer versions, regions, digests, clock
//! fits, the timers' logic) sits above small traits with fakes and is tested on any machine.

#[doc(hidden)]
pub mod internal;

use internal::{buffers, c_abi, clock_fit, cuda, detect, digest, recorder, timing};

pub use cuda::{
    Aborted, AloneReport, CudaError, DeviceBuffer, Finished, Kernel, ProfiledArg, ProfiledLaunch,
    Profiler, ProfilerConfig, RegionGuard, Scalar, TimingChoice,
};
pub use detect::nvidia_gpus;
pub use digest::ContentHash;
pub use recorder::PaddingMask;
pub use timing::TimingMethod;

//! wattlens-runtime owns the CUDA side of wattlens: the profiling session, instrumented kernel
//! launches through cudarc, CUDA-event timing and clock alignment, memcpy/memset capture,
//! regions (also emitted as NVTX), buffer tracking, the C ABI for pass-instrumented code and
//! the CUPTI injection library. Today it holds GPU discovery and a CUDA device with event-timed launches
//! (enough for calibration and the accuracy checks); the full launch runtime arrives with its
//! own issue, on top of the trace model in `wattlens-instrument`.

pub mod cuda;
pub mod detect;

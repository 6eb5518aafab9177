//! wattlens-runtime owns the CUDA side of wattlens: the profiling session, instrumented kernel
//! launches through cudarc, CUDA-event timing and clock alignment, memcpy/memset capture,
//! regions (also emitted as NVTX), buffer tracking, the C ABI for pass-instrumented code and
//! the CUPTI injection library. Today it holds GPU discovery; the launch runtime arrives with
//! its own issue, on top of the trace model in `wattlens-instrument`.

pub mod detect;

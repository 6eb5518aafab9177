//! wattlens-kernels owns the workloads wattlens measures on real GPUs: CUDA C sources compiled
//! at build time by clang-19 and llc-19 to PTX embedded in the crate (the `wattlens-pass` step
//! arrives with the pass issue), and, later, their CPU references, quantized variants and the
//! demo inference pipeline. The simulated demo workload lives in `wattlens-instrument`.

pub mod calibration;
pub mod runtime_checks;

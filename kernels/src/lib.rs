//! wattlens-kernels owns the workloads wattlens measures on real GPUs: CUDA C sources compiled
//! at build time by clang-19, run through `wattlens-pass` and llc-19 to PTX embedded in the
//! crate with its kernel-facts manifest; their launchers and CPU references; quantized variants;
//! and the demo inference pipeline. It is empty until the kernels issue lands; the simulated
//! demo workload lives in `wattlens-instrument`.

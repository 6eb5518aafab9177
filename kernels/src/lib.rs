//! wattlens-kernels owns the workloads wattlens measures on real GPUs: CUDA C sources compiled
//! at build time by clang-19, the wattlens pass and llc-19 to PTX embedded in the crate,
//! together with the kernel-facts manifest the pass wrote; and, later, their CPU references,
//! quantized variants and the demo inference pipeline. The simulated demo workload lives in
//! `wattlens-instrument`.

pub mod access_check;
pub mod calibration;
pub mod host_demo;
pub mod ops;
pub mod pass_fixtures;
pub mod pipeline;
pub mod reference;
pub mod runtime_checks;

use wattlens_instrument::{Manifest, ManifestError};

/// The kernel-facts manifest of every kernel in this crate, as the pass wrote it.
pub const MANIFEST_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/manifest.json"));

/// The kernel-facts manifest of every kernel in this crate.
///
/// # Errors
/// [`ManifestError::Invalid`] only if the build embedded a manifest this build cannot read.
pub fn manifest() -> Result<Manifest, ManifestError> {
    Manifest::from_json(MANIFEST_JSON)
}

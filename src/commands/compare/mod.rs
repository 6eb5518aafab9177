//! `wattlens compare`: kernel variants measured with the repetition harness — fp32 vs bf16 vs
//! int8 matmul, unfused vs fused attention — each with energy, time, power, energy-delay
//! product and accuracy (95% CIs), then one verdict line per pair. On a real GPU the variants
//! are wattlens' own kernels (`gpu`); without one, the simulated GPU runs a model of them
//! (`sim`) and the true energies are printed beside the estimates.

mod gpu;
mod runs;
mod sim;
mod variants;

use std::io::Write;

use wattlens_instrument::repeat::RepeatConfig;

use crate::cli::CompareArgs;
use crate::error::CliError;

pub use sim::simulated;
pub use variants::{Comparison, Variant};

/// Run `wattlens compare`: on the GPU when there is one, else on the simulated GPU.
///
/// # Errors
/// [`CliError`] when the GPU session fails (the trace recorded so far is still written), a
/// batch cannot be analysed, or output fails.
pub fn run(args: &CompareArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if !args.runs.is_empty() {
        return runs::run(&args.runs, out);
    }
    std::fs::create_dir_all(&args.out_dir).map_err(|source| CliError::WriteFile {
        path: args.out_dir.clone(),
        source,
    })?;
    let config = RepeatConfig {
        batch_ns: args.batch_ms * 1_000_000,
        batches: args.batches,
        ..RepeatConfig::default()
    };
    if !args.simulate && !wattlens_runtime::nvidia_gpus().is_empty() {
        return gpu::run(args, &config, out);
    }
    simulated(args, &config, out).map(|_| ())
}

//! `wattlens compare`: variants with energy, time, power and energy-delay product (95% CIs), a
//! verdict per variant against the first, and the op classes and kernels behind it. Variants
//! are commands (`commands`, run by the repetition `protocol`), ranges of one program, or
//! recorded runs (`runs`). The built-in ones (`--builtin`) are wattlens' own kernels — fp32 vs
//! bf16 vs int8 matmul, unfused vs fused attention — with accuracy: on a real GPU (`gpu`), or
//! without one on the simulated GPU (`sim`), with the true energies beside the estimates.

mod commands;
mod gpu;
mod protocol;
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
    let forms = [
        !args.runs.is_empty(),
        !args.variants.is_empty(),
        !args.ranges.is_empty(),
        args.builtin,
    ];
    if forms.iter().filter(|&&f| f).count() > 1 {
        return Err(CliError::Usage(
            "give one kind of variant: recorded runs (A.wlt B.wlt), commands (--variant NAME=CMD), ranges (--ranges A,B -- CMD) or --builtin".into(),
        ));
    }
    if !args.command.is_empty() && args.ranges.is_empty() {
        return Err(CliError::Usage(
            "a command after `--` is for --ranges; give variants as commands with --variant NAME=CMD".into(),
        ));
    }
    if args.json && forms[..3].iter().all(|f| !f) {
        return Err(CliError::Usage(
            "--json prints a comparison of your variants (runs, --variant or --ranges); the built-in comparison writes compare.json in --out-dir".into(),
        ));
    }
    if !args.runs.is_empty() {
        return runs::run(&args.runs, (args.kernel.as_deref(), args.json), out);
    }
    if !args.variants.is_empty() {
        return commands::variants(args, out);
    }
    if !args.ranges.is_empty() {
        return commands::ranges(args, out);
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

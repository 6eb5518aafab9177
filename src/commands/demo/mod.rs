//! `wattlens demo`: the built-in workload, end to end: on the GPU when there is one
//! (`gpu`), else on the simulated GPU (`sim`). Both write their outputs where `output`
//! says.

mod gpu;
mod output;
mod sim;

use std::io::Write;

use crate::cli::DemoArgs;
use crate::error::CliError;

/// Run `wattlens demo`.
///
/// # Errors
/// [`CliError`] when the output folder or files cannot be written.
pub fn run(args: &DemoArgs, out: &mut dyn Write) -> Result<(), CliError> {
    std::fs::create_dir_all(&args.out_dir).map_err(|source| CliError::WriteFile {
        path: args.out_dir.clone(),
        source,
    })?;
    let gpus = wattlens_runtime::nvidia_gpus();
    if !gpus.is_empty() && !args.simulate {
        return gpu::run(args, out);
    }
    sim::run(args, out)
}

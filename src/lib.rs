//! wattlens is the command-line tool that shows where a GPU program's joules go. This library
//! holds the CLI's commands and report rendering; the measurement and analysis live in
//! `wattlens-instrument` (trace, power, attribution), `wattlens-runtime` (CUDA) and
//! `wattlens-kernels` (workloads).

pub mod audit;
pub mod baseline;
pub mod child;
pub mod cli;
pub mod commands;
pub mod error;
pub mod gpu;
pub mod locate;
pub mod progress;
pub mod render;

pub use cli::Cli;
pub use error::CliError;

use std::io::Write;

/// Run the parsed command line, writing reports to `out`.
///
/// # Errors
/// [`CliError`] for anything that stops the command; its message is one sentence for the user.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    match cli.command {
        cli::Command::Demo(args) => commands::demo::run(&args, out),
        cli::Command::Run(args) => commands::run::run(&args, out),
        cli::Command::Report(args) => commands::report::run(&args, out),
        cli::Command::Export(args) => commands::export::run(&args, out),
        cli::Command::Compare(args) => commands::compare::run(&args, out),
        cli::Command::Calibrate(args) => commands::calibrate::run(&args, out),
        cli::Command::Validate(args) => commands::validate::run(&args, out),
    }
}

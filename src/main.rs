//! The `wattlens` command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match wattlens::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match wattlens::run(cli, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e @ wattlens::CliError::ChildExit(_)) => {
            eprintln!("wattlens: {e}");
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            eprintln!("wattlens: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

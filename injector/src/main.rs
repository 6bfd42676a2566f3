//! `vaultlet-injector` binary entry point.

use clap::Parser;
use vaultlet_injector::cli::{Cli, Command, run_convert, run_preview};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Preview(args) => run_preview(&args),
        Command::Convert(args) => run_convert(&args),
        Command::Serve(args) => vaultlet_injector::server::run(*args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

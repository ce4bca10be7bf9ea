//! `pulp`: run, check and list capabilities of WebAssembly plugins.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    if let Err(e) = cli::telemetry::init(&args.log) {
        eprintln!("pulp: {e:#}");
        return ExitCode::from(2);
    }
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pulp: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! `vaultctl`: the operator's CLI. This file parses arguments, sets up logging and maps
//! outcomes to exit codes; each command lives in `cmd/`.

#[macro_use]
extern crate tiervault_sys;

mod bench;
mod cli;
mod cmd;
mod open;
mod output;
mod progress;
mod service;

use std::process::ExitCode;

use clap::Parser;

/// How a command ended, beyond plain failure.
pub enum Outcome {
    Ok,
    /// Committed, but some files were skipped (exit 3).
    Warnings,
    /// Damage found (exit 4).
    Damage,
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let level = if cli.global.quiet { "error" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VAULTCTL_LOG")
                .unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    match cmd::run(&cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Warnings) => ExitCode::from(3),
        Ok(Outcome::Damage) => ExitCode::from(4),
        Err(e) => {
            eprintln!("error: {e:#}");
            let usage = e
                .downcast_ref::<tiervault_store::Error>()
                .is_some_and(|s| matches!(s, tiervault_store::Error::DuplicateBaseName { .. }));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

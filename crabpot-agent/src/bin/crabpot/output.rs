//! How every command ends: one `crabpot:` line and the exit code.
use std::process::ExitCode;

pub(crate) fn done(text: String) -> ExitCode {
    println!("crabpot: {text}");
    ExitCode::SUCCESS
}

pub(crate) fn failed(error: anyhow::Error) -> ExitCode {
    eprintln!("crabpot: {error:#}");
    ExitCode::FAILURE
}

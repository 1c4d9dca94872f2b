//! `minitwit-replay`: a thin shim over the `replay_tool` library, which tests use too.

use std::process::ExitCode;

use clap::Parser;
use replay_tool::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    replay_tool::cli::run(Cli::parse()).await
}

//! The `codearts-syncd` binary: parse the command line and hand over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    codearts_syncd::cli::run(codearts_syncd::cli::Cli::parse()).await
}

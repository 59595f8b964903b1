//! `netqoe-loadgen`: parse flags, then run the load (`load`, also the default without a
//! subcommand) or generate a scenario (`scenario`).

use std::process::ExitCode;

use clap::Parser;
use netqoe_common::exit;
use netqoe_loadgen::config::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    netqoe_common::logging::init(cli.log.log_format);
    match netqoe_loadgen::commands::execute(cli.command, cli.load).await {
        Ok(()) => ExitCode::from(exit::OK),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "netqoe-loadgen failed");
            ExitCode::from(exit::FAILURE)
        }
    }
}

//! `netqoe-diagnoser`: parse the command line, set up logging, run the chosen subcommand;
//! the exit code says how it ended (docs/operations.md).

use std::process::ExitCode;

use clap::Parser;
use netqoe_diagnoser::config::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    netqoe_common::logging::init(cli.log.log_format);
    let result = netqoe_diagnoser::command::main(cli).await;
    netqoe_common::exit::exit_with_code("netqoe-diagnoser", result)
}

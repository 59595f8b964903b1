//! netqoe-lab binary: parses flags, checks the faults, runs the lab until SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use netqoe_common::exit;
use netqoe_lab::config::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    netqoe_common::logging::init(cli.log.log_format);
    if let Err(problem) = cli.lab.faults.validate() {
        eprintln!("error: invalid fault flag: {problem}");
        return ExitCode::from(exit::USAGE);
    }
    let shutdown = netqoe_common::shutdown_token();
    // What fails is binding its ports or its metrics address.
    let result = netqoe_lab::run(cli.lab, cli.metrics_listen, shutdown).await;
    exit::exit_with("netqoe-lab", result.map_err(exit::Failure::Unavailable))
}

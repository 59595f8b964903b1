//! netqoe-probe binary: parses flags, starts logging and runs the probe; the exit code says
//! how it ended (3 configuration, 4 metrics listener, 1 failure while running).

use std::process::ExitCode;

use clap::Parser;
use netqoe_probe::config::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    netqoe_common::logging::init(cli.log.log_format);
    netqoe_common::exit::exit_with("netqoe-probe", netqoe_probe::app::main(cli))
}

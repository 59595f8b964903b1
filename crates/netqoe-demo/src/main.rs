//! `netqoe-demo`: parse the command line, run `up` or `down`, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use netqoe_demo::config::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => match netqoe_demo::up::up(&cli.home, &args) {
            Ok(report) => {
                netqoe_demo::summary::print(&report);
                if report.passed {
                    ExitCode::SUCCESS
                } else {
                    eprintln!("netqoe-demo: the diagnoser's scores are below their thresholds");
                    ExitCode::from(netqoe_common::exit::BELOW_THRESHOLD)
                }
            }
            Err(error) => {
                eprintln!("netqoe-demo: {error:#}");
                eprintln!(
                    "what started is left running for a look at its logs; stop it with `make demo-down`"
                );
                ExitCode::FAILURE
            }
        },
        Command::Down => match netqoe_demo::down::down(&cli.home) {
            Ok(done) => {
                netqoe_demo::down::print(&cli.home, &done);
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("netqoe-demo down: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

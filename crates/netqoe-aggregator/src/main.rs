//! `netqoe-aggregator`: parse the command line, set up logging, run the chosen subcommand.

use std::process::ExitCode;

use clap::Parser;
use netqoe_aggregator::config::{Cli, Command};
use netqoe_aggregator::{command, dlq};
use netqoe_common::exit;

/// mimalloc instead of the system allocator: the consume loop allocates and frees batches of
/// thousands of events and window states per transaction, and with glibc's allocator that
/// churn (page faults on regrown buffers, fragmentation) cost about a tenth of the
/// throughput in `make bench`.
#[global_allocator]
static ALLOCATOR: netqoe_common::alloc::MiMalloc = netqoe_common::alloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    netqoe_common::alloc::tune();
    let mut cli = Cli::parse();
    netqoe_common::logging::init(cli.log.log_format);
    let (result, code_on_error) = match cli.command.take().unwrap_or(Command::Run) {
        Command::Migrate => (
            netqoe_aggregator::migrate(&cli.db.database_url).await,
            exit::UNAVAILABLE,
        ),
        Command::Run => (command::run(&cli).await, exit::FAILURE),
        Command::Dlq { command } => {
            let mut stdout = std::io::stdout();
            let result = dlq::execute(&cli.nats.nats_url, &command, &mut stdout).await;
            (result, exit::FAILURE)
        }
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "netqoe-aggregator failed");
            ExitCode::from(code_on_error)
        }
    }
}

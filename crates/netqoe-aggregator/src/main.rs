//! `netqoe-aggregator`: parse the command line, set up logging, run the chosen subcommand;
//! the exit code says how it ended (docs/operations.md).

use std::process::ExitCode;

use clap::Parser;
use netqoe_aggregator::config::Cli;

/// mimalloc instead of the system allocator: the consume loop allocates and frees batches of
/// thousands of events and window states per transaction, and with glibc's allocator that
/// churn (page faults on regrown buffers, fragmentation) cost about a tenth of the
/// throughput in `make bench`.
#[global_allocator]
static ALLOCATOR: netqoe_common::alloc::MiMalloc = netqoe_common::alloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    netqoe_common::alloc::tune();
    let cli = Cli::parse();
    netqoe_common::logging::init(cli.log.log_format);
    let result = netqoe_aggregator::command::main(cli).await;
    netqoe_common::exit::exit_with("netqoe-aggregator", result)
}

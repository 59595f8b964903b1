//! `netqoe-ingest`: parse flags, set up logging, serve until SIGTERM; the exit code says how
//! it ended (3 configuration, 4 an address or NATS unavailable at start, 1 failure).

use std::process::ExitCode;

use clap::Parser;
use netqoe_ingest::Cli;

/// mimalloc, as in the aggregator: every request allocates and frees its body, events and
/// publish futures, and the benchmark's in-process reference handler uses the same allocator.
#[global_allocator]
static ALLOCATOR: netqoe_common::alloc::MiMalloc = netqoe_common::alloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    netqoe_common::alloc::tune();
    let cli = Cli::parse();
    netqoe_common::logging::init(cli.log.log_format);
    netqoe_common::exit::exit_with("netqoe-ingest", netqoe_ingest::start(cli).await)
}

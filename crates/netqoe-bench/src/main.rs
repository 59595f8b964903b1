//! `netqoe-bench`: runs the benchmarks and prints one JSON line per figure.
//!
//! Every figure is reported beside a limit measured on the same machine in the same run (the
//! raw capability of the component underneath), so the ratio holds on a noisy machine.

use clap::Parser;

/// The allocator of `netqoe-aggregator` (run in-process here) and `netqoe-ingest`, so the
/// raw references measured in this process compare like with like.
#[global_allocator]
static ALLOCATOR: netqoe_common::alloc::MiMalloc = netqoe_common::alloc::MiMalloc;

mod aggregator;
mod config;
mod diagnoser;
mod harness;
mod ingest;
mod probe;
mod raw;
mod run;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    netqoe_common::alloc::tune();
    let cli = config::Cli::parse();
    // Logs of the components under test only when asked for (RUST_LOG), on stderr.
    if std::env::var_os("RUST_LOG").is_some() {
        netqoe_common::logging::init(netqoe_common::LogFormat::Pretty);
    }
    run::run(cli).await
}

//! Runs the benchmarks a command line asks for, in a fixed order.

use crate::config::Cli;
use crate::{aggregator, diagnoser, harness, ingest, probe, raw};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let want = |name: &str| cli.wants(name);
    let env = harness::Env { scale: cli.scale };
    if want("raw") {
        raw::run(&env).await?;
    }
    if want("ingest") {
        ingest::run(&env).await?;
    }
    // A figure's own name runs just that half of the aggregator benchmark.
    if want("aggregator") || want("aggregator_events_per_s") {
        aggregator::throughput(&env).await?;
    }
    if want("aggregator") || want("pipeline_freshness_p95_s") {
        aggregator::freshness(&env).await?;
    }
    if want("probe") {
        probe::run(&env).await?;
    }
    if want("diagnoser") || want("diagnoser_full_windows_per_s") {
        diagnoser::full(&env).await?;
    }
    if want("diagnoser") || want("diagnoser_incremental") {
        diagnoser::incremental(&env).await?;
    }
    Ok(())
}

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
mod diagnoser;
mod harness;
mod ingest;
mod probe;
mod raw;

#[derive(Parser)]
#[command(about = "netqoe benchmarks: one JSON line {bench, value, unit, limit, ratio} per figure")]
struct Cli {
    /// Which benchmarks to run: `all`, or names such as `raw`, `aggregator`, `diagnoser` or a
    /// figure such as `aggregator_events_per_s` or `diagnoser_incremental`. The aggregator
    /// runs with its defaults, overridden by the `NETQOE_AGGREGATOR_*` variables of its
    /// command line.
    #[arg(default_value = "all")]
    which: Vec<String>,
    /// Scale the number of events (1.0 = the documented size).
    #[arg(long, env = "NETQOE_BENCH_SCALE", default_value_t = 1.0)]
    scale: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    netqoe_common::alloc::tune();
    let cli = Cli::parse();
    // Logs of the components under test only when asked for (RUST_LOG), on stderr.
    if std::env::var_os("RUST_LOG").is_some() {
        netqoe_common::logging::init(netqoe_common::LogFormat::Pretty);
    }
    let want = |name: &str| cli.which.iter().any(|w| w == "all" || w == name);
    let env = harness::Env { scale: cli.scale };
    if want("raw") {
        raw::run(&env).await?;
    }
    if want("ingest") {
        ingest::run(&env).await?;
    }
    // A figure's own name runs just that half of the aggregator benchmark.
    let agg_throughput = want("aggregator") || want("aggregator_events_per_s");
    let agg_freshness = want("aggregator") || want("pipeline_freshness_p95_s");
    if agg_throughput {
        aggregator::throughput(&env).await?;
    }
    if agg_freshness {
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

//! `netqoe-bench`: runs the benchmarks and prints one JSON line per figure.
//!
//! Every figure is reported beside a limit measured on the same machine in the same run (the
//! raw capability of the component underneath), so the ratio holds on a noisy machine.

use clap::Parser;

mod aggregator;
mod harness;
mod ingest;
mod probe;
mod raw;

#[derive(Parser)]
#[command(about = "netqoe benchmarks: one JSON line {bench, value, unit, limit, ratio} per figure")]
struct Cli {
    /// Which benchmarks to run: `all`, or names such as `raw`.
    #[arg(default_value = "all")]
    which: Vec<String>,
    /// Scale the number of events (1.0 = the documented size).
    #[arg(long, env = "NETQOE_BENCH_SCALE", default_value_t = 1.0)]
    scale: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    if want("aggregator") {
        aggregator::run(&env).await?;
    }
    if want("probe") {
        probe::run(&env).await?;
    }
    Ok(())
}

//! The bench command line: which benchmarks to run and at what scale.

use clap::Parser;

#[derive(Parser)]
#[command(about = "netqoe benchmarks: one JSON line {bench, value, unit, limit, ratio} per figure")]
pub struct Cli {
    /// Which benchmarks to run: `all`, or names such as `raw`, `aggregator`, `diagnoser` or a
    /// figure such as `aggregator_events_per_s` or `diagnoser_incremental`. The aggregator
    /// runs with its defaults, overridden by the `NETQOE_AGGREGATOR_*` variables of its
    /// command line.
    #[arg(default_value = "all")]
    pub which: Vec<String>,
    /// Scale the number of events (1.0 = the documented size).
    #[arg(long, env = "NETQOE_BENCH_SCALE", default_value_t = 1.0)]
    pub scale: f64,
}

impl Cli {
    /// Whether `name` (a benchmark or a figure) is among those asked for.
    pub fn wants(&self, name: &str) -> bool {
        self.which.iter().any(|w| w == "all" || w == name)
    }
}

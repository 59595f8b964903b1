//! Command line of `netqoe-demo` (clap, every flag with its `NETQOE_DEMO_*` variable).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "netqoe-demo",
    version,
    about = "The whole product on a local stack: `up` starts nats-server, PostgreSQL, ingest, \
             aggregator, a lab and live probes under the demo home, sends a scenario with \
             injected incidents, runs the diagnoser and writes its report; `down` stops exactly \
             what `up` started",
    long_about = None
)]
pub struct Cli {
    /// Where the demo keeps its servers' data, logs, state.json, truth.json and report.html.
    #[arg(
        long,
        env = "NETQOE_DEMO_HOME",
        default_value = "./.netqoe",
        global = true
    )]
    pub home: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stop a previous demo, start the stack, run the scenario, the live probes and the
    /// diagnoser, print the summary; the stack stays up.
    Up(UpArgs),
    /// Stop the processes the demo started (by pid, each checked to still be the one started).
    Down,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Clients of the scenario.
    #[arg(long, env = "NETQOE_DEMO_CLIENTS", default_value_t = 40)]
    pub clients: usize,
    /// Targets of the scenario.
    #[arg(long, env = "NETQOE_DEMO_TARGETS", default_value_t = 6)]
    pub targets: usize,
    /// Hours of history the scenario generates, ending now.
    #[arg(long, env = "NETQOE_DEMO_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(2..=160))]
    pub hours: u64,
    /// Incidents injected into the scenario (every label and scope from 7 on).
    #[arg(long, env = "NETQOE_DEMO_INCIDENTS", default_value_t = 14)]
    pub incidents: usize,
    /// Seed of the scenario.
    #[arg(long, env = "NETQOE_DEMO_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Port of nats-server (another free port when taken).
    #[arg(long, env = "NETQOE_DEMO_NATS_PORT", default_value_t = 14222)]
    pub nats_port: u16,
    /// Port of PostgreSQL (another free port when taken).
    #[arg(long, env = "NETQOE_DEMO_PG_PORT", default_value_t = 15432)]
    pub pg_port: u16,
    /// Port of ingest's HTTP API (another free port when taken).
    #[arg(long, env = "NETQOE_DEMO_INGEST_PORT", default_value_t = 18081)]
    pub ingest_port: u16,
    /// The live probes measure a healthy lab for this long before its fault goes on.
    #[arg(long, env = "NETQOE_DEMO_LIVE_HEALTHY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub live_healthy: Duration,
    /// The diagnoser runs once the lab's fault has been on at least this long (and the history
    /// is merged); the fault stays on afterwards.
    #[arg(long, env = "NETQOE_DEMO_LIVE_FAULT", default_value = "200s", value_parser = humantime::parse_duration)]
    pub live_fault: Duration,
    /// Precision below which the evaluation fails (passed to `netqoe-diagnoser evaluate`).
    #[arg(long, env = "NETQOE_DEMO_MIN_PRECISION", default_value_t = 0.9)]
    pub min_precision: f64,
    /// Recall below which the evaluation fails (passed to `netqoe-diagnoser evaluate`).
    #[arg(long, env = "NETQOE_DEMO_MIN_RECALL", default_value_t = 0.9)]
    pub min_recall: f64,
}

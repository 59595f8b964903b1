//! Command line of `netqoe-loadgen`: `load` (also the default without a subcommand) and
//! `scenario`, every flag with its `NETQOE_LOADGEN_*` variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use netqoe_common::LogArgs;

#[derive(Debug, Parser)]
#[command(
    name = "netqoe-loadgen",
    version,
    about = "Load generator for netqoe-ingest (`load`, the default) and scenario generator with ground truth for netqoe-diagnoser (`scenario`)",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a subcommand, the flags of `load`.
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Post valid events as fast as asked and report throughput and latency percentiles.
    Load(LoadArgs),
    /// Generate clients x targets of measurements with injected incidents, send them through
    /// ingest or print them as NDJSON, and write the ground truth.
    Scenario(ScenarioArgs),
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Events endpoint.
    #[arg(
        long,
        env = "NETQOE_LOADGEN_URL",
        default_value = "http://127.0.0.1:8081/api/v1/events"
    )]
    pub url: String,
    /// Bearer token.
    #[arg(long, env = "NETQOE_LOADGEN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Events per request (1 sends single objects, more sends JSON arrays).
    #[arg(long, env = "NETQOE_LOADGEN_BATCH", default_value_t = 1)]
    pub batch: usize,
    /// Events per second over all connections; omit to send as fast as possible.
    #[arg(long, env = "NETQOE_LOADGEN_RATE")]
    pub rate: Option<f64>,
    /// Concurrent connections.
    #[arg(long, env = "NETQOE_LOADGEN_CONNECTIONS", default_value_t = 8)]
    pub connections: usize,
    /// How long to send.
    #[arg(long, env = "NETQOE_LOADGEN_DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Stop after this many events (before the duration if reached first).
    #[arg(long, env = "NETQOE_LOADGEN_TOTAL")]
    pub total: Option<u64>,
    /// Distinct client ids.
    #[arg(long, env = "NETQOE_LOADGEN_CLIENTS", default_value_t = 100)]
    pub clients: usize,
    /// Distinct targets.
    #[arg(long, env = "NETQOE_LOADGEN_TARGETS", default_value_t = 10)]
    pub targets: usize,
    /// gzip request bodies.
    #[arg(long, env = "NETQOE_LOADGEN_GZIP")]
    pub gzip: bool,
    /// Report format.
    #[arg(long, env = "NETQOE_LOADGEN_OUTPUT", default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("sink").required(true).args(["ingest_url", "output_ndjson"]))]
pub struct ScenarioArgs {
    /// Seed of every random choice: the same seed (and end minute) gives the same events.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Clients (`<prefix>01`, `<prefix>02`, ...).
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_CLIENTS", default_value_t = 40)]
    pub clients: usize,
    /// Targets (https://shop.example/, https://api.example/health, ...).
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_TARGETS", default_value_t = 6)]
    pub targets: usize,
    /// Client id prefix.
    #[arg(
        long,
        env = "NETQOE_LOADGEN_SCENARIO_CLIENT_PREFIX",
        default_value = "client-"
    )]
    pub client_prefix: String,
    /// Length of the period, ending now (at most 7 days less an hour).
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_PERIOD", default_value = "24h", value_parser = humantime::parse_duration)]
    pub period: Duration,
    /// Injected incidents (every label and scope from 7 on).
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_INCIDENTS", default_value_t = 14)]
    pub incidents: usize,
    /// No incident in the first part of the period, so baselines exist.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_WARMUP", default_value = "3h", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Measurement interval of an HTTP series.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Interval of the sparse HTTP series.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_SPARSE_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub sparse_interval: Duration,
    /// One HTTP pair in this many is sparse (0: none).
    #[arg(
        long,
        env = "NETQOE_LOADGEN_SCENARIO_SPARSE_ONE_IN",
        default_value_t = 5
    )]
    pub sparse_one_in: usize,
    /// Target hosts each client pings (`host:443`).
    #[arg(
        long,
        env = "NETQOE_LOADGEN_SCENARIO_PING_TARGETS",
        default_value_t = 3
    )]
    pub ping_targets: usize,
    /// Interval of a ping series (10 probes a round).
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_PING_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,
    /// Chance per series-minute of an isolated one-minute spike (noise, not an incident).
    #[arg(
        long,
        env = "NETQOE_LOADGEN_SCENARIO_SPIKE_RATE",
        default_value_t = 1e-4
    )]
    pub spike_rate: f64,
    /// Chance per measurement of an isolated failure (noise, not an incident).
    #[arg(
        long,
        env = "NETQOE_LOADGEN_SCENARIO_ERROR_RATE",
        default_value_t = 1e-4
    )]
    pub error_rate: f64,
    /// Send through ingest: its base URL or events endpoint.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_INGEST_URL")]
    pub ingest_url: Option<String>,
    /// Bearer token for ingest (its `rate`/`burst` should admit the volume).
    #[arg(long, env = "NETQOE_LOADGEN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Events per request (at most ingest's burst, 400 by default).
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_BATCH", default_value_t = 400)]
    pub batch: usize,
    /// Concurrent connections to ingest.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_CONNECTIONS", default_value_t = 8)]
    pub connections: usize,
    /// Send bodies uncompressed.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_NO_GZIP")]
    pub no_gzip: bool,
    /// Print the events as NDJSON to this file, or `-` for stdout, instead of sending them.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_OUTPUT_NDJSON")]
    pub output_ndjson: Option<PathBuf>,
    /// Where the ground truth goes (JSON array of injected incidents).
    #[arg(
        long,
        env = "NETQOE_LOADGEN_SCENARIO_TRUTH",
        default_value = "scenario-truth.json"
    )]
    pub truth: PathBuf,
}

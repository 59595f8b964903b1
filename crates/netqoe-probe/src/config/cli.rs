//! Command line of `netqoe-probe`, every flag with its `NETQOE_PROBE_*` variable; the
//! measurement settings themselves are in the configuration file it names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use netqoe_common::LogArgs;

/// Measures DNS, TCP, TLS and HTTP quality of configured targets.
#[derive(Parser, Debug)]
#[command(name = "netqoe-probe", version, about)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(
        long,
        env = "NETQOE_PROBE_CONFIG",
        default_value = "/etc/netqoe/probe.toml"
    )]
    pub config: PathBuf,
    /// Client id; overrides the config's client_id and the state file.
    #[arg(long, env = "NETQOE_PROBE_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Directory holding the generated client_id.
    #[arg(
        long,
        env = "NETQOE_PROBE_STATE_DIR",
        default_value = "/var/lib/netqoe"
    )]
    pub state_dir: PathBuf,
    /// Longest an event waits in the spool for a fuller batch before it is sent.
    #[arg(long, env = "NETQOE_PROBE_BATCH_MAX_AGE", default_value = "1s", value_parser = humantime::parse_duration)]
    pub batch_max_age: Duration,
    /// PEM CA certificates to trust for ingest besides the public roots (a private CA);
    /// overrides the config's ingest_ca_file.
    #[arg(long, env = "NETQOE_PROBE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (/metrics); off unless set.
    #[arg(long, env = "NETQOE_PROBE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Measure every target once, print events and exit without sending.
    #[arg(long, env = "NETQOE_PROBE_ONCE")]
    pub once: bool,
    /// Output format for --once.
    #[arg(long, env = "NETQOE_PROBE_OUTPUT", default_value = "json", value_parser = ["json"])]
    pub output: String,
    #[command(flatten)]
    pub log: LogArgs,
}

//! Command line of `netqoe-lab`: the listeners and starting faults ([`LabConfig`]), the
//! metrics listener and logging, every flag with its `NETQOE_LAB_*` variable.

use std::net::SocketAddr;

use clap::Parser;
use netqoe_common::LogArgs;

use crate::LabConfig;

/// Lab target for netqoe probes: HTTP, HTTPS (self-signed CA) and DNS with fault injection.
///
/// Faults can be changed at runtime with `PUT /_lab/faults` (JSON) on the HTTP or HTTPS port.
#[derive(Parser, Debug)]
#[command(name = "netqoe-lab", version)]
pub struct Cli {
    #[command(flatten)]
    pub lab: LabConfig,
    /// Optional address of a Prometheus /metrics listener (e.g. 127.0.0.1:9105).
    #[arg(long, env = "NETQOE_LAB_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub log: LogArgs,
}

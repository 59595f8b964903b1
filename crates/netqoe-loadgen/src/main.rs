//! `netqoe-loadgen`: parse flags, run the load, print the report.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use netqoe_common::{exit, LogArgs};
use netqoe_loadgen::{run, LoadConfig};

#[derive(Debug, Parser)]
#[command(
    name = "netqoe-loadgen",
    version,
    about = "Posts valid netqoe events to an ingest URL and reports throughput and latency percentiles"
)]
struct Cli {
    /// Events endpoint.
    #[arg(
        long,
        env = "NETQOE_LOADGEN_URL",
        default_value = "http://127.0.0.1:8081/api/v1/events"
    )]
    url: String,
    /// Bearer token.
    #[arg(long, env = "NETQOE_LOADGEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Events per request (1 sends single objects, more sends JSON arrays).
    #[arg(long, env = "NETQOE_LOADGEN_BATCH", default_value_t = 1)]
    batch: usize,
    /// Events per second over all connections; omit to send as fast as possible.
    #[arg(long, env = "NETQOE_LOADGEN_RATE")]
    rate: Option<f64>,
    /// Concurrent connections.
    #[arg(long, env = "NETQOE_LOADGEN_CONNECTIONS", default_value_t = 8)]
    connections: usize,
    /// How long to send.
    #[arg(long, env = "NETQOE_LOADGEN_DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Stop after this many events (before the duration if reached first).
    #[arg(long, env = "NETQOE_LOADGEN_TOTAL")]
    total: Option<u64>,
    /// Distinct client ids.
    #[arg(long, env = "NETQOE_LOADGEN_CLIENTS", default_value_t = 100)]
    clients: usize,
    /// Distinct targets.
    #[arg(long, env = "NETQOE_LOADGEN_TARGETS", default_value_t = 10)]
    targets: usize,
    /// gzip request bodies.
    #[arg(long, env = "NETQOE_LOADGEN_GZIP")]
    gzip: bool,
    /// Report format.
    #[arg(long, env = "NETQOE_LOADGEN_OUTPUT", default_value = "text", value_parser = ["text", "json"])]
    output: String,
    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    netqoe_common::logging::init(cli.log.log_format);
    let cfg = LoadConfig {
        token: cli.token,
        batch: cli.batch.max(1),
        rate: cli.rate,
        connections: cli.connections.max(1),
        duration: Some(cli.duration),
        total: cli.total,
        clients: cli.clients,
        targets: cli.targets,
        gzip: cli.gzip,
        ..LoadConfig::new(&cli.url)
    };
    match run(cfg, None).await {
        Ok(r) if cli.output == "json" => {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            ExitCode::from(exit::OK)
        }
        Ok(r) => {
            println!(
                "requests {} in {:.1}s ({:.0} req/s), events accepted {} ({:.0} events/s)",
                r.requests, r.elapsed_s, r.requests_per_s, r.events_accepted, r.events_per_s
            );
            println!(
                "latency ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
                r.latency.p50_ms, r.latency.p95_ms, r.latency.p99_ms, r.latency.max_ms
            );
            let statuses: Vec<String> = r
                .statuses
                .iter()
                .map(|(c, n)| format!("{c}: {n}"))
                .collect();
            println!("statuses: {} (0 = transport error)", statuses.join(", "));
            ExitCode::from(exit::OK)
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "load run failed");
            ExitCode::from(exit::FAILURE)
        }
    }
}

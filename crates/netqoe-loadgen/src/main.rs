//! `netqoe-loadgen`: parse flags, then run the load (`load`, also the default without a
//! subcommand) or generate a scenario (`scenario`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use netqoe_common::{exit, LogArgs};
use netqoe_loadgen::send::{send, SendConfig};
use netqoe_loadgen::{output, run, LoadConfig, Scenario, ScenarioConfig};

#[derive(Debug, Parser)]
#[command(
    name = "netqoe-loadgen",
    version,
    about = "Load generator for netqoe-ingest (`load`, the default) and scenario generator with ground truth for netqoe-diagnoser (`scenario`)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, the flags of `load`.
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Post valid events as fast as asked and report throughput and latency percentiles.
    Load(LoadArgs),
    /// Generate clients x targets of measurements with injected incidents, send them through
    /// ingest or print them as NDJSON, and write the ground truth.
    Scenario(ScenarioArgs),
}

#[derive(Debug, Args)]
struct LoadArgs {
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
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("sink").required(true).args(["ingest_url", "output_ndjson"]))]
struct ScenarioArgs {
    /// Seed of every random choice: the same seed (and end minute) gives the same events.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_SEED", default_value_t = 1)]
    seed: u64,
    /// Clients (`<prefix>01`, `<prefix>02`, ...).
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_CLIENTS", default_value_t = 40)]
    clients: usize,
    /// Targets (https://shop.example/, https://api.example/health, ...).
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_TARGETS", default_value_t = 6)]
    targets: usize,
    /// Client id prefix.
    #[arg(
        long,
        env = "NETQOE_LOADGEN_SCENARIO_CLIENT_PREFIX",
        default_value = "client-"
    )]
    client_prefix: String,
    /// Length of the period, ending now (at most 7 days less an hour).
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_PERIOD", default_value = "24h", value_parser = humantime::parse_duration)]
    period: Duration,
    /// Injected incidents (every label and scope from 7 on).
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_INCIDENTS", default_value_t = 14)]
    incidents: usize,
    /// No incident in the first part of the period, so baselines exist.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_WARMUP", default_value = "3h", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Measurement interval of an HTTP series.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Interval of the sparse HTTP series.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_SPARSE_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    sparse_interval: Duration,
    /// One HTTP pair in this many is sparse (0: none).
    #[arg(
        long,
        env = "NETQOE_LOADGEN_SCENARIO_SPARSE_ONE_IN",
        default_value_t = 5
    )]
    sparse_one_in: usize,
    /// Target hosts each client pings (`host:443`).
    #[arg(
        long,
        env = "NETQOE_LOADGEN_SCENARIO_PING_TARGETS",
        default_value_t = 3
    )]
    ping_targets: usize,
    /// Interval of a ping series (10 probes a round).
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_PING_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    ping_interval: Duration,
    /// Chance per series-minute of an isolated one-minute spike (noise, not an incident).
    #[arg(
        long,
        env = "NETQOE_LOADGEN_SCENARIO_SPIKE_RATE",
        default_value_t = 1e-4
    )]
    spike_rate: f64,
    /// Chance per measurement of an isolated failure (noise, not an incident).
    #[arg(
        long,
        env = "NETQOE_LOADGEN_SCENARIO_ERROR_RATE",
        default_value_t = 1e-4
    )]
    error_rate: f64,
    /// Send through ingest: its base URL or events endpoint.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_INGEST_URL")]
    ingest_url: Option<String>,
    /// Bearer token for ingest (its `rate`/`burst` should admit the volume).
    #[arg(long, env = "NETQOE_LOADGEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Events per request (at most ingest's burst, 400 by default).
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_BATCH", default_value_t = 400)]
    batch: usize,
    /// Concurrent connections to ingest.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_CONNECTIONS", default_value_t = 8)]
    connections: usize,
    /// Send bodies uncompressed.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_NO_GZIP")]
    no_gzip: bool,
    /// Print the events as NDJSON to this file, or `-` for stdout, instead of sending them.
    #[arg(long, env = "NETQOE_LOADGEN_SCENARIO_OUTPUT_NDJSON")]
    output_ndjson: Option<PathBuf>,
    /// Where the ground truth goes (JSON array of injected incidents).
    #[arg(
        long,
        env = "NETQOE_LOADGEN_SCENARIO_TRUTH",
        default_value = "scenario-truth.json"
    )]
    truth: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    netqoe_common::logging::init(cli.log.log_format);
    let result = match cli.command {
        Some(Command::Scenario(args)) => scenario(args).await,
        Some(Command::Load(args)) => load(args).await,
        None => load(cli.load).await,
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "netqoe-loadgen failed");
            ExitCode::from(exit::FAILURE)
        }
    }
}

async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let cfg = LoadConfig {
        token: args.token,
        batch: args.batch.max(1),
        rate: args.rate,
        connections: args.connections.max(1),
        duration: Some(args.duration),
        total: args.total,
        clients: args.clients,
        targets: args.targets,
        gzip: args.gzip,
        ..LoadConfig::new(&args.url)
    };
    let r = run(cfg, None).await?;
    if args.output == "json" {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
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
    Ok(())
}

async fn scenario(args: ScenarioArgs) -> anyhow::Result<()> {
    let scenario = Arc::new(Scenario::new(ScenarioConfig {
        seed: args.seed,
        clients: args.clients,
        targets: args.targets,
        client_prefix: args.client_prefix,
        period: args.period,
        interval: args.interval,
        sparse_interval: args.sparse_interval,
        sparse_one_in: args.sparse_one_in,
        ping_targets: args.ping_targets,
        ping_interval: args.ping_interval,
        incidents: args.incidents,
        warmup: args.warmup,
        spike_rate: args.spike_rate,
        error_rate: args.error_rate,
        ..ScenarioConfig::default()
    })?);
    output::write_truth(&args.truth, &scenario.truth())
        .with_context(|| format!("failed to write the truth to {}", args.truth.display()))?;
    let mut sent = None;
    let to_stdout = args.output_ndjson.as_deref() == Some(std::path::Path::new("-"));
    if let Some(path) = &args.output_ndjson {
        let n = if to_stdout {
            output::write_ndjson(
                &mut std::io::BufWriter::new(std::io::stdout().lock()),
                &scenario,
            )
        } else {
            let file = std::fs::File::create(path)
                .with_context(|| format!("failed to create {}", path.display()))?;
            output::write_ndjson(&mut std::io::BufWriter::new(file), &scenario)
        }
        .context("failed to write the events")?;
        tracing::info!(events = n, "scenario events written");
    } else if let Some(url) = &args.ingest_url {
        let cfg = SendConfig {
            token: args.token,
            batch: args.batch.max(1),
            connections: args.connections.max(1),
            gzip: !args.no_gzip,
            ..SendConfig::new(&events_url(url)?)
        };
        sent = Some(
            send(scenario.clone(), cfg)
                .await
                .context("failed to send the scenario")?,
        );
    }
    let text = output::summary_text(&scenario, sent.as_ref());
    let text = format!("{text}truth: {}\n", args.truth.display());
    if to_stdout {
        std::io::stderr().write_all(text.as_bytes())?;
    } else {
        print!("{text}");
    }
    Ok(())
}

/// Ingest's base URL gets the events path; a URL with a path is used as it is.
fn events_url(url: &str) -> anyhow::Result<String> {
    let mut u = reqwest::Url::parse(url).with_context(|| format!("bad ingest url {url:?}"))?;
    if u.path() == "/" || u.path().is_empty() {
        u.set_path("/api/v1/events");
    }
    Ok(u.to_string())
}

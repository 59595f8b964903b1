//! What `netqoe-loadgen` runs for each subcommand: the load with its printed report, and the
//! scenario sent through ingest or written as NDJSON, with its truth and summary.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;

use crate::config::{Command, LoadArgs, ScenarioArgs};
use crate::send::{send, SendConfig};
use crate::{output, run, LoadConfig, Scenario, ScenarioConfig};

/// Runs one subcommand (`load` when none was given).
pub async fn execute(command: Option<Command>, default_load: LoadArgs) -> anyhow::Result<()> {
    match command {
        Some(Command::Scenario(args)) => scenario(args).await,
        Some(Command::Load(args)) => load(args).await,
        None => load(default_load).await,
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

//! netqoe-probe: measures network quality of experience per target and spools events for shipping.

pub mod app;
pub mod cert;
pub mod client_id;
pub mod config;
pub mod icmp;
pub mod measure;
pub mod netctx;
pub mod spool;
pub mod tls;

pub use config::{Config, Target};
pub use measure::measure;

/// Measures every target once, concurrently, returning events in target order.
pub async fn measure_once(config: &Config, client_id: &str) -> Vec<netqoe_model::Event> {
    let futures = config.targets.iter().map(|t| measure(t, client_id));
    futures::future::join_all(futures).await
}

pub mod metrics;
pub mod ship;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// Spool age bound: older events would be refused by ingest and have left the stream's
/// window anyway (its max_age), so they are dropped and counted.
pub const SPOOL_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);
/// Measurements running at once across all targets.
pub const MAX_CONCURRENT: usize = 16;

/// Measures every target at its own fixed rate (random start offset, no drift, bounded
/// concurrency), spools each event durably and ships the spool until `shutdown`, in batches
/// of up to `batch_size` events sent when full or when the oldest event has waited
/// `batch_max_age`.
pub async fn run(
    config: Config,
    client_id: String,
    batch_max_age: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let url = config
        .ingest_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("key `ingest_url` is required unless --once"))?;
    let token =
        config.token.as_ref().map(|t| t.0.clone()).ok_or_else(|| {
            anyhow::anyhow!("key `token` or `token_file` is required unless --once")
        })?;
    if ship::is_plain_http_off_host(&url) {
        tracing::warn!(
            ingest_url = %url,
            "ingest_url is plain http to another host: the token and events cross the network unencrypted; use https"
        );
    }
    let settings = ship::Settings {
        url,
        ca_file: config.ingest_ca_file.clone(),
        token,
        batch_size: config.batch_size,
        batch_max_age,
    };
    ship::http_client(&settings).context("cannot trust the ingest CA file")?;
    let spool = Arc::new(Mutex::new(
        spool::Spool::open(
            &config.spool_dir,
            config.spool_segment_bytes,
            config.spool_max_bytes,
        )
        .with_context(|| format!("cannot open the spool {}", config.spool_dir.display()))?
        .with_max_age(SPOOL_MAX_AGE),
    ));
    let notify = Arc::new(tokio::sync::Notify::new());
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
    let mut tasks = tokio::task::JoinSet::new();
    for target in config.targets {
        let (spool, notify, permits, shutdown, client_id) = (
            spool.clone(),
            notify.clone(),
            permits.clone(),
            shutdown.clone(),
            client_id.clone(),
        );
        tasks.spawn(async move {
            let offset = target.interval.mul_f64(rand::random::<f64>());
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + offset, target.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                let Ok(_permit) = permits.acquire().await else {
                    return;
                };
                let ev = measure(&target, &client_id).await;
                metrics::measured(target.kind, &ev);
                let line = serde_json::to_vec(&ev).expect("event serialises");
                if let Err(e) = spool.lock().unwrap().append(&[line]) {
                    ::metrics::counter!(metrics::SPOOL_ERRORS).increment(1);
                    tracing::error!(error = %e, target = %target.name, "cannot spool event");
                }
                notify.notify_one();
            }
        });
    }
    let mut shipper = tokio::spawn(ship::run(spool, settings, notify, shutdown.clone()));
    shutdown.cancelled().await;
    while tasks.join_next().await.is_some() {}
    // A request still in flight after 5 s is abandoned: its events stay in the spool (ingest
    // deduplicates a resend), and no shipper outlives this run to ack into a reopened spool.
    if tokio::time::timeout(Duration::from_secs(5), &mut shipper)
        .await
        .is_err()
    {
        shipper.abort();
        let _ = shipper.await;
    }
    Ok(())
}

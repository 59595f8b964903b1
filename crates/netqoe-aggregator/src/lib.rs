//! The netqoe aggregator: consumes `QOE_EVENTS` and maintains `agg_1m` in Postgres with
//! exactly-once effect (see `store` for the transaction, `window` for the mergeable state).

pub mod command;
pub mod config;
pub mod consume;
pub mod dlq;
mod inflight;
pub mod metrics;
pub mod quarantine;
pub mod store;
/// The window state and its codec, from the pure crate `netqoe-window`.
pub use netqoe_window as window;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use axum::{http::StatusCode, routing::get};
use netqoe_common::metrics_http::PrometheusHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Cli, Settings};

/// Creates the database when missing and applies every pending migration; idempotent.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    netqoe_db::ensure_database(database_url).await?;
    let pool = netqoe_db::connect(database_url, &Default::default()).await?;
    netqoe_db::migrate(&pool)
        .await
        .context("failed to migrate the database")?;
    tracing::info!(
        migrations = netqoe_db::migration_count(),
        "database schema is up to date"
    );
    pool.close().await;
    Ok(())
}

/// Consumes until `shutdown`, finishing the batch in hand. `pool` may point at a database
/// that is down: the consumer waits for it.
pub async fn run(
    settings: Settings,
    pool: PgPool,
    metrics_listener: Option<(TcpListener, PrometheusHandle)>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    metrics::describe();
    let client = netqoe_nats::connect(&settings.nats_url, "netqoe-aggregator", false).await?;
    let js = jetstream::new(client.clone());
    let ready = Arc::new(AtomicBool::new(false));
    let background = CancellationToken::new();

    if let Some((listener, handle)) = metrics_listener {
        let r = ready.clone();
        let router = netqoe_common::metrics_http::router(handle)
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/readyz",
                get(move || {
                    let ready = r.load(Ordering::Relaxed);
                    async move {
                        if ready {
                            (StatusCode::OK, "ready\n")
                        } else {
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                "not ready: NATS or Postgres unavailable\n",
                            )
                        }
                    }
                }),
            );
        netqoe_common::metrics_http::spawn(listener, router, background.clone())?;
    }

    if settings.provision {
        let mut attempt = 0;
        loop {
            match netqoe_nats::provision(&js, netqoe_nats::Scope::All, &settings.provision_options)
                .await
            {
                Ok(()) => break,
                Err(error) => {
                    if attempt == 0 {
                        tracing::warn!(%error, "cannot provision streams yet; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(consume::backoff(attempt, settings.max_backoff)) => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                    attempt += 1;
                }
            }
        }
    }

    match events_max_age(&js, &settings, &shutdown).await {
        Some(max_age) => check_seen_retention(settings.seen_retention, max_age)?,
        None => return Ok(()),
    }

    tokio::spawn(watch_pending(js.clone(), background.clone()));
    tokio::spawn(retention(
        pool.clone(),
        settings.clone(),
        background.clone(),
    ));

    let consumer = Arc::new(consume::Consumer {
        js,
        pool,
        cache: store::RowCache::new(settings.row_cache),
        settings,
        ready,
        shutdown,
        inflight: Default::default(),
    });
    let result = consumer.run().await;
    background.cancel();
    let _ = client.flush().await;
    tracing::info!("aggregator stopped");
    result
}

/// Refuses a `--seen-retention` shorter than the stream's `max_age`: an event id pruned
/// while its message can still be redelivered or replayed from the stream would be merged a
/// second time. A stream without an age limit is only warned about.
pub fn check_seen_retention(retention: Duration, max_age: Duration) -> anyhow::Result<()> {
    if max_age.is_zero() {
        tracing::warn!(
            seen_retention = %humantime::format_duration(retention),
            "QOE_EVENTS has no max_age: a message older than --seen-retention that is still \
             in the stream would be merged again if redelivered"
        );
    } else if retention < max_age {
        anyhow::bail!(
            "--seen-retention ({}) is shorter than the max_age of stream QOE_EVENTS ({}): an \
             event whose id is pruned could still be redelivered from the stream and merged \
             twice; set --seen-retention to at least {}",
            humantime::format_duration(retention),
            humantime::format_duration(max_age),
            humantime::format_duration(max_age),
        );
    }
    Ok(())
}

/// The `max_age` of `QOE_EVENTS` as the server has it, retried while NATS is unavailable;
/// None on shutdown.
async fn events_max_age(
    js: &jetstream::Context,
    settings: &Settings,
    shutdown: &CancellationToken,
) -> Option<Duration> {
    let mut attempt = 0;
    loop {
        match js.get_stream(netqoe_nats::EVENTS_STREAM).await {
            Ok(stream) => return Some(stream.cached_info().config.max_age),
            Err(error) => {
                if attempt == 0 {
                    tracing::warn!(%error, "cannot read stream QOE_EVENTS yet; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(consume::backoff(attempt, settings.max_backoff)) => {}
                    _ = shutdown.cancelled() => return None,
                }
                attempt += 1;
            }
        }
    }
}

async fn watch_pending(js: jetstream::Context, stop: CancellationToken) {
    loop {
        if let Ok(stream) = js.get_stream(netqoe_nats::EVENTS_STREAM).await {
            if let Ok(info) = stream.consumer_info(netqoe_nats::AGGREGATOR_CONSUMER).await {
                ::metrics::gauge!(metrics::PENDING).set(info.num_pending as f64);
                ::metrics::gauge!(metrics::ACK_PENDING).set(info.num_ack_pending as f64);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn retention(pool: PgPool, settings: Settings, stop: CancellationToken) {
    loop {
        let now = chrono::Utc::now();
        let seen_before = store::seen_cutoff(now, settings.seen_retention);
        match store::prune_seen(&pool, seen_before, 10_000).await {
            Ok(n) => {
                ::metrics::counter!(metrics::PRUNED, "table" => "events_seen").increment(n);
                if n > 0 {
                    tracing::info!(rows = n, "pruned events_seen");
                }
            }
            Err(error) => tracing::warn!(%error, "events_seen retention failed; will retry"),
        }
        if let Some(keep) = settings.agg_retention {
            let before =
                now - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(365));
            match store::prune_windows(&pool, before, 10_000).await {
                Ok(n) => ::metrics::counter!(metrics::PRUNED, "table" => "agg_1m").increment(n),
                Err(error) => tracing::warn!(%error, "agg_1m retention failed; will retry"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.retention_interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_retention_is_at_least_the_streams_max_age() {
        let day = Duration::from_secs(86_400);
        assert!(check_seen_retention(7 * day, 7 * day).is_ok());
        assert!(check_seen_retention(8 * day, 7 * day).is_ok());
        assert!(check_seen_retention(day, Duration::ZERO).is_ok());
        let error = check_seen_retention(6 * day, 7 * day)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--seen-retention (6days)") && error.contains("QOE_EVENTS (7days)"),
            "{error}"
        );
    }
}

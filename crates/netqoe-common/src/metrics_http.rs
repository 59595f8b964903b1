//! The Prometheus recorder and the `/metrics` HTTP endpoint every long-running binary serves.

use std::time::Duration;

use std::net::SocketAddr;

use anyhow::Context;
use axum::{routing::get, Router};
pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Buckets (seconds) for every histogram whose name ends in `_seconds`.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the global Prometheus recorder with histogram buckets (not summaries) and starts
/// its periodic upkeep. Returns the handle that renders the exposition text.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Router answering `GET /metrics` with the exposition text.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move { handle.render() }
        }),
    )
}

/// Serves `app` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

/// Binds `addr` and serves `app` (`/metrics`, plus whatever health routes the binary adds)
/// in the background until `shutdown` fires. Returns the bound address; a failure to bind is
/// the caller's error, a failure while serving is logged.
pub async fn spawn_listener(
    addr: SocketAddr,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to bind metrics listener {addr}"))?;
    spawn(listener, app, shutdown)
}

/// Serves `app` on the bound `listener` in the background until `shutdown` fires; a failure
/// while serving is logged. Returns the listener's address.
pub fn spawn(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "serving metrics");
    tokio::spawn(async move {
        if let Err(e) = serve(listener, app, shutdown).await {
            tracing::error!(error = format!("{e:#}"), "metrics listener failed");
        }
    });
    Ok(bound)
}

//! netqoe-ingest: authenticated, rate-limited HTTP ingest of events into NATS JetStream.
//!
//! In-process use (tests, embedding), mini-redis style:
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use netqoe_ingest::{run, AuthSource, Settings};
//! let mut settings = Settings::new("nats://127.0.0.1:4222");
//! settings.auth = AuthSource::Inline("[[tokens]]\ntoken = \"0123456789abcdef\"\nclients = [\"*\"]\n".into());
//! let api = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! run(settings, api, None, shutdown).await?;
//! # Ok(())
//! # }
//! ```
//!
//! `run` returns after `shutdown` is cancelled and in-flight requests have drained.

pub mod app;
pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod limit;
pub mod metrics;
pub mod publish;
pub mod server;
pub mod state;
pub mod validate;

use std::time::Duration;

use anyhow::Context;
pub use netqoe_common::exit::Failure;
use netqoe_common::metrics_http::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::Tokens;
pub use config::{AuthSource, Cli, Settings};
use state::{AppState, Auth};

/// Runs ingest as the command line says: validates the settings, installs the metrics
/// recorder, binds both addresses and serves until SIGTERM.
pub async fn start(cli: Cli) -> Result<(), Failure> {
    let settings = Settings::from_cli(&cli).map_err(Failure::config)?;
    let handle = netqoe_common::metrics_http::install_recorder().map_err(Failure::Failed)?;
    let bind = |addr: std::net::SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind the {what} address {addr}"))
            .map_err(Failure::Unavailable)
    };
    let api = bind(cli.listen, "API").await?;
    let metrics = bind(cli.metrics_listen, "metrics").await?;
    run(
        settings,
        api,
        Some((metrics, handle)),
        netqoe_common::shutdown_token(),
    )
    .await
}

/// Runs ingest on `api` (and `/metrics`, `/healthz`, `/readyz` on `metrics_listener` when
/// given, with the handle of the installed recorder) until `shutdown`.
pub async fn run(
    settings: Settings,
    api: TcpListener,
    metrics_listener: Option<(TcpListener, PrometheusHandle)>,
    shutdown: CancellationToken,
) -> Result<(), Failure> {
    let auth = Auth::load(&settings)
        .context("failed to load tokens")
        .map_err(Failure::Config)?;
    if let Some(tokens) = &auth.tokens {
        tracing::info!(tokens = tokens.len(), "tokens loaded");
    } else {
        tracing::warn!("authentication is disabled (--insecure-no-auth): anyone can submit events");
    }
    // The client connects in the background (NATS may be down at start); what fails here is
    // a URL or option that cannot be used.
    let client = netqoe_nats::connect(&settings.nats_url, "netqoe-ingest", false)
        .await
        .context("failed to set up the NATS client (--nats-url / NATS_URL)")
        .map_err(Failure::Config)?;
    let publisher = publish::Publisher::new(
        client,
        settings.ack_timeout,
        settings.ack_window,
        settings.publish_wait,
    );
    let state = AppState::new(settings.clone(), auth, publisher, shutdown.clone());
    self::metrics::describe();

    let background = CancellationToken::new();
    tokio::spawn(watch_readiness(state.clone(), background.clone()));
    tokio::spawn(prune_limiters(state.clone(), background.clone()));
    tokio::spawn(reload_on_sighup(state.clone(), background.clone()));

    if let Some((listener, handle)) = metrics_listener {
        let router = netqoe_common::metrics_http::router(handle)
            .merge(app::health_routes().with_state(state.clone()));
        netqoe_common::metrics_http::spawn(listener, router, background.clone())
            .map_err(Failure::Failed)?;
    }

    let addr = api.local_addr().map_err(|e| Failure::Failed(e.into()))?;
    tracing::info!(%addr, "serving the events API");
    server::serve(
        api,
        app::app(state.clone()),
        server::Limits {
            header_timeout: settings.header_timeout,
            max_connections: settings.max_connections,
            drain: settings.shutdown_timeout,
        },
        shutdown,
    )
    .await;
    background.cancel();
    let _ = state.publisher.client().flush().await;
    tracing::info!("ingest stopped");
    Ok(())
}

/// Provisions the stream (when asked) and keeps the readiness flag and gauges current.
async fn watch_readiness(state: AppState, stop: CancellationToken) {
    let interval = state.settings.readiness_interval;
    let mut provisioned = !state.settings.provision;
    loop {
        let connected = state.publisher.connected();
        let mut stream_ok = false;
        if connected {
            let js = state.publisher.jetstream();
            if !provisioned {
                match netqoe_nats::provision(
                    js,
                    netqoe_nats::Scope::Events,
                    &state.settings.provision_options,
                )
                .await
                {
                    Ok(()) => {
                        provisioned = true;
                        tracing::info!("stream QOE_EVENTS provisioned");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "failed to provision QOE_EVENTS; retrying")
                    }
                }
            }
            let lookup = tokio::time::timeout(
                Duration::from_secs(2),
                js.get_stream(netqoe_nats::EVENTS_STREAM),
            )
            .await;
            stream_ok = matches!(lookup, Ok(Ok(_)));
        }
        let ready = connected && stream_ok;
        if ready != state.is_ready() {
            if ready {
                tracing::info!("ready: NATS connected and QOE_EVENTS present");
            } else {
                tracing::warn!(connected, stream_ok, "not ready");
            }
        }
        state.set_ready(ready);
        ::metrics::gauge!(self::metrics::NATS_CONNECTED).set(f64::from(u8::from(connected)));
        ::metrics::gauge!(self::metrics::STREAM_READY).set(f64::from(u8::from(stream_ok)));
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn prune_limiters(state: AppState, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => state.auth().limiter.prune(),
            _ = stop.cancelled() => return,
        }
    }
}

async fn reload_on_sighup(state: AppState, stop: CancellationToken) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload disabled");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => match state.reload() {
                Ok(()) => tracing::info!("tokens and limits reloaded"),
                Err(error) => tracing::error!(%error, "reload failed; keeping the previous tokens"),
            },
            _ = stop.cancelled() => return,
        }
    }
}

//! `netqoe-aggregator run` from its command line: the metrics listener, the Postgres pool and
//! the settings made from the flags, handed to [`crate::run`] until SIGTERM.

use anyhow::Context;

use crate::config::{Cli, Settings};

/// Installs the metrics recorder, binds `--metrics-listen`, opens a lazy pool (Postgres may
/// be down at start) and consumes until SIGTERM.
pub async fn run(cli: &Cli) -> anyhow::Result<()> {
    let handle = netqoe_common::metrics_http::install_recorder()?;
    let listener = tokio::net::TcpListener::bind(cli.run.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "failed to bind the metrics address {}",
                cli.run.metrics_listen
            )
        })?;
    let pool = netqoe_db::lazy_pool(
        &cli.db.database_url,
        &netqoe_db::PoolConfig {
            max_connections: cli.run.db_connections,
            ..Default::default()
        },
    )?;
    let settings = Settings::from_cli(&cli.nats.nats_url, &cli.run);
    let shutdown = netqoe_common::shutdown_token();
    crate::run(settings, pool, Some((listener, handle)), shutdown).await
}

//! The aggregator's subcommands as its binary runs them: `run` (the default) with its metrics
//! listener, Postgres pool and settings made from the flags, `migrate`, and `dlq`, each
//! ending in a [`Failure`] that says which exit code to use.

use anyhow::Context;
use netqoe_common::exit::Failure;

use crate::config::{Cli, Command, Settings};

/// Runs the subcommand of `cli` (`run` when none is given).
pub async fn main(mut cli: Cli) -> Result<(), Failure> {
    match cli.command.take().unwrap_or(Command::Run) {
        Command::Migrate => crate::migrate(&cli.db.database_url)
            .await
            .map_err(Failure::Unavailable),
        Command::Run => run(&cli).await,
        Command::Dlq { command } => {
            let mut stdout = std::io::stdout();
            crate::dlq::execute(&cli.nats.nats_url, &command, &mut stdout)
                .await
                .map_err(Failure::Failed)
        }
    }
}

/// Installs the metrics recorder, binds `--metrics-listen`, opens a lazy pool (Postgres may
/// be down at start) and consumes until SIGTERM.
async fn run(cli: &Cli) -> Result<(), Failure> {
    // The NATS client connects in the background (NATS may be down at start): only a URL
    // that cannot be used stops the start.
    netqoe_nats::server_addrs(&cli.nats.nats_url)
        .context("--nats-url / NATS_URL cannot be used")
        .map_err(Failure::Config)?;
    let handle = netqoe_common::metrics_http::install_recorder().map_err(Failure::Failed)?;
    let addr = cli.run.metrics_listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to bind the metrics address {addr}"))
        .map_err(Failure::Unavailable)?;
    let pool = netqoe_db::lazy_pool(
        &cli.db.database_url,
        &netqoe_db::PoolConfig {
            max_connections: cli.run.db_connections,
            ..Default::default()
        },
    )
    .map_err(|e| Failure::Config(e.into()))?;
    let settings = Settings::from_cli(&cli.nats.nats_url, &cli.run);
    let shutdown = netqoe_common::shutdown_token();
    crate::run(settings, pool, Some((listener, handle)), shutdown)
        .await
        .map_err(Failure::Failed)
}

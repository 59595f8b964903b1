//! The probe process: checks the command line and configuration, then measures once and
//! prints (`--once`) or runs until SIGTERM, reloading the configuration on SIGHUP.

use std::path::Path;

pub use netqoe_common::exit::Failure;

use crate::config::{self, Cli, Config};

/// Reads the configuration file, `--ca-file` taking the place of its `ingest_ca_file`.
fn load(cli: &Cli, path: &Path) -> Result<Config, String> {
    let mut c = config::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if cli.ca_file.is_some() {
        c.ingest_ca_file.clone_from(&cli.ca_file);
    }
    Ok(c)
}

/// Runs the probe as the command line says.
pub fn main(cli: Cli) -> Result<(), Failure> {
    if let Some(path) = &cli.ca_file {
        config::check_ingest_ca_file(path)
            .map_err(|e| Failure::config(format!("--ca-file: {e}")))?;
    }
    let config = load(&cli, &cli.config).map_err(Failure::config)?;
    let (flag, configured) = (cli.client_id.as_deref(), config.client_id.as_deref());
    let client_id = if cli.once {
        // --once writes no state: the configured id, else the saved one, else one for this run
        Ok(crate::client_id::resolve_once(
            flag,
            configured,
            &cli.state_dir,
        ))
    } else {
        crate::client_id::resolve(flag, configured, &cli.state_dir)
    }
    .map_err(|e| {
        Failure::config(format!(
            "cannot resolve client_id in {}: {e}",
            cli.state_dir.display()
        ))
    })?;
    crate::client_id::check(&client_id).map_err(|e| Failure::config(format!("client_id: {e}")))?;
    if !cli.once && (config.ingest_url.is_none() || config.token.is_none()) {
        return Err(Failure::config(
            "keys `ingest_url` and `token` (or `token_file`) are required unless --once",
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Failed(e.into()))?;
    if cli.once {
        for ev in rt.block_on(crate::measure_once(&config, &client_id)) {
            println!("{}", serde_json::to_string(&ev).expect("event serialises"));
        }
        return Ok(());
    }
    rt.block_on(serve(&cli, config, client_id))
}

/// Measures and ships until SIGTERM; SIGHUP stops the round, reloads the file and starts the
/// next (a file that no longer loads keeps the previous configuration).
async fn serve(cli: &Cli, mut cfg: Config, client_id: String) -> Result<(), Failure> {
    let shutdown = netqoe_common::shutdown_token();
    if let Some(addr) = cli.metrics_listen {
        let handle =
            netqoe_common::metrics_http::install_recorder().map_err(Failure::Unavailable)?;
        crate::metrics::describe();
        let app = netqoe_common::metrics_http::router(handle);
        netqoe_common::metrics_http::spawn_listener(addr, app, shutdown.clone())
            .await
            .map_err(Failure::Unavailable)?;
    }
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| Failure::Failed(e.into()))?;
    loop {
        let round = shutdown.child_token();
        let run = crate::run(
            cfg.clone(),
            client_id.clone(),
            cli.batch_max_age,
            round.clone(),
        );
        let mut task = tokio::spawn(run);
        tokio::select! {
            _ = hup.recv() => {
                round.cancel();
                let _ = task.await;
                match load(cli, &cli.config) {
                    Ok(c) => {
                        tracing::info!("configuration reloaded");
                        cfg = c;
                    }
                    Err(e) => tracing::error!(error = %e, "reload failed; keeping the previous configuration"),
                }
            }
            r = &mut task => {
                return r.map_err(|e| Failure::Failed(e.into()))?.map_err(Failure::Failed);
            }
        }
    }
}

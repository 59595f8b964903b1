//! netqoe-probe binary: parses flags and runs the probe.

use std::path::PathBuf;

use clap::Parser;
use netqoe_common::exit;

/// Measures DNS, TCP, TLS and HTTP quality of configured targets.
#[derive(Parser, Debug)]
#[command(name = "netqoe-probe", version, about)]
struct Args {
    /// Configuration file (TOML).
    #[arg(
        long,
        env = "NETQOE_PROBE_CONFIG",
        default_value = "/etc/netqoe/probe.toml"
    )]
    config: PathBuf,
    /// Client id; overrides the config's client_id and the state file.
    #[arg(long, env = "NETQOE_PROBE_CLIENT_ID")]
    client_id: Option<String>,
    /// Directory holding the generated client_id.
    #[arg(
        long,
        env = "NETQOE_PROBE_STATE_DIR",
        default_value = "/var/lib/netqoe"
    )]
    state_dir: PathBuf,
    /// Longest an event waits in the spool for a fuller batch before it is sent.
    #[arg(long, env = "NETQOE_PROBE_BATCH_MAX_AGE", default_value = "1s", value_parser = humantime::parse_duration)]
    batch_max_age: std::time::Duration,
    /// PEM CA certificates to trust for ingest besides the public roots (a private CA);
    /// overrides the config's ingest_ca_file.
    #[arg(long, env = "NETQOE_PROBE_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (/metrics); off unless set.
    #[arg(long, env = "NETQOE_PROBE_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Measure every target once, print events and exit without sending.
    #[arg(long, env = "NETQOE_PROBE_ONCE")]
    once: bool,
    /// Output format for --once.
    #[arg(long, env = "NETQOE_PROBE_OUTPUT", default_value = "json", value_parser = ["json"])]
    output: String,
    #[command(flatten)]
    log: netqoe_common::LogArgs,
}

fn main() {
    let args = Args::parse();
    netqoe_common::logging::init(args.log.log_format);
    let ca_file = args.ca_file.clone();
    if let Some(path) = &ca_file {
        if let Err(e) = netqoe_probe::config::check_ingest_ca_file(path) {
            tracing::error!(error = %format!("--ca-file: {e}"), "invalid configuration");
            std::process::exit(exit::CONFIG as i32);
        }
    }
    let load = move |path: &std::path::Path| {
        netqoe_probe::config::load(path).map(|mut c| {
            if ca_file.is_some() {
                c.ingest_ca_file.clone_from(&ca_file);
            }
            c
        })
    };
    let config = match load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, config = %args.config.display(), "invalid configuration");
            std::process::exit(exit::CONFIG as i32);
        }
    };
    let resolved = if args.once {
        // --once writes no state: the configured id, else the saved one, else one for this run
        Ok(netqoe_probe::client_id::resolve_once(
            args.client_id.as_deref(),
            config.client_id.as_deref(),
            &args.state_dir,
        ))
    } else {
        netqoe_probe::client_id::resolve(
            args.client_id.as_deref(),
            config.client_id.as_deref(),
            &args.state_dir,
        )
    };
    let client_id = match resolved {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, state_dir = %args.state_dir.display(), "cannot resolve client_id");
            std::process::exit(exit::CONFIG as i32);
        }
    };
    if let Err(e) = netqoe_probe::client_id::check(&client_id) {
        tracing::error!(error = %format!("client_id: {e}"), "invalid configuration");
        std::process::exit(exit::CONFIG as i32);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if args.once {
        let events = rt.block_on(netqoe_probe::measure_once(&config, &client_id));
        for ev in events {
            println!("{}", serde_json::to_string(&ev).expect("event serialises"));
        }
        std::process::exit(exit::OK as i32);
    }
    let path = args.config.clone();
    let max_age = args.batch_max_age;
    let metrics_listen = args.metrics_listen;
    let result: anyhow::Result<()> = rt.block_on(async move {
        let shutdown = netqoe_common::shutdown_token();
        if let Some(addr) = metrics_listen {
            let handle = netqoe_common::metrics_http::install_recorder()?;
            netqoe_probe::metrics::describe();
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, %addr, "cannot listen for metrics");
                    std::process::exit(exit::UNAVAILABLE as i32);
                }
            };
            tracing::info!(%addr, "serving /metrics");
            let router = netqoe_common::metrics_http::router(handle);
            tokio::spawn(netqoe_common::metrics_http::serve(listener, router, shutdown.clone()));
        }
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut cfg = config;
        loop {
            let round = shutdown.child_token();
            let mut task = tokio::spawn(netqoe_probe::run(cfg.clone(), client_id.clone(), max_age, round.clone()));
            tokio::select! {
                _ = hup.recv() => {
                    round.cancel();
                    let _ = task.await;
                    match load(&path) {
                        Ok(c) => { tracing::info!("configuration reloaded"); cfg = c; }
                        Err(e) => tracing::error!(error = %e, "reload failed; keeping the previous configuration"),
                    }
                }
                r = &mut task => return r?,
            }
        }
    });
    match result {
        Ok(()) => std::process::exit(exit::OK as i32),
        Err(e) => {
            tracing::error!(error = %e, "probe failed");
            std::process::exit(exit::CONFIG as i32);
        }
    }
}

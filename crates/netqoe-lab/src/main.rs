//! netqoe-lab binary: parses flags, starts the lab and waits for SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use netqoe_common::{exit, LogArgs};
use netqoe_lab::{Faults, LabConfig};
use tracing::{error, info};

/// Lab target for netqoe probes: HTTP, HTTPS (self-signed CA) and DNS with fault injection.
///
/// Faults can be changed at runtime with `PUT /_lab/faults` (JSON) on the HTTP or HTTPS port.
#[derive(Parser, Debug)]
#[command(name = "netqoe-lab", version)]
struct Cli {
    /// HTTP listen address.
    #[arg(long, env = "NETQOE_LAB_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// HTTPS listen address.
    #[arg(
        long,
        env = "NETQOE_LAB_HTTPS_LISTEN",
        default_value = "127.0.0.1:8443"
    )]
    https_listen: SocketAddr,
    /// UDP DNS listen address.
    #[arg(long, env = "NETQOE_LAB_DNS_LISTEN", default_value = "127.0.0.1:5353")]
    dns_listen: SocketAddr,
    /// Directory the generated CA (ca.pem) and server certificate are written to.
    #[arg(long, env = "NETQOE_LAB_CERT_DIR", default_value = "./.netqoe/lab")]
    cert_dir: PathBuf,
    /// DNS zone answered (every name in it resolves to 127.0.0.1 / ::1).
    #[arg(long, env = "NETQOE_LAB_ZONE", default_value = "lab.netqoe")]
    zone: String,
    /// Delay before each DNS answer, in milliseconds.
    #[arg(long, env = "NETQOE_LAB_DNS_DELAY_MS", default_value_t = 0)]
    dns_delay_ms: u64,
    /// Share of DNS queries answered with SERVFAIL (0..1).
    #[arg(long, env = "NETQOE_LAB_DNS_FAIL_RATE", default_value_t = 0.0)]
    dns_fail_rate: f64,
    /// Delay before the server side of the TLS handshake proceeds, in milliseconds.
    #[arg(long, env = "NETQOE_LAB_TLS_DELAY_MS", default_value_t = 0)]
    tls_delay_ms: u64,
    /// Delay before response headers, in milliseconds.
    #[arg(long, env = "NETQOE_LAB_TTFB_DELAY_MS", default_value_t = 0)]
    ttfb_delay_ms: u64,
    /// Cap on the body send rate in kbit/s (1 kbit = 1000 bit); unlimited when unset.
    #[arg(long, env = "NETQOE_LAB_THROUGHPUT_KBPS")]
    throughput_kbps: Option<u64>,
    /// Share of requests answered with --http-error-status (0..1).
    #[arg(long, env = "NETQOE_LAB_HTTP_ERROR_RATE", default_value_t = 0.0)]
    http_error_rate: f64,
    /// Status of injected HTTP errors.
    #[arg(long, env = "NETQOE_LAB_HTTP_ERROR_STATUS", default_value_t = 503)]
    http_error_status: u16,
    /// Share of connections reset abruptly (0..1).
    #[arg(long, env = "NETQOE_LAB_RESET_RATE", default_value_t = 0.0)]
    reset_rate: f64,
    /// Optional address of a Prometheus /metrics listener (e.g. 127.0.0.1:9105).
    #[arg(long, env = "NETQOE_LAB_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    netqoe_common::logging::init(cli.log.log_format);
    let faults = Faults {
        dns_delay_ms: cli.dns_delay_ms,
        dns_fail_rate: cli.dns_fail_rate,
        tls_delay_ms: cli.tls_delay_ms,
        ttfb_delay_ms: cli.ttfb_delay_ms,
        throughput_kbps: cli.throughput_kbps,
        http_error_rate: cli.http_error_rate,
        http_error_status: cli.http_error_status,
        reset_rate: cli.reset_rate,
    };
    if let Err(problem) = faults.validate() {
        eprintln!("error: invalid fault flag: {problem}");
        return ExitCode::from(exit::USAGE);
    }
    let cfg = LabConfig {
        http_listen: cli.http_listen,
        https_listen: cli.https_listen,
        dns_listen: cli.dns_listen,
        cert_dir: cli.cert_dir,
        zone: cli.zone,
        faults,
    };
    let shutdown = netqoe_common::shutdown_token();
    if let Some(addr) = cli.metrics_listen {
        if let Err(e) = serve_metrics(addr, shutdown.clone()).await {
            error!(error = format!("{e:#}"), "failed to start metrics listener");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    }
    let lab = match netqoe_lab::start(cfg, shutdown.clone()).await {
        Ok(lab) => lab,
        Err(e) => {
            error!(error = format!("{e:#}"), "failed to start lab");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    info!(
        http = %lab.http_addr(),
        https = %lab.https_addr(),
        dns = %lab.dns_addr(),
        ca = %lab.ca_cert_path().display(),
        "lab started"
    );
    println!("http  {}", lab.http_addr());
    println!("https {}", lab.https_addr());
    println!("dns   {}", lab.dns_addr());
    println!("ca    {}", lab.ca_cert_path().display());
    shutdown.cancelled().await;
    info!("lab stopped");
    ExitCode::from(exit::OK)
}

async fn serve_metrics(
    addr: SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let handle = netqoe_common::metrics_http::install_recorder()?;
    netqoe_lab::metrics::describe();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to bind metrics listener {addr}"))?;
    info!(addr = %listener.local_addr()?, "serving metrics");
    let app = netqoe_common::metrics_http::router(handle);
    tokio::spawn(async move {
        if let Err(e) = netqoe_common::metrics_http::serve(listener, app, shutdown).await {
            error!(error = format!("{e:#}"), "metrics listener failed");
        }
    });
    Ok(())
}

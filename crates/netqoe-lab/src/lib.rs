//! netqoe-lab: a target for netqoe probes serving HTTP, HTTPS and DNS with fault injection.

mod certs;
pub mod config;
mod dns;
mod faults;
mod http;
pub mod metrics;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use hickory_proto::rr::Name;
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use faults::FaultState;
pub use faults::Faults;

/// What the lab listens on and which faults it starts with (its command line, flattened
/// into `config::Cli`).
#[derive(Debug, Clone, clap::Args)]
pub struct LabConfig {
    /// HTTP listen address.
    #[arg(long, env = "NETQOE_LAB_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// HTTPS listen address.
    #[arg(
        long,
        env = "NETQOE_LAB_HTTPS_LISTEN",
        default_value = "127.0.0.1:8443"
    )]
    pub https_listen: SocketAddr,
    /// UDP DNS listen address.
    #[arg(long, env = "NETQOE_LAB_DNS_LISTEN", default_value = "127.0.0.1:5353")]
    pub dns_listen: SocketAddr,
    /// Directory the generated CA (ca.pem) and server certificate are written to.
    #[arg(long, env = "NETQOE_LAB_CERT_DIR", default_value = "./.netqoe/lab")]
    pub cert_dir: PathBuf,
    /// DNS zone answered (every name in it resolves to 127.0.0.1 / ::1).
    #[arg(long, env = "NETQOE_LAB_ZONE", default_value = "lab.netqoe")]
    pub zone: String,
    #[command(flatten)]
    pub faults: Faults,
}

impl LabConfig {
    /// Everything on 127.0.0.1 with ephemeral ports, zone `lab.netqoe`, no faults.
    pub fn loopback(cert_dir: PathBuf) -> LabConfig {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        LabConfig {
            http_listen: any,
            https_listen: any,
            dns_listen: any,
            cert_dir,
            zone: "lab.netqoe".to_string(),
            faults: Faults::default(),
        }
    }
}

/// A running lab; servers stop when the shutdown token passed to [`start`] is cancelled.
pub struct Lab {
    http_addr: SocketAddr,
    https_addr: SocketAddr,
    dns_addr: SocketAddr,
    ca_cert_path: PathBuf,
    faults: FaultState,
}

impl Lab {
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns_addr
    }
    /// PEM file of the CA that signed the HTTPS certificate.
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert_path
    }
    pub fn faults(&self) -> Faults {
        self.faults.get()
    }
    /// Replaces the faults; applies to new connections, requests and queries.
    pub fn set_faults(&self, f: Faults) {
        self.faults.set(f);
    }
}

/// Generates the certificates, binds every listener and spawns the servers.
/// Returns once all sockets are bound and accepting.
pub async fn start(cfg: LabConfig, shutdown: CancellationToken) -> anyhow::Result<Lab> {
    cfg.faults
        .validate()
        .map_err(|p| anyhow::anyhow!("invalid faults: {p}"))?;
    let zone_str = cfg.zone.trim_end_matches('.');
    let zone = Name::from_str(&format!("{zone_str}."))
        .with_context(|| format!("invalid zone {:?}", cfg.zone))?;
    let (tls, ca_cert_path) = certs::generate(&cfg.cert_dir, zone_str)?;

    let http = TcpListener::bind(cfg.http_listen)
        .await
        .with_context(|| format!("failed to bind http listener {}", cfg.http_listen))?;
    let https = TcpListener::bind(cfg.https_listen)
        .await
        .with_context(|| format!("failed to bind https listener {}", cfg.https_listen))?;
    let udp = UdpSocket::bind(cfg.dns_listen)
        .await
        .with_context(|| format!("failed to bind dns socket {}", cfg.dns_listen))?;

    let lab = Lab {
        http_addr: http.local_addr()?,
        https_addr: https.local_addr()?,
        dns_addr: udp.local_addr()?,
        ca_cert_path,
        faults: FaultState::new(cfg.faults),
    };
    tokio::spawn(http::serve(
        http,
        None,
        lab.faults.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(http::serve(
        https,
        Some(TlsAcceptor::from(tls)),
        lab.faults.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(dns::serve(udp, zone, lab.faults.clone(), shutdown));
    Ok(lab)
}

/// Runs the lab until `shutdown`: `/metrics` on `metrics_listen` when set, the servers, and
/// their addresses printed on stdout (for scripts) once bound.
pub async fn run(
    cfg: LabConfig,
    metrics_listen: Option<SocketAddr>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Some(addr) = metrics_listen {
        let handle = netqoe_common::metrics_http::install_recorder()?;
        metrics::describe();
        let app = netqoe_common::metrics_http::router(handle);
        netqoe_common::metrics_http::spawn_listener(addr, app, shutdown.clone()).await?;
    }
    let lab = start(cfg, shutdown.clone()).await?;
    tracing::info!(
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
    tracing::info!("lab stopped");
    Ok(())
}

//! The whole pipeline as an operator runs it: real `nats-server` and PostgreSQL from the test
//! support, and the product's own binaries (`netqoe-ingest`, `netqoe-aggregator`,
//! `netqoe-lab`, `netqoe-probe`) as processes with their default limits, so tests check the
//! composition rather than each part on its own.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use netqoe_test_support::{free_port, http_get, metric_sum, NatsServer, PgServer, Service};

pub mod faults;

/// The bearer token the pipeline's ingest accepts, for every client id.
pub const TOKEN: &str = "e2e-token-0123456789abcdef";

/// A loopback address on a free port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// nats-server, PostgreSQL (migrated), ingest and aggregator, each a process of its own.
pub struct Pipeline {
    /// Logs, tokens and anything a test puts beside them.
    pub dir: tempfile::TempDir,
    pub nats: NatsServer,
    pub pg: PgServer,
    pub db_url: String,
    pub pool: sqlx::PgPool,
    pub ingest: Service,
    pub ingest_addr: SocketAddr,
    pub ingest_metrics: SocketAddr,
    pub aggregator: Service,
    pub aggregator_metrics: SocketAddr,
}

impl Pipeline {
    /// Starts everything and waits until ingest and the aggregator report ready; the token has
    /// ingest's default rate limits.
    pub async fn start(name: &str) -> Result<Pipeline> {
        Pipeline::start_with_token_limits(name, "").await
    }

    /// Starts everything with the token's `rate` and `burst` lines given as TOML (`""` for
    /// ingest's defaults), e.g. `"rate = 1000000\nburst = 1000\n"` to send a day at once.
    pub async fn start_with_token_limits(name: &str, limits: &str) -> Result<Pipeline> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("netqoe-e2e-{name}-"))
            .tempdir()?;
        let nats = NatsServer::start()?;
        let pg = PgServer::start()?;
        let db_url = pg.create_database("netqoe").await?;
        let pool = netqoe_db::connect(&db_url, &Default::default())
            .await
            .context("connect to the test database")?;
        let migrate =
            std::process::Command::new(netqoe_test_support::product_binary("netqoe-aggregator")?)
                .arg("migrate")
                .env("DATABASE_URL", &db_url)
                .output()
                .context("run netqoe-aggregator migrate")?;
        if !migrate.status.success() {
            bail!(
                "netqoe-aggregator migrate failed: {}",
                String::from_utf8_lossy(&migrate.stderr)
            );
        }

        let tokens = dir.path().join("tokens.toml");
        std::fs::write(
            &tokens,
            format!("[[tokens]]\ntoken = \"{TOKEN}\"\nclients = [\"*\"]\n{limits}"),
        )?;
        let ingest_addr = loopback();
        let ingest_metrics = loopback();
        let nats_env = [("NATS_URL", nats.url())];
        let mut ingest = Service::spawn(
            "netqoe-ingest",
            [
                "--listen".to_string(),
                ingest_addr.to_string(),
                "--metrics-listen".to_string(),
                ingest_metrics.to_string(),
                "--tokens-file".to_string(),
                tokens.display().to_string(),
            ],
            &nats_env,
            &dir.path().join("ingest.log"),
        )?;
        ingest.wait_ready(ingest_metrics, "/readyz", Duration::from_secs(30))?;

        let aggregator_metrics = loopback();
        let mut aggregator = Service::spawn(
            "netqoe-aggregator",
            [
                "run".to_string(),
                "--metrics-listen".to_string(),
                aggregator_metrics.to_string(),
            ],
            &[("NATS_URL", nats.url()), ("DATABASE_URL", db_url.clone())],
            &dir.path().join("aggregator.log"),
        )?;
        aggregator.wait_ready(aggregator_metrics, "/readyz", Duration::from_secs(30))?;
        Ok(Pipeline {
            dir,
            nats,
            pg,
            db_url,
            pool,
            ingest,
            ingest_addr,
            ingest_metrics,
            aggregator,
            aggregator_metrics,
        })
    }

    /// The events endpoint a probe ships to.
    pub fn ingest_url(&self) -> String {
        format!("http://{}/api/v1/events", self.ingest_addr)
    }

    /// Messages in the stream `QOE_EVENTS`.
    pub async fn stream_messages(&self) -> Result<u64> {
        let client = async_nats::connect(self.nats.url()).await?;
        let js = async_nats::jetstream::new(client);
        let mut stream = js
            .get_stream(netqoe_nats::EVENTS_STREAM)
            .await
            .context("get the events stream")?;
        Ok(stream.info().await?.state.messages)
    }

    /// Events merged into `agg_1m`.
    pub async fn merged(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT coalesce(sum(count_total), 0)::bigint FROM agg_1m")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Waits until `agg_1m` holds `n` events, or fails after `limit` with what it holds.
    pub async fn wait_merged(&self, n: i64, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.merged().await?;
            if got == n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "agg_1m holds {got} events, expected {n}; aggregator log tail:\n{}",
                    self.aggregator.log_tail(3000)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Writes a line of figures to the real stderr, so it shows in `make test` output even when
/// the test passes and libtest captures its prints.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "[e2e] {line}");
}

/// The current value of a metric summed over the samples matching `labels`.
pub fn scrape(addr: SocketAddr, name: &str, labels: &[&str]) -> Result<f64> {
    let (status, body) = http_get(addr, "/metrics")?;
    if status != 200 {
        bail!("GET http://{addr}/metrics answered {status}");
    }
    Ok(metric_sum(&body, name, labels))
}

/// `netqoe-lab` serving HTTP and HTTPS on every address (IPv4 and, where the host has it,
/// IPv6 loopback) and DNS for the zone `lab.netqoe` on 127.0.0.1.
pub struct Lab {
    pub service: Service,
    pub http_port: u16,
    pub https_port: u16,
    pub dns: SocketAddr,
    pub ca_file: PathBuf,
}

impl Lab {
    pub fn start(dir: &Path, ipv6: bool) -> Result<Lab> {
        let any = if ipv6 { "[::]" } else { "127.0.0.1" };
        let (http_port, https_port) = (free_port(), free_port());
        let dns = loopback();
        let metrics = loopback();
        let cert_dir = dir.join("lab");
        let mut service = Service::spawn(
            "netqoe-lab",
            [
                "--http-listen".to_string(),
                format!("{any}:{http_port}"),
                "--https-listen".to_string(),
                format!("{any}:{https_port}"),
                "--dns-listen".to_string(),
                dns.to_string(),
                "--cert-dir".to_string(),
                cert_dir.display().to_string(),
                "--metrics-listen".to_string(),
                metrics.to_string(),
            ],
            &[("RUST_LOG", "warn")],
            &dir.join("lab.log"),
        )?;
        service.wait_ready(
            SocketAddr::from((Ipv4Addr::LOCALHOST, http_port)),
            "/healthz",
            Duration::from_secs(30),
        )?;
        Ok(Lab {
            service,
            http_port,
            https_port,
            dns,
            ca_file: cert_dir.join("ca.pem"),
        })
    }
}

/// Whether this host can listen and connect on IPv6 loopback.
pub fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// A `netqoe-probe` process with a config file that can be rewritten and reloaded (SIGHUP).
pub struct Probe {
    pub service: Service,
    pub config: PathBuf,
    pub metrics: SocketAddr,
}

impl Probe {
    /// Starts the probe on `config_toml` with its state (and spool, if the config says so)
    /// under `dir`.
    pub fn start(dir: &Path, config_toml: &str) -> Result<Probe> {
        let config = dir.join("probe.toml");
        std::fs::write(&config, config_toml)?;
        let metrics = loopback();
        let mut service = Service::spawn(
            "netqoe-probe",
            [
                "--config".to_string(),
                config.display().to_string(),
                "--state-dir".to_string(),
                dir.join("state").display().to_string(),
                "--metrics-listen".to_string(),
                metrics.to_string(),
            ],
            &[("RUST_LOG", "info")],
            &dir.join("probe.log"),
        )?;
        service.wait_ready(metrics, "/metrics", Duration::from_secs(30))?;
        Ok(Probe {
            service,
            config,
            metrics,
        })
    }

    /// Writes a new configuration and sends SIGHUP.
    pub fn reload(&self, config_toml: &str) -> Result<()> {
        std::fs::write(&self.config, config_toml)?;
        let pid = self.service.pid().context("the probe is not running")?;
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -HUP {pid} failed");
        }
        Ok(())
    }

    pub fn metric(&self, name: &str, labels: &[&str]) -> Result<f64> {
        scrape(self.metrics, name, labels)
    }

    /// Waits until every measurement the probe took has been delivered and none was taken
    /// for `quiet`; returns the measurements.
    pub async fn wait_drained(&self, quiet: Duration, limit: Duration) -> Result<f64> {
        let deadline = Instant::now() + limit;
        let mut last = (-1.0, Instant::now());
        loop {
            let taken = self.metric("netqoe_probe_measurements_total", &[])?;
            let shipped = self.metric("netqoe_probe_events_shipped_total", &[])?;
            if taken != last.0 {
                last = (taken, Instant::now());
            } else if shipped == taken && last.1.elapsed() >= quiet {
                return Ok(taken);
            }
            if Instant::now() > deadline {
                bail!(
                    "the probe took {taken} measurements and delivered {shipped} after {limit:?}; log tail:\n{}",
                    self.service.log_tail(3000)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

//! Starting the stack's long-running processes under the demo home (each recorded in
//! `state.json` as soon as it has a pid), the demo's ports, and the database queries the
//! progress and the summary read.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use netqoe_test_support::{free_port, http_get, metric_sum, Service};

use crate::progress::{thousands, Progress};
use crate::state::{describe, State};

/// The demo home and where things go under it.
pub struct Home {
    pub dir: PathBuf,
    pub logs: PathBuf,
}

impl Home {
    /// Creates `dir` (searchable by everyone: under root PostgreSQL runs as another user and
    /// needs to reach its data directory below it) and `dir/logs`.
    pub fn create(dir: &Path) -> Result<Home> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolve {}", dir.display()))?;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
        Ok(Home { dir, logs })
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    /// Files and folders a previous `up` left (removed before a clean start; nothing else
    /// under the home is touched).
    pub const OWN_ENTRIES: [&'static str; 10] = [
        "nats",
        "postgres",
        "logs",
        "lab",
        "probes",
        "tokens.toml",
        "truth.json",
        "evaluation.json",
        "report.html",
        "state.json.tmp",
    ];
}

/// `preferred` when it can be bound on loopback now, else a free port.
pub fn port(preferred: u16) -> u16 {
    if preferred != 0 && TcpListener::bind((Ipv4Addr::LOCALHOST, preferred)).is_ok() {
        return preferred;
    }
    free_port()
}

/// As [`port`], for UDP.
pub fn udp_port(preferred: u16) -> u16 {
    if preferred != 0 && UdpSocket::bind((Ipv4Addr::LOCALHOST, preferred)).is_ok() {
        return preferred;
    }
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|_| free_port())
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Starts product binary `name` in a process group of its own, records it, waits until
/// `GET ready_addr ready_path` answers 200 and leaves it running. Returns its pid.
#[allow(clippy::too_many_arguments)]
pub fn start_service(
    home: &Home,
    state: &mut State,
    role: &str,
    name: &str,
    args: Vec<String>,
    envs: &[(&str, String)],
    ready: (SocketAddr, &str),
) -> Result<u32> {
    let log = home.log(&role.replace(' ', "-"));
    let mut service = Service::spawn_daemon(name, args, envs, &log)?;
    let pid = service.pid().context("no pid")?;
    state.record(&home.dir, describe(role, pid, name, "SIGTERM", &log)?)?;
    // On failure the handle is dropped, which stops the process.
    service.wait_ready(ready.0, ready.1, Duration::from_secs(60))?;
    service.detach();
    Ok(pid)
}

/// A counter summed over its samples from `GET addr/metrics`.
pub fn scrape(addr: SocketAddr, name: &str) -> Result<f64> {
    let (status, body) = http_get(addr, "/metrics")?;
    anyhow::ensure!(status == 200, "GET http://{addr}/metrics answered {status}");
    Ok(metric_sum(&body, name, &[]))
}

/// The demo's database, read from a small runtime of its own.
pub struct Db {
    rt: tokio::runtime::Runtime,
    pool: sqlx::PgPool,
}

impl Db {
    pub fn connect(url: &str) -> Result<Db> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let pool = rt
            .block_on(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url),
            )
            .context("connect to the demo's database")?;
        Ok(Db { rt, pool })
    }

    fn scalar(&self, sql: &str) -> Result<i64> {
        self.rt
            .block_on(sqlx::query_scalar::<_, i64>(sql).fetch_one(&self.pool))
            .with_context(|| format!("query {sql}"))
    }

    /// Events merged into `agg_1m`.
    pub fn merged(&self) -> Result<i64> {
        self.scalar("SELECT coalesce(sum(count_total), 0)::bigint FROM agg_1m")
    }

    /// Rows (one-minute windows) of `agg_1m`.
    pub fn windows(&self) -> Result<i64> {
        self.scalar("SELECT count(*) FROM agg_1m")
    }

    /// Incidents the diagnoser stored.
    pub fn incidents(&self) -> Result<i64> {
        self.scalar("SELECT count(*) FROM incidents")
    }

    /// Mean per-minute median time to first byte of `target` in the windows before the
    /// minute of `since_ms`, and in those after it.
    pub fn ttfb_around(&self, target: &str, since_ms: i64) -> Result<(Option<f64>, Option<f64>)> {
        let minute = since_ms - since_ms.rem_euclid(60_000);
        self.rt
            .block_on(
                sqlx::query_as::<_, (Option<f64>, Option<f64>)>(
                    "SELECT avg(ttfb_p50) FILTER (WHERE window_start_ts < to_timestamp($2 / 1000.0)), \
                            avg(ttfb_p50) FILTER (WHERE window_start_ts > to_timestamp($2 / 1000.0)) \
                     FROM agg_1m WHERE target = $1",
                )
                .bind(target)
                .bind(minute as f64)
                .fetch_one(&self.pool),
            )
            .context("query the live target's time to first byte")
    }

    /// (label, scope) of the incidents on `target` or on a client named `client_prefix…`.
    pub fn incidents_on(&self, target: &str, client_prefix: &str) -> Result<Vec<(String, String)>> {
        self.rt
            .block_on(
                sqlx::query_as::<_, (String, String)>(
                    "SELECT label, scope FROM incidents \
                     WHERE target = $1 OR starts_with(client_id, $2) ORDER BY id",
                )
                .bind(target)
                .bind(client_prefix)
                .fetch_all(&self.pool),
            )
            .context("query incidents of the live target")
    }

    /// Waits until `agg_1m` holds at least `n` events, showing how far it is.
    pub fn wait_merged(&self, p: &mut Progress, n: i64, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.merged()?;
            if got >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("agg_1m holds {got} of the {n} events ingest accepted after {limit:?}");
            }
            p.update(&format!(
                "{} of {} events merged",
                thousands(got as u64),
                thousands(n as u64)
            ));
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

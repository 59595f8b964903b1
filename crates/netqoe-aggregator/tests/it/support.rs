//! Fixture: real nats-server and PostgreSQL, event generation, publishing, row inspection.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::stream::{FuturesUnordered, StreamExt};
use netqoe_aggregator::window::{group, summarise, WindowKey, WindowState};
use netqoe_aggregator::Settings;
use netqoe_model::{Event, Timings};
use netqoe_test_support::{NatsServer, PgServer};
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub struct Stack {
    pub nats: NatsServer,
    pub pg: PgServer,
    pub db_url: String,
    pub js: jetstream::Context,
    pub pool: PgPool,
}

impl Stack {
    pub async fn start() -> Stack {
        let nats = NatsServer::start().expect("nats-server");
        let pg = PgServer::start().expect("postgres");
        let db_url = pg.create_database("netqoe").await.expect("create db");
        let pool = netqoe_db::connect(&db_url, &Default::default())
            .await
            .expect("connect");
        netqoe_db::migrate(&pool).await.expect("migrate");
        let client = netqoe_nats::connect(&nats.url(), "netqoe-test", true)
            .await
            .expect("nats");
        let js = jetstream::new(client);
        netqoe_nats::provision(&js, netqoe_nats::Scope::All, &Default::default())
            .await
            .expect("provision");
        Stack {
            nats,
            pg,
            db_url,
            js,
            pool,
        }
    }

    pub fn settings(&self) -> Settings {
        let mut s = Settings::new(&self.nats.url());
        s.fetch_wait = Duration::from_millis(100);
        s.max_backoff = Duration::from_millis(500);
        s
    }

    /// Starts Postgres again after `pg.stop()` and reconnects the stack's pool.
    pub async fn restart_postgres(&mut self) {
        self.pg.restart().expect("restart postgres");
        self.pool = netqoe_db::connect(&self.db_url, &Default::default())
            .await
            .expect("connect");
    }

    /// Runs the aggregator in-process on a lazy pool of its own.
    pub fn spawn(&self, settings: Settings) -> Running {
        let pool = netqoe_db::lazy_pool(&self.db_url, &Default::default()).expect("pool");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(netqoe_aggregator::run(
            settings,
            pool,
            None,
            shutdown.clone(),
        ));
        Running { shutdown, task }
    }

    /// Runs the aggregator binary as a child process.
    pub fn spawn_binary(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_netqoe-aggregator"))
            .arg("run")
            .env("DATABASE_URL", &self.db_url)
            .env("NATS_URL", self.nats.url())
            .env("NETQOE_AGGREGATOR_METRICS_LISTEN", "127.0.0.1:0")
            .env("NETQOE_AGGREGATOR_FETCH_WAIT", "100ms")
            .env("NETQOE_AGGREGATOR_BATCH_SIZE", "500")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn netqoe-aggregator")
    }

    /// Publishes events as ingest does (JSON body, Nats-Msg-Id), acks pipelined.
    pub async fn publish(&self, events: &[Event]) {
        let mut acks = FuturesUnordered::new();
        for e in events {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", e.event_id.to_string().as_str());
            let body = serde_json::to_vec(e).unwrap();
            let ack = self
                .js
                .publish_with_headers(
                    netqoe_nats::event_subject(&e.client_id),
                    headers,
                    body.into(),
                )
                .await
                .expect("publish");
            acks.push(std::future::IntoFuture::into_future(ack));
            if acks.len() >= 2048 {
                acks.next().await.unwrap().expect("ack");
            }
        }
        while let Some(ack) = acks.next().await {
            ack.expect("ack");
        }
    }

    pub async fn publish_raw(&self, subject: &str, body: &'static [u8]) {
        self.js
            .publish(subject.to_string(), body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    pub async fn total(&self) -> i64 {
        sqlx::query_scalar("SELECT COALESCE(SUM(count_total), 0)::bigint FROM agg_1m")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits until agg_1m counts `n` events; fails after `limit`.
    pub async fn wait_total(&self, n: i64, limit: Duration) {
        let start = Instant::now();
        loop {
            let total = self.total().await;
            if total == n {
                return;
            }
            assert!(total <= n, "counted {total} events, more than the {n} sent");
            assert!(
                start.elapsed() < limit,
                "only {total} of {n} events counted after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn rows(&self) -> BTreeMap<WindowKey, Row> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT client_id, target, probe_kind, ip_version, \
             (extract(epoch FROM window_start_ts) * 1000)::bigint AS window_ms, \
             count_total, count_success, count_error, tls_error_count, dns_count, \
             dns_p50, dns_p95, dns_p99, dns_min, dns_max, total_p50, total_p95, total_p99 FROM agg_1m",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        rows.into_iter()
            .map(|r| {
                (
                    WindowKey {
                        client_id: r.client_id.clone(),
                        target: r.target.clone(),
                        probe_kind: netqoe_model::ProbeKind::parse(&r.probe_kind)
                            .expect("agg_1m holds known probe kinds"),
                        ip_version: r.ip_version as u8,
                        window_start_ms: r.window_ms,
                    },
                    r,
                )
            })
            .collect()
    }
}

pub struct Running {
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("join").expect("aggregator run");
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub client_id: String,
    pub target: String,
    pub probe_kind: String,
    pub ip_version: i16,
    pub window_ms: i64,
    pub count_total: i64,
    pub count_success: i64,
    pub count_error: i64,
    pub tls_error_count: i64,
    pub dns_count: i64,
    pub dns_p50: Option<f64>,
    pub dns_p95: Option<f64>,
    pub dns_p99: Option<f64>,
    pub dns_min: Option<f64>,
    pub dns_max: Option<f64>,
    pub total_p50: Option<f64>,
    pub total_p95: Option<f64>,
    pub total_p99: Option<f64>,
}

/// `n` events over `clients` x `targets` series and `windows` minutes ending now, with
/// random DNS and total times and 5 % TLS failures; deterministic for a seed.
pub fn events(n: usize, clients: usize, targets: usize, windows: i64, seed: u64) -> Vec<Event> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let now = netqoe_model::now_ms();
    let first = netqoe_model::window_start_ms(now) - (windows - 1) * 60_000;
    (0..n)
        .map(|i| {
            let client = format!("client-{}", i % clients);
            let target = format!("https://t{}.example/", (i / clients) % targets);
            let ts = (first + rng.random_range(0..windows * 60_000)).min(now);
            let mut e = Event::new(uuid::Uuid::new_v4(), &client, ts, &target);
            let dns: f64 = rng.random_range(1.0..5.0f64).powi(3);
            e.timings = Some(Timings {
                dns_ms: Some(dns),
                total_ms: Some(dns + rng.random_range(20.0..400.0)),
                ..Default::default()
            });
            if rng.random_range(0..20) == 0 {
                e.error_stage = Some(netqoe_model::ErrorStage::Tls);
            }
            e.recv_ts_ms = Some(now);
            e
        })
        .collect()
}

/// Exact percentile with the sketch's rank definition, floor(q * (n - 1)).
pub fn exact(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(q * (values.len() as f64 - 1.0)) as usize]
}

pub fn close(got: Option<f64>, want: f64, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: NULL, want {want}"));
    assert!(
        (got - want).abs() <= want.abs() * 0.01,
        "{what}: got {got}, exact {want}"
    );
}

/// Asserts that the rows hold exactly the events sent: counts, and percentiles as the
/// merged state of all of them gives.
pub async fn assert_rows_match(stack: &Stack, sent: &[Event]) {
    let expected: BTreeMap<WindowKey, WindowState> = group(sent);
    let rows = stack.rows().await;
    assert_eq!(rows.len(), expected.len(), "one row per window");
    for (key, want) in &expected {
        let row = rows
            .get(key)
            .unwrap_or_else(|| panic!("row {key:?} missing"));
        assert_eq!(row.count_total as u64, want.count_total, "{key:?}");
        assert_eq!(row.count_error as u64, want.count_error(), "{key:?}");
        let dns = summarise(&want.timings[0]);
        assert_eq!(row.dns_count as u64, dns.count);
        assert_eq!((row.dns_p50, row.dns_p99), (dns.p50, dns.p99), "{key:?}");
    }
}

pub fn kill9(child: &mut Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .ok();
    child.wait().ok();
}

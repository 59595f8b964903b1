//! Fixture: a real PostgreSQL with the schema, agg_1m rows written by SQL, result inspection.

use netqoe_diagnoser::config::{Cli, Command};
use netqoe_diagnoser::{Outcome, Settings};
use netqoe_test_support::PgServer;
use sqlx::PgPool;

/// 2026-12-01T00:00:00Z, the start of every test's history.
pub const T0: i64 = 1_795_996_800_000;
pub const MIN: i64 = 60_000;

pub struct Db {
    pub _pg: PgServer,
    pub url: String,
    pub pool: PgPool,
}

impl Db {
    pub async fn start() -> anyhow::Result<Db> {
        let pg = PgServer::start()?;
        let url = pg.create_database("netqoe").await?;
        let pool = netqoe_db::connect(&url, &Default::default()).await?;
        netqoe_db::migrate(&pool).await?;
        Ok(Db { _pg: pg, url, pool })
    }

    pub async fn run(&self) -> anyhow::Result<Outcome> {
        self.run_with(&[]).await
    }

    pub async fn run_with(&self, flags: &[&str]) -> anyhow::Result<Outcome> {
        let mut argv = vec!["netqoe-diagnoser", "run"];
        argv.extend(flags);
        let Command::Run(args) = <Cli as clap::Parser>::try_parse_from(argv)?.command else {
            unreachable!()
        };
        let settings =
            Settings::from_args(&args, netqoe_model::now_ms()).map_err(anyhow::Error::msg)?;
        Ok(netqoe_diagnoser::run_once(&settings, &self.pool).await?)
    }

    /// Writes windows into agg_1m.
    pub async fn insert(&self, rows: &[Win]) -> anyhow::Result<()> {
        for chunk in rows.chunks(5000) {
            let col = |f: &dyn Fn(&Win) -> Option<f64>| chunk.iter().map(f).collect::<Vec<_>>();
            sqlx::query(
                "INSERT INTO agg_1m (client_id, target, probe_kind, ip_version, window_start_ts, \
                   count_total, count_success, count_error, tcp_error_count, \
                   dns_count, dns_p50, dns_p95, tcp_count, tcp_p50, tcp_p95, tls_count, tls_p50, tls_p95, \
                   ttfb_count, ttfb_p50, ttfb_p95, total_count, total_p50, total_p95, sketch_state) \
                 SELECT c, t, 'http', 4, to_timestamp(ts / 1000.0), n, n - e, e, e, \
                   n, dns, dns, n - e, tcp, tcp, n - e, tls, tls, n - e, ttfb, ttfb, n - e, tot, tot, '\\x00'::bytea \
                 FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::float8[], \
                   $7::float8[], $8::float8[], $9::float8[], $10::float8[]) \
                   AS x(c, t, ts, n, e, dns, tcp, tls, ttfb, tot)",
            )
            .bind(chunk.iter().map(|w| w.client.clone()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|w| w.target.clone()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|w| w.ts_ms).collect::<Vec<_>>())
            .bind(chunk.iter().map(|w| w.n).collect::<Vec<_>>())
            .bind(chunk.iter().map(|w| w.tcp_errors).collect::<Vec<_>>())
            .bind(col(&|w| Some(w.dns)))
            .bind(col(&|w| (w.tcp_errors < w.n).then_some(w.tcp)))
            .bind(col(&|w| (w.tcp_errors < w.n).then_some(w.tls)))
            .bind(col(&|w| (w.tcp_errors < w.n).then_some(w.ttfb)))
            .bind(col(&|w| (w.tcp_errors < w.n).then_some(w.dns + w.tcp + w.tls + w.ttfb)))
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// (label, scope, client, target, start minute, end minute, windows, open) of every
    /// incident, start minutes counted from T0.
    pub async fn incidents(&self) -> anyhow::Result<Vec<Inc>> {
        let rows: Vec<IncRow> =
            sqlx::query_as(
                "SELECT id, label, scope, client_id, target, extract(epoch FROM started_at)::float8, \
                   extract(epoch FROM ended_at)::float8, windows, open, summary FROM incidents ORDER BY started_at, id",
            )
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Inc {
                id: r.0,
                label: r.1,
                scope: r.2,
                client: r.3,
                target: r.4,
                start_min: (r.5 as i64 * 1000 - T0) / MIN,
                end_min: (r.6 as i64 * 1000 - T0) / MIN,
                windows: r.7,
                open: r.8,
                summary: r.9,
            })
            .collect())
    }

    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }
}

type IncRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    f64,
    f64,
    i32,
    bool,
    String,
);

#[derive(Debug, Clone, PartialEq)]
pub struct Inc {
    pub id: i64,
    pub label: String,
    pub scope: String,
    pub client: Option<String>,
    pub target: Option<String>,
    pub start_min: i64,
    pub end_min: i64,
    pub windows: i32,
    pub open: bool,
    pub summary: String,
}

/// One window of an http series: timings in ms.
#[derive(Debug, Clone)]
pub struct Win {
    pub client: String,
    pub target: String,
    pub ts_ms: i64,
    pub n: i64,
    pub tcp_errors: i64,
    pub dns: f64,
    pub tcp: f64,
    pub tls: f64,
    pub ttfb: f64,
}

/// A healthy window at `minute` after T0 with small deterministic noise (±`noise` relative).
pub fn win(client: &str, target: &str, minute: i64, noise: f64) -> Win {
    let mut x = client
        .bytes()
        .chain(target.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
        ^ (minute as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut u = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        1.0 + noise * (((x >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0)
    };
    Win {
        client: client.into(),
        target: target.into(),
        ts_ms: T0 + minute * MIN,
        n: 2,
        tcp_errors: 0,
        dns: 5.0 * u(),
        tcp: 18.0 * u(),
        tls: 25.0 * u(),
        ttfb: 40.0 * u(),
    }
}

/// Minutes `from..to` of a series, each window shaped by `f`.
pub fn series(
    client: &str,
    target: &str,
    minutes: impl Iterator<Item = i64>,
    noise: f64,
    f: impl Fn(i64, &mut Win),
) -> Vec<Win> {
    minutes
        .map(|m| {
            let mut w = win(client, target, m, noise);
            f(m, &mut w);
            w
        })
        .collect()
}

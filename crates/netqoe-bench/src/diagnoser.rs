//! Diagnoser benchmarks over generated `agg_1m` history, running the release binary as a child:
//! a full run over a million windows against Postgres alone reading the same columns of the same
//! rows (its limit), the run's peak memory, and the incremental run after one new minute.

use std::ops::Range;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use netqoe_diagnoser::store::{WINDOW_COLUMNS, WINDOW_ORDER};
use netqoe_test_support::PgServer;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::PgPool;

use crate::harness::{report, sample_event, sibling, Env};

const MIN_MS: i64 = 60_000;
/// Full run: 200 clients x 10 targets = 2 000 series, 500 minutes each.
const FULL_CLIENTS: usize = 200;
const TARGETS: usize = 10;
const FULL_MINUTES: usize = 500;
/// Incremental run: 1 000 clients x 10 targets = 10 000 series with an hour of history.
const INCR_CLIENTS: usize = 1_000;
const INCR_HISTORY: usize = 60;
/// Peak resident memory budget of a full run.
const RSS_BUDGET_MB: f64 = 200.0;
/// Minutes written by one generating statement.
const FILL_MINUTES: i64 = 50;

struct Db {
    pg: PgServer,
    url: String,
    pool: PgPool,
}

async fn database(name: &str) -> anyhow::Result<Db> {
    let pg = crate::harness::pg_server()?;
    let url = pg.create_database(name).await?;
    let pool = netqoe_db::connect(&url, &Default::default()).await?;
    netqoe_db::migrate(&pool).await?;
    Ok(Db { pg, url, pool })
}

/// The current minute, ms since the epoch.
fn this_minute() -> i64 {
    netqoe_model::now_ms() / MIN_MS * MIN_MS
}

/// `agg_1m.sketch_state` of a real window of two measurements: the bytes every row carries.
fn sketch_bytes() -> Vec<u8> {
    let mut w = netqoe_aggregator::window::WindowState::default();
    for seed in [3, 71] {
        w.add(&sample_event(uuid::Uuid::nil(), "c", "t", 0, seed));
    }
    w.encode()
}

/// Writes the windows of clients `clients` x [`TARGETS`] targets for the epoch minutes
/// `minutes`, in time order, as the aggregator would have for two http measurements a minute: per-series
/// levels with log-normal noise, a rare http failure, and (when `fault_from` is set) a
/// +200 ms tcp connect fault for 12 minutes on every 50th client. Returns the rows written.
async fn fill(
    pool: &PgPool,
    clients: Range<usize>,
    minutes: Range<i64>,
    fault_from: Option<i64>,
) -> anyhow::Result<u64> {
    let sketch = sketch_bytes();
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT setseed(0.42)")
        .execute(&mut *conn)
        .await?;
    let mut rows = 0;
    let mut from = minutes.start;
    while from < minutes.end {
        let until = (from + FILL_MINUTES).min(minutes.end);
        rows += sqlx::query(FILL_SQL)
            .bind(from)
            .bind(until - 1)
            .bind(clients.start as i32)
            .bind(clients.end as i32 - 1)
            .bind(TARGETS as i32)
            .bind(&sketch)
            .bind(fault_from.unwrap_or(i64::MIN))
            .execute(&mut *conn)
            .await
            .context("generate agg_1m rows")?
            .rows_affected();
        from = until;
    }
    Ok(rows)
}

/// $1..$2 epoch minutes, $3..$4 clients, $5 targets, $6 sketch state, $7 first fault minute.
const FILL_SQL: &str = "\
INSERT INTO agg_1m (client_id, target, probe_kind, ip_version, window_start_ts, \
  count_total, count_success, count_error, http_error_count, \
  dns_count, dns_p50, dns_p95, dns_p99, dns_min, dns_max, \
  tcp_count, tcp_p50, tcp_p95, tcp_p99, tcp_min, tcp_max, \
  tls_count, tls_p50, tls_p95, tls_p99, tls_min, tls_max, \
  ttfb_count, ttfb_p50, ttfb_p95, ttfb_p99, ttfb_min, ttfb_max, \
  total_count, total_p50, total_p95, total_p99, total_min, total_max, \
  throughput_count, throughput_p05, throughput_p50, throughput_p95, \
  sketch_state, last_recv_ts, updated_at) \
SELECT 'bench-client-' || c, 'https://t' || t || '.example/', 'http', 4, w, \
  2, 2 - e, e, e, \
  2, dns, dns * s, dns * s * 1.05, dns * 0.9, dns * s * 1.05, \
  2, tcp, tcp * s, tcp * s * 1.05, tcp * 0.9, tcp * s * 1.05, \
  2, tls, tls * s, tls * s * 1.05, tls * 0.9, tls * s * 1.05, \
  2 - e, ttfb, ttfb * s, ttfb * s * 1.05, ttfb * 0.9, ttfb * s * 1.05, \
  2, tot, tot * s, tot * s * 1.05, tot * 0.9, tot * s * 1.05, \
  2 - e, kbps * 0.8, kbps, kbps * 1.15, \
  $6, w + interval '35 seconds', now() \
FROM ( \
  SELECT m, c, t, \
    sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z1, \
    sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z2, \
    sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z3, \
    sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z4, \
    random() AS u1, random() AS u2, random() AS u3 \
  FROM generate_series($1::bigint, $2::bigint) m, generate_series($3::int, $4::int) c, \
    generate_series(0, $5::int - 1) t \
) g, \
LATERAL (SELECT to_timestamp(m * 60) AS w, (u3 < 0.002)::int AS e, 1.15 + 0.3 * u2 AS s, \
  (3 + (c * 7 + t * 3) % 20) * exp(0.25 * z1) AS dns, \
  (8 + (c * 13 + t * 29) % 60) * exp(0.12 * z2) \
    + CASE WHEN c % 50 = 7 AND m >= $7 AND m < $7 + 12 THEN 200 ELSE 0 END AS tcp, \
  (30 + (t * 37 + c) % 150) * exp(0.2 * z3) AS ttfb, \
  (15000 + (c * 101 + t * 17) % 60000) * exp(0.2 * z4) AS kbps) v, \
LATERAL (SELECT tcp * (1.1 + 0.1 * u1) + 2 AS tls) v2, \
LATERAL (SELECT dns + tcp + tls + ttfb + 10 AS tot) v3 \
ORDER BY m, c, t";

/// The aggregator's ledger for the windows [`fill`] wrote: two events a window, each seen 5 s
/// after it was measured, or now when `seen_now` (the events of the new minute).
async fn fill_ledger(
    pool: &PgPool,
    clients: Range<usize>,
    minutes: Range<i64>,
    seen_now: bool,
) -> anyhow::Result<u64> {
    let mut rows = 0;
    let mut from = minutes.start;
    while from < minutes.end {
        let until = (from + FILL_MINUTES).min(minutes.end);
        rows += sqlx::query(
            "INSERT INTO events_seen (event_id, client_id, ts_ms, seen_at) \
             SELECT gen_random_uuid(), 'bench-client-' || c, m * 60000 + k * 30000 + 3000, \
               CASE WHEN $6 THEN now() ELSE to_timestamp(m * 60 + k * 30 + 8) END \
             FROM generate_series($1::bigint, $2::bigint) m, generate_series($3::int, $4::int) c, \
               generate_series(0, $5::int - 1) t, generate_series(0, 1) k \
             ORDER BY m, k",
        )
        .bind(from)
        .bind(until - 1)
        .bind(clients.start as i32)
        .bind(clients.end as i32 - 1)
        .bind(TARGETS as i32)
        .bind(seen_now)
        .execute(pool)
        .await
        .context("generate events_seen rows")?
        .rows_affected();
        from = until;
    }
    Ok(rows)
}

/// What a run of the release diagnoser took.
struct RunStats {
    secs: f64,
    peak_rss_mb: f64,
    cpu_s: f64,
}

/// Runs `netqoe-diagnoser run` once against `url`, sampling its peak resident set (VmHWM) and
/// CPU time every 2 ms until it exits (the kernel keeps neither once it has).
async fn run_diagnoser(url: &str) -> anyhow::Result<RunStats> {
    let bin = sibling("netqoe-diagnoser")?;
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let mut child = Command::new(&bin)
            .arg("run")
            .env("DATABASE_URL", &url)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let pid = child.id();
        let (mut rss, mut cpu) = (0.0f64, 0.0f64);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if let Ok(r) = crate::harness::peak_rss_mb(pid) {
                rss = rss.max(r);
            }
            if let Ok(c) = crate::harness::cpu_seconds(pid) {
                cpu = cpu.max(c);
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let secs = start.elapsed().as_secs_f64();
        if !status.success() {
            bail!("netqoe-diagnoser run exited with {status}");
        }
        Ok(RunStats {
            secs,
            peak_rss_mb: rss,
            cpu_s: cpu,
        })
    })
    .await?
}

/// Postgres alone producing the rows of `[from_ms, until_ms)` a run reads, its expressions, in
/// its order, in `format` (`binary`, as the diagnoser receives them, or `text`): seconds and
/// bytes.
async fn copy_windows(
    pool: &PgPool,
    from_ms: i64,
    until_ms: i64,
    format: &str,
) -> anyhow::Result<(f64, u64)> {
    let sql = format!(
        "COPY (SELECT {WINDOW_COLUMNS} FROM agg_1m \
           WHERE window_start_ts >= to_timestamp({from}) AND window_start_ts < to_timestamp({until}) \
           ORDER BY {WINDOW_ORDER}) TO STDOUT (FORMAT {format})",
        from = from_ms / 1000,
        until = until_ms / 1000,
    );
    copy_out(pool, &sql).await
}

async fn copy_out(pool: &PgPool, sql: &str) -> anyhow::Result<(f64, u64)> {
    let start = Instant::now();
    let mut stream = pool.copy_out_raw(sql).await?;
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        bytes += chunk?.len() as u64;
    }
    Ok((start.elapsed().as_secs_f64(), bytes))
}

async fn scalar(pool: &PgPool, sql: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
}

fn postgres_cpu(pg: &PgServer) -> anyhow::Result<f64> {
    crate::harness::tree_cpu_seconds(pg.pid().context("postgres is not running")?)
}

/// `diagnoser_full_windows_per_s` and `diagnoser_full_peak_rss_mb`: the first run over the whole
/// history of 2 000 series x 500 minutes.
pub async fn full(env: &Env) -> anyhow::Result<()> {
    let minutes = env.scaled(FULL_MINUTES).max(60) as i64;
    let db = database("bench_diagnoser_full").await?;
    let end = this_minute() / MIN_MS;
    let first = end - minutes;
    let t = Instant::now();
    let n = fill(
        &db.pool,
        0..FULL_CLIENTS,
        first..end,
        Some(first + minutes * 3 / 5),
    )
    .await?;
    // As autovacuum leaves a table that has been written: hint bits set, statistics known.
    sqlx::query("VACUUM (ANALYZE) agg_1m")
        .execute(&db.pool)
        .await?;
    sqlx::query("CHECKPOINT").execute(&db.pool).await?;
    eprintln!(
        "[bench] diagnoser_full_windows_per_s: {n} windows of {} series generated in {:.1} s",
        FULL_CLIENTS * TARGETS,
        t.elapsed().as_secs_f64()
    );
    let (from_ms, until_ms) = (first * MIN_MS, end * MIN_MS);

    // The limit: best of two reads, one on each side of the run.
    let (limit_before, bytes) = copy_windows(&db.pool, from_ms, until_ms, "binary").await?;
    let pg_before = postgres_cpu(&db.pg)?;
    let run = run_diagnoser(&db.url).await?;
    let pg_cpu = postgres_cpu(&db.pg)? - pg_before;
    let (limit_after, _) = copy_windows(&db.pool, from_ms, until_ms, "binary").await?;
    let (text_secs, text_bytes) = copy_windows(&db.pool, from_ms, until_ms, "text").await?;
    let limit_secs = limit_before.min(limit_after);

    let judged = scalar(
        &db.pool,
        "SELECT COALESCE(sum(windows), 0)::bigint FROM diagnoser_series",
    )
    .await?;
    if judged != n as i64 {
        bail!("the diagnoser learnt from {judged} windows, {n} were written");
    }
    let incidents = scalar(&db.pool, "SELECT count(*) FROM incidents").await?;
    let diagnoses = scalar(&db.pool, "SELECT count(*) FROM diagnoses").await?;
    if incidents == 0 {
        bail!("the diagnoser found none of the injected connect faults");
    }
    let rate = n as f64 / run.secs;
    let limit = n as f64 / limit_secs;
    eprintln!(
        "[bench] diagnoser_full_windows_per_s: run {:.2} s (diagnoser CPU {:.2} s, postgres CPU {:.2} s), \
         {diagnoses} diagnoses, {incidents} incidents; limit: COPY binary {:.2} s / {:.2} s ({} MB), \
         COPY text {:.2} s ({} MB)",
        run.secs,
        run.cpu_s,
        pg_cpu,
        limit_before,
        limit_after,
        bytes / 1_000_000,
        text_secs,
        text_bytes / 1_000_000,
    );
    report("diagnoser_full_windows_per_s", rate, "windows/s", limit);
    report(
        "diagnoser_full_peak_rss_mb",
        run.peak_rss_mb,
        "MB",
        RSS_BUDGET_MB,
    );
    Ok(())
}

/// Rows read from each table so far (sequential plus index fetches), by table name.
async fn rows_read(pool: &PgPool) -> anyhow::Result<Vec<(String, i64)>> {
    // Statistics reach the shared counters when a backend ends or idles for a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_as(
        "SELECT relname::text, (COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0))::bigint \
         FROM pg_stat_user_tables ORDER BY relname",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// `diagnoser_incremental_s` and `diagnoser_incremental_rows_read`: after a first run over an
/// hour of 10 000 series, one new minute for each series, and the run that judges it.
pub async fn incremental(env: &Env) -> anyhow::Result<()> {
    let clients = env.scaled(INCR_CLIENTS).max(10);
    let series = (clients * TARGETS) as i64;
    let db = database("bench_diagnoser_incremental").await?;
    let now = this_minute() / MIN_MS;
    let history = fill(
        &db.pool,
        0..clients,
        now - 1 - INCR_HISTORY as i64..now - 1,
        None,
    )
    .await?;
    let history_range = now - 1 - INCR_HISTORY as i64..now - 1;
    fill_ledger(&db.pool, 0..clients, history_range, false).await?;
    // As autovacuum keeps live tables: statistics known, the BRIN ranges summarised (an
    // unsummarised range matches every time range, and the new minute would read them all).
    for table in ["agg_1m", "events_seen"] {
        sqlx::query(&format!("VACUUM (ANALYZE) {table}"))
            .execute(&db.pool)
            .await?;
    }
    let first = run_diagnoser(&db.url).await?;
    eprintln!(
        "[bench] diagnoser_incremental: first run over {history} windows of {series} series: {:.2} s, peak RSS {:.0} MB",
        first.secs, first.peak_rss_mb
    );
    let new = fill(&db.pool, 0..clients, now - 1..now, None).await?;
    let new_events = fill_ledger(&db.pool, 0..clients, now - 1..now, true).await?;

    // The limit: Postgres alone reading the new windows, the ledger rows of their events and
    // the stored state of their series.
    let (windows_secs, _) =
        copy_windows(&db.pool, (now - 1) * MIN_MS, now * MIN_MS, "binary").await?;
    let (states_secs, _) = copy_out(
        &db.pool,
        "COPY (SELECT client_id, target, probe_kind, ip_version, state FROM diagnoser_series) \
         TO STDOUT (FORMAT binary)",
    )
    .await?;
    let (ledger_secs, _) = copy_out(
        &db.pool,
        &format!(
            "COPY (SELECT ts_ms FROM events_seen WHERE seen_at >= to_timestamp({})) \
             TO STDOUT (FORMAT binary)",
            (now - 1) * 60
        ),
    )
    .await?;

    let before = rows_read(&db.pool).await?;
    let run = run_diagnoser(&db.url).await?;
    let after = rows_read(&db.pool).await?;
    let mut total = 0;
    let mut split = Vec::new();
    for (table, n) in &after {
        let was = before.iter().find(|b| b.0 == *table).map_or(0, |b| b.1);
        if n - was > 0 {
            split.push(format!("{table} {}", n - was));
            if ["agg_1m", "diagnoser_series", "events_seen"].contains(&table.as_str()) {
                total += n - was;
            }
        }
    }
    let judged = scalar(
        &db.pool,
        "SELECT COALESCE(sum(windows), 0)::bigint FROM diagnoser_series",
    )
    .await?;
    if judged != (history + new) as i64 {
        bail!(
            "the diagnoser learnt from {judged} windows, {} were written",
            history + new
        );
    }
    eprintln!(
        "[bench] diagnoser_incremental: {new} new windows on {series} series over {history} of history: \
         {:.2} s (diagnoser CPU {:.2} s), peak RSS {:.0} MB; rows read: {}; limit: COPY of the new \
         windows {:.3} s, of their ledger rows {:.3} s and of the stored states {:.3} s",
        run.secs,
        run.cpu_s,
        run.peak_rss_mb,
        split.join(", "),
        windows_secs,
        ledger_secs,
        states_secs,
    );
    report(
        "diagnoser_incremental_s",
        run.secs,
        "s",
        windows_secs + ledger_secs + states_secs,
    );
    report(
        "diagnoser_incremental_rows_read",
        total as f64,
        "rows",
        (new + new_events) as f64 + series as f64,
    );
    Ok(())
}

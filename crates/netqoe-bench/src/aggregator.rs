//! Aggregator throughput from a pre-filled stream, and pipeline freshness under steady load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::stream::{FuturesUnordered, StreamExt};
use netqoe_test_support::{NatsServer, PgServer};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::harness::{report, sample_event, Env};
use crate::ingest::IngestProcess;

mod limit;

const SERIES_CLIENTS: usize = 200;
const SERIES_TARGETS: usize = 10;

struct Stack {
    nats: NatsServer,
    pg: PgServer,
    nats_url: String,
    db_url: String,
    js: async_nats::jetstream::Context,
    pool: PgPool,
}

/// The aggregator's settings as its binary would read them: defaults, overridden by the
/// `NETQOE_AGGREGATOR_*` environment variables (so a tuning can be measured without a rebuild).
fn aggregator_settings(nats_url: &str) -> (netqoe_aggregator::Settings, netqoe_db::PoolConfig) {
    #[derive(clap::Parser)]
    struct FromEnv {
        #[command(flatten)]
        run: netqoe_aggregator::config::RunArgs,
    }
    let args = <FromEnv as clap::Parser>::parse_from(["netqoe-aggregator"]).run;
    let mut settings = netqoe_aggregator::Settings::from_cli(nats_url, &args);
    if std::env::var_os("NETQOE_AGGREGATOR_FETCH_WAIT").is_none() {
        settings.fetch_wait = Duration::from_millis(100);
    }
    let pool = netqoe_db::PoolConfig {
        max_connections: args.db_connections,
        ..Default::default()
    };
    (settings, pool)
}

async fn stack() -> anyhow::Result<Stack> {
    let nats = crate::harness::nats_server()?;
    let pg = crate::harness::pg_server()?;
    let db_url = pg.create_database("bench").await?;
    let pool = netqoe_db::connect(&db_url, &Default::default()).await?;
    netqoe_db::migrate(&pool).await?;
    let js =
        async_nats::jetstream::new(netqoe_nats::connect(&nats.url(), "netqoe-bench", true).await?);
    netqoe_nats::provision(&js, netqoe_nats::Scope::All, &Default::default()).await?;
    Ok(Stack {
        nats_url: nats.url(),
        nats,
        pg,
        db_url,
        js,
        pool,
    })
}

/// CPU seconds used so far by this process (the aggregator runs in it), Postgres with its
/// backends, and nats-server: where the time of a run goes, whatever else the machine does.
struct CpuSplit {
    aggregator: f64,
    postgres: f64,
    nats: f64,
}

impl CpuSplit {
    fn read(s: &Stack) -> anyhow::Result<CpuSplit> {
        let pid = |p: Option<u32>, what: &str| p.with_context(|| format!("{what} is not running"));
        Ok(CpuSplit {
            aggregator: crate::harness::cpu_seconds(std::process::id())?,
            postgres: crate::harness::tree_cpu_seconds(pid(s.pg.pid(), "postgres")?)?,
            nats: crate::harness::cpu_seconds(pid(s.nats.pid(), "nats-server")?)?,
        })
    }

    fn minus(&self, before: &CpuSplit) -> CpuSplit {
        CpuSplit {
            aggregator: self.aggregator - before.aggregator,
            postgres: self.postgres - before.postgres,
            nats: self.nats - before.nats,
        }
    }
}

/// Starts a measured phase from a checkpoint, so no phase pays for the dirty buffers of the
/// one before it.
async fn checkpoint(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("CHECKPOINT").execute(pool).await?;
    Ok(())
}

/// Brings a fresh cluster to the state of a long-running one before anything is measured: a
/// checkpoint after ~600 MB of WAL leaves that much in recycled segments, which the page cache
/// already holds. Without it the first phase (the aggregator) writes every WAL page into a new
/// segment, on this kind of machine about a third dearer, and the limits after it, starting
/// from a checkpoint, write into recycled ones.
async fn warm_wal(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE wal_warmup AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 2000000) g; \
         DROP TABLE wal_warmup",
    )
    .execute(pool)
    .await?;
    checkpoint(pool).await
}

/// Bytes of WAL Postgres has written so far: what a write costs it beyond the CPU.
async fn wal_bytes(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
            .fetch_one(pool)
            .await?,
    )
}

async fn total(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(SUM(count_total), 0)::bigint FROM agg_1m")
            .fetch_one(pool)
            .await?,
    )
}

/// Events of 2 000 client x target series spread over the last 60 minutes.
fn events(n: usize) -> Vec<netqoe_model::Event> {
    let now = netqoe_model::now_ms();
    (0..n)
        .map(|i| {
            let client = format!("client-{}", i % SERIES_CLIENTS);
            let target = format!(
                "https://t{}.example/",
                (i / SERIES_CLIENTS) % SERIES_TARGETS
            );
            let ts = now - 3_600_000 + (i as i64 * 3_600_000 / n as i64);
            let mut e = sample_event(uuid::Uuid::now_v7(), &client, &target, ts, i as u64 * 7919);
            e.recv_ts_ms = Some(now);
            e
        })
        .collect()
}

/// `aggregator_events_per_s`: consume a pre-filled stream into Postgres, with dedup.
pub async fn throughput(env: &Env) -> anyhow::Result<()> {
    let n = env.scaled(1_000_000);
    let metrics = crate::harness::metrics()?;
    let s = stack().await?;
    let evs = events(n);
    let mut acks = FuturesUnordered::new();
    for e in &evs {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", e.event_id.to_string().as_str());
        let ack =
            s.js.publish_with_headers(
                netqoe_nats::event_subject(&e.client_id),
                headers,
                serde_json::to_vec(e)?.into(),
            )
            .await?;
        acks.push(std::future::IntoFuture::into_future(ack));
        if acks.len() >= crate::raw::PUBLISH_WINDOW {
            acks.next().await.context("ack")??;
        }
    }
    while let Some(a) = acks.next().await {
        a?;
    }

    warm_wal(&s.pool).await?;
    let (settings, pool_config) = aggregator_settings(&s.nats_url);
    let commit = settings.max_commit_events;
    let pool = netqoe_db::connect(&s.db_url, &pool_config).await?;
    let shutdown = CancellationToken::new();
    let wal_before = wal_bytes(&s.pool).await?;
    let cpu_before = CpuSplit::read(&s)?;
    let start = Instant::now();
    let task = tokio::spawn(netqoe_aggregator::run(
        settings,
        pool,
        None,
        shutdown.clone(),
    ));
    // Watch the aggregator's own counter of committed events (what an operator graphs)
    // rather than polling the consumer's info: on nats-server 2.9, frequent consumer info
    // requests slow the delivery of the stream's last block to a trickle.
    loop {
        let committed =
            crate::harness::counter(metrics, "netqoe_aggregator_events_total", "outcome=\"new\"");
        if committed >= n as u64 {
            break;
        }
        if start.elapsed() > Duration::from_secs(1200) || task.is_finished() {
            bail!("aggregator committed {committed} of {n} events and stopped or took 20 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let cpu = CpuSplit::read(&s)?.minus(&cpu_before);
    let wal = wal_bytes(&s.pool).await? - wal_before;
    eprintln!(
        "[bench] aggregator_events_per_s: CPU per event: aggregator {:.1} µs, postgres {:.1} µs, nats-server {:.1} µs; WAL {} bytes per event",
        cpu.aggregator / n as f64 * 1e6,
        cpu.postgres / n as f64 * 1e6,
        cpu.nats / n as f64 * 1e6,
        wal / n as i64,
    );
    let rows = crate::harness::counter(metrics, "netqoe_aggregator_rows_written_total", "");
    let txs = crate::harness::counter(metrics, "netqoe_aggregator_batches_committed_total", "");
    eprintln!(
        "[bench] aggregator_events_per_s: {rows} rows written ({:.3} per event) in {txs} transactions",
        rows as f64 / n as f64
    );
    shutdown.cancel();
    task.await??;
    let counted = total(&s.pool).await?;
    if counted != n as i64 {
        bail!("agg_1m counts {counted} events, {n} were sent");
    }
    // Rewrites that could not stay on their page (not HOT) also write every index.
    let (ins, upd, hot): (i64, i64, i64) = sqlx::query_as(
        "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'agg_1m'",
    )
    .fetch_one(&s.pool)
    .await?;
    eprintln!("[bench] aggregator_events_per_s: agg_1m {ins} inserts, {upd} updates ({hot} HOT)");

    // Same work for Postgres, with nothing else on the machine: the limit.
    let rows = limit::rows(&s, &evs, commit).await?;
    let narrow = limit::narrow(&s, &evs, commit).await?;
    eprintln!("[bench] aggregator_events_per_s: {}", rows.describe("rows"));
    eprintln!(
        "[bench] aggregator_events_per_s: {}; the aggregator's rate is {:.3} of it",
        narrow.describe("narrow"),
        rate / narrow.rate
    );
    report("aggregator_events_per_s", rate, "events/s", rows.rate);
    Ok(())
}

/// `pipeline_freshness_p95_s`: ingest under a steady 5 000 events/s; for each moment, the time
/// until as many events as ingest had acknowledged are counted in agg_1m.
pub async fn freshness(env: &Env) -> anyhow::Result<()> {
    let s = stack().await?;
    let ingest = IngestProcess::ready_url(&s.nats_url).await?;
    let (settings, pool_config) = aggregator_settings(&s.nats_url);
    let pool = netqoe_db::connect(&s.db_url, &pool_config).await?;
    let shutdown = CancellationToken::new();
    let agg = tokio::spawn(netqoe_aggregator::run(
        settings,
        pool,
        None,
        shutdown.clone(),
    ));

    let accepted = Arc::new(AtomicU64::new(0));
    let secs = (20.0 * env.scale).clamp(5.0, 60.0);
    let cfg = netqoe_loadgen::LoadConfig {
        rate: Some(5000.0),
        batch: 50,
        connections: 8,
        duration: Some(Duration::from_secs_f64(secs)),
        ..netqoe_loadgen::LoadConfig::new(&ingest.url)
    };
    let load = tokio::spawn(netqoe_loadgen::run(cfg, Some(accepted.clone())));
    let start = Instant::now();
    let mut acked: Vec<(f64, u64)> = Vec::new();
    let mut visible: Vec<(f64, i64)> = Vec::new();
    loop {
        let t = start.elapsed().as_secs_f64();
        acked.push((t, accepted.load(Ordering::Relaxed)));
        visible.push((t, total(&s.pool).await?));
        if load.is_finished() && visible.last().map(|v| v.1 as u64) >= acked.last().map(|a| a.1) {
            break;
        }
        if start.elapsed() > Duration::from_secs_f64(secs + 60.0) {
            bail!("events never became visible");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report_load = load.await??;
    shutdown.cancel();
    agg.await??;
    let mut lags: Vec<f64> = acked
        .iter()
        .filter(|(_, n)| *n > 0)
        .filter_map(|(t, n)| {
            visible
                .iter()
                .find(|(_, v)| *v as u64 >= *n)
                .map(|(tv, _)| tv - t)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let p95 = netqoe_loadgen::percentile(&lags, 0.95);
    if report_load.events_accepted == 0 {
        bail!("no events accepted: {:?}", report_load.statuses);
    }
    report("pipeline_freshness_p95_s", p95, "s", 2.0);
    Ok(())
}

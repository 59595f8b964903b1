//! The promise when PostgreSQL fails: stopped for longer than the consumer's 30 s ack wait,
//! slowed by a lock held on `agg_1m` for 30 s, or refusing one window for good (its stored
//! state cannot be decoded). Ingest keeps acknowledging throughout (it does not need
//! PostgreSQL), and every acknowledged event is then counted once, or quarantined in
//! `QOE_DLQ` with its reason when its window cannot be written.

use std::time::{Duration, Instant};

use netqoe_e2e::faults::{self, Load, Stack};
use netqoe_test_support::{http_get, NatsServer};

use crate::faults::{acked, answers, merged, merged_past, settle, BATCH, PAUSE, RECKON, TASKS};

/// Longer than the `aggregator` consumer's ack wait (30 s), so that batches fetched before
/// the outage would be redelivered unless the aggregator keeps them alive.
const OUTAGE: Duration = Duration::from_secs(35);
const LOCK: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_longer_than_the_ack_wait_loses_and_doubles_nothing() {
    faults::forget("4a-postgres-stop");
    let nats = NatsServer::start().unwrap();
    let mut s = Stack::start("pg-stop", &nats.url(), &[]).await.unwrap();
    let (mut agg, metrics) = s.aggregator("aggregator", &[]).unwrap();
    let load = Load::start(&s.ingest_url(), TASKS, BATCH, PAUSE);
    merged_past(&s, 500).await;
    let before = merged(&s).await;

    s.pg.stop();
    let down = Instant::now();
    // A commit fails once the pool gives up connecting (its 5 s acquire timeout).
    while http_get(metrics, "/readyz").unwrap().0 != 503 {
        assert!(
            down.elapsed() < Duration::from_secs(20),
            "the aggregator reports not ready without Postgres"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let unready = down.elapsed();
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    let acked_while_down = load.count(down, acked);
    assert!(
        acked_while_down >= 30,
        "ingest kept acknowledging while Postgres was down ({acked_while_down} × 202)"
    );
    s.pg.restart().unwrap();
    let up = Instant::now();
    merged_past(&s, before).await;
    let resumed = up.elapsed();
    agg.wait_ready(metrics, "/readyz", Duration::from_secs(30))
        .unwrap();
    assert!(agg.exited().is_none(), "the aggregator rode out the outage");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = load.finish(Duration::from_secs(15)).await;
    let t = s.reckon(&sent.ids, RECKON).await.unwrap();
    let happened = format!(
        "PostgreSQL stopped for {:.0} s (longer than the 30 s ack wait); ingest acknowledged \
         {acked_while_down} batches meanwhile, the aggregator reported not ready after {:.1} s \
         and merged again {:.1} s after the restart (same process); {}",
        OUTAGE.as_secs_f64(),
        unready.as_secs_f64(),
        resumed.as_secs_f64(),
        answers(&sent)
    );
    settle("4a-postgres-stop", "PostgreSQL stopped 35 s", happened, t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_on_agg_1m_for_30_s_stalls_merging_and_loses_nothing() {
    faults::forget("4b-postgres-lock");
    let nats = NatsServer::start().unwrap();
    let s = Stack::start("pg-lock", &nats.url(), &[]).await.unwrap();
    let (_agg, _) = s.aggregator("aggregator", &[]).unwrap();
    let load = Load::start(&s.ingest_url(), TASKS, BATCH, PAUSE);
    merged_past(&s, 500).await;

    // As a long migration or a manual `LOCK TABLE` would: no reads, no writes.
    let mut lock = s.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE agg_1m IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let locked = Instant::now();
    let at_lock = merged(&s).await;
    tokio::time::sleep(LOCK).await;
    let during = merged(&s).await - at_lock;
    let acked_during = load.count(locked, acked);
    lock.commit().await.unwrap();
    let released = Instant::now();
    merged_past(&s, at_lock + during).await;
    let resumed = released.elapsed();
    assert_eq!(during, 0, "nothing is merged while agg_1m is locked");
    assert!(
        acked_during >= 30,
        "ingest kept acknowledging while agg_1m was locked ({acked_during} × 202)"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = load.finish(Duration::from_secs(15)).await;
    let t = s.reckon(&sent.ids, RECKON).await.unwrap();
    let happened = format!(
        "ACCESS EXCLUSIVE lock held on agg_1m for {:.0} s: nothing merged meanwhile, ingest \
         acknowledged {acked_during} batches, merging resumed {:.1} s after the release; {}",
        LOCK.as_secs_f64(),
        resumed.as_secs_f64(),
        answers(&sent)
    );
    settle("4b-postgres-lock", "lock on agg_1m 30 s", happened, t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_cannot_be_written_is_quarantined_and_every_other_one_merged() {
    faults::forget("4c-unmergeable-window");
    let nats = NatsServer::start().unwrap();
    let s = Stack::start("pg-damaged", &nats.url(), &[]).await.unwrap();
    let (_agg, metrics) = s.aggregator("aggregator", &[]).unwrap();
    // The damaged window is the current minute's: leave it at least 20 s to receive events.
    let epoch = std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap();
    let into_minute = epoch.as_millis() % 60_000;
    if into_minute > 35_000 {
        tokio::time::sleep(Duration::from_millis((61_000 - into_minute) as u64)).await;
    }
    let load = Load::start(&s.ingest_url(), TASKS, BATCH, PAUSE);
    merged_past(&s, 300).await;

    // One window's stored state overwritten with bytes no sketch format decodes (a disk
    // or an operator's mistake); `version` moves so no cached copy is trusted.
    let (client, target): (String, String) = sqlx::query_as(
        "UPDATE agg_1m SET sketch_state = '\\xdeadbeef'::bytea, version = version + 1
         WHERE (client_id, target, window_start_ts) =
               (SELECT client_id, target, window_start_ts FROM agg_1m
                ORDER BY window_start_ts DESC, client_id, target LIMIT 1)
         RETURNING client_id, target",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    let damaged = Instant::now();
    let at_damage = merged(&s).await;
    let mut quarantined = 0;
    while quarantined == 0 {
        assert!(
            damaged.elapsed() < Duration::from_secs(30),
            "no event of the damaged window reached QOE_DLQ"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        quarantined = s.quarantined().await.unwrap().len();
    }
    // Every other window keeps merging.
    merged_past(&s, at_damage + 1000).await;
    let sent = load.finish(Duration::from_secs(15)).await;
    let t = s.reckon(&sent.ids, RECKON).await.unwrap();

    let letters = s.quarantined().await.unwrap();
    assert!(t.quarantined > 0 && t.quarantined < t.acknowledged / 10);
    for reason in letters.values() {
        assert!(
            reason.starts_with("cannot merge into window client_id=")
                && reason.contains(&format!("client_id={client} target={target} ")),
            "the reason names the damaged window: {reason}"
        );
    }
    let dlq = netqoe_e2e::scrape(
        metrics,
        "netqoe_aggregator_dlq_messages_total",
        &["reason=\"unmergeable\""],
    )
    .unwrap();
    assert_eq!(
        dlq as usize, t.quarantined,
        "each quarantined event counted"
    );
    let happened = format!(
        "the stored state of one window ({client}, {target}) overwritten with bytes no format \
         decodes: its {} later events quarantined in QOE_DLQ with the reason naming the \
         window (netqoe_aggregator_dlq_messages_total{{reason=\"unmergeable\"}} = {dlq}), \
         every other window merged; {}",
        t.quarantined,
        answers(&sent)
    );
    settle(
        "4c-unmergeable-window",
        "one window that cannot be written",
        happened,
        t,
    );
}

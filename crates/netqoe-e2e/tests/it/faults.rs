//! The promise under faults: an event ingest acknowledged with 202 is counted exactly once in
//! `agg_1m`, whatever fails. Each test drives a few thousand events through the released
//! binaries while it breaks something, then compares the acknowledged ids with the
//! aggregator's `events_seen` ledger and `sum(count_total)`, and records its row of
//! docs/reliability.md under `target/reliability/`.

use std::time::{Duration, Instant};

use netqoe_e2e::faults::{Acknowledged, Answer, Load, Row, Stack, Tally};
use netqoe_test_support::NatsServer;

/// Three tasks, each a batch of 20 events every 150 ms: about 400 events/s.
const TASKS: usize = 3;
const BATCH: usize = 20;
const PAUSE: Duration = Duration::from_millis(150);
/// Longest wait for the aggregator to merge everything, covering a redelivery after the
/// consumer's 30 s ack wait.
const RECKON: Duration = Duration::from_secs(75);

fn acked(a: Answer) -> bool {
    a == Answer::Acked
}

fn shed(a: Answer) -> bool {
    a == Answer::Unavailable { retry_after: true }
}

/// How ingest answered, in a few words.
fn answers(a: &Acknowledged) -> String {
    let n = |f: &dyn Fn(Answer) -> bool| a.answers.iter().filter(|(_, x)| f(*x)).count();
    let mut s = format!("{} × 202", n(&acked));
    let shed = n(&shed);
    if shed > 0 {
        s.push_str(&format!(", {shed} × 503 with Retry-After"));
    }
    let bare = n(&|x| x == Answer::Unavailable { retry_after: false });
    if bare > 0 {
        s.push_str(&format!(", {bare} × 503 without Retry-After"));
    }
    let none = n(&|x| x == Answer::NoAnswer);
    if none > 0 {
        s.push_str(&format!(", {none} without answer"));
    }
    let other = n(&|x| matches!(x, Answer::RateLimited | Answer::Other(_)));
    if other > 0 {
        s.push_str(&format!(", {other} other"));
    }
    s
}

/// Records the row, then holds the promise: nothing acknowledged lost, nothing counted twice.
fn settle(key: &str, fault: &str, happened: String, t: Tally) {
    let row = Row::new(fault, &happened, t);
    row.record(key).unwrap();
    assert!(
        t.acknowledged >= 1000,
        "{} events acknowledged",
        t.acknowledged
    );
    assert_eq!(row.lost, 0, "acknowledged events missing from events_seen");
    assert_eq!(row.doubled, 0, "sum(count_total) vs distinct merged ids");
    assert!(t.merged >= t.acknowledged, "every acknowledged id merged");
}

/// Distinct event ids in the ledger.
async fn merged(s: &Stack) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events_seen")
        .fetch_one(&s.pool)
        .await
        .unwrap()
}

/// Waits until the ledger holds more than `n` ids.
async fn merged_past(s: &Stack, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while merged(s).await <= n {
        assert!(Instant::now() < deadline, "nothing merged past {n} in 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregator_killed_three_times_under_load_loses_and_doubles_nothing() {
    let nats = NatsServer::start().unwrap();
    let s = Stack::start("agg-kill", &nats.url(), &[]).await.unwrap();
    let (mut agg, metrics) = s.aggregator("aggregator", &[]).unwrap();
    let load = Load::start(&s.ingest_url(), TASKS, BATCH, PAUSE);
    for _ in 0..3 {
        // Each kill lands while the aggregator is merging.
        let before = merged(&s).await;
        merged_past(&s, before + 200).await;
        agg.kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        agg.restart().unwrap();
        agg.wait_ready(metrics, "/readyz", Duration::from_secs(30))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = load.finish(Duration::from_secs(15)).await;
    let t = s.reckon(&sent.ids, RECKON).await.unwrap();
    let happened = format!(
        "the only aggregator killed -9 three times while merging, restarted 0.5 s later; {}",
        answers(&sent)
    );
    settle("1a-aggregator-kill", "aggregator kill -9 ×3", happened, t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_aggregators_killed_and_restarted_loses_and_doubles_nothing() {
    let nats = NatsServer::start().unwrap();
    let s = Stack::start("agg-pair", &nats.url(), &[]).await.unwrap();
    let (mut a, metrics) = s.aggregator("aggregator-a", &[]).unwrap();
    let (_b, _) = s.aggregator("aggregator-b", &[]).unwrap();
    let load = Load::start(&s.ingest_url(), TASKS, BATCH, PAUSE);
    merged_past(&s, 500).await;
    a.kill();
    // The survivor keeps merging alone.
    let alone = merged(&s).await;
    merged_past(&s, alone + 500).await;
    a.restart().unwrap();
    a.wait_ready(metrics, "/readyz", Duration::from_secs(30))
        .unwrap();
    let both = merged(&s).await;
    merged_past(&s, both + 500).await;
    let sent = load.finish(Duration::from_secs(15)).await;
    let t = s.reckon(&sent.ids, RECKON).await.unwrap();
    let happened = format!(
        "two aggregators on the shared consumer, one killed -9 mid-merge, the other merged \
         alone, the first restarted; {}",
        answers(&sent)
    );
    settle(
        "1b-aggregator-pair",
        "one of two aggregators kill -9",
        happened,
        t,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_and_restarted_sheds_with_retry_after_and_recovers_without_restart() {
    let mut nats = NatsServer::start().unwrap();
    let mut s = Stack::start("nats-kill", &nats.url(), &[]).await.unwrap();
    let (_agg, _) = s.aggregator("aggregator", &[]).unwrap();
    let load = Load::start(&s.ingest_url(), TASKS, BATCH, PAUSE);
    let start = Instant::now();
    load.wait_for(start, acked, 30, Duration::from_secs(20))
        .await
        .unwrap();

    nats.kill();
    let down = Instant::now();
    load.wait_for(down, shed, 3, Duration::from_secs(15))
        .await
        .expect("ingest answers 503 with Retry-After while NATS is down");
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(down.elapsed())).await;
    nats.restart().unwrap();
    let outage = down.elapsed();
    let up = Instant::now();
    load.wait_for(up, acked, 30, Duration::from_secs(30))
        .await
        .expect("ingest acknowledges again once NATS is back");
    let recovered = up.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(s.ingest_running(), "ingest recovered without a restart");
    let sent = load.finish(Duration::from_secs(15)).await;
    let t = s.reckon(&sent.ids, RECKON).await.unwrap();
    let happened = format!(
        "the only nats-server killed -9 for {:.1} s, restarted on its port and store; ingest \
         (same process) acknowledged again {:.1} s after; {}",
        outage.as_secs_f64(),
        recovered.as_secs_f64(),
        answers(&sent)
    );
    settle("2-nats-kill", "nats-server kill -9", happened, t);
}

//! The promise under faults: an event ingest acknowledged with 202 is counted exactly once in
//! `agg_1m`, whatever fails. Each test drives a few thousand events through the released
//! binaries while it breaks something, then compares the acknowledged ids with the
//! aggregator's `events_seen` ledger and `sum(count_total)`, and records its row of
//! docs/reliability.md under `target/reliability/`.

use std::time::{Duration, Instant};

use netqoe_e2e::faults::{self, Acknowledged, Answer, Batch, Load, NatsCluster, Row, Stack, Tally};
use netqoe_test_support::NatsServer;

/// Three tasks, each a batch of 20 events every 150 ms: about 400 events/s.
pub(crate) const TASKS: usize = 3;
pub(crate) const BATCH: usize = 20;
pub(crate) const PAUSE: Duration = Duration::from_millis(150);
/// Longest wait for the aggregator to merge everything, covering a redelivery after the
/// consumer's 30 s ack wait.
pub(crate) const RECKON: Duration = Duration::from_secs(75);

pub(crate) fn acked(a: Answer) -> bool {
    a == Answer::Acked
}

fn shed(a: Answer) -> bool {
    a == Answer::Unavailable { retry_after: true }
}

fn bare(a: Answer) -> bool {
    a == Answer::Unavailable { retry_after: false }
}

/// How ingest answered, in a few words.
pub(crate) fn answers(a: &Acknowledged) -> String {
    let n = |f: &dyn Fn(Answer) -> bool| a.answers.iter().filter(|(_, x)| f(*x)).count();
    let mut s = format!("{} × 202", n(&acked));
    let shed = n(&shed);
    if shed > 0 {
        s.push_str(&format!(", {shed} × 503 with Retry-After"));
    }
    let bare = n(&bare);
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

/// Records the row, then holds the promise: nothing acknowledged lost (every id merged, or
/// quarantined in `QOE_DLQ` with its reason), nothing counted twice.
pub(crate) fn settle(key: &str, fault: &str, happened: String, t: Tally) {
    let row = Row::new(fault, &happened, t);
    row.record(key).unwrap();
    assert!(
        t.acknowledged >= 1000,
        "{} events acknowledged",
        t.acknowledged
    );
    assert_eq!(row.lost, 0, "acknowledged events missing from events_seen");
    assert_eq!(row.doubled, 0, "sum(count_total) vs distinct merged ids");
    assert!(
        t.merged + t.quarantined >= t.acknowledged,
        "every acknowledged id merged or quarantined"
    );
}

/// Distinct event ids in the ledger.
pub(crate) async fn merged(s: &Stack) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events_seen")
        .fetch_one(&s.pool)
        .await
        .unwrap()
}

/// Waits until the ledger holds more than `n` ids.
pub(crate) async fn merged_past(s: &Stack, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while merged(s).await <= n {
        assert!(Instant::now() < deadline, "nothing merged past {n} in 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregator_killed_three_times_under_load_loses_and_doubles_nothing() {
    faults::forget("1a-aggregator-kill");
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
    faults::forget("1b-aggregator-pair");
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
    faults::forget("2-nats-kill");
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
    assert_eq!(load.count(start, bare), 0, "every 503 carries Retry-After");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_losing_one_node_then_another_keeps_every_acknowledged_event() {
    faults::forget("3-cluster-node-kill");
    let mut c = NatsCluster::start(3).unwrap();
    let replicas = ["--stream-replicas=3"];
    let mut s = Stack::start("cluster", &c.urls(), &replicas).await.unwrap();
    let (_agg, _) = s.aggregator("aggregator", &replicas).unwrap();
    c.wait_replicas_current(netqoe_nats::EVENTS_STREAM, Duration::from_secs(30))
        .await
        .unwrap();
    let load = Load::start(&s.ingest_url(), TASKS, BATCH, PAUSE);
    load.wait_for(Instant::now(), acked, 20, Duration::from_secs(20))
        .await
        .unwrap();

    let mut served = Vec::new();
    for (node, restart) in [(0, true), (1, false)] {
        c.kill(node);
        let down = Instant::now();
        load.wait_for(down, acked, 30, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("ingest kept acknowledging with n{node} down: {e}"));
        served.push(down.elapsed());
        if restart {
            tokio::time::sleep(Duration::from_secs(1)).await;
            c.restart(node).unwrap();
            c.wait_replicas_current(netqoe_nats::EVENTS_STREAM, Duration::from_secs(30))
                .await
                .unwrap();
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(s.ingest_running(), "ingest served throughout");
    let sent = load.finish(Duration::from_secs(15)).await;
    let t = s.reckon(&sent.ids, RECKON).await.unwrap();
    let happened = format!(
        "three nodes, QOE_EVENTS at 3 replicas: n0 killed -9 (30 batches acknowledged within \
         {:.1} s), restarted and caught up, then n1 killed -9 (30 batches within {:.1} s); {}",
        served[0].as_secs_f64(),
        served[1].as_secs_f64(),
        answers(&sent)
    );
    settle(
        "3-cluster-node-kill",
        "NATS cluster node kill -9, then another",
        happened,
        t,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_sheds_with_retry_after_and_accepts_again_once_it_has_room() {
    faults::forget("5-stream-full");
    let nats = NatsServer::start().unwrap();
    // About 2 000 events fit in 1 MiB.
    let small = ["--stream-max-bytes=1048576"];
    let mut s = Stack::start("full", &nats.url(), &small).await.unwrap();
    let (_agg, _) = s.aggregator("aggregator", &small).unwrap();
    let load = Load::start(&s.ingest_url(), TASKS, BATCH, PAUSE);
    let start = Instant::now();
    load.wait_for(start, shed, 5, Duration::from_secs(40))
        .await
        .expect("a full stream answers 503 with Retry-After");
    let full = Instant::now();
    let filled = full - start;
    // The aggregator catches up; a limits stream keeps merged messages until max_age, so its
    // draining frees no room.
    let drained = s.reckon(&load.acked_ids(), RECKON).await.unwrap();
    let shed_after_drain = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still_full = load.count(shed_after_drain, shed);
    let acked_while_full = load.count(shed_after_drain, acked);
    // The operator gives the stream room: ingest restarted with a larger max_bytes.
    s.respawn_ingest(&["--stream-max-bytes=16777216"]).unwrap();
    let roomy = Instant::now();
    load.wait_for(roomy, acked, 30, Duration::from_secs(30))
        .await
        .expect("ingest accepts again once the stream has room");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(load.count(start, bare), 0, "every 503 carries Retry-After");
    let sent = load.finish(Duration::from_secs(15)).await;
    let t = s.reckon(&sent.ids, RECKON).await.unwrap();
    let happened = format!(
        "QOE_EVENTS at max_bytes 1 MiB filled after {:.1} s; with the aggregator caught up \
         ({} merged) the stream stayed full ({still_full} × 503, {acked_while_full} × 202 in \
         2 s); max_bytes raised to 16 MiB (ingest restarted) and ingest accepted again; {}",
        filled.as_secs_f64(),
        drained.merged,
        answers(&sent)
    );
    settle("5-stream-full", "stream full (max_bytes)", happened, t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_sent_three_times_also_past_the_duplicate_window_is_counted_once() {
    faults::forget("6-duplicate-storm");
    let nats = NatsServer::start().unwrap();
    let s = Stack::start("dupes", &nats.url(), &[]).await.unwrap();
    let (_agg, _) = s.aggregator("aggregator", &[]).unwrap();
    let batches: Vec<Batch> = (0..100).map(|i| Batch::generate(25, i * 25)).collect();
    let distinct = batches.iter().map(|b| b.ids.len()).sum::<usize>();
    // Twice at once, within JetStream's duplicate window: the second copy is a duplicate.
    let twice: Vec<Batch> = batches
        .iter()
        .flat_map(|b| [b.clone(), b.clone()])
        .collect();
    let first = Load::replay(&s.ingest_url(), 4, twice, Duration::ZERO)
        .finish(Duration::from_secs(60))
        .await;
    // The window shrinks to 1 s (as `nats stream edit` would); the third copy comes after it.
    let js = s.jetstream().await.unwrap();
    let mut stream = js.get_stream(netqoe_nats::EVENTS_STREAM).await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.duplicate_window = Duration::from_secs(1);
    js.update_stream(config).await.unwrap();
    // Batches half-published when NATS died: the first half of each reached the stream as
    // ingest publishes it, the request failed, and the sender retried the whole batch after
    // the window.
    let halves: Vec<Batch> = (0..20)
        .map(|i| Batch::generate(20, 10_000 + i * 20))
        .collect();
    let mut half_published = 0;
    for b in &halves {
        let events: Vec<serde_json::Value> = serde_json::from_slice(&b.body).unwrap();
        for e in &events[..events.len() / 2] {
            publish_as_ingest(&js, e.clone()).await;
            half_published += 1;
        }
    }
    let half_distinct = halves.iter().map(|b| b.ids.len()).sum::<usize>();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut retried = batches;
    retried.extend(halves);
    let third = Load::replay(&s.ingest_url(), 4, retried, Duration::ZERO)
        .finish(Duration::from_secs(60))
        .await;
    let stored = stream.info().await.unwrap().state.messages;
    let duplicates = netqoe_e2e::scrape(
        s.ingest_metrics,
        "netqoe_ingest_events_duplicate_total",
        &[],
    )
    .unwrap();
    let mut ids = first.ids.clone();
    ids.extend(third.ids.iter().cloned());
    assert_eq!(first.ids.len(), distinct);
    assert_eq!(third.ids.len(), distinct + half_distinct);
    let t = s.reckon(&ids, RECKON).await.unwrap();
    let happened = format!(
        "{distinct} events each sent three times: twice at once (ingest reported {duplicates} \
         duplicates), then again after the duplicate window (shrunk to 1 s); and 20 batches \
         ({half_distinct} events) half-published when NATS died ({half_published} stored), \
         retried whole after the window: the stream holds {stored} messages and the ledger \
         dropped the repeats; {}, then {}",
        answers(&first),
        answers(&third)
    );
    assert_eq!(
        stored,
        (2 * distinct + half_published + half_distinct) as u64,
        "the copies after the window reached the stream"
    );
    settle("6-duplicate-storm", "duplicate storm ×3", happened, t);
    assert_eq!(
        t.counted,
        (distinct + half_distinct) as i64,
        "each event counted once"
    );
}

/// Publishes `event` to `QOE_EVENTS` as ingest does: on its client's subject, stamped with
/// `recv_ts_ms`, its event id as `Nats-Msg-Id`.
async fn publish_as_ingest(js: &async_nats::jetstream::Context, mut event: serde_json::Value) {
    let now = std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap();
    event["recv_ts_ms"] = serde_json::json!(now.as_millis() as i64);
    let subject = netqoe_nats::event_subject(event["client_id"].as_str().unwrap());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", event["event_id"].as_str().unwrap());
    js.publish_with_headers(subject, headers, event.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

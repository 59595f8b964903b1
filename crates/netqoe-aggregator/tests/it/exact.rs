//! Exactness: counts and percentiles of every row, several instances, late events.

use std::collections::BTreeMap;
use std::time::Duration;

use netqoe_aggregator::window::WindowKey;
use netqoe_model::{Event, Timings};

use crate::support::{assert_rows_match, close, events, exact, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_row_counts_its_events_with_percentiles_within_one_percent() {
    let stack = Stack::start().await;
    // 500 series (50 clients x 10 targets) over 4 minutes.
    let sent = events(100_000, 50, 10, 4, 1);
    stack.publish(&sent).await;
    let agg = stack.spawn(stack.settings());
    stack.wait_total(100_000, Duration::from_secs(180)).await;
    agg.stop().await;

    let mut by_key: BTreeMap<WindowKey, Vec<&Event>> = BTreeMap::new();
    for e in &sent {
        by_key.entry(WindowKey::of(e)).or_default().push(e);
    }
    let series: std::collections::HashSet<_> =
        by_key.keys().map(|k| (&k.client_id, &k.target)).collect();
    assert_eq!(series.len(), 500);
    let rows = stack.rows().await;
    assert_eq!(rows.len(), by_key.len());
    for (key, evs) in &by_key {
        let row = &rows[key];
        let errors = evs.iter().filter(|e| e.error_stage.is_some()).count() as i64;
        assert_eq!(row.count_total, evs.len() as i64, "{key:?}");
        assert_eq!(
            (row.count_error, row.tls_error_count),
            (errors, errors),
            "{key:?}"
        );
        assert_eq!(row.count_success, evs.len() as i64 - errors);
        let mut dns: Vec<f64> = evs
            .iter()
            .map(|e| e.timings.as_ref().unwrap().dns_ms.unwrap())
            .collect();
        let mut total: Vec<f64> = evs
            .iter()
            .map(|e| e.timings.as_ref().unwrap().total_ms.unwrap())
            .collect();
        assert_eq!(row.dns_count, dns.len() as i64);
        for (q, got_dns, got_total) in [
            (0.50, row.dns_p50, row.total_p50),
            (0.95, row.dns_p95, row.total_p95),
            (0.99, row.dns_p99, row.total_p99),
        ] {
            close(got_dns, exact(&mut dns, q), &format!("{key:?} dns p{q}"));
            close(
                got_total,
                exact(&mut total, q),
                &format!("{key:?} total p{q}"),
            );
        }
        assert_eq!(row.dns_min, Some(exact(&mut dns, 0.0)));
        assert_eq!(row.dns_max, Some(exact(&mut dns, 1.0)));
    }
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM events_seen")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(seen, 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_end_with_the_rows_of_one() {
    let stack = Stack::start().await;
    let sent = events(20_000, 20, 5, 3, 2);
    let mut settings = stack.settings();
    settings.batch_size = 300;
    let b = stack.spawn(settings.clone());
    // one of them also commits each batch in two shares side by side
    settings.commit_parallelism = 2;
    let a = stack.spawn(settings);
    // publish while both consume, so their batches interleave on the same rows
    for chunk in sent.chunks(2_000) {
        stack.publish(chunk).await;
    }
    stack.wait_total(20_000, Duration::from_secs(120)).await;
    a.stop().await;
    b.stop().await;
    assert_rows_match(&stack, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_events_change_their_row_as_if_on_time() {
    let stack = Stack::start().await;
    let now = netqoe_model::now_ms();
    let make = |ts: i64, recv: i64, dns: f64| {
        let mut e = Event::new(
            uuid::Uuid::new_v4(),
            "probe-late",
            ts,
            "https://late.example/",
        );
        e.timings = Some(Timings {
            dns_ms: Some(dns),
            ..Default::default()
        });
        e.recv_ts_ms = Some(recv);
        e
    };
    // a window 12 minutes ago, written on time; another two days ago, written then
    let recent = netqoe_model::window_start_ms(now - 12 * 60_000);
    let old = netqoe_model::window_start_ms(now - 2 * 86_400_000);
    let on_time: Vec<Event> = (0..50)
        .map(|i| make(recent + i * 100, recent + 60_000, 10.0 + i as f64))
        .chain((0..50).map(|i| make(old + i * 100, old + 60_000, 100.0 + i as f64)))
        .collect();
    let agg = stack.spawn(stack.settings());
    stack.publish(&on_time).await;
    stack.wait_total(100, Duration::from_secs(60)).await;
    let before = stack.rows().await;

    // 10 minutes and 2 days after their windows were written
    let late: Vec<Event> = (0..30)
        .map(|i| make(recent + 500 + i, now, 500.0 + i as f64))
        .chain((0..30).map(|i| make(old + 500 + i, now, 900.0 + i as f64)))
        .collect();
    stack.publish(&late).await;
    stack.wait_total(160, Duration::from_secs(60)).await;
    agg.stop().await;

    let after = stack.rows().await;
    for (k, row) in &after {
        assert_eq!(row.count_total, before[k].count_total + 30, "{k:?}");
        assert!(
            row.dns_p95 > before[k].dns_p95,
            "{k:?}: the late slow events move p95"
        );
    }
    let all: Vec<Event> = on_time.into_iter().chain(late).collect();
    assert_rows_match(&stack, &all).await;
}

//! Series identity (one row per client, target, probe kind, address family and minute) and
//! the new-row guard of the window upsert.

use std::time::Duration;

use netqoe_aggregator::store::{apply_at, RowCache};
use netqoe_model::{Event, NetworkContext, ProbeKind, Timings};

use crate::support::Stack;

fn event(kind: ProbeKind, ip_version: Option<u8>, ts_ms: i64, tcp_ms: f64) -> Event {
    let mut e = Event::new(uuid::Uuid::new_v4(), "edge-1", ts_ms, "db.example:5432");
    e.probe_kind = kind;
    e.network_context = ip_version.map(|v| NetworkContext {
        ip_version: Some(v),
        ..Default::default()
    });
    e.timings = Some(Timings {
        tcp_ms: Some(tcp_ms),
        ..Default::default()
    });
    e.recv_ts_ms = Some(ts_ms);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_and_address_family_is_a_series_of_its_own() {
    let stack = Stack::start().await;
    let minute = netqoe_model::window_start_ms(netqoe_model::now_ms()) - 60_000;
    let sent = vec![
        // Without probe_kind or ip_version: the defaults, http over an unsaid family.
        event(ProbeKind::Http, None, minute + 1_000, 10.0),
        event(ProbeKind::Http, None, minute + 2_000, 11.0),
        event(ProbeKind::Tcp, Some(4), minute + 3_000, 20.0),
        event(ProbeKind::Ping, Some(4), minute + 4_000, 30.0),
        event(ProbeKind::Http, Some(4), minute + 5_000, 40.0),
        event(ProbeKind::Http, Some(6), minute + 6_000, 50.0),
        event(ProbeKind::Http, Some(6), minute + 7_000, 52.0),
    ];
    stack.publish(&sent).await;
    let agg = stack.spawn(stack.settings());
    stack
        .wait_total(sent.len() as i64, Duration::from_secs(60))
        .await;
    agg.stop().await;

    let rows: Vec<(String, i16, i64, Option<f64>)> = sqlx::query_as(
        "SELECT probe_kind, ip_version, count_total, tcp_min FROM agg_1m \
         ORDER BY probe_kind, ip_version",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("http".into(), 0, 2, Some(10.0)),
            ("http".into(), 4, 1, Some(40.0)),
            ("http".into(), 6, 2, Some(50.0)),
            ("ping".into(), 4, 1, Some(30.0)),
            ("tcp".into(), 4, 1, Some(20.0)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_assumed_a_new_row_never_overwrites_one_that_exists() {
    let stack = Stack::start().await;
    let minute = netqoe_model::window_start_ms(netqoe_model::now_ms()) - 60_000;
    let first = event(ProbeKind::Tcp, Some(4), minute + 1_000, 10.0);
    let second = event(ProbeKind::Tcp, Some(4), minute + 2_000, 20.0);

    // Instance A writes the window.
    let a = RowCache::new(100);
    apply_at(&stack.pool, &[&first], &a, 5_000).await.unwrap();
    // Force the collision: the row's version is one below the version instance B, which has
    // never seen the window and takes it to be new, gives new rows.
    sqlx::query("UPDATE agg_1m SET version = 1000")
        .execute(&stack.pool)
        .await
        .unwrap();
    let b = RowCache::new(100);
    let applied = apply_at(&stack.pool, &[&second], &b, 1_001).await.unwrap();
    assert_eq!((applied.new, applied.rows), (1, 1));

    let (count, tcp_min, tcp_max, version): (i64, Option<f64>, Option<f64>, i64) =
        sqlx::query_as("SELECT count_total, tcp_min, tcp_max, version FROM agg_1m")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(
        (count, tcp_min, tcp_max),
        (2, Some(10.0), Some(20.0)),
        "both events in the window: the first was not overwritten"
    );
    assert_eq!(version, 1001, "merged onto the row it found");

    // A's cached copy is stale now: its next write must merge onto the row, not its cache.
    let third = event(ProbeKind::Tcp, Some(4), minute + 3_000, 30.0);
    apply_at(&stack.pool, &[&third], &a, 9_000).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count_total FROM agg_1m")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(count, 3);
}

//! The ledgers a transaction reads back: which rows it wrote itself, and pruning of
//! `events_seen`.

use std::time::Duration;

use chrono::Utc;
use netqoe_aggregator::store;
use tokio_util::sync::CancellationToken;

use crate::support::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_is_taken_as_written_here_only_when_its_time_is_the_transactions_too() {
    let stack = Stack::start().await;
    let mut tx = stack.pool.begin().await.unwrap();
    // Both rows carry this transaction's xmin, as an old frozen row can after the 32-bit
    // transaction ids wrap around; only the one stamped with its start time is its own.
    let (mine, old) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    sqlx::query(
        "INSERT INTO events_seen (event_id, client_id, ts_ms, seen_at) VALUES \
         ($1, 'c', 0, now()), ($2, 'c', 0, now() - interval '40 days')",
    )
    .bind(mine)
    .bind(old)
    .execute(&mut *tx)
    .await
    .unwrap();
    let found: Vec<uuid::Uuid> = sqlx::query_scalar(&format!(
        "SELECT event_id FROM events_seen WHERE {}",
        store::SEEN_HERE
    ))
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert_eq!(found, vec![mine]);

    sqlx::query(
        "INSERT INTO agg_1m (client_id, target, window_start_ts, sketch_state, updated_at) \
         VALUES ('c', 'mine', now(), '', now()), ('c', 'old', now(), '', now() - interval '40 days')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let written: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT target FROM agg_1m a WHERE {}",
        store::WRITTEN_HERE
    ))
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert_eq!(written, vec!["mine".to_string()]);
    tx.rollback().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_are_pruned_only_when_both_seen_and_timed_past_retention_and_margin() {
    let stack = Stack::start().await;
    let retention = Duration::from_secs(3_600);
    let now = Utc::now();
    let cutoff = store::seen_cutoff(now, retention);
    assert_eq!(
        now - cutoff,
        chrono::Duration::minutes(70),
        "an hour and the margin"
    );
    let ago = |m: i64| now - chrono::Duration::minutes(m);
    // (seen, ts, pruned): the margin is 10 minutes past the hour
    let rows = [
        (ago(75), ago(75), true),
        (ago(71), ago(80), true),
        (ago(69), ago(80), false), // seen inside the margin
        (ago(80), ago(69), false), // ts (ahead of the clocks) inside it
        (ago(80), ago(-5), false), // stamped 5 minutes in the future when seen
        (ago(61), ago(61), false), // past the retention, not the margin
    ];
    let mut ids = Vec::new();
    for (seen, ts, _) in rows {
        let id = uuid::Uuid::new_v4();
        sqlx::query(
            "INSERT INTO events_seen (event_id, client_id, ts_ms, seen_at) VALUES ($1, 'c', $2, $3)",
        )
        .bind(id)
        .bind(ts.timestamp_millis())
        .bind(seen)
        .execute(&stack.pool)
        .await
        .unwrap();
        ids.push(id);
    }
    let pruned = store::prune_seen(&stack.pool, cutoff, 1).await.unwrap();
    assert_eq!(pruned, 2);
    let left: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT event_id FROM events_seen")
        .fetch_all(&stack.pool)
        .await
        .unwrap();
    for (id, (_, _, gone)) in ids.iter().zip(rows) {
        assert_eq!(!left.contains(id), gone, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seen_retention_shorter_than_the_streams_max_age_refuses_to_start() {
    let stack = Stack::start().await;
    let mut settings = stack.settings();
    settings.seen_retention = Duration::from_secs(86_400);
    let pool = netqoe_db::lazy_pool(&stack.db_url, &Default::default()).unwrap();
    let run = netqoe_aggregator::run(settings, pool, None, CancellationToken::new());
    let error = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("run returns")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("--seen-retention (1day)") && error.contains("QOE_EVENTS (7days)"),
        "{error}"
    );
}

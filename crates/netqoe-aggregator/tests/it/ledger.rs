//! The ledgers a transaction reads back: which rows it wrote itself, and pruning of
//! `events_seen`.

use netqoe_aggregator::store;

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

//! Crashes and outages: kill -9 mid-consume, Postgres stopped under load.

use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::support::{assert_rows_match, events, kill9, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_minus_nine_at_random_points_loses_and_doubles_nothing() {
    let stack = Stack::start().await;
    let sent = events(30_000, 30, 5, 3, 3);
    stack.publish(&sent).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut kills = 0;
    let mut child = stack.spawn_binary();
    while kills < 5 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        kill9(&mut child);
        kills += 1;
        let counted = stack.total().await;
        eprintln!("kill -9 #{kills}: {counted} of 30000 events counted");
        assert!(counted <= 30_000);
        child = stack.spawn_binary();
    }
    stack.wait_total(30_000, Duration::from_secs(180)).await;
    kill9(&mut child);
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM events_seen")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(seen, 30_000);
    assert_rows_match(&stack, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_down_for_twenty_seconds_loses_nothing_and_sends_nothing_to_the_dlq() {
    let mut stack = Stack::start().await;
    let sent = events(6_000, 20, 5, 2, 4);
    let agg = stack.spawn(stack.settings());
    let (first, rest) = sent.split_at(1_000);
    stack.publish(first).await;
    stack.wait_total(1_000, Duration::from_secs(60)).await;
    stack.pool.close().await;

    stack.pg.stop();
    // keep the load coming while Postgres is away
    for chunk in rest.chunks(250) {
        stack.publish(chunk).await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    stack.pg.restart().expect("restart postgres");
    stack.pool = netqoe_db::connect(&stack.db_url, &Default::default())
        .await
        .unwrap();
    stack.wait_total(6_000, Duration::from_secs(120)).await;
    agg.stop().await;

    assert_rows_match(&stack, &sent).await;
    let dlq = stack
        .js
        .get_stream(netqoe_nats::DLQ_STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(dlq, 0, "a database outage never sends events to the DLQ");
}

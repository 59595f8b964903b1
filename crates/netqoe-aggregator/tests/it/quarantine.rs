//! Events Postgres refuses for good (a window whose stored state cannot be decoded, a data
//! error) go to QOE_DLQ with the window and the error, and every other window is merged.

use std::time::{Duration, Instant};

use netqoe_aggregator::{dlq, window::WindowKey};
use netqoe_model::Event;

use crate::support::{events, Stack};

/// `n` events of 4 clients x 2 targets, all in the minute that starts at `minute_ms`.
fn in_minute(n: usize, seed: u64, minute_ms: i64) -> Vec<Event> {
    let mut sent = events(n, 4, 2, 1, seed);
    for (i, e) in sent.iter_mut().enumerate() {
        e.ts_ms = minute_ms + (i as i64 * 97) % 60_000;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_window_and_a_refused_event_go_to_the_dlq_and_the_rest_is_merged() {
    let stack = Stack::start().await;
    let agg = stack.spawn(stack.settings());
    let minute = netqoe_model::window_start_ms(netqoe_model::now_ms()) - 10 * 60_000;
    let first = in_minute(200, 21, minute);
    stack.publish(&first).await;
    stack.wait_total(200, Duration::from_secs(30)).await;

    // One window's stored state becomes unreadable (and newer than any cached copy).
    let (client, target, counted): (String, String, i64) = sqlx::query_as(
        "UPDATE agg_1m SET sketch_state = '\\xff00', version = version + 1 \
         WHERE client_id = 'client-0' AND target = 'https://t0.example/' \
         RETURNING client_id, target, count_total",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    let second = in_minute(400, 22, minute);
    let corrupt: Vec<&Event> = second
        .iter()
        .filter(|e| e.client_id == client && e.target == target)
        .collect();
    // One event of a good window breaks a constraint.
    let refused = second
        .iter()
        .find(|e| e.client_id != client)
        .unwrap()
        .event_id;
    sqlx::query(&format!(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.event_id = '{refused}' THEN \
         RAISE EXCEPTION 'event refused' USING ERRCODE = '23514'; END IF; \
         RETURN NEW; END $$"
    ))
    .execute(&stack.pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON events_seen FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    stack.publish(&second).await;
    let bad = corrupt.len() + 1;
    assert!(
        corrupt.len() > 10,
        "{} events in the corrupt window",
        corrupt.len()
    );
    stack
        .wait_total(600 - bad as i64, Duration::from_secs(30))
        .await;

    let start = Instant::now();
    let letters = loop {
        let letters = dlq::list(&stack.js).await.unwrap();
        if letters.len() >= bad {
            break letters;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} of {bad} dead letters",
            letters.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(letters.len(), bad);
    let key = WindowKey::of(corrupt[0]);
    let window = netqoe_aggregator::quarantine::describe(&key);
    let of_window = letters
        .iter()
        .filter(|l| l.reason.contains(&window) && l.reason.contains("sketch_state"))
        .count();
    assert_eq!(of_window, corrupt.len(), "{:?}", letters[0].reason);
    let other = letters
        .iter()
        .find(|l| !l.reason.contains(&window))
        .unwrap();
    assert!(other.reason.contains("event refused"), "{}", other.reason);
    let body: Event = serde_json::from_slice(&other.payload).unwrap();
    assert_eq!(body.event_id, refused);
    assert_eq!(other.subject, netqoe_nats::event_subject(&body.client_id));

    // The consumer goes on, the corrupt window keeps what it had, nothing refused is seen.
    let third = in_minute(100, 23, minute + 60_000);
    stack.publish(&third).await;
    stack
        .wait_total(700 - bad as i64, Duration::from_secs(30))
        .await;
    agg.stop().await;
    let kept: i64 = sqlx::query_scalar(
        "SELECT count_total FROM agg_1m WHERE client_id = $1 AND target = $2 AND window_start_ts = to_timestamp($3 / 1000.0)",
    )
    .bind(&client)
    .bind(&target)
    .bind(minute)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(kept, counted);
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM events_seen")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(
        seen,
        700 - bad as i64,
        "refused events can be replayed later"
    );
    eprintln!(
        "{} events of the corrupt window and 1 refused event in QOE_DLQ, {} merged",
        corrupt.len(),
        700 - bad
    );
}

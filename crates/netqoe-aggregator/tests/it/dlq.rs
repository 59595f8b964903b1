//! Undecodable and invalid messages end in QOE_DLQ with their reason; `dlq list` and `replay`.

use std::process::Command;
use std::time::{Duration, Instant};

use netqoe_aggregator::dlq;

use crate::support::{events, Stack};

fn dlq_cli(stack: &Stack, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_netqoe-aggregator"))
        .arg("dlq")
        .args(args)
        .env("NATS_URL", stack.nats.url())
        .output()
        .expect("run dlq");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn dlq_len(stack: &Stack) -> u64 {
    stack
        .js
        .get_stream(netqoe_nats::DLQ_STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_messages_go_to_the_dlq_with_their_reason() {
    let stack = Stack::start().await;
    let agg = stack.spawn(stack.settings());
    stack
        .publish_raw("qoe.events.probe-x", b"this is not json")
        .await;
    stack
        .publish_raw(
            "qoe.events.probe-y",
            br#"{"schema_version":"1","event_id":"not-a-uuid","client_id":"probe-y","ts_ms":1,"target":"h:1"}"#,
        )
        .await;
    let good = events(10, 2, 1, 1, 5);
    stack.publish(&good).await;
    stack.wait_total(10, Duration::from_secs(30)).await;
    let start = Instant::now();
    while dlq_len(&stack).await < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "dead letters never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let table = dlq_cli(&stack, &["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].contains("qoe.events.probe-x") && lines[0].contains("invalid JSON"),
        "{table}"
    );
    assert!(lines[0].contains("deliveries=1"), "{table}");
    assert!(
        lines[1].contains("qoe.events.probe-y") && lines[1].contains("event_id: must be a UUID"),
        "{table}"
    );
    let json = dlq_cli(&stack, &["list", "--json"]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["subject"], "qoe.events.probe-x");
    assert!(first["seq"].as_u64().is_some());

    // replayed letters go back to their subject; still invalid, they come back to the DLQ
    let out = dlq_cli(&stack, &["replay", "--all"]);
    assert!(out.contains("replayed 2"), "{out}");
    let start = Instant::now();
    loop {
        let listed = dlq_cli(&stack, &["list"]);
        if listed.lines().count() == 2 && !listed.starts_with(lines[0].split('\t').next().unwrap())
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "replayed letters did not return: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agg.stop().await;
    assert_eq!(stack.total().await, 10, "bad messages never reach agg_1m");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_carry_their_stream_sequence_as_message_id_and_are_stored_once() {
    let stack = Stack::start().await;
    let agg = stack.spawn(stack.settings());
    let seq = stack
        .js
        .publish("qoe.events.probe-z", "not json either".into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    let start = Instant::now();
    while dlq_len(&stack).await < 1 {
        assert!(start.elapsed() < Duration::from_secs(30), "no dead letter");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agg.stop().await;
    let stream = stack.js.get_stream(netqoe_nats::DLQ_STREAM).await.unwrap();
    let first = dlq::list(&stack.js).await.unwrap().remove(0);
    let raw = stream.get_raw_message(first.seq).await.unwrap();
    let id = raw
        .headers
        .get("Nats-Msg-Id")
        .map(|v| v.as_str().to_string());
    assert_eq!(id, Some(dlq::letter_id(seq)));

    // Sent again (a crash between the publish and the ack), the letter is stored once.
    let letter = dlq::Letter {
        subject: first.subject.clone(),
        payload: first.payload.clone(),
        reason: first.reason.clone(),
        deliveries: 2,
        msg_id: Some(dlq::letter_id(seq)),
    };
    let other = dlq::Letter {
        msg_id: Some(dlq::letter_id(seq + 1)),
        ..letter.clone()
    };
    for result in dlq::send_all(&stack.js, &[letter.clone(), letter, other]).await {
        result.unwrap();
    }
    assert_eq!(dlq_len(&stack).await, 2);

    // A DLQ at its limit is seen to push out old letters for new ones.
    let mut config = stream.cached_info().config.clone();
    config.max_messages = 2;
    stack.js.update_stream(config).await.unwrap();
    let room = dlq::Room::of(&stack.js).await.unwrap();
    assert_eq!((room.messages, room.max_messages), (2, 2));
    assert_eq!(room.pushed_out(3, 300), 3);
}

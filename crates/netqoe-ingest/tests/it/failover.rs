//! NATS outages and a full stream: 503 with Retry-After, readiness, recovery without restart.

use std::time::Duration;

use serde_json::json;

use crate::support::{event, Ingest};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_down_means_503_and_not_ready_then_recovers() {
    let mut ingest = Ingest::start().await;
    let (status, _, _) = ingest
        .post(Some("token-a-0123456789"), &event("probe-a1"))
        .await;
    assert_eq!(status, 202);

    let stopped_at = std::time::Instant::now();
    ingest.nats.stop();
    let not_ready_after = stopped_at.elapsed() + ingest.wait_ready(false).await;
    assert!(
        not_ready_after < Duration::from_secs(5),
        "readyz took {not_ready_after:?}"
    );
    let (status, body, headers) = ingest
        .post(Some("token-a-0123456789"), &event("probe-a1"))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable");
    assert!(headers.contains_key("retry-after"));
    assert!(stopped_at.elapsed() < Duration::from_secs(5 + 3));

    ingest.nats.restart().expect("restart nats-server");
    ingest.wait_ready(true).await;
    let e = event("probe-a1");
    let mut status = 0;
    for _ in 0..50 {
        status = ingest.post(Some("token-a-0123456789"), &e).await.0;
        if status == 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 202, "ingest recovers without a restart");
    assert_eq!(
        ingest.stored().await,
        2,
        "the stream survived the restart and holds both events"
    );
    ingest.stop().await;
}

#[tokio::test]
async fn a_full_stream_answers_503() {
    let ingest =
        Ingest::start_with(|s| s.provision_options.events_max_bytes = Some(8 * 1024)).await;
    let mut last = (0, json!(null));
    for _ in 0..100 {
        let batch: Vec<_> = (0..5).map(|_| event("probe-a1")).collect();
        let (status, body, _) = ingest.post(Some("token-a-0123456789"), &json!(batch)).await;
        last = (status, body);
        if status != 202 {
            break;
        }
    }
    assert_eq!(last.0, 503, "{}", last.1);
    assert!(
        last.1["message"].as_str().unwrap().contains("full"),
        "{}",
        last.1
    );
    ingest.stop().await;
}

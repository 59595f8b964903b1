//! Event-count limits: 413 with `max_events` for what can never pass, 429 only for what can
//! pass later, `RateLimit-*` headers, and limits that refuse to start when they cannot work.

use std::num::NonZeroU32;

use clap::Parser;
use serde_json::{json, Value};

use crate::support::{event, Ingest};

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> u64 {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_request_larger_than_the_burst_gets_413_saying_how_many_fit() {
    let ingest = Ingest::start().await;
    // token-slow: rate 1/s, burst 3
    let four: Vec<Value> = (0..4).map(|_| event("x1")).collect();
    let (status, body, headers) = ingest
        .post(Some("token-slow-0123456789"), &json!(four))
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "too_many_events");
    assert_eq!(body["max_events"], 3);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("4 events") && message.contains("this token admits at most 3"),
        "{message}"
    );
    assert!(!headers.contains_key("retry-after"), "413 is not retried");

    // 413 comes before 400: invalid events in an oversized request still get 413
    let mut bad = four.clone();
    bad[0]["http_status"] = json!(42);
    let (status, body, _) = ingest
        .post(Some("token-slow-0123456789"), &json!(bad))
        .await;
    assert_eq!((status, body["max_events"].as_u64()), (413, Some(3)));

    // the refused requests spent nothing: a batch of exactly the burst passes at once
    let (status, body, headers) = ingest
        .post(Some("token-slow-0123456789"), &json!(four[..3].to_vec()))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(header(&headers, "ratelimit-limit"), 3);
    assert_eq!(header(&headers, "ratelimit-remaining"), 0);
    assert!((2..=3).contains(&header(&headers, "ratelimit-reset")));

    // the next event can pass later: 429 with Retry-After and the bucket's state
    let (status, body, headers) = ingest.post(Some("token-slow-0123456789"), &four[3]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(header(&headers, "retry-after"), 1);
    assert_eq!(header(&headers, "ratelimit-limit"), 3);
    assert_eq!(header(&headers, "ratelimit-remaining"), 0);
    assert_eq!(ingest.stored().await, 3);

    // more than --max-batch: 413 with max_events = --max-batch
    let many: Vec<Value> = (0..1001).map(|_| event("x2")).collect();
    let (status, body, _) = ingest
        .post(Some("token-any-0123456789"), &json!(many))
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "too_many_events");
    assert_eq!(body["max_events"], 1000);
    assert!(
        body["message"].as_str().unwrap().contains("--max-batch"),
        "{body}"
    );
    ingest.stop().await;
}

#[tokio::test]
async fn accepted_requests_report_the_token_s_bucket() {
    let ingest = Ingest::start_with(|s| {
        s.rate = NonZeroU32::new(100).unwrap();
        s.burst = NonZeroU32::new(1000).unwrap();
    })
    .await;
    let batch: Vec<Value> = (0..250).map(|_| event("probe-a1")).collect();
    let (status, body, headers) = ingest.post(Some("token-a-0123456789"), &json!(batch)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(header(&headers, "ratelimit-limit"), 1000);
    let remaining = header(&headers, "ratelimit-remaining");
    assert!((750..=760).contains(&remaining), "{remaining}");
    // 250 events at 100/s: full again in 2.5 s, rounded up
    assert_eq!(header(&headers, "ratelimit-reset"), 3);
    ingest.stop().await;
}

#[tokio::test]
async fn ingest_refuses_to_start_when_no_token_admits_a_full_batch() {
    let mut settings = netqoe_ingest::Settings::new("nats://127.0.0.1:1");
    settings.auth = netqoe_ingest::AuthSource::Inline(
        "[[tokens]]\ntoken = \"a-0123456789abcdef\"\nclients = [\"*\"]\nburst = 300\n\
         [[tokens]]\ntoken = \"b-0123456789abcdef\"\nclients = [\"*\"]\nrate = 50\n"
            .into(),
    );
    settings.max_batch = 1000;
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = netqoe_ingest::run(settings, api, None, Default::default())
        .await
        .expect_err("must refuse to start");
    let message = format!("{err:#}");
    for part in [
        "--max-batch 1000",
        "NETQOE_INGEST_MAX_BATCH",
        "largest: 300",
        "--burst 1000",
        "NETQOE_INGEST_BURST",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
}

#[test]
fn the_default_limits_work_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    std::fs::write(
        &path,
        "[[tokens]]\ntoken = \"t-0123456789abcdef\"\nclients = [\"*\"]\n",
    )
    .unwrap();
    let cli =
        netqoe_ingest::Cli::parse_from(["netqoe-ingest", "--tokens-file", path.to_str().unwrap()]);
    assert_eq!(
        (cli.rate.get(), cli.burst.get(), cli.max_batch),
        (200, 1000, 1000)
    );
    let settings = netqoe_ingest::Settings::from_cli(&cli).unwrap();
    netqoe_ingest::state::Auth::load(&settings).expect("the defaults start");
}

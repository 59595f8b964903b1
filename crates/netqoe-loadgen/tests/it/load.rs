//! `netqoe-loadgen load` against a real HTTP server that counts what it receives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::{routing::post, Router};
use netqoe_loadgen::{run, LoadConfig};

async fn counting_server() -> (String, Arc<AtomicU64>) {
    let events = Arc::new(AtomicU64::new(0));
    let seen = events.clone();
    let app = Router::new().route(
        "/api/v1/events",
        post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let n = v.as_array().map_or(1, Vec::len) as u64;
                seen.fetch_add(n, Ordering::Relaxed);
                (axum::http::StatusCode::ACCEPTED, "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, events)
}

#[tokio::test]
async fn sends_exactly_the_requested_events_in_batches() {
    let (url, received) = counting_server().await;
    let cfg = LoadConfig {
        batch: 10,
        connections: 4,
        duration: None,
        total: Some(500),
        ..LoadConfig::new(&url)
    };
    let report = run(cfg, None).await.unwrap();
    assert_eq!(received.load(Ordering::Relaxed), 500);
    assert_eq!(report.events_accepted, 500);
    assert_eq!(report.requests, 50);
    assert_eq!(report.statuses.get(&202), Some(&50));
    assert!(report.latency.p50_ms > 0.0 && report.latency.p99_ms >= report.latency.p50_ms);
}

#[tokio::test]
async fn holds_the_requested_rate() {
    let (url, received) = counting_server().await;
    let cfg = LoadConfig {
        rate: Some(200.0),
        connections: 2,
        duration: Some(Duration::from_secs(2)),
        ..LoadConfig::new(&url)
    };
    let report = run(cfg, None).await.unwrap();
    let n = received.load(Ordering::Relaxed);
    // 200 events/s for 2 s, open loop: about 400, never a flood
    assert!((300..=420).contains(&n), "sent {n} events");
    assert_eq!(report.events_accepted, n);
}

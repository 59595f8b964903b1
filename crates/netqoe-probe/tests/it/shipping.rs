//! Shipping to a real in-process ingest backed by a real nats-server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use netqoe_probe::{ship, spool::Spool};
use tokio_util::sync::CancellationToken;

fn event(client: &str) -> Vec<u8> {
    let ev = netqoe_model::Event::new(
        uuid::Uuid::now_v7(),
        client,
        netqoe_model::now_ms(),
        "https://a/",
    );
    serde_json::to_vec(&ev).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_event_is_dropped_and_counted_and_later_ones_delivered() {
    let nats = netqoe_test_support::NatsServer::start().unwrap();
    let mut settings = netqoe_ingest::Settings::new(&nats.url());
    settings.auth =
        netqoe_ingest::AuthSource::Inline("[[tokens]]\ntoken = \"t\"\nclients = [\"*\"]\n".into());
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/events", api.local_addr().unwrap());
    let stop = CancellationToken::new();
    let ingest = tokio::spawn(netqoe_ingest::run(settings, api, None, stop.clone()));

    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Mutex::new(
        Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap(),
    ));
    let mut bad = serde_json::from_slice::<serde_json::Value>(&event("c1")).unwrap();
    bad["ts_ms"] = serde_json::json!("not a number");
    spool
        .lock()
        .unwrap()
        .append(&[
            event("c1"),
            serde_json::to_vec(&bad).unwrap(),
            event("c1"),
            event("c1"),
        ])
        .unwrap();
    let ship_stop = CancellationToken::new();
    let shipper = tokio::spawn(ship::run(
        spool.clone(),
        url,
        "t".into(),
        Duration::from_millis(200),
        Arc::new(tokio::sync::Notify::new()),
        ship_stop.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while spool.lock().unwrap().pending(10).unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "spool never drained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ship_stop.cancel();
    assert_eq!(
        shipper.await.unwrap(),
        1,
        "exactly the invalid event is dropped"
    );

    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(netqoe_nats::EVENTS_STREAM).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 3);
    stop.cancel();
    let _ = ingest.await;
}

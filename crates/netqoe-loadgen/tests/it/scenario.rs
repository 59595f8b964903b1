//! `netqoe-loadgen scenario` through a real ingest and nats-server: every generated event is
//! stored once, 429 answers are waited out, and sending the same scenario again stores
//! nothing new.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use netqoe_ingest::{AuthSource, Settings};
use netqoe_loadgen::send::{send, SendConfig};
use netqoe_loadgen::{Scenario, ScenarioConfig};
use netqoe_test_support::NatsServer;
use tokio_util::sync::CancellationToken;

const TOKENS: &str = r#"
[[tokens]]
name = "fast"
token = "token-fast-0123456789"
clients = ["client-*"]

[[tokens]]
name = "limited"
token = "token-limited-0123456789"
clients = ["client-*"]
rate = 3000
burst = 400
"#;

async fn stored(js: &jetstream::Context) -> u64 {
    js.get_stream(netqoe_nats::EVENTS_STREAM)
        .await
        .expect("stream")
        .info()
        .await
        .expect("stream info")
        .state
        .messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_event_is_stored_once_through_ingest() {
    let nats = NatsServer::start().expect("start nats-server");
    let mut settings = Settings::new(&nats.url());
    settings.auth = AuthSource::Inline(TOKENS.into());
    settings.rate = NonZeroU32::new(1_000_000).unwrap();
    settings.burst = NonZeroU32::new(1_000_000).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let ingest = tokio::spawn(netqoe_ingest::run(
        settings,
        listener,
        None,
        shutdown.clone(),
    ));
    let http = reqwest::Client::new();
    for _ in 0..300 {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let scenario = Arc::new(
        Scenario::new(ScenarioConfig {
            seed: 9,
            clients: 5,
            period: Duration::from_secs(2 * 3600),
            warmup: Duration::from_secs(30 * 60),
            incidents: 3,
            ..ScenarioConfig::default()
        })
        .unwrap(),
    );
    let expected = scenario.event_count();
    assert!(expected > 5000, "{expected} events");
    let url = format!("{base}/api/v1/events");

    // a token limited to 3000 events/s: ingest answers 429 and the sender waits
    let limited = SendConfig {
        token: Some("token-limited-0123456789".into()),
        connections: 4,
        ..SendConfig::new(&url)
    };
    let report = send(scenario.clone(), limited).await.expect("send");
    assert_eq!(report.events, expected);
    assert_eq!(report.accepted, expected);
    assert_eq!(report.duplicates, 0);
    assert!(report.rate_limited > 0, "{report:?}");

    let client = netqoe_nats::connect(&nats.url(), "netqoe-test", true)
        .await
        .unwrap();
    let js = jetstream::new(client);
    assert_eq!(stored(&js).await, expected);

    // the same scenario again (same seed and end minute, same event ids): nothing new
    let fast = SendConfig {
        token: Some("token-fast-0123456789".into()),
        ..SendConfig::new(&url)
    };
    let again = send(scenario.clone(), fast).await.expect("send again");
    assert_eq!((again.accepted, again.duplicates), (0, expected));
    assert_eq!(stored(&js).await, expected);

    shutdown.cancel();
    ingest.await.unwrap().unwrap();
}

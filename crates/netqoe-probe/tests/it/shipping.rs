//! Shipping to a real in-process ingest backed by a real nats-server: rejected events are
//! dropped, oversized batches are split to what ingest admits, and a caught-up shipper
//! crossing many segment roll-overs sends nothing twice and leaves the spool empty; an ingest
//! behind a private CA is reached only when that CA is given.

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

/// A real ingest on a free port with one token (`tokens` is its [[tokens]] TOML), and its URL.
struct Ingest {
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), netqoe_ingest::Failure>>,
}

async fn ingest(nats_url: &str, tokens: &str, max_batch: Option<usize>) -> Ingest {
    let mut settings = netqoe_ingest::Settings::new(nats_url);
    settings.auth = netqoe_ingest::AuthSource::Inline(tokens.into());
    if let Some(n) = max_batch {
        settings.max_batch = n;
    }
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/events", api.local_addr().unwrap());
    let stop = CancellationToken::new();
    let task = tokio::spawn(netqoe_ingest::run(settings, api, None, stop.clone()));
    Ingest { url, stop, task }
}

impl Ingest {
    async fn halt(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The probe's token: ingest refuses plain tokens shorter than 16 characters.
const TOKEN: &str = "probe-test-token-0123";
const ANY: &str = "[[tokens]]\ntoken = \"probe-test-token-0123\"\nclients = [\"*\"]\n";

fn settings(url: &str, batch_size: usize, max_age: Duration) -> ship::Settings {
    ship::Settings {
        url: url.to_string(),
        ca_file: None,
        token: TOKEN.into(),
        batch_size,
        batch_max_age: max_age,
    }
}

/// Event ids in QOE_EVENTS, in stream order.
async fn stored_ids(nats_url: &str) -> Vec<String> {
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await.unwrap());
    let mut stream = js.get_stream(netqoe_nats::EVENTS_STREAM).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut ids = Vec::new();
    for seq in 1..=last {
        let msg = stream.get_raw_message(seq).await.unwrap();
        let ev: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        ids.push(ev["event_id"].as_str().unwrap().to_string());
    }
    ids
}

async fn drained(spool: &Arc<Mutex<Spool>>, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while spool.lock().unwrap().unshipped() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "spool never drained: {} events left",
            spool.lock().unwrap().unshipped()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_event_is_dropped_and_counted_and_later_ones_delivered() {
    let nats = netqoe_test_support::NatsServer::start().unwrap();
    let ingest = ingest(&nats.url(), ANY, None).await;
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
        settings(&ingest.url, 200, Duration::from_millis(200)),
        Arc::new(tokio::sync::Notify::new()),
        ship_stop.clone(),
    ));
    drained(&spool, Duration::from_secs(20)).await;
    ship_stop.cancel();
    assert_eq!(
        shipper.await.unwrap(),
        1,
        "exactly the invalid event is dropped"
    );
    assert_eq!(stored_ids(&nats.url()).await.len(), 3);
    ingest.halt().await;
}

/// Batches larger than ingest admits (its --max-batch, or the token's burst) are split to
/// what fits instead of being retried as they are for ever; nothing is dropped or doubled.
#[tokio::test(flavor = "multi_thread")]
async fn batches_over_ingest_limits_are_split_to_what_fits() {
    let cases = [
        ("max-batch 5", ANY.to_string(), Some(5)),
        (
            // another token's burst admits a full --max-batch, so ingest starts
            "burst 7",
            "[[tokens]]\ntoken = \"big-batch-token-0123\"\nclients = [\"*\"]\nrate = 1000\nburst = 1000\n\n\
             [[tokens]]\ntoken = \"probe-test-token-0123\"\nclients = [\"*\"]\nrate = 1000\nburst = 7\n"
                .to_string(),
            None,
        ),
    ];
    for (case, tokens, max_batch) in cases {
        let nats = netqoe_test_support::NatsServer::start().unwrap();
        let ingest = ingest(&nats.url(), &tokens, max_batch).await;
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Mutex::new(
            Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap(),
        ));
        let events: Vec<Vec<u8>> = (0..23).map(|_| event("c1")).collect();
        spool.lock().unwrap().append(&events).unwrap();
        let ship_stop = CancellationToken::new();
        let shipper = tokio::spawn(ship::run(
            spool.clone(),
            settings(&ingest.url, 20, Duration::from_millis(50)),
            Arc::new(tokio::sync::Notify::new()),
            ship_stop.clone(),
        ));
        drained(&spool, Duration::from_secs(30)).await;
        ship_stop.cancel();
        assert_eq!(shipper.await.unwrap(), 0, "{case}: nothing dropped");
        let ids = stored_ids(&nats.url()).await;
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!((ids.len(), unique.len()), (23, 23), "{case}");
        ingest.halt().await;
    }
}

/// The shipper keeps up with a slow trickle of events (as a probe with few targets does)
/// while the spool rolls over tiny segments: every event reaches the stream exactly once, and
/// the spool ends empty with every rolled segment deleted.
#[tokio::test(flavor = "multi_thread")]
async fn caught_up_shipper_across_segment_roll_overs_sends_nothing_twice() {
    let nats = netqoe_test_support::NatsServer::start().unwrap();
    let ingest = ingest(&nats.url(), ANY, None).await;
    let dir = tempfile::tempdir().unwrap();
    // about three events per segment
    let spool = Arc::new(Mutex::new(Spool::open(dir.path(), 600, 1 << 30).unwrap()));
    let notify = Arc::new(tokio::sync::Notify::new());
    let ship_stop = CancellationToken::new();
    let shipper = tokio::spawn(ship::run(
        spool.clone(),
        settings(&ingest.url, 200, Duration::from_millis(20)),
        notify.clone(),
        ship_stop.clone(),
    ));
    let n = 40;
    for _ in 0..n {
        spool.lock().unwrap().append(&[event("c1")]).unwrap();
        notify.notify_one();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    drained(&spool, Duration::from_secs(20)).await;
    // a few more loops of the shipper: nothing is sent again
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ship_stop.cancel();
    assert_eq!(shipper.await.unwrap(), 0);
    let ids = stored_ids(&nats.url()).await;
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (n, n), "each event stored once");
    let (rolled, deleted) = {
        let s = spool.lock().unwrap();
        (s.rolled, s.shipped_segments)
    };
    assert!(rolled >= 5, "only {rolled} roll-overs");
    assert_eq!(
        deleted, rolled,
        "every rolled segment was deleted once shipped"
    );
    drop(spool);
    let mut reopened = Spool::open(dir.path(), 600, 1 << 30).unwrap();
    assert!(reopened.pending(10).unwrap().is_none());
    assert!(
        reopened.segments().unwrap().is_empty(),
        "the spool ends empty"
    );
    ingest.halt().await;
}

/// An ingest behind a private CA (the lab's HTTPS server, answering 202): without `ca_file`
/// the TLS handshake fails and the events stay spooled; with the CA's PEM they are delivered.
#[tokio::test(flavor = "multi_thread")]
async fn private_ingest_ca_is_trusted_only_when_given() {
    let certs = tempfile::tempdir().unwrap();
    let lab_stop = CancellationToken::new();
    let cfg = netqoe_lab::LabConfig::loopback(certs.path().to_path_buf());
    let lab = netqoe_lab::start(cfg, lab_stop.clone()).await.unwrap();
    let url = format!("https://localhost:{}/status/202", lab.https_addr().port());
    for ca_file in [None, Some(lab.ca_cert_path().to_path_buf())] {
        let trusted = ca_file.is_some();
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Mutex::new(
            Spool::open(dir.path(), 1 << 20, 1 << 30).unwrap(),
        ));
        spool
            .lock()
            .unwrap()
            .append(&[event("c1"), event("c1")])
            .unwrap();
        let mut settings = settings(&url, 200, Duration::from_millis(20));
        settings.ca_file = ca_file;
        assert!(ship::http_client(&settings).is_ok());
        let ship_stop = CancellationToken::new();
        let shipper = tokio::spawn(ship::run(
            spool.clone(),
            settings,
            Arc::new(tokio::sync::Notify::new()),
            ship_stop.clone(),
        ));
        if trusted {
            drained(&spool, Duration::from_secs(10)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert_eq!(
                spool.lock().unwrap().unshipped(),
                2,
                "an untrusted certificate delivers nothing"
            );
        }
        ship_stop.cancel();
        assert_eq!(shipper.await.unwrap(), 0, "nothing dropped");
    }
    lab_stop.cancel();
}

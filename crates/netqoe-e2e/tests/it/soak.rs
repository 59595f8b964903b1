//! A probe whose shipper is caught up, across many spool segment roll-overs and a 30 s ingest
//! outage, with ingest's default token limits: every measurement reaches the stream once.

use std::time::Duration;

use netqoe_e2e::{scrape, Lab, Pipeline, Probe, TOKEN};

fn config(p: &Pipeline, lab: &Lab, spool: &str, interval: &str) -> String {
    format!(
        r#"
ingest_url = "{ingest}"
token = "{TOKEN}"
client_id = "e2e-soak-1"
interval = "{interval}"
timeout = "5s"
spool_dir = "{spool}"
# About five events a segment: a roll-over every couple of seconds.
spool_segment_bytes = 4096

[[targets]]
url = "http://www.lab.netqoe:{http}/"
kind = "http"
resolver = "{dns}"

[[targets]]
host = "127.0.0.1"
port = {http}
kind = "tcp"
"#,
        ingest = p.ingest_url(),
        http = lab.http_port,
        dns = lab.dns,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_probe_delivers_everything_once_across_roll_overs_and_an_outage() {
    let mut p = Pipeline::start("soak").await.unwrap();
    let lab = Lab::start(p.dir.path(), false).unwrap();
    let spool = p.dir.path().join("spool").display().to_string();
    let probe = Probe::start(p.dir.path(), &config(&p, &lab, &spool, "500ms")).unwrap();

    tokio::time::sleep(Duration::from_secs(25)).await;
    let rolled_before = probe
        .metric("netqoe_probe_spool_segments_rolled_total", &[])
        .unwrap();
    assert!(
        rolled_before >= 5.0,
        "{rolled_before} roll-overs while caught up"
    );
    let duplicates_before = scrape(
        p.ingest_metrics,
        "netqoe_ingest_events_duplicate_total",
        &[],
    )
    .unwrap();

    // Ingest goes away for 30 s; the probe keeps measuring into its spool.
    p.ingest.stop(Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(30)).await;
    let pending = probe
        .metric("netqoe_probe_spool_pending_events", &[])
        .unwrap();
    assert!(pending > 20.0, "{pending} events spooled during the outage");
    p.ingest.restart().unwrap();
    p.ingest
        .wait_ready(p.ingest_metrics, "/readyz", Duration::from_secs(30))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await;

    probe.reload(&config(&p, &lab, &spool, "24h")).unwrap();
    let taken = probe
        .wait_drained(Duration::from_secs(3), Duration::from_secs(90))
        .await
        .unwrap();
    let rolled = probe
        .metric("netqoe_probe_spool_segments_rolled_total", &[])
        .unwrap();
    let stream = p.stream_messages().await.unwrap();
    let duplicates_after = scrape(
        p.ingest_metrics,
        "netqoe_ingest_events_duplicate_total",
        &[],
    )
    .unwrap();
    netqoe_e2e::report(&format!(
        "soak: {taken} measurements, {stream} stream messages, {rolled} segments rolled, \
         duplicates {duplicates_before} + {duplicates_after}"
    ));
    assert_eq!(stream, taken as u64, "every measurement in the stream once");
    assert_eq!(
        duplicates_before + duplicates_after,
        0.0,
        "nothing sent twice"
    );
    assert_eq!(
        probe
            .metric("netqoe_probe_spool_pending_events", &[])
            .unwrap(),
        0.0,
        "the spool ends empty"
    );
    assert_eq!(
        probe
            .metric("netqoe_probe_events_rejected_total", &[])
            .unwrap(),
        0.0
    );
    p.wait_merged(taken as i64, Duration::from_secs(60))
        .await
        .unwrap();
}

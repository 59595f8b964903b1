//! A probe measuring every kind of target against netqoe-lab for 30 s: every measurement its
//! `/metrics` counts lands in `agg_1m` exactly once, each in a series of its own.

use std::time::Duration;

use netqoe_e2e::{has_ipv6_loopback, Lab, Pipeline, Probe, TOKEN};

fn config(p: &Pipeline, lab: &Lab, spool: &str, interval: &str, ipv6: bool) -> String {
    let (http, https, dns, ca) = (
        lab.http_port,
        lab.https_port,
        lab.dns,
        lab.ca_file.display(),
    );
    let mut c = format!(
        r#"
ingest_url = "{ingest}"
token = "{TOKEN}"
client_id = "e2e-edge-1"
interval = "{interval}"
timeout = "5s"
spool_dir = "{spool}"

[[targets]]
url = "http://www.lab.netqoe:{http}/"
kind = "http"
resolver = "{dns}"
throughput_url = "http://files.lab.netqoe:{http}/bytes/200000"

[[targets]]
url = "https://www.lab.netqoe:{https}/bytes/20000"
kind = "http"
resolver = "{dns}"
ca_file = "{ca}"

[[targets]]
host = "www.lab.netqoe"
kind = "dns"
resolver = "{dns}"

[[targets]]
host = "127.0.0.1"
port = {http}
kind = "tcp"

[[targets]]
host = "127.0.0.1"
port = {http}
kind = "ping"
count = 3
"#,
        ingest = p.ingest_url(),
    );
    if ipv6 {
        c.push_str(&format!(
            r#"
[[targets]]
url = "http://dual.lab.netqoe:{http}/"
kind = "http"
resolver = "{dns}"
ip_version = "both"
"#
        ));
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_measurement_of_every_kind_lands_once_in_its_own_series() {
    let p = Pipeline::start("pipeline").await.unwrap();
    let ipv6 = has_ipv6_loopback();
    if !ipv6 {
        netqoe_e2e::report(
            "no IPv6 loopback on this host: the ip_version = \"both\" target is skipped",
        );
    }
    let lab = Lab::start(p.dir.path(), ipv6).unwrap();
    let spool = p.dir.path().join("spool").display().to_string();
    let probe = Probe::start(p.dir.path(), &config(&p, &lab, &spool, "1s", ipv6)).unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    // Stop measuring (every target once a day from a random offset) and let the spool drain.
    probe
        .reload(&config(&p, &lab, &spool, "24h", ipv6))
        .unwrap();
    let taken = probe
        .wait_drained(Duration::from_secs(3), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(taken >= 150.0, "{taken} measurements in 30 s of 5+ targets");
    assert_eq!(
        probe
            .metric("netqoe_probe_events_rejected_total", &[])
            .unwrap(),
        0.0,
        "ingest rejected none of the probe's events"
    );
    assert_eq!(
        netqoe_e2e::scrape(p.ingest_metrics, "netqoe_ingest_events_rejected_total", &[]).unwrap(),
        0.0
    );
    p.wait_merged(taken as i64, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(p.stream_messages().await.unwrap(), taken as u64);

    // Each kind's measurements are in that kind's series, nothing merged across kinds.
    for kind in ["http", "dns", "tcp", "ping"] {
        let measured = probe
            .metric(
                "netqoe_probe_measurements_total",
                &[&format!("kind=\"{kind}\"")],
            )
            .unwrap();
        let stored: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(count_total), 0)::bigint FROM agg_1m WHERE probe_kind = $1",
        )
        .bind(kind)
        .fetch_one(&p.pool)
        .await
        .unwrap();
        assert!(measured > 0.0, "{kind} was measured");
        assert_eq!(stored as f64, measured, "{kind} events in agg_1m");
    }
    for kind in ["http", "dns", "tcp", "ping"] {
        let n = probe
            .metric(
                "netqoe_probe_measurements_total",
                &[&format!("kind=\"{kind}\"")],
            )
            .unwrap();
        netqoe_e2e::report(&format!("pipeline: {kind} measurements {n}"));
    }
    let series: Vec<(String, String, i16, i64, i64)> = sqlx::query_as(
        "SELECT target, probe_kind, ip_version, count(*), sum(count_total)::bigint \
         FROM agg_1m GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .fetch_all(&p.pool)
    .await
    .unwrap();
    netqoe_e2e::report(&format!(
        "pipeline: {taken} measurements, series (target, kind, ip_version, windows, events):"
    ));
    for s in &series {
        netqoe_e2e::report(&format!("  {s:?}"));
    }
    let has = |target: &str, kind: &str, ip: i16| {
        series
            .iter()
            .any(|(t, k, v, _, _)| t == target && k == kind && *v == ip)
    };
    let tcp_target = format!("127.0.0.1:{}", lab.http_port);
    assert!(has(&tcp_target, "tcp", 4), "tcp series");
    assert!(
        has(&tcp_target, "ping", 4),
        "ping of the same host:port is its own series"
    );
    assert!(
        has("www.lab.netqoe", "dns", 4),
        "dns target is the queried name"
    );
    let expected = if ipv6 { 7 } else { 5 };
    assert_eq!(
        series.len(),
        expected,
        "one series per target, kind and family"
    );
    if ipv6 {
        let dual = format!("http://dual.lab.netqoe:{}/", lab.http_port);
        assert!(
            has(&dual, "http", 4) && has(&dual, "http", 6),
            "both families"
        );
    }
    // Throughput of the first target came from its throughput_url on a connection of its own.
    let tput: Option<f64> = sqlx::query_scalar(
        "SELECT max(throughput_p50) FROM agg_1m WHERE target = $1 AND probe_kind = 'http'",
    )
    .bind(format!("http://www.lab.netqoe:{}/", lab.http_port))
    .fetch_one(&p.pool)
    .await
    .unwrap();
    assert!(
        tput.is_some_and(|t| t > 0.0),
        "throughput measured: {tput:?}"
    );
    let failed: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(count_error), 0)::bigint FROM agg_1m")
            .fetch_one(&p.pool)
            .await
            .unwrap();
    assert_eq!(failed, 0, "the lab without faults fails nothing");
}

//! Every metric the alert rules and dashboards name is exported by a running binary, and
//! every metric a running binary exports is documented in docs/metrics.md.

use std::collections::BTreeSet;
use std::time::Duration;

use netqoe_deploy_check::{documented_metrics, is_documented, metric_names_in, read};
use netqoe_e2e::{loopback, Lab, Pipeline, Probe, TOKEN};
use netqoe_test_support::{http_get, Service};

/// The metric names of an exposition: its samples and its `# TYPE` lines.
fn exported(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if l.starts_with('#') => None,
            None => l.split(['{', ' ']).next(),
        })
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_dashboards_name_only_metrics_the_binaries_export() {
    let p = Pipeline::start("metrics").await.unwrap();
    let lab = Lab::start(p.dir.path(), false).unwrap();
    let spool = p.dir.path().join("spool").display().to_string();
    let probe = Probe::start(
        p.dir.path(),
        &format!(
            r#"
ingest_url = "{ingest}"
token = "{TOKEN}"
client_id = "e2e-metrics-1"
interval = "1s"
spool_dir = "{spool}"

[[targets]]
url = "http://www.lab.netqoe:{http}/"
kind = "http"
resolver = "{dns}"

[[targets]]
host = "www.lab.netqoe"
kind = "dns"
resolver = "{dns}"
"#,
            ingest = p.ingest_url(),
            http = lab.http_port,
            dns = lab.dns,
        ),
    )
    .unwrap();
    let diagnoser_metrics = loopback();
    let mut diagnoser = Service::spawn(
        "netqoe-diagnoser",
        [
            "run".to_string(),
            "--every".to_string(),
            "2s".to_string(),
            "--metrics-listen".to_string(),
            diagnoser_metrics.to_string(),
        ],
        &[("DATABASE_URL", p.db_url.as_str())],
        &p.dir.path().join("diagnoser.log"),
    )
    .unwrap();
    diagnoser
        .wait_ready(diagnoser_metrics, "/metrics", Duration::from_secs(30))
        .unwrap();
    let taken = probe
        .wait_drained(Duration::ZERO, Duration::from_secs(60))
        .await
        .unwrap();
    p.wait_merged(taken as i64, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;

    let mut names = BTreeSet::new();
    for (what, addr) in [
        ("ingest", p.ingest_metrics),
        ("aggregator", p.aggregator_metrics),
        ("probe", probe.metrics),
        ("diagnoser", diagnoser_metrics),
    ] {
        let (status, body) = http_get(addr, "/metrics").unwrap();
        assert_eq!(status, 200, "{what} /metrics");
        let got = exported(&body);
        assert!(
            got.iter()
                .any(|n| n.starts_with(&format!("netqoe_{what}_"))),
            "{what} exports its metrics: {got:?}"
        );
        names.extend(got);
    }
    names.retain(|n| n.starts_with("netqoe_"));

    let mut used = metric_names_in(&read("deploy/prometheus/rules/netqoe-alerts.yml").unwrap());
    for dashboard in ["netqoe-pipeline.json", "netqoe-qoe.json"] {
        used.extend(metric_names_in(
            &read(format!("deploy/grafana/dashboards/{dashboard}")).unwrap(),
        ));
    }
    assert!(used.len() >= 20, "rules and dashboards name {used:?}");
    let missing: Vec<_> = used.iter().filter(|m| !is_documented(m, &names)).collect();
    assert!(
        missing.is_empty(),
        "rules or dashboards name metrics no running binary exports: {missing:?}\nexported: {names:?}"
    );

    let documented = documented_metrics().unwrap();
    let undocumented: Vec<_> = names
        .iter()
        .filter(|m| !is_documented(m, &documented))
        .filter(|m| !m.starts_with("netqoe_lab_"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exported but missing from docs/metrics.md: {undocumented:?}"
    );
}

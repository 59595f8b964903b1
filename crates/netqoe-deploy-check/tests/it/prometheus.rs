//! deploy/prometheus: the scrape config and the alert rules pass promtool, the rules' unit
//! tests pass, and every metric a rule names is documented in docs/metrics.md and declared
//! in a crate's metrics.rs.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{ensure, Result};
use netqoe_deploy_check::{
    ensure_metrics_exist, metric_names_in, read, repo_root, run_ok, yaml_documents,
};

fn promtool(args: &[&str]) -> Result<String> {
    let out = run_ok(
        Command::new("promtool")
            .args(args)
            .current_dir(repo_root().join("deploy/prometheus")),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn promtool_accepts_the_config_and_the_rules() -> Result<()> {
    let config = promtool(&["check", "config", "prometheus.yml"])?;
    ensure!(
        config.contains("is valid prometheus config file syntax"),
        "{config}"
    );
    let rules = promtool(&["check", "rules", "rules/netqoe-alerts.yml"])?;
    ensure!(rules.contains("SUCCESS"), "{rules}");
    Ok(())
}

#[test]
fn the_alert_unit_tests_pass() -> Result<()> {
    let out = promtool(&["test", "rules", "tests/netqoe-alerts.test.yml"])?;
    ensure!(out.contains("SUCCESS"), "{out}");
    Ok(())
}

#[test]
fn every_metric_in_the_rules_exists() -> Result<()> {
    let used = metric_names_in(&read("deploy/prometheus/rules/netqoe-alerts.yml")?);
    ensure!(used.len() >= 20, "the rules name only {used:?}");
    ensure_metrics_exist("rules", &used)
}

#[test]
fn the_rules_select_the_jobs_the_scrape_configs_define() -> Result<()> {
    let config = &yaml_documents(&read("deploy/prometheus/prometheus.yml")?)?[0];
    let jobs: BTreeSet<&str> = config["scrape_configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["job_name"].as_str())
        .collect();
    for b in netqoe_deploy_check::BINARIES {
        ensure!(
            jobs.contains(format!("netqoe-{b}").as_str()),
            "no scrape job netqoe-{b}"
        );
    }
    let rules = read("deploy/prometheus/rules/netqoe-alerts.yml")?;
    for part in rules.split("job=\"").skip(1) {
        let job = part.split('"').next().unwrap_or_default();
        ensure!(
            jobs.contains(job),
            "a rule selects job {job}, which no scrape config defines"
        );
    }
    // The Kubernetes job names each pod's job after its binary, as the static jobs are named.
    let k8s = &yaml_documents(&read("deploy/prometheus/kubernetes-pods.yml")?)?[0];
    let relabels = k8s["scrape_configs"][0]["relabel_configs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        relabels.iter().any(|r| r["target_label"] == "job"
            && r["source_labels"][0] == "__meta_kubernetes_pod_label_app_kubernetes_io_name"),
        "kubernetes-pods.yml must set job from app.kubernetes.io/name"
    );
    Ok(())
}

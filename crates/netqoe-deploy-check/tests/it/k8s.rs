//! deploy/k8s: the base, the NATS example and the example overlay render with
//! `kubectl kustomize`, every object validates offline against the Kubernetes schemas,
//! and the workloads hold what operators rely on (probes, migration, replicas 3, settings
//! each binary reads, references that resolve, scrape annotations).

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use netqoe_deploy_check::{all_env_vars, repo_root, run, run_ok, yaml_documents, LIBRARY_VARS};
use serde_json::Value;

const RENDERED: [&str; 3] = [
    "deploy/k8s/base",
    "deploy/k8s/nats",
    "deploy/k8s/overlays/example",
];

fn render(dir: &str) -> Result<String> {
    let out = run_ok(
        Command::new("kubectl")
            .arg("kustomize")
            .arg(repo_root().join(dir)),
    )?;
    Ok(String::from_utf8(out.stdout)?)
}

/// Validates YAML streams in one run of the validator (it takes seconds to start).
fn validate(yamls: &[String]) -> Result<(bool, String)> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new("kubernetes-validate");
    cmd.args(["--strict", "--no-warn"]);
    for (i, yaml) in yamls.iter().enumerate() {
        let path = dir.path().join(format!("{i}.yaml"));
        std::fs::write(&path, yaml)?;
        cmd.arg(path);
    }
    let out = run(&mut cmd)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

#[test]
fn every_rendered_object_validates_against_the_kubernetes_schemas() -> Result<()> {
    let mut yamls = Vec::new();
    let mut objects = 0;
    for dir in RENDERED {
        let yaml = render(dir)?;
        let n = yaml_documents(&yaml)?.len();
        ensure!(n > 0, "{dir} renders nothing");
        objects += n;
        yamls.push(yaml);
    }
    let (ok, text) = validate(&yamls)?;
    let passed = text
        .lines()
        .filter(|l| l.contains(" passed for resource "))
        .count();
    ensure!(
        ok && passed == objects,
        "{passed} of {objects} rendered objects passed:\n{text}"
    );
    Ok(())
}

#[test]
fn the_validator_rejects_a_misspelt_field() -> Result<()> {
    // Guards the test above: kubernetes-validate must really check fields offline.
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: x, image: x}]}\n";
    let (ok, text) = validate(&[bad.to_string()])?;
    ensure!(
        !ok && text.contains("replica"),
        "a misspelt field passed:\n{text}"
    );
    Ok(())
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .with_context(|| format!("no {kind} {name}"))
}

fn pod_spec(o: &Value) -> &Value {
    match o["kind"].as_str() {
        Some("CronJob") => &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &o["spec"]["template"]["spec"],
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn the_example_overlay_deploys_every_part_as_operators_expect() -> Result<()> {
    let objects = yaml_documents(&render("deploy/k8s/overlays/example")?)?;

    let ingest = find(&objects, "Deployment", "netqoe-ingest")?;
    let c = &pod_spec(ingest)["containers"][0];
    ensure!(
        c["readinessProbe"]["httpGet"]["path"] == "/readyz",
        "ingest readiness is not /readyz"
    );
    ensure!(
        c["livenessProbe"]["httpGet"]["path"] == "/healthz",
        "ingest liveness is not /healthz"
    );
    find(&objects, "Service", "netqoe-ingest")?;
    let hpa = find(&objects, "HorizontalPodAutoscaler", "netqoe-ingest")?;
    ensure!(hpa["spec"]["scaleTargetRef"]["name"] == "netqoe-ingest");
    find(&objects, "PodDisruptionBudget", "netqoe-ingest")?;

    let agg = find(&objects, "Deployment", "netqoe-aggregator")?;
    let init = &pod_spec(agg)["initContainers"];
    ensure!(
        strs(&init[0]["command"]) == ["netqoe-aggregator", "migrate"],
        "the aggregator must migrate before it starts: {init}"
    );
    ensure!(pod_spec(agg)["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz");

    let probe = find(&objects, "DaemonSet", "netqoe-probe")?;
    ensure!(strs(&pod_spec(probe)["containers"][0]["command"])[0] == "netqoe-probe");
    let cron = find(&objects, "CronJob", "netqoe-diagnoser")?;
    ensure!(strs(&pod_spec(cron)["containers"][0]["command"]) == ["netqoe-diagnoser", "run"]);
    ensure!(cron["spec"]["concurrencyPolicy"] == "Forbid");

    let nats = find(&objects, "StatefulSet", "nats")?;
    ensure!(nats["spec"]["replicas"] == 3, "NATS must run 3 servers");
    for (cm, key) in [
        ("netqoe-ingest", "NETQOE_INGEST_STREAM_REPLICAS"),
        ("netqoe-aggregator", "NETQOE_AGGREGATOR_STREAM_REPLICAS"),
    ] {
        let found = objects.iter().any(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(cm))
                && o["data"][key] == "3"
        });
        ensure!(
            found,
            "{key}=3 missing: the streams would not be kept on three servers"
        );
    }
    Ok(())
}

#[test]
fn containers_get_only_settings_their_binary_reads_and_references_resolve() -> Result<()> {
    let every = all_env_vars()?;
    let known: BTreeSet<&String> = every.values().flatten().collect();
    for dir in RENDERED {
        let objects = yaml_documents(&render(dir)?)?;
        let exists = |kind: &str, name: &str| {
            objects
                .iter()
                .any(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        };
        for o in objects.iter().filter(|o| !pod_spec(o).is_null()) {
            let spec = pod_spec(o);
            let what = format!("{dir}: {} {}", o["kind"], o["metadata"]["name"]);
            for vol in spec["volumes"].as_array().into_iter().flatten() {
                if let Some(n) = vol["configMap"]["name"].as_str() {
                    ensure!(exists("ConfigMap", n), "{what}: ConfigMap {n} missing");
                }
                if let Some(n) = vol["secret"]["secretName"].as_str() {
                    ensure!(exists("Secret", n), "{what}: Secret {n} missing");
                }
            }
            let containers = spec["containers"].as_array().into_iter().flatten();
            let inits = spec["initContainers"].as_array().into_iter().flatten();
            for c in containers.chain(inits) {
                let program = strs(&c["command"])
                    .first()
                    .copied()
                    .unwrap_or_default()
                    .to_string();
                let Some(binary) = program.strip_prefix("netqoe-") else {
                    continue;
                };
                let own = every
                    .get(binary)
                    .with_context(|| format!("{what}: unknown binary {program}"))?;
                let mut names: Vec<String> = Vec::new();
                for src in c["envFrom"].as_array().into_iter().flatten() {
                    for (kind, key) in [("ConfigMap", "configMapRef"), ("Secret", "secretRef")] {
                        let Some(n) = src[key]["name"].as_str() else {
                            continue;
                        };
                        let obj = objects
                            .iter()
                            .find(|o| o["kind"] == kind && o["metadata"]["name"] == n)
                            .with_context(|| format!("{what}: {kind} {n} missing"))?;
                        let data = obj["data"].as_object().or(obj["stringData"].as_object());
                        names.extend(data.into_iter().flat_map(|d| d.keys().cloned()));
                    }
                }
                names.extend(
                    c["env"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e["name"].as_str().map(str::to_string)),
                );
                for name in names {
                    let shared = !name.starts_with("NETQOE_") || name == "NETQOE_LOG_FORMAT";
                    let ok = own.contains(&name)
                        || LIBRARY_VARS.contains(&name.as_str())
                        || (shared && known.contains(&name));
                    ensure!(
                        ok,
                        "{what}: {program} is given {name}, which it does not read"
                    );
                }
            }
            let annotations = &spec_template_metadata(o)["annotations"];
            if let Some(port) = annotations["prometheus.io/port"].as_str() {
                ensure!(
                    annotations["prometheus.io/scrape"] == "true",
                    "{what}: scrape annotation"
                );
                let declared = spec["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                    .any(|p| {
                        p["containerPort"]
                            .as_u64()
                            .map(|n| n.to_string())
                            .as_deref()
                            == Some(port)
                    });
                ensure!(
                    declared,
                    "{what}: prometheus.io/port {port} is no container port"
                );
            }
        }
    }
    Ok(())
}

fn spec_template_metadata(o: &Value) -> &Value {
    match o["kind"].as_str() {
        Some("CronJob") => &o["spec"]["jobTemplate"]["spec"]["template"]["metadata"],
        _ => &o["spec"]["template"]["metadata"],
    }
}

#[test]
fn every_long_running_netqoe_workload_is_scraped() -> Result<()> {
    let objects = yaml_documents(&render("deploy/k8s/base")?)?;
    for (kind, name) in [
        ("Deployment", "netqoe-ingest"),
        ("Deployment", "netqoe-aggregator"),
        ("DaemonSet", "netqoe-probe"),
    ] {
        let o = find(&objects, kind, name)?;
        ensure!(
            spec_template_metadata(o)["annotations"]["prometheus.io/scrape"] == "true",
            "{kind} {name} is not scraped"
        );
    }
    Ok(())
}

#[test]
fn every_shipped_probe_config_parses() -> Result<()> {
    // The configs name a token_file mounted from a Secret; point it at a temporary file.
    let token = tempfile::NamedTempFile::new()?;
    std::fs::write(token.path(), "t0ken")?;
    for file in [
        "deploy/probe.example.toml",
        "deploy/docker/probe.toml",
        "deploy/k8s/base/config/probe.toml",
        "deploy/k8s/overlays/example/probe.toml",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file))?;
        let path = token.path().display().to_string();
        let text = text
            .replace("/etc/netqoe/token/token", &path)
            .replace("/etc/netqoe/probe.token", &path);
        let config =
            netqoe_probe::config::parse(&text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        ensure!(!config.targets.is_empty(), "{file} has no target");
    }
    Ok(())
}

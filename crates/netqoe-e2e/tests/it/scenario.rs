//! The diagnoser judged on scenarios: a day of 40 clients × 6 targets with injected incidents of
//! every label and scope, sent by `netqoe-loadgen scenario` through the real ingest and
//! aggregator, diagnosed by `netqoe-diagnoser run` and scored by `netqoe-diagnoser evaluate`
//! against the ground truth at the acceptance thresholds, on three seeds.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use netqoe_e2e::{report, Pipeline, TOKEN};
use netqoe_test_support::product_binary;

/// The scenario sends a day of history at once: no rate limit gets in its way.
const UNLIMITED: &str = "rate = 1000000\nburst = 1000\n";

/// Runs product binary `name` to completion, its output captured.
fn tool(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<Output> {
    let mut cmd = Command::new(product_binary(name)?);
    cmd.args(args).env("RUST_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().with_context(|| format!("run {name}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One seed end to end; returns the evaluation table, or fails with it.
async fn seed(seed: u64) -> Result<String> {
    let started = Instant::now();
    let p = Pipeline::start_with_token_limits(&format!("scenario-{seed}"), UNLIMITED).await?;
    let truth = p.dir.path().join("truth.json");
    let truth_s = truth.display().to_string();
    let seed_s = seed.to_string();
    let url = p.ingest_url();
    let sent = tool(
        "netqoe-loadgen",
        &[
            "scenario",
            "--seed",
            &seed_s,
            "--ingest-url",
            &url,
            "--truth",
            &truth_s,
        ],
        &[("NETQOE_LOADGEN_TOKEN", TOKEN)],
    )?;
    if !sent.status.success() {
        bail!("netqoe-loadgen scenario failed:\n{}", text(&sent));
    }
    let summary = text(&sent);
    let t_sent = started.elapsed();
    let events = p.stream_messages().await? as i64;
    p.wait_merged(events, Duration::from_secs(600)).await?;
    let t_merged = started.elapsed();

    let db = [("DATABASE_URL", p.db_url.as_str())];
    let run = tool("netqoe-diagnoser", &["run"], &db)?;
    if !run.status.success() {
        bail!("netqoe-diagnoser run failed:\n{}", text(&run));
    }
    let t_run = started.elapsed();
    let eval = tool(
        "netqoe-diagnoser",
        &[
            "evaluate",
            "--truth",
            &truth_s,
            "--min-precision",
            "0.9",
            "--min-recall",
            "0.9",
            "--min-localisation",
            "0.9",
            "--max-false-per-1000",
            "1",
        ],
        &db,
    )?;
    let table = format!(
        "seed {seed}: {events} events; sent in {:.0} s, merged at {:.0} s, diagnosed at {:.0} s\n{summary}\n{}",
        t_sent.as_secs_f64(),
        t_merged.as_secs_f64(),
        t_run.as_secs_f64(),
        text(&eval)
    );
    report(&table);
    keep_for_inspection(&p, seed, &truth);
    match eval.status.code() {
        Some(0) => Ok(table),
        Some(5) => bail!("seed {seed}: below the acceptance thresholds\n{table}"),
        _ => bail!("seed {seed}: netqoe-diagnoser evaluate failed\n{table}"),
    }
}

/// With `NETQOE_E2E_KEEP=DIR`, copies the truth and a dump of `agg_1m` there, to tune the
/// diagnoser on the same windows without sending them again.
fn keep_for_inspection(p: &Pipeline, seed: u64, truth: &Path) {
    let Ok(dir) = std::env::var("NETQOE_E2E_KEEP") else {
        return;
    };
    let dir = Path::new(&dir);
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::copy(truth, dir.join(format!("truth-{seed}.json")));
    let dump = Command::new("pg_dump")
        .args(["--data-only", "--table=agg_1m", "--dbname", &p.db_url])
        .arg(format!(
            "--file={}",
            dir.join(format!("agg-{seed}.sql")).display()
        ))
        .status();
    eprintln!("kept seed {seed} in {}: {dump:?}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diagnoser_meets_the_acceptance_thresholds_on_three_scenario_seeds() {
    let started = Instant::now();
    let mut failures = Vec::new();
    for s in [1, 2, 3] {
        if let Err(e) = seed(s).await {
            failures.push(format!("{e:#}"));
        }
    }
    report(&format!(
        "three seeds in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

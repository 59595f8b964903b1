//! The closing summary of `up`: what went in, what the diagnoser found beside what was
//! injected, with precision and recall, where the report is and how to stop the stack.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::progress::{log_tail, thousands};

/// `netqoe-diagnoser evaluate` over the demo's database and truth file.
pub struct Evaluation<'a> {
    pub diagnoser: &'a Path,
    pub truth: &'a Path,
    /// The live probes' target: its incident is real, not injected.
    pub exclude_target: &'a str,
    pub db_env: &'a (&'static str, String),
}

impl Evaluation<'_> {
    /// Scores the stored incidents against `(precision, recall)` thresholds, keeping stderr in
    /// `log` and the JSON scores in `file`: ((scores, passed), a line for the progress).
    pub fn score(
        &self,
        (min_precision, min_recall): (f64, f64),
        log: &Path,
        file: &Path,
    ) -> Result<((serde_json::Value, bool), String)> {
        let out = std::process::Command::new(self.diagnoser)
            .args(["evaluate", "--truth"])
            .arg(self.truth)
            .args(["--exclude-target", self.exclude_target, "--json"])
            .args(["--min-precision", &min_precision.to_string()])
            .args(["--min-recall", &min_recall.to_string()])
            .env(self.db_env.0, &self.db_env.1)
            .output()
            .context("run netqoe-diagnoser evaluate")?;
        std::fs::write(log, &out.stderr)?;
        std::fs::write(file, &out.stdout)?;
        // 0: every score met its threshold; 5: scored, some below; anything else failed.
        let passed = match out.status.code() {
            Some(0) => true,
            Some(5) => false,
            _ => bail!(
                "netqoe-diagnoser evaluate exited with {}:\n{}",
                out.status,
                log_tail(log, 3000)
            ),
        };
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("evaluate printed no JSON (see {})", file.display()))?;
        let detail = format!("{} (scores in {})", scores_line(&json), file.display());
        Ok(((json, passed), detail))
    }
}

/// What the summary reports.
#[derive(Debug, Default)]
pub struct Report {
    pub home: PathBuf,
    pub events_ingested: u64,
    pub scenario_events: u64,
    pub windows: i64,
    pub injected: usize,
    pub incidents_found: i64,
    /// The evaluation's JSON as printed by `netqoe-diagnoser evaluate --json`.
    pub evaluation: Option<serde_json::Value>,
    /// Whether the evaluation met its thresholds.
    pub passed: bool,
    pub report_html: PathBuf,
    pub live_target: String,
    pub live_fault_since: String,
    /// Time to first byte of the live target before and since the fault, as a sentence.
    pub live_shift: String,
    pub live_incidents: Vec<(String, String)>,
    pub lab_control: String,
    pub timings: Vec<(String, Duration)>,
}

/// The first number under key `key` anywhere in `v` (the evaluation may nest its totals).
pub fn find_number(v: &serde_json::Value, key: &str) -> Option<f64> {
    match v {
        serde_json::Value::Object(map) => map
            .get(key)
            .and_then(serde_json::Value::as_f64)
            .or_else(|| map.values().find_map(|x| find_number(x, key))),
        serde_json::Value::Array(items) => items.iter().find_map(|x| find_number(x, key)),
        _ => None,
    }
}

fn score(v: &serde_json::Value, key: &str) -> String {
    find_number(v, key).map_or_else(|| "n/a".to_string(), |x| format!("{x:.2}"))
}

/// `precision 0.93, recall 1.00` from the evaluation's JSON.
pub fn scores_line(v: &serde_json::Value) -> String {
    format!(
        "precision {}, recall {}",
        score(v, "precision"),
        score(v, "recall")
    )
}

/// Prints the summary to stdout.
pub fn print(r: &Report) {
    let total: f64 = r.timings.iter().map(|(_, d)| d.as_secs_f64()).sum();
    let rel = std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            r.report_html
                .strip_prefix(cwd)
                .ok()
                .map(|p| p.to_path_buf())
        })
        .unwrap_or_else(|| r.report_html.clone());
    println!();
    println!("netqoe demo: done in {:.0} s", total);
    println!(
        "  events ingested     {} ({} of scenario history, the rest from the live probes)",
        thousands(r.events_ingested),
        thousands(r.scenario_events)
    );
    println!(
        "  windows written     {} one-minute windows in agg_1m",
        thousands(r.windows.max(0) as u64)
    );
    let scores = r
        .evaluation
        .as_ref()
        .map_or_else(|| "not evaluated".to_string(), scores_line);
    println!(
        "  incidents           {} found by the diagnoser beside {} injected: {scores}{}",
        r.incidents_found,
        r.injected,
        if r.passed { "" } else { "  (BELOW THRESHOLD)" }
    );
    // The evaluation's verdict on each injected and each found incident, side by side.
    let lines = r
        .evaluation
        .as_ref()
        .and_then(|v| v.get("lines"))
        .and_then(serde_json::Value::as_array);
    for line in lines
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
    {
        println!("                      {line}");
    }
    println!(
        "  live                lab fault (+{} ms before the first byte) on {} since {}: {}",
        crate::live::FAULT_TTFB_MS,
        r.live_target,
        r.live_fault_since,
        r.live_shift
    );
    if r.live_incidents.is_empty() {
        println!(
            "                      no incident on it yet: the diagnoser judges a series after \
             30 minutes of baseline (netqoe-diagnoser run --min-windows), and these are minutes old"
        );
    } else {
        let found: Vec<String> = r
            .live_incidents
            .iter()
            .map(|(label, scope)| format!("{label} ({scope})"))
            .collect();
        println!("                      diagnosed as {}", found.join(", "));
    }
    println!(
        "                      switch it off: curl -X PUT -d '{{}}' {}",
        r.lab_control
    );
    println!("  report              {}", r.report_html.display());
    println!(
        "                      open it: xdg-open {} (or file://{} in a browser)",
        rel.display(),
        r.report_html.display()
    );
    println!(
        "  logs, state         {}/logs/, {}/state.json",
        r.home.display(),
        r.home.display()
    );
    println!("  stop the stack      make demo-down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_found_at_any_depth() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"overall": {"precision": 0.931, "recall": 1}}"#).unwrap();
        assert_eq!(scores_line(&v), "precision 0.93, recall 1.00");
        let v: serde_json::Value = serde_json::from_str(r#"{"recall": 0.5}"#).unwrap();
        assert_eq!(scores_line(&v), "precision n/a, recall 0.50");
    }
}

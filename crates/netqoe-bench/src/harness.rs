//! The benchmark line format and helpers shared by the benchmarks.

use std::sync::OnceLock;

use anyhow::Context;
use netqoe_common::metrics_http::PrometheusHandle;
use netqoe_test_support::{NatsServer, PgServer};
use serde::Serialize;

/// Settings every benchmark receives.
pub struct Env {
    /// Multiplier of the documented event counts (for quick runs).
    pub scale: f64,
}

impl Env {
    pub fn scaled(&self, n: usize) -> usize {
        ((n as f64) * self.scale).max(1.0) as usize
    }
}

/// One reported figure: `value` against the same-run raw `limit`.
#[derive(Debug, Serialize)]
pub struct Line {
    pub bench: String,
    pub value: f64,
    pub unit: String,
    pub limit: f64,
    pub ratio: f64,
}

/// Prints a figure measured against `limit` as one JSON line on stdout.
pub fn report(bench: &str, value: f64, unit: &str, limit: f64) {
    let ratio = if limit > 0.0 { value / limit } else { 0.0 };
    let line = Line {
        bench: bench.to_string(),
        value: round(value),
        unit: unit.to_string(),
        limit: round(limit),
        ratio: (ratio * 1000.0).round() / 1000.0,
    };
    println!(
        "{}",
        serde_json::to_string(&line).expect("serialise bench line")
    );
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A realistic event body for `client`/`target` at `ts_ms`.
pub fn sample_event(
    id: uuid::Uuid,
    client: &str,
    target: &str,
    ts_ms: i64,
    seed: u64,
) -> netqoe_model::Event {
    let mut e = netqoe_loadgen::load::sample_event(id, client, target, ts_ms, seed);
    e.recv_ts_ms = Some(ts_ms + 5);
    e
}

/// The process-wide metrics recorder, installed on first use, so benchmarks can read the
/// counters of the components they run in-process.
pub fn metrics() -> anyhow::Result<&'static PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h);
    }
    let handle = netqoe_common::metrics_http::install_recorder()?;
    Ok(HANDLE.get_or_init(|| handle))
}

/// Value of counter `name` with the label set containing `label` (e.g. `outcome="new"`), 0
/// when it has not been recorded yet.
pub fn counter(handle: &PrometheusHandle, name: &str, label: &str) -> u64 {
    handle
        .render()
        .lines()
        .filter(|l| {
            let rest = l.strip_prefix(name).unwrap_or_default();
            (rest.starts_with('{') && l.contains(label))
                || (label.is_empty() && rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Fields of `/proc/<pid>/stat` from field 3 (the state) on; the command name before them may
/// hold spaces.
fn stat_fields(pid: u32) -> anyhow::Result<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(") ")
        .ok_or_else(|| anyhow::anyhow!("malformed /proc/{pid}/stat"))?
        .1;
    Ok(rest.split_whitespace().map(str::to_string).collect())
}

fn ticks(fields: &[String], from: usize, to: usize) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for f in &fields[from..=to] {
        sum += f.parse::<f64>()?;
    }
    Ok(sum)
}

/// User plus system CPU time of `pid` so far, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    Ok(ticks(&stat_fields(pid)?, 11, 12)? / clock_ticks())
}

/// CPU time of `pid`, of its children that it reaped, and of its live children, in seconds:
/// a PostgreSQL server with its backends.
pub fn tree_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let mut total = ticks(&stat_fields(pid)?, 11, 14)?;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit between the listing and the read.
        if let Ok(fields) = stat_fields(child) {
            if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
                total += ticks(&fields, 11, 12).unwrap_or(0.0);
            }
        }
    }
    Ok(total / clock_ticks())
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Runs `start` (which spawns a server) with transparent huge pages as the machine sets them:
/// this process turned them off for itself, and children inherit that flag, but the servers
/// under the benchmarks should run as they would on their own.
fn as_on_its_own<T>(start: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    use nix::sys::prctl::{get_thp_disable, set_thp_disable};
    let off = get_thp_disable().unwrap_or(false);
    if off {
        let _ = set_thp_disable(false);
    }
    let server = start();
    if off {
        let _ = set_thp_disable(true);
    }
    server
}

/// A nats-server for a benchmark (see [`as_on_its_own`]).
pub fn nats_server() -> anyhow::Result<NatsServer> {
    as_on_its_own(NatsServer::start)
}

/// A PostgreSQL server for a benchmark (see [`as_on_its_own`]).
pub fn pg_server() -> anyhow::Result<PgServer> {
    as_on_its_own(PgServer::start)
}

/// Peak resident set (VmHWM) of `pid` in MB.
pub fn peak_rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .context("VmHWM missing")?
        .parse()?;
    Ok(kb / 1024.0)
}

/// A release binary next to this one.
pub fn sibling(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let bin = std::env::current_exe()?.with_file_name(name);
    if !bin.is_file() {
        anyhow::bail!(
            "{} is missing: build it with `cargo build --release --workspace --bins` (make bench does)",
            bin.display()
        );
    }
    Ok(bin)
}

//! History for the live probes' series, made of real measurements: each probe measures the
//! healthy lab a few times (`netqoe-probe --once`), and copies of those measurements, one per
//! series every 30 s over the hours before the probes started, go through ingest as late
//! events. The diagnoser then knows the lab's usual timings when its fault goes on, as it
//! would for a probe that had been running for hours.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// One measurement per series this often, as a probe with the default interval.
const STEP_MS: i64 = 30_000;
/// Events per request (ingest's default burst admits 1000).
const BATCH: usize = 500;

/// Runs `netqoe-probe --config config --once` `rounds` times: the events it printed.
pub fn measure(probe: &Path, config: &Path, rounds: usize) -> Result<Vec<Value>> {
    let mut events = Vec::new();
    for _ in 0..rounds {
        let out = std::process::Command::new(probe)
            .arg("--config")
            .arg(config)
            .arg("--once")
            .output()
            .with_context(|| format!("run {} --once", probe.display()))?;
        if !out.status.success() {
            bail!(
                "netqoe-probe --once exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for line in String::from_utf8(out.stdout)?.lines() {
            if !line.trim().is_empty() {
                events.push(serde_json::from_str(line).context("an event printed by --once")?);
            }
        }
    }
    Ok(events)
}

/// The series an event belongs to, as the aggregator keys its windows.
fn series_of(e: &Value) -> String {
    let family = e["network_context"]["ip_version"].as_u64().unwrap_or(4);
    format!(
        "{}|{}|{}|{family}",
        e["client_id"], e["target"], e["probe_kind"]
    )
}

/// Copies of `samples` (successful measurements only), for each of their series one every 30 s
/// in `[from_ms, until_ms)`, each with a new `event_id` and its own `ts_ms`.
pub fn history(samples: &[Value], from_ms: i64, until_ms: i64, seed: u64) -> Vec<Value> {
    let mut by_series: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in samples.iter().filter(|e| e["error_stage"].is_null()) {
        by_series.entry(series_of(e)).or_default().push(e);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for same in by_series.values() {
        let mut ts = from_ms + rng.random_range(0..STEP_MS);
        while ts < until_ms {
            let mut e = same[rng.random_range(0..same.len())].clone();
            e["event_id"] = Value::String(uuid::Uuid::new_v4().to_string());
            e["ts_ms"] = Value::from(ts);
            if let Some(o) = e.as_object_mut() {
                o.remove("recv_ts_ms");
            }
            out.push(e);
            ts += STEP_MS;
        }
    }
    out.sort_by_key(|e| e["ts_ms"].as_i64());
    out
}

/// Posts `events` to ingest's events endpoint in batches, waiting out 429 and 503 as their
/// `Retry-After` asks; fails on any other answer than 202.
pub fn post(ingest: SocketAddr, token: &str, events: &[Value]) -> Result<()> {
    for batch in events.chunks(BATCH) {
        let body = serde_json::to_string(batch)?;
        let mut attempts = 0;
        loop {
            let (status, retry_after, text) = post_once(ingest, token, &body)?;
            match status {
                202 => break,
                429 | 503 if attempts < 30 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_secs(retry_after.clamp(1, 10)));
                }
                _ => bail!("ingest answered {status} to the history: {text}"),
            }
        }
    }
    Ok(())
}

/// One `POST /api/v1/events`: (status, Retry-After seconds, body).
fn post_once(ingest: SocketAddr, token: &str, body: &str) -> Result<(u16, u64, String)> {
    let mut s = TcpStream::connect_timeout(&ingest, Duration::from_secs(5))
        .with_context(|| format!("connect to ingest at {ingest}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST /api/v1/events HTTP/1.1\r\nHost: {ingest}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let status = answer
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP answer: {answer:.200}"))?;
    let retry_after = answer
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("retry-after")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(1);
    let text = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, retry_after, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(client: &str, target: &str, ttfb: f64) -> Value {
        json!({"schema_version": "1", "event_id": "00000000-0000-4000-8000-000000000000",
            "client_id": client, "ts_ms": 5, "target": target, "probe_kind": "http",
            "timings": {"http_ttfb_ms": ttfb}, "recv_ts_ms": 9})
    }

    #[test]
    fn history_holds_one_copy_per_series_every_30_s_with_new_ids() {
        let mut failed = sample("a", "t", 1.0);
        failed["error_stage"] = json!("tcp");
        let samples = [
            sample("a", "t", 1.0),
            sample("a", "t", 2.0),
            sample("b", "t", 3.0),
            failed,
        ];
        let h = history(&samples, 0, 3_600_000, 7);
        assert_eq!(h.len(), 2 * 120, "two series, 120 half-minutes each");
        let ids: std::collections::HashSet<_> = h.iter().map(|e| e["event_id"].clone()).collect();
        assert_eq!(ids.len(), h.len(), "every copy has its own id");
        assert!(h
            .windows(2)
            .all(|w| w[0]["ts_ms"].as_i64() <= w[1]["ts_ms"].as_i64()));
        assert!(h
            .iter()
            .all(|e| (0..3_600_000).contains(&e["ts_ms"].as_i64().unwrap())));
        assert!(h.iter().all(|e| e.get("recv_ts_ms").is_none()));
        assert!(
            h.iter().all(|e| e["error_stage"].is_null()),
            "failures are not copied"
        );
        let b: Vec<_> = h.iter().filter(|e| e["client_id"] == "b").collect();
        assert!(b.iter().all(|e| e["timings"]["http_ttfb_ms"] == 3.0));
    }
}

//! `netqoe-loadgen load`: sends valid events to an ingest URL and reports throughput and
//! latency.
//!
//! The same load as the vegeta and k6 scripts in `loadtest/`, without either tool: single
//! events or JSON-array batches, at a chosen rate (open loop, spread over the connections) or
//! as fast as the connections allow, for a duration or a number of events.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What to send and how.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Full URL of the events endpoint.
    pub url: String,
    pub token: Option<String>,
    /// Events per request (1 = one JSON object per request).
    pub batch: usize,
    /// Target events per second over all connections; `None` = as fast as possible.
    pub rate: Option<f64>,
    pub connections: usize,
    /// Stop after this long...
    pub duration: Option<Duration>,
    /// ...or after this many events, whichever comes first.
    pub total: Option<u64>,
    /// Distinct client ids (`loadgen-<n>`) and targets (`https://t<k>.example/`).
    pub clients: usize,
    pub targets: usize,
    pub gzip: bool,
}

impl LoadConfig {
    pub fn new(url: &str) -> LoadConfig {
        LoadConfig {
            url: url.to_string(),
            token: None,
            batch: 1,
            rate: None,
            connections: 8,
            duration: Some(Duration::from_secs(10)),
            total: None,
            clients: 100,
            targets: 10,
            gzip: false,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub requests: u64,
    pub events_sent: u64,
    /// Events in requests answered 2xx.
    pub events_accepted: u64,
    pub elapsed_s: f64,
    pub events_per_s: f64,
    pub requests_per_s: f64,
    /// Answers by status code; 0 counts transport errors.
    pub statuses: BTreeMap<u16, u64>,
    pub latency: Latency,
}

/// Percentile by nearest rank of sorted `v` (milliseconds).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// When the `k`-th request of one connection should start, for `per_conn_rate` requests/s.
pub fn scheduled(start: Instant, k: u64, per_conn_rate: f64) -> Instant {
    start + Duration::from_secs_f64(k as f64 / per_conn_rate)
}

/// One valid, successful http event whose timings and throughput vary with `seed` (the
/// load's events, and the benchmarks').
pub fn sample_event(
    id: uuid::Uuid,
    client: &str,
    target: &str,
    ts_ms: i64,
    seed: u64,
) -> netqoe_model::Event {
    let mut e = netqoe_model::Event::new(id, client, ts_ms, target);
    let jitter = (seed % 97) as f64;
    e.timings = Some(netqoe_model::Timings {
        dns_ms: Some(5.0 + jitter / 10.0),
        tcp_ms: Some(12.0 + jitter / 5.0),
        tls_ms: Some(25.0 + jitter / 3.0),
        http_ttfb_ms: Some(60.0 + jitter),
        transfer_ms: Some(8.0 + jitter / 7.0),
        total_ms: Some(110.0 + jitter * 1.5),
    });
    e.http_status = Some(200);
    e.throughput_kbps = Some(20_000.0 + jitter * 100.0);
    e.bytes = Some(65_536);
    e
}

/// A valid JSON body of `n` events (one object when `n == 1`).
pub fn body(n: usize, seq: u64, clients: usize, targets: usize) -> Vec<u8> {
    let now = netqoe_model::now_ms();
    let events: Vec<netqoe_model::Event> = (0..n as u64)
        .map(|i| {
            let s = seq + i;
            sample_event(
                uuid::Uuid::now_v7(),
                &format!("loadgen-{}", s % clients.max(1) as u64),
                &format!(
                    "https://t{}.example/",
                    (s / clients.max(1) as u64) % targets.max(1) as u64
                ),
                now,
                s,
            )
        })
        .collect();
    if n == 1 {
        serde_json::to_vec(&events[0]).expect("serialise")
    } else {
        serde_json::to_vec(&events).expect("serialise")
    }
}

/// Runs the load and returns the report. `on_accepted` is told the running count of events
/// in 2xx answers (for callers that follow progress, such as the freshness benchmark).
pub async fn run(cfg: LoadConfig, on_accepted: Option<Arc<AtomicU64>>) -> anyhow::Result<Report> {
    let conns = cfg.connections.max(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .http1_only()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let sent = Arc::new(AtomicU64::new(0));
    let accepted = on_accepted.unwrap_or_default();
    let start = Instant::now();
    let deadline = cfg.duration.map(|d| start + d);
    let per_conn_rate = cfg.rate.map(|r| r / cfg.batch.max(1) as f64 / conns as f64);
    let mut workers = Vec::new();
    for w in 0..conns {
        let (client, cfg, sent, accepted) =
            (client.clone(), cfg.clone(), sent.clone(), accepted.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut k = 0u64;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let n = cfg.batch.max(1) as u64;
                let seq = sent.fetch_add(n, Ordering::Relaxed);
                if cfg.total.is_some_and(|t| seq >= t) {
                    break;
                }
                if let Some(r) = per_conn_rate {
                    tokio::time::sleep_until(scheduled(start, k, r).into()).await;
                }
                k += 1;
                let mut body = body(n as usize, seq + w as u64, cfg.clients, cfg.targets);
                let mut req = client
                    .post(&cfg.url)
                    .header("content-type", "application/json");
                if cfg.gzip {
                    use std::io::Write;
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    enc.write_all(&body)?;
                    body = enc.finish()?;
                    req = req.header("content-encoding", "gzip");
                }
                if let Some(t) = &cfg.token {
                    req = req.bearer_auth(t);
                }
                let t0 = Instant::now();
                let status = match req.body(body).send().await {
                    Ok(resp) => {
                        let s = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                *statuses.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    accepted.fetch_add(n, Ordering::Relaxed);
                }
            }
            anyhow::Ok((lat, statuses))
        }));
    }
    let mut lat = Vec::new();
    let mut report = Report::default();
    for w in workers {
        let (l, s) = w.await??;
        lat.extend(l);
        for (code, n) in s {
            *report.statuses.entry(code).or_default() += n;
        }
    }
    report.elapsed_s = start.elapsed().as_secs_f64();
    report.requests = lat.len() as u64;
    report.events_sent = report.requests * cfg.batch.max(1) as u64;
    report.events_accepted = accepted.load(Ordering::Relaxed);
    report.events_per_s = report.events_accepted as f64 / report.elapsed_s;
    report.requests_per_s = report.requests as f64 / report.elapsed_s;
    lat.sort_by(f64::total_cmp);
    report.latency = Latency {
        p50_ms: percentile(&lat, 0.50),
        p95_ms: percentile(&lat, 0.95),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn open_loop_schedule_does_not_drift() {
        let start = Instant::now();
        assert_eq!(scheduled(start, 0, 10.0), start);
        assert_eq!(
            scheduled(start, 25, 10.0) - start,
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn bodies_hold_valid_events() {
        let one: serde_json::Value = serde_json::from_slice(&body(1, 7, 3, 2)).unwrap();
        assert!(netqoe_model::validate(&one).is_ok());
        let many: Vec<serde_json::Value> = serde_json::from_slice(&body(50, 0, 3, 2)).unwrap();
        assert_eq!(many.len(), 50);
        assert!(many.iter().all(|e| netqoe_model::validate(e).is_ok()));
        let ids: std::collections::HashSet<_> = many
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 50, "unique event ids");
    }
}

//! Pushes a scenario's events through ingest: JSON-array batches in time order, gzip, several
//! connections, waiting out 429 (`Retry-After`) and retrying 503 and transport errors.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, Mutex};

use crate::scenario::Scenario;

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Full URL of the events endpoint.
    pub url: String,
    pub token: Option<String>,
    /// Events per request: at most ingest's burst (400 by default) or every request is 413.
    pub batch: usize,
    pub connections: usize,
    pub gzip: bool,
    /// Attempts of one batch on 503 or transport errors before giving up (429 waits forever:
    /// ingest answers it only to requests that can succeed later).
    pub max_attempts: u32,
}

impl SendConfig {
    pub fn new(url: &str) -> SendConfig {
        SendConfig {
            url: url.to_string(),
            token: None,
            batch: 400,
            connections: 8,
            gzip: true,
            max_attempts: 10,
        }
    }
}

/// What the sending did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SendReport {
    /// Events in batches ingest acknowledged.
    pub events: u64,
    pub requests: u64,
    /// Newly stored, and already held (a re-run of the same scenario), as ingest counted them.
    pub accepted: u64,
    pub duplicates: u64,
    /// Answers that were retried: 429, 503, transport errors.
    pub rate_limited: u64,
    pub unavailable: u64,
    pub transport_errors: u64,
    pub elapsed_s: f64,
    pub events_per_s: f64,
}

/// Why sending stopped.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("ingest refused a batch with status {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("ingest still failing after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("failed to build the http client")]
    Client(#[source] reqwest::Error),
    #[error("event generation failed: {0}")]
    Generator(String),
}

#[derive(Default)]
struct Counters {
    events: AtomicU64,
    requests: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rate_limited: AtomicU64,
    unavailable: AtomicU64,
    transport_errors: AtomicU64,
}

/// Sends every event of `scenario` and returns once ingest has acknowledged all of them.
pub async fn send(scenario: Arc<Scenario>, cfg: SendConfig) -> Result<SendReport, SendError> {
    let conns = cfg.connections.max(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .http1_only()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(SendError::Client)?;
    let (tx, rx) = mpsc::channel::<(Bytes, u64)>(conns * 2);
    let batch = cfg.batch.max(1);
    let gen = tokio::task::spawn_blocking(move || generate(&scenario, batch, tx));
    let rx = Arc::new(Mutex::new(rx));
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..conns {
        let (client, cfg, rx, counters) =
            (client.clone(), cfg.clone(), rx.clone(), counters.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some((body, n)) = next else { return Ok(()) };
                let body = if cfg.gzip { gzip(&body) } else { body };
                if let Err(e) = post(&client, &cfg, body, &counters).await {
                    // stop the generator and the other connections
                    rx.lock().await.close();
                    return Err(e);
                }
                let before = counters.events.fetch_add(n, Ordering::Relaxed);
                if (before + n) / 100_000 > before / 100_000 {
                    tracing::info!(events = before + n, "scenario events acknowledged");
                }
            }
        }));
    }
    let mut result = Ok(());
    for w in workers {
        let r = w
            .await
            .unwrap_or_else(|e| Err(SendError::Generator(e.to_string())));
        if result.is_ok() {
            result = r;
        }
    }
    let generated = gen.await.map_err(|e| SendError::Generator(e.to_string()))?;
    result?;
    let c = &counters;
    let elapsed_s = start.elapsed().as_secs_f64();
    let events = c.events.load(Ordering::Relaxed);
    if events != generated {
        return Err(SendError::Generator(format!(
            "generated {generated} events, sent {events}"
        )));
    }
    Ok(SendReport {
        events,
        requests: c.requests.load(Ordering::Relaxed),
        accepted: c.accepted.load(Ordering::Relaxed),
        duplicates: c.duplicates.load(Ordering::Relaxed),
        rate_limited: c.rate_limited.load(Ordering::Relaxed),
        unavailable: c.unavailable.load(Ordering::Relaxed),
        transport_errors: c.transport_errors.load(Ordering::Relaxed),
        elapsed_s,
        events_per_s: events as f64 / elapsed_s.max(1e-9),
    })
}

/// Serialises the scenario minute by minute into JSON arrays of `batch` events; returns how
/// many events it generated (fewer when the receivers went away).
fn generate(scenario: &Scenario, batch: usize, tx: mpsc::Sender<(Bytes, u64)>) -> u64 {
    let mut buf = Vec::with_capacity(batch * 512);
    let (mut n, mut total) = (0u64, 0u64);
    for m in 0..scenario.minutes() {
        for e in scenario.minute(m) {
            buf.push(if n == 0 { b'[' } else { b',' });
            serde_json::to_writer(&mut buf, &e).expect("events serialise");
            n += 1;
            if n as usize == batch {
                buf.push(b']');
                if tx
                    .blocking_send((Bytes::from(std::mem::take(&mut buf)), n))
                    .is_err()
                {
                    return total;
                }
                total += n;
                n = 0;
            }
        }
    }
    if n > 0 {
        buf.push(b']');
        if tx.blocking_send((Bytes::from(buf), n)).is_ok() {
            total += n;
        }
    }
    total
}

fn gzip(body: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(body).expect("gzip into memory");
    Bytes::from(enc.finish().expect("gzip into memory"))
}

/// Backoff before attempt `attempt` (1-based) of a 503 or transport error.
fn backoff(attempt: u32) -> Duration {
    netqoe_common::Backoff::new(Duration::from_millis(200), Duration::from_secs(5)).delay(attempt)
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = v.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.max(1)))
}

/// Posts one batch until ingest acknowledges it.
async fn post(
    client: &reqwest::Client,
    cfg: &SendConfig,
    body: Bytes,
    c: &Counters,
) -> Result<(), SendError> {
    let mut attempts = 0u32;
    loop {
        let mut req = client
            .post(&cfg.url)
            .header("content-type", "application/json")
            .body(body.clone());
        if cfg.gzip {
            req = req.header("content-encoding", "gzip");
        }
        if let Some(t) = &cfg.token {
            req = req.bearer_auth(t);
        }
        c.requests.fetch_add(1, Ordering::Relaxed);
        let (wait, last) = match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                #[derive(serde::Deserialize)]
                struct Accepted {
                    accepted: u64,
                    duplicates: u64,
                }
                let text = resp.text().await.unwrap_or_default();
                if let Ok(a) = serde_json::from_str::<Accepted>(&text) {
                    c.accepted.fetch_add(a.accepted, Ordering::Relaxed);
                    c.duplicates.fetch_add(a.duplicates, Ordering::Relaxed);
                }
                return Ok(());
            }
            Ok(resp) if resp.status().as_u16() == 429 => {
                c.rate_limited.fetch_add(1, Ordering::Relaxed);
                let wait = retry_after(&resp).unwrap_or(Duration::from_secs(1));
                tokio::time::sleep(wait).await;
                continue;
            }
            Ok(resp) if resp.status().as_u16() == 503 => {
                c.unavailable.fetch_add(1, Ordering::Relaxed);
                attempts += 1;
                let wait = retry_after(&resp).unwrap_or(backoff(attempts));
                (
                    wait,
                    format!("503 {}", resp.text().await.unwrap_or_default()),
                )
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                return Err(SendError::Refused { status, body });
            }
            Err(error) => {
                c.transport_errors.fetch_add(1, Ordering::Relaxed);
                attempts += 1;
                (backoff(attempts), error.to_string())
            }
        };
        if attempts >= cfg.max_attempts {
            return Err(SendError::GaveUp { attempts, last });
        }
        tracing::warn!(attempts, error = %last, "batch not acknowledged, retrying");
        tokio::time::sleep(wait).await;
    }
}

//! Shipper: sends spooled events in gzip JSON batches with backoff, splitting on 400 and 413.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::spool::Spool;

/// Exponential backoff capped at 60 s with ±20 % jitter; `Retry-After` wins when longer.
pub fn backoff(attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let base = netqoe_common::Backoff::new(Duration::from_millis(500), Duration::from_secs(60))
        .delay(attempt);
    let jittered = base.mul_f64(1.0 + (jitter.clamp(0.0, 1.0) - 0.5) * 0.4);
    match retry_after {
        Some(r) if r > jittered => r,
        _ => jittered,
    }
}

/// What to do after a response with this status.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Rejected as invalid: split until single events, then drop.
    Reject,
    /// Too large: split.
    Split,
    /// Credentials refused: retry slowly, never drop.
    Unauthorized,
    Retry,
}

/// Maps an HTTP status to an outcome.
pub fn outcome(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        400 | 422 => Outcome::Reject,
        413 => Outcome::Split,
        401 | 403 => Outcome::Unauthorized,
        _ => Outcome::Retry,
    }
}

fn gzip_array(records: &[Vec<u8>]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b"[").unwrap();
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            enc.write_all(b",").unwrap();
        }
        enc.write_all(r).unwrap();
    }
    enc.write_all(b"]").unwrap();
    enc.finish().unwrap()
}

/// Where and how to ship.
#[derive(Clone)]
pub struct Settings {
    /// Ingest's events URL.
    pub url: String,
    /// PEM CA certificates trusted for ingest besides the public roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Bearer token.
    pub token: String,
    /// Most events in one request (config key `batch_size`).
    pub batch_size: usize,
    /// Longest the oldest unsent event waits for a fuller batch.
    pub batch_max_age: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("token", &"<redacted>")
            .field("batch_size", &self.batch_size)
            .field("batch_max_age", &self.batch_max_age)
            .finish()
    }
}

/// The HTTP client of the shipper: the public web roots plus the certificates of `ca_file`.
pub fn http_client(settings: &Settings) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(path) = &settings.ca_file {
        crate::config::check_ingest_ca_file(path)?;
        for der in crate::tls::ca_certs(path)? {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(&der)?);
        }
    }
    Ok(builder.build()?)
}

/// True when `url` sends the token and events in clear text over a network: `http://` to a
/// host that is not loopback.
pub fn is_plain_http_off_host(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    if uri.scheme_str() != Some("http") {
        return false;
    }
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// The shipper's connection and what it learnt from ingest's answers.
struct Ctx {
    client: reqwest::Client,
    settings: Settings,
    /// Most events per request now: `batch_size`, lowered by a 413.
    limit: usize,
    /// Events dropped as rejected.
    dropped: u64,
}

/// A request that left events unsent: how many leading events of the slice were settled
/// (delivered or dropped) before it, the status (0: unreachable) and `Retry-After`.
#[derive(Debug)]
struct Stop {
    settled: usize,
    status: u16,
    retry_after: Option<Duration>,
}

impl Stop {
    fn after(mut self, settled: usize) -> Stop {
        self.settled += settled;
        self
    }
}

/// How many events a 413 body says fit in one request (`max_events`), when it says so.
pub fn max_events(body: &str) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    usize::try_from(v.get("max_events")?.as_u64()?).ok()
}

/// Sends `records` in as many requests as ingest's answers call for: a 400 bisects until the
/// invalid event is alone and drops it, a 413 splits into chunks of the events that fit (or
/// halves) and lowers the batch limit for later requests.
async fn send(ctx: &mut Ctx, records: &[Vec<u8>]) -> Result<(), Stop> {
    let resp = ctx
        .client
        .post(&ctx.settings.url)
        .bearer_auth(&ctx.settings.token)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip_array(records))
        .send()
        .await
        .map_err(|e| {
            crate::metrics::request("unreachable");
            tracing::warn!(error = %e, "ingest unreachable");
            Stop {
                settled: 0,
                status: 0,
                retry_after: None,
            }
        })?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let stop = Stop {
        settled: 0,
        status,
        retry_after,
    };
    match outcome(status) {
        Outcome::Delivered => {
            crate::metrics::request("delivered");
            metrics::counter!(crate::metrics::SHIPPED).increment(records.len() as u64);
            Ok(())
        }
        Outcome::Reject if records.len() > 1 => {
            crate::metrics::request("rejected");
            let mid = records.len() / 2;
            Box::pin(send(ctx, &records[..mid])).await?;
            Box::pin(send(ctx, &records[mid..]))
                .await
                .map_err(|s| s.after(mid))
        }
        Outcome::Split if records.len() > 1 => {
            crate::metrics::request("too_large");
            let body = resp.text().await.unwrap_or_default();
            let fit = max_events(&body)
                .filter(|n| (1..records.len()).contains(n))
                .unwrap_or(records.len() / 2);
            if fit < ctx.limit {
                tracing::warn!(
                    events = records.len(),
                    fit,
                    "ingest refused a batch as too large; sending smaller batches from now on"
                );
                ctx.limit = fit;
                metrics::gauge!(crate::metrics::BATCH_LIMIT).set(fit as f64);
            }
            for (i, chunk) in records.chunks(fit).enumerate() {
                Box::pin(send(ctx, chunk))
                    .await
                    .map_err(|s| s.after(i * fit))?;
            }
            Ok(())
        }
        Outcome::Reject | Outcome::Split => {
            let body = resp.text().await.unwrap_or_default();
            tracing::warn!(status, error = %body, "ingest rejected an event; dropping it");
            crate::metrics::request(if status == 413 {
                "too_large"
            } else {
                "rejected"
            });
            metrics::counter!(crate::metrics::REJECTED).increment(1);
            ctx.dropped += 1;
            Ok(())
        }
        Outcome::Unauthorized => {
            crate::metrics::request("unauthorized");
            tracing::error!(
                status,
                "ingest refused the token; retrying slowly, events kept"
            );
            Err(Stop {
                retry_after: Some(Duration::from_secs(30)),
                ..stop
            })
        }
        Outcome::Retry => {
            crate::metrics::request("retry");
            Err(stop)
        }
    }
}

/// Whether to send `pending` events now: a full batch of `limit`, or the oldest has waited
/// `max_age`.
pub fn ready_to_send(pending: usize, limit: usize, waited: Duration, max_age: Duration) -> bool {
    pending >= limit || waited >= max_age
}

/// Ships spooled events until `shutdown`, in batches of up to `batch_size` events sent when
/// full or when the oldest has waited `batch_max_age`; returns the number of events dropped
/// as rejected. Progress is acked in the spool after each request that settled events, so a
/// delivered event is never sent again (short of a crash between 202 and the ack, which
/// ingest deduplicates by `event_id`).
pub async fn run(
    spool: Arc<Mutex<Spool>>,
    settings: Settings,
    notify: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) -> u64 {
    // `run` of the crate checks the CA file before the shipper starts
    let client = http_client(&settings).expect("ingest CA file checked at start");
    let max_age = settings.batch_max_age;
    let limit = settings.batch_size.max(1);
    metrics::gauge!(crate::metrics::BATCH_LIMIT).set(limit as f64);
    let mut ctx = Ctx {
        client,
        settings,
        limit,
        dropped: 0,
    };
    let mut attempt = 0u32;
    // When the oldest unsent event was first seen pending.
    let mut oldest: Option<tokio::time::Instant> = None;
    while !shutdown.is_cancelled() {
        let (pending, unshipped) = {
            let mut s = spool.lock().unwrap();
            (s.pending(ctx.limit), s.unshipped())
        };
        let (seq, from, batch) = match pending {
            Ok(Some((seq, from, batch, _))) => (seq, from, batch),
            Ok(None) | Err(_) => {
                if let Err(e) = pending {
                    tracing::error!(error = %e, "cannot read the spool");
                }
                oldest = None;
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
        };
        let since = *oldest.get_or_insert_with(tokio::time::Instant::now);
        // a batch cut short by the end of its segment, with more events spooled behind it, is
        // a backlog: it goes at once
        let behind = unshipped > batch.len() as u64;
        if !behind && !ready_to_send(batch.len(), ctx.limit, since.elapsed(), max_age) {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep_until(since + max_age) => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        let (settled, failed) = match send(&mut ctx, &batch).await {
            Ok(()) => (batch.len(), None),
            Err(stop) => (stop.settled, Some(stop)),
        };
        if settled > 0 {
            if let Err(e) = spool.lock().unwrap().ack(seq, from + settled) {
                tracing::error!(error = %e, "cannot record shipped progress");
            }
        }
        match failed {
            None => {
                attempt = 0;
                oldest = None;
            }
            Some(Stop {
                status,
                retry_after,
                ..
            }) => {
                let wait = backoff(attempt, retry_after, rand::random());
                attempt = attempt.saturating_add(1);
                tracing::warn!(
                    status,
                    wait_ms = wait.as_millis() as u64,
                    "shipping failed; will retry"
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
    ctx.dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        assert_eq!(backoff(0, None, 0.5), Duration::from_millis(500));
        assert_eq!(backoff(3, None, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(30, None, 0.5), Duration::from_secs(60));
        assert!(backoff(0, None, 1.0) <= Duration::from_millis(600));
        assert_eq!(
            backoff(0, Some(Duration::from_secs(7)), 0.5),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn batches_go_when_full_or_old_enough() {
        let age = Duration::from_secs(1);
        assert!(!ready_to_send(3, 200, Duration::from_millis(200), age));
        assert!(ready_to_send(3, 200, Duration::from_secs(1), age));
        assert!(ready_to_send(200, 200, Duration::ZERO, age));
    }

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(outcome(202), Outcome::Delivered);
        assert_eq!(outcome(400), Outcome::Reject);
        assert_eq!(outcome(413), Outcome::Split);
        assert_eq!(outcome(401), Outcome::Unauthorized);
        assert_eq!(outcome(503), Outcome::Retry);
        assert_eq!(outcome(429), Outcome::Retry);
    }

    #[test]
    fn plain_http_is_flagged_unless_loopback() {
        for url in [
            "http://ingest.example.net/api/v1/events",
            "http://10.0.0.5:8081/api/v1/events",
            "http://[2001:db8::1]:8081/events",
        ] {
            assert!(is_plain_http_off_host(url), "{url}");
        }
        for url in [
            "https://ingest.example.net/api/v1/events",
            "http://127.0.0.1:8081/api/v1/events",
            "http://127.3.2.1/events",
            "http://localhost:8081/api/v1/events",
            "http://[::1]:8081/events",
        ] {
            assert!(!is_plain_http_off_host(url), "{url}");
        }
    }

    #[test]
    fn max_events_is_read_from_a_413_body_when_present() {
        let body = r#"{"error":"too_many_events","message":"m","max_events":150}"#;
        assert_eq!(max_events(body), Some(150));
        assert_eq!(max_events(r#"{"error":"payload_too_large"}"#), None);
        assert_eq!(max_events("not json"), None);
    }

    #[test]
    fn batch_is_gzipped_json_array() {
        let gz = gzip_array(&[b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out)
            .unwrap();
        assert_eq!(out, "[{\"a\":1},{\"b\":2}]");
    }
}

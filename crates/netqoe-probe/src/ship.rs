//! Shipper: sends spooled events in gzip JSON batches with backoff, splitting on 400 and 413.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::spool::Spool;

/// Largest batch sent in one request.
pub const MAX_BATCH: usize = 500;

/// Exponential backoff capped at 60 s with ±20 % jitter; `Retry-After` wins when longer.
pub fn backoff(attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1u32 << attempt.min(7));
    let base = base.min(Duration::from_secs(60));
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

/// Result of sending a slice: how many leading records are settled (delivered or dropped).
async fn send(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    records: &[Vec<u8>],
    dropped: &mut u64,
) -> Result<(), (u16, Option<Duration>)> {
    let resp = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip_array(records))
        .send()
        .await
        .map_err(|e| {
            crate::metrics::request("unreachable");
            tracing::warn!(error = %e, "ingest unreachable");
            (0, None)
        })?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map(Duration::from_secs);
    match outcome(status) {
        Outcome::Delivered => {
            crate::metrics::request("delivered");
            metrics::counter!(crate::metrics::SHIPPED).increment(records.len() as u64);
            Ok(())
        }
        Outcome::Reject | Outcome::Split if records.len() > 1 => {
            crate::metrics::request("rejected");
            let mid = records.len() / 2;
            Box::pin(send(client, url, token, &records[..mid], dropped)).await?;
            Box::pin(send(client, url, token, &records[mid..], dropped)).await
        }
        Outcome::Reject | Outcome::Split => {
            let body = resp.text().await.unwrap_or_default();
            tracing::warn!(status, error = %body, "ingest rejected an event; dropping it");
            crate::metrics::request("rejected");
            metrics::counter!(crate::metrics::REJECTED).increment(1);
            *dropped += 1;
            Ok(())
        }
        Outcome::Unauthorized => {
            crate::metrics::request("unauthorized");
            tracing::error!(
                status,
                "ingest refused the token; retrying slowly, events kept"
            );
            Err((status, Some(Duration::from_secs(30))))
        }
        Outcome::Retry => {
            crate::metrics::request("retry");
            Err((status, retry_after))
        }
    }
}

/// Whether to send `pending` events now: a full batch, or the oldest has waited `max_age`.
pub fn ready_to_send(pending: usize, waited: Duration, max_age: Duration) -> bool {
    pending >= MAX_BATCH || waited >= max_age
}

/// Ships spooled events until `shutdown`, in batches of up to `MAX_BATCH` events sent when
/// full or when the oldest has waited `max_age`; returns the number of events dropped as
/// rejected.
pub async fn run(
    spool: Arc<Mutex<Spool>>,
    url: String,
    token: String,
    max_age: Duration,
    notify: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) -> u64 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let mut dropped = 0u64;
    let mut attempt = 0u32;
    // When the oldest unsent event was first seen pending.
    let mut oldest: Option<tokio::time::Instant> = None;
    while !shutdown.is_cancelled() {
        let pending = spool.lock().unwrap().pending(MAX_BATCH);
        let Ok(Some((seq, from, batch, total))) = pending else {
            oldest = None;
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        };
        let since = *oldest.get_or_insert_with(tokio::time::Instant::now);
        if !ready_to_send(batch.len(), since.elapsed(), max_age) {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep_until(since + max_age) => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        match send(&client, &url, &token, &batch, &mut dropped).await {
            Ok(()) => {
                attempt = 0;
                oldest = None;
                if let Err(e) = spool.lock().unwrap().ack(seq, from + batch.len(), total) {
                    tracing::error!(error = %e, "cannot record shipped progress");
                }
            }
            Err((status, retry_after)) => {
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
    dropped
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
        assert!(!ready_to_send(3, Duration::from_millis(200), age));
        assert!(ready_to_send(3, Duration::from_secs(1), age));
        assert!(ready_to_send(MAX_BATCH, Duration::ZERO, age));
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
    fn batch_is_gzipped_json_array() {
        let gz = gzip_array(&[b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out)
            .unwrap();
        assert_eq!(out, "[{\"a\":1},{\"b\":2}]");
    }
}

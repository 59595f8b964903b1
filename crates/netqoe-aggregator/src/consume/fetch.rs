//! The fetch task: pulls batches from the `aggregator` consumer, decodes and validates their
//! messages, sends the bad ones to `QOE_DLQ` and hands the rest, split into parts by window,
//! to the committer.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use netqoe_model::Event;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{backoff, Consumer, Fetched};
use crate::metrics as m;
use crate::quarantine::{letter, Dead};

/// Why a stream message cannot be merged; it goes to `QOE_DLQ` with this as its reason.
#[derive(Debug, thiserror::Error)]
pub enum BadMessage {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON that is not a valid event: every check it fails.
    #[error("invalid event: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl BadMessage {
    /// The `reason` label of `netqoe_aggregator_dlq_messages_total`.
    pub fn label(&self) -> &'static str {
        match self {
            BadMessage::Json(_) => "undecodable",
            BadMessage::Invalid(_) => "invalid",
        }
    }
}

/// Decodes and validates one stream message into an event, or says why it cannot be merged.
///
/// Events are judged by when ingest received them, not by when they are consumed. What ingest
/// publishes is in canonical form and takes the typed fast path; anything else goes through
/// the full validator, which gives the reason.
pub fn decode(payload: &[u8]) -> Result<Event, BadMessage> {
    let mut now = None;
    if let Some(mut event) = netqoe_model::parse_canonical(payload, |recv| {
        *now.insert(recv.unwrap_or_else(netqoe_model::now_ms))
    }) {
        event.recv_ts_ms = now;
        return Ok(event);
    }
    let value: Value = serde_json::from_slice(payload)?;
    // Judge the event's age by when ingest received it, not by when it is consumed.
    let now = netqoe_model::now_ms();
    let recv = value
        .get("recv_ts_ms")
        .and_then(Value::as_i64)
        .unwrap_or(now);
    let mut event = netqoe_model::validate_at(&value, recv)
        .map_err(|errors| BadMessage::Invalid(errors.iter().map(ToString::to_string).collect()))?
        .event;
    event.recv_ts_ms.get_or_insert(recv);
    Ok(event)
}

/// The part (of `n`) an event's window belongs to: parts split a batch by client and
/// target, so no window (and no event) is in two parts and their transactions never wait for
/// each other.
fn part_of(event: &Event, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&event.client_id, &event.target).hash(&mut h);
    (h.finish() % n as u64) as usize
}

/// One fetched batch, decoded and already split into its parts.
pub(super) struct Batch {
    pub parts: Vec<Fetched>,
    pub events: usize,
    /// The fetch filled the whole batch: a backlog is waiting behind it.
    pub full: bool,
}

impl Consumer {
    /// Fetches and decodes batches until shutdown, sending bad messages to the DLQ and the
    /// rest to the committer.
    pub(super) async fn fetch_loop(self: Arc<Self>, tx: mpsc::Sender<Batch>) {
        let mut messages: Option<pull::Stream> = None;
        let mut failures = 0u32;
        while !self.shutdown.is_cancelled() {
            let stream = match &mut messages {
                Some(s) => s,
                None => match self.open().await {
                    Ok(s) => messages.insert(s),
                    Err(error) => {
                        self.nats_failed(&mut failures, &error).await;
                        continue;
                    }
                },
            };
            let batch = tokio::select! {
                b = self.next_batch(stream) => b,
                _ = self.shutdown.cancelled() => break,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(error) => {
                    messages = None;
                    self.nats_failed(&mut failures, &error).await;
                    continue;
                }
            };
            failures = 0;
            if batch.is_empty() {
                self.set_ready(true);
                continue;
            }
            let decoded = self.decode_batch(batch).await;
            if decoded.events > 0 && tx.send(decoded).await.is_err() {
                break;
            }
        }
    }

    /// A continuous pull from the `aggregator` consumer: the client keeps requests of
    /// `batch_size` messages outstanding, so the next batch is on its way while one commits.
    async fn open(&self) -> anyhow::Result<pull::Stream> {
        let consumer = self.consumer().await?;
        self.inflight
            .set_ack_wait(consumer.cached_info().config.ack_wait);
        consumer
            .stream()
            .max_messages_per_batch(self.settings.batch_size)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("pull from consumer aggregator: {e}"))
    }

    /// Up to `batch_size` messages: waits up to a second for the first, then up to
    /// `fetch_wait` for the batch to fill. Empty when nothing arrived.
    async fn next_batch(
        &self,
        stream: &mut pull::Stream,
    ) -> anyhow::Result<Vec<jetstream::Message>> {
        let mut out = Vec::with_capacity(self.settings.batch_size);
        let first = match tokio::time::timeout(
            self.settings.fetch_wait.max(Duration::from_secs(1)),
            stream.next(),
        )
        .await
        {
            Err(_) => return Ok(out),
            Ok(first) => first,
        };
        let receive = |m: Option<Result<jetstream::Message, pull::MessagesError>>| match m {
            None => Err(anyhow::anyhow!("the pull from consumer aggregator ended")),
            Some(m) => m.map_err(|e| anyhow::anyhow!("receive a message: {e}")),
        };
        out.push(receive(first)?);
        let deadline = tokio::time::sleep(self.settings.fetch_wait);
        tokio::pin!(deadline);
        while out.len() < self.settings.batch_size {
            tokio::select! {
                m = stream.next() => match receive(m) {
                    Ok(m) => out.push(m),
                    // keep what arrived; the error shows again on the next call
                    Err(error) if out.is_empty() => return Err(error),
                    Err(_) => break,
                },
                _ = &mut deadline => break,
            }
        }
        Ok(out)
    }

    async fn nats_failed(&self, failures: &mut u32, error: &anyhow::Error) {
        metrics::counter!(m::NATS_ERRORS).increment(1);
        self.set_ready(false);
        if *failures == 0 {
            tracing::warn!(
                error = format!("{error:#}"),
                "cannot fetch from QOE_EVENTS; retrying"
            );
        }
        let wait = backoff(*failures, self.settings.max_backoff);
        *failures += 1;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }

    /// Decodes a fetched batch into its parts; undecodable or invalid messages go to the DLQ.
    async fn decode_batch(&self, batch: Vec<jetstream::Message>) -> Batch {
        let full = batch.len() >= self.settings.batch_size;
        let n = self.settings.commit_parallelism.max(1);
        let room = batch.len() / n + batch.len() / (4 * n) + 16;
        let mut decoded = Batch {
            parts: (0..n)
                .map(|_| Fetched {
                    events: Vec::with_capacity(room),
                    acks: Vec::with_capacity(room),
                    held: None,
                })
                .collect(),
            events: 0,
            full,
        };
        let mut dead: Vec<Dead> = Vec::new();
        let mut redelivered = 0u64;
        for msg in batch {
            if msg.info().is_ok_and(|i| i.delivered > 1) {
                redelivered += 1;
            }
            match decode(&msg.payload) {
                Ok(e) => {
                    let part = &mut decoded.parts[part_of(&e, n)];
                    part.events.push(e);
                    part.acks.push(msg.message.reply);
                    decoded.events += 1;
                }
                Err(reason) => dead.push(letter(msg, reason)),
            }
        }
        metrics::counter!(m::REDELIVERED).increment(redelivered);
        let now = Instant::now();
        for part in decoded.parts.iter_mut().filter(|p| !p.events.is_empty()) {
            let acks = part.acks.iter().flatten().cloned().collect();
            part.held = Some(self.inflight.hold(acks, now));
        }
        self.dead_letters(dead).await;
        decoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_messages_say_why() {
        let err = decode(b"not json").unwrap_err();
        assert!(matches!(err, BadMessage::Json(_)), "{err:?}");
        assert!(err.to_string().starts_with("invalid JSON"), "{err}");
        assert_eq!(err.label(), "undecodable");
        let err = decode(br#"{"schema_version":"1","client_id":"x"}"#).unwrap_err();
        assert!(matches!(err, BadMessage::Invalid(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("invalid event: event_id: is required"),
            "{err}"
        );
        assert_eq!(err.label(), "invalid");
    }

    #[test]
    fn old_events_are_judged_by_their_receive_time() {
        let recv = netqoe_model::now_ms() - 3 * 86_400_000;
        let body = serde_json::json!({
            "schema_version": "1", "event_id": uuid::Uuid::new_v4().to_string(),
            "client_id": "c", "ts_ms": recv - 1000, "target": "h:1", "recv_ts_ms": recv
        });
        let e = decode(body.to_string().as_bytes()).unwrap();
        assert_eq!(e.recv_ts_ms, Some(recv));
    }
}

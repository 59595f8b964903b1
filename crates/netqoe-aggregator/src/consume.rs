//! The consume loop: fetch a batch from the `aggregator` consumer, send bad messages to the
//! DLQ, merge the rest in one transaction, ack after commit; retry with backoff on outages.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer::PullConsumer, AckKind};
use futures::StreamExt;
use netqoe_model::Event;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::{dlq, store, RunSettings};

/// Decodes and validates one stream message into an event, or says why it cannot be processed.
pub fn decode(payload: &[u8]) -> Result<Event, String> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
    // Judge the event's age by when ingest received it, not by when it is consumed.
    let now = netqoe_model::now_ms();
    let recv = value
        .get("recv_ts_ms")
        .and_then(Value::as_i64)
        .unwrap_or(now);
    let mut event = netqoe_model::validate_at(&value, recv)
        .map_err(|errors| {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            format!("invalid event: {}", list.join("; "))
        })?
        .event;
    event.recv_ts_ms.get_or_insert(recv);
    Ok(event)
}

/// Exponential backoff capped at `max`.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1 << attempt.min(10));
    base.min(max)
}

pub(crate) struct Consumer {
    pub js: jetstream::Context,
    pub pool: PgPool,
    pub settings: RunSettings,
    pub ready: Arc<AtomicBool>,
    pub shutdown: CancellationToken,
}

impl Consumer {
    async fn consumer(&self) -> anyhow::Result<PullConsumer> {
        let stream = self
            .js
            .get_stream(netqoe_nats::EVENTS_STREAM)
            .await
            .context("get stream QOE_EVENTS")?;
        stream
            .get_consumer(netqoe_nats::AGGREGATOR_CONSUMER)
            .await
            .map_err(|e| anyhow::anyhow!("get consumer aggregator: {e}"))
    }

    fn set_ready(&self, ready: bool) {
        if self.ready.swap(ready, Ordering::Relaxed) != ready {
            if ready {
                tracing::info!("ready: consuming and committing");
            } else {
                tracing::warn!("not ready");
            }
        }
        metrics::gauge!(m::READY).set(f64::from(u8::from(ready)));
    }

    /// Runs until shutdown; returns after finishing the batch in hand.
    pub async fn run(&self) -> anyhow::Result<()> {
        let mut consumer: Option<PullConsumer> = None;
        let mut failures = 0u32;
        while !self.shutdown.is_cancelled() {
            let c = match &consumer {
                Some(c) => c.clone(),
                None => match self.consumer().await {
                    Ok(c) => {
                        consumer = Some(c.clone());
                        c
                    }
                    Err(error) => {
                        self.nats_failed(&mut failures, &error).await;
                        continue;
                    }
                },
            };
            let batch = match self.fetch(&c).await {
                Ok(b) => b,
                Err(error) => {
                    consumer = None;
                    self.nats_failed(&mut failures, &error).await;
                    continue;
                }
            };
            failures = 0;
            if batch.is_empty() {
                self.set_ready(true);
                continue;
            }
            self.process(batch).await;
        }
        Ok(())
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

    async fn fetch(&self, c: &PullConsumer) -> anyhow::Result<Vec<jetstream::Message>> {
        let mut batch = c
            .batch()
            .max_messages(self.settings.batch_size)
            .expires(self.settings.fetch_wait)
            .messages()
            .await
            .context("request a batch")?;
        let mut out = Vec::with_capacity(self.settings.batch_size);
        while let Some(msg) = batch.next().await {
            out.push(msg.map_err(|e| anyhow::anyhow!("receive a message: {e}"))?);
        }
        Ok(out)
    }

    async fn process(&self, batch: Vec<jetstream::Message>) {
        let mut events = Vec::with_capacity(batch.len());
        let mut good = Vec::with_capacity(batch.len());
        for msg in batch {
            match decode(&msg.payload) {
                Ok(e) => {
                    events.push(e);
                    good.push(msg);
                }
                Err(reason) => self.dead_letter(msg, &reason).await,
            }
        }
        if events.is_empty() {
            return;
        }
        let mut attempt = 0u32;
        let mut last_progress = Instant::now();
        loop {
            let start = Instant::now();
            match store::apply(&self.pool, &events).await {
                Ok(applied) => {
                    metrics::histogram!(m::COMMIT_DURATION).record(start.elapsed().as_secs_f64());
                    self.set_ready(true);
                    self.committed(&events, applied);
                    break;
                }
                Err(error) => {
                    metrics::counter!(m::DB_ERRORS).increment(1);
                    self.set_ready(false);
                    if attempt == 0 {
                        tracing::warn!(error = %error, events = events.len(), "batch not committed; holding its messages and retrying");
                    }
                    if self.shutdown.is_cancelled() && attempt >= 3 {
                        tracing::warn!(
                            "shutting down with an uncommitted batch; it will be redelivered"
                        );
                        return;
                    }
                    // Keep the messages ours while Postgres is away instead of letting
                    // them be redelivered every ack wait.
                    if last_progress.elapsed() > Duration::from_secs(10) {
                        for msg in &good {
                            let _ = msg.ack_with(AckKind::Progress).await;
                        }
                        last_progress = Instant::now();
                    }
                    tokio::time::sleep(backoff(attempt, self.settings.max_backoff)).await;
                    attempt += 1;
                }
            }
        }
        let acks = good.iter().map(|msg| msg.ack());
        for result in futures::future::join_all(acks).await {
            if let Err(error) = result {
                // The commit stands; a lost ack only means a redelivery that dedup absorbs.
                metrics::counter!(m::NATS_ERRORS).increment(1);
                tracing::debug!(%error, "ack failed");
            }
        }
    }

    fn committed(&self, events: &[Event], applied: store::Applied) {
        metrics::counter!(m::BATCHES).increment(1);
        metrics::counter!(m::ROWS).increment(applied.rows as u64);
        metrics::counter!(m::EVENTS, "outcome" => "new").increment(applied.new as u64);
        metrics::counter!(m::EVENTS, "outcome" => "duplicate").increment(applied.duplicate as u64);
        let now = netqoe_model::now_ms();
        let freshness = metrics::histogram!(m::FRESHNESS);
        for e in events {
            if let Some(recv) = e.recv_ts_ms {
                freshness.record((now - recv).max(0) as f64 / 1000.0);
            }
        }
        tracing::debug!(
            new = applied.new,
            duplicate = applied.duplicate,
            rows = applied.rows,
            "batch committed"
        );
    }

    /// Moves a message to the DLQ, then acks it; if the DLQ publish fails the message is left
    /// unacked and comes back.
    async fn dead_letter(&self, msg: jetstream::Message, reason: &str) {
        let deliveries = msg.info().map(|i| i.delivered).unwrap_or(1);
        let subject = msg.subject.to_string();
        match dlq::send(&self.js, &subject, msg.payload.clone(), reason, deliveries).await {
            Ok(()) => {
                metrics::counter!(m::DLQ, "reason" => if reason.starts_with("invalid JSON") { "undecodable" } else { "invalid" }).increment(1);
                metrics::counter!(m::EVENTS, "outcome" => "dlq").increment(1);
                tracing::warn!(subject = %subject, reason, "message sent to QOE_DLQ");
                let _ = msg.ack().await;
            }
            Err(error) => {
                metrics::counter!(m::NATS_ERRORS).increment(1);
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot publish to QOE_DLQ; the message will be redelivered"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_messages_say_why() {
        assert!(decode(b"not json").unwrap_err().starts_with("invalid JSON"));
        let err = decode(br#"{"schema_version":"1","client_id":"x"}"#).unwrap_err();
        assert!(
            err.starts_with("invalid event: event_id: is required"),
            "{err}"
        );
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

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(5);
        assert_eq!(backoff(0, max), Duration::from_millis(100));
        assert_eq!(backoff(3, max), Duration::from_millis(800));
        assert_eq!(backoff(30, max), max);
    }
}

//! The consume loop: fetch a batch from the `aggregator` consumer, send bad messages to the
//! DLQ, merge the rest in one transaction, ack after commit; retry with backoff on outages.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{
    self,
    consumer::{pull, PullConsumer},
    AckKind,
};
use async_nats::Subject;
use futures::StreamExt;
use netqoe_model::Event;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::inflight::InFlight;
use crate::metrics as m;
use crate::quarantine::{self, letter, Dead};
use crate::{store, RunSettings};

/// Decodes and validates one stream message into an event, or says why it cannot be processed.
///
/// Events are judged by when ingest received them, not by when they are consumed. What ingest
/// publishes is in canonical form and takes the typed fast path; anything else goes through
/// the full validator, which gives the reason.
pub fn decode(payload: &[u8]) -> Result<Event, String> {
    let mut now = None;
    if let Some(mut event) = netqoe_model::parse_canonical(payload, |recv| {
        *now.insert(recv.unwrap_or_else(netqoe_model::now_ms))
    }) {
        event.recv_ts_ms = now;
        return Ok(event);
    }
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

/// Answers `kind` (ack, nak, in progress) to the deliveries whose ack subjects are `acks`.
pub(crate) async fn answer<'a>(
    client: &async_nats::Client,
    acks: impl Iterator<Item = &'a Subject>,
    kind: AckKind,
) {
    let body: bytes::Bytes = kind.into();
    let mut failed = 0u64;
    for subject in acks {
        if let Err(error) = client.publish(subject.clone(), body.clone()).await {
            if failed == 0 {
                tracing::debug!(%error, "answer to a delivery not sent");
            }
            failed += 1;
        }
    }
    metrics::counter!(m::NATS_ERRORS).increment(failed);
}

/// Acks committed messages. The commit stands whatever happens here: a lost ack only means a
/// redelivery that dedup absorbs.
async fn ack_all(client: async_nats::Client, chunks: Chunks) {
    answer(
        &client,
        chunks.iter().flat_map(|c| c.acks.iter().flatten()),
        AckKind::Ack,
    )
    .await;
}

/// Exponential backoff capped at `max`.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1 << attempt.min(10));
    base.min(max)
}

/// Decoded events of fetched messages with the ack subjects of their deliveries, in the same
/// order. Only the ack subject of a message is kept once it is decoded: a whole
/// `jetstream::Message` (over 400 bytes, with a client handle) for each of the tens of
/// thousands of events in flight cost memory and copying for nothing. A message without one
/// (never the case for a pull consumer's deliveries) is merged all the same but cannot be
/// answered.
#[derive(Default)]
pub(crate) struct Fetched {
    pub events: Vec<Event>,
    pub acks: Vec<Option<Subject>>,
    /// The handle of its deliveries in [`InFlight`] while they wait.
    pub held: Option<u64>,
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
struct Batch {
    parts: Vec<Fetched>,
    events: usize,
    /// The fetch filled the whole batch: a backlog is waiting behind it.
    full: bool,
}

/// The events of consecutive batches that go into one transaction, kept in the chunks they
/// were decoded into (events are large: they are never copied into one long buffer).
pub(crate) type Chunks = Vec<Fetched>;

/// How [`Consumer::commit`] ended.
pub(crate) enum Commit {
    Done,
    /// Retrying cannot help (see [`quarantine::is_permanent`]).
    Permanent(sqlx::Error),
    /// Shutdown came while Postgres was unavailable.
    Shutdown,
}

pub(crate) struct Consumer {
    pub js: jetstream::Context,
    pub pool: PgPool,
    pub cache: store::RowCache,
    pub settings: RunSettings,
    pub ready: Arc<AtomicBool>,
    pub shutdown: CancellationToken,
    pub inflight: InFlight,
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

    /// Runs until shutdown; returns after committing the batches already fetched.
    ///
    /// A fetch task pulls and decodes the next batches while the current one is being
    /// committed; while a backlog drains (fetches come back full), consecutive batches are
    /// merged into one transaction of at most `max_commit_events` events, waiting up to
    /// `fetch_wait` for each next one, so a window touched by several of them is written once.
    pub async fn run(self: Arc<Self>) -> anyhow::Result<()> {
        let batch_size = self.settings.batch_size.max(1);
        let max_events = self.settings.max_commit_events.max(batch_size);
        // In flight: the commit in hand, the queue and the fetch under way; kept below the
        // consumer's max_ack_pending so fetching never stalls on it.
        let queue = (max_events / batch_size).max(1);
        let (tx, mut rx) = mpsc::channel::<Batch>(queue);
        let fetcher = tokio::spawn(self.clone().fetch_loop(tx));
        let keeper_stop = CancellationToken::new();
        let keeper = tokio::spawn(self.clone().keep_alive(keeper_stop.clone()));
        let mut acks = tokio::task::JoinSet::new();
        while let Some(first) = rx.recv().await {
            let mut events = first.events;
            let mut backlog = first.full;
            let mut parts: Vec<Chunks> = first.parts.into_iter().map(|p| vec![p]).collect();
            while events + batch_size <= max_events {
                // While a backlog drains (the last fetch came back full), wait for the
                // next batch rather than commit a small transaction: every window a
                // transaction touches is written once, so larger ones write fewer rows.
                let more = match rx.try_recv() {
                    Ok(more) => more,
                    Err(_) if backlog => {
                        match tokio::time::timeout(self.settings.fetch_wait, rx.recv()).await {
                            Ok(Some(more)) => more,
                            Ok(None) | Err(_) => break,
                        }
                    }
                    Err(_) => break,
                };
                events += more.events;
                backlog = more.full;
                for (chunks, part) in parts.iter_mut().zip(more.parts) {
                    chunks.push(part);
                }
            }
            // Disjoint sets of windows commit side by side on their own connections; acks go
            // out in the background while the next batch commits.
            parts.retain(|chunks| chunks.iter().any(|c| !c.events.is_empty()));
            let held: Vec<u64> = parts.iter().flatten().filter_map(|c| c.held).collect();
            let done = futures::future::join_all(parts.into_iter().map(|p| self.process(p))).await;
            // Answered or about to be: no longer kept alive.
            for id in held {
                self.inflight.release(id);
            }
            for chunks in done.into_iter().flatten() {
                acks.spawn(ack_all(self.js.client(), chunks));
            }
            while acks.try_join_next().is_some() {}
        }
        fetcher.await.context("fetch task")?;
        keeper_stop.cancel();
        let _ = keeper.await;
        while acks.join_next().await.is_some() {}
        Ok(())
    }

    /// Fetches and decodes batches until shutdown, sending bad messages to the DLQ and the
    /// rest to the committer.
    async fn fetch_loop(self: Arc<Self>, tx: mpsc::Sender<Batch>) {
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

    /// Commits one part of a transaction, retrying while Postgres is unavailable; returns its
    /// chunks, whose messages are to be acked, or None when they were answered here: handed
    /// back for redelivery because shutdown came first, or committed in parts around the
    /// events that can never be merged, which went to the DLQ.
    async fn process(&self, chunks: Chunks) -> Option<Chunks> {
        let outcome = {
            let events: Vec<&Event> = chunks.iter().flat_map(|c| c.events.iter()).collect();
            match self.commit(&events).await {
                Commit::Shutdown => {
                    let acks = chunks.iter().flat_map(|c| c.acks.iter().flatten());
                    answer(&self.js.client(), acks, AckKind::Nak(None)).await;
                    return None;
                }
                outcome => outcome,
            }
        };
        match outcome {
            Commit::Permanent(error) => {
                self.isolate(chunks, error).await;
                None
            }
            _ => Some(chunks),
        }
    }

    /// Commits `events`, retrying with backoff while the error is transient (their
    /// deliveries are kept alive meanwhile, see [`InFlight`]); gives up on a permanent error,
    /// or when shutdown comes while Postgres is unavailable.
    pub(crate) async fn commit(&self, events: &[&Event]) -> Commit {
        let mut attempt = 0u32;
        loop {
            let start = Instant::now();
            match store::apply(&self.pool, events, &self.cache).await {
                Ok(applied) => {
                    metrics::histogram!(m::COMMIT_DURATION).record(start.elapsed().as_secs_f64());
                    self.set_ready(true);
                    self.committed(events, applied);
                    return Commit::Done;
                }
                Err(error) if quarantine::is_permanent(&error) => {
                    metrics::counter!(m::DB_ERRORS).increment(1);
                    tracing::debug!(error = %error, events = events.len(), "batch refused for good");
                    return Commit::Permanent(error);
                }
                Err(error) => {
                    metrics::counter!(m::DB_ERRORS).increment(1);
                    self.set_ready(false);
                    if attempt == 0 {
                        tracing::warn!(error = %error, events = events.len(), "batch not committed; holding its messages and retrying");
                    }
                    if self.shutdown.is_cancelled() && attempt >= 3 {
                        tracing::warn!(
                            events = events.len(),
                            "shutting down with an uncommitted batch; it will be redelivered"
                        );
                        return Commit::Shutdown;
                    }
                    tokio::time::sleep(backoff(attempt, self.settings.max_backoff)).await;
                    attempt += 1;
                }
            }
        }
    }

    fn committed(&self, events: &[&Event], applied: store::Applied) {
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

//! The consume loop: fetch a batch from the `aggregator` consumer, send bad messages to the
//! DLQ, merge the rest in one transaction, ack after commit; retry with backoff on outages.
//! The fetch task is in `fetch`, each transaction's commit in `commit`; this is what joins
//! them: the consumer's handles, and the loop that gathers fetched batches into transactions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer::PullConsumer, AckKind};
use async_nats::Subject;
use netqoe_model::Event;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::inflight::InFlight;
use crate::metrics as m;
use crate::store;

mod commit;
mod fetch;

use commit::ack_all;
pub(crate) use commit::Commit;
use fetch::Batch;
pub use fetch::{decode, BadMessage};

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

/// The pause before retry `attempt` while NATS or Postgres is unavailable: from 100 ms,
/// doubling, at most `max` (`--max-backoff`).
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    netqoe_common::Backoff::new(Duration::from_millis(100), max).delay(attempt)
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

/// The events of consecutive batches that go into one transaction, kept in the chunks they
/// were decoded into (events are large: they are never copied into one long buffer).
pub(crate) type Chunks = Vec<Fetched>;

pub(crate) struct Consumer {
    pub js: jetstream::Context,
    pub pool: PgPool,
    pub cache: store::RowCache,
    pub settings: Settings,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(5);
        assert_eq!(backoff(0, max), Duration::from_millis(100));
        assert_eq!(backoff(3, max), Duration::from_millis(800));
        assert_eq!(backoff(30, max), max);
    }
}

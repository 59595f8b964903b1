//! The committer's side of a transaction: commits its events, retrying while Postgres is
//! unavailable, and answers their messages after the commit; a batch refused for good goes
//! to the quarantine.

use std::time::Instant;

use async_nats::jetstream::AckKind;
use netqoe_model::Event;

use super::{answer, backoff, Chunks, Consumer};
use crate::metrics as m;
use crate::{quarantine, store};

/// How [`Consumer::commit`] ended.
pub(crate) enum Commit {
    Done,
    /// Retrying cannot help (see [`quarantine::is_permanent`]).
    Permanent(store::Error),
    /// Shutdown came while Postgres was unavailable.
    Shutdown,
}

/// Acks committed messages. The commit stands whatever happens here: a lost ack only means a
/// redelivery that dedup absorbs.
pub(super) async fn ack_all(client: async_nats::Client, chunks: Chunks) {
    answer(
        &client,
        chunks.iter().flat_map(|c| c.acks.iter().flatten()),
        AckKind::Ack,
    )
    .await;
}

impl Consumer {
    /// Commits one part of a transaction, retrying while Postgres is unavailable; returns its
    /// chunks, whose messages are to be acked, or None when they were answered here: handed
    /// back for redelivery because shutdown came first, or committed in parts around the
    /// events that can never be merged, which went to the DLQ.
    pub(super) async fn process(&self, chunks: Chunks) -> Option<Chunks> {
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

//! Deliveries fetched and not yet answered (queued for a commit, or held while Postgres is
//! down), kept alive with in-progress acks so none is redelivered while it waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use async_nats::jetstream::AckKind;
use async_nats::Subject;
use tokio_util::sync::CancellationToken;

use crate::consume::{answer, Consumer};
use crate::metrics as m;

/// The ack subjects of fetched, unanswered deliveries, by the handle of their chunk.
#[derive(Default)]
pub(crate) struct InFlight {
    next: AtomicU64,
    /// The consumer's ack wait in milliseconds (0 until known).
    ack_wait_ms: AtomicU64,
    held: Mutex<HashMap<u64, Held>>,
}

struct Held {
    /// When the deliveries were last fetched or told to the server to be in progress.
    since: Instant,
    acks: Vec<Subject>,
}

impl InFlight {
    /// Holds `acks` until [`release`](Self::release) is called with the handle returned.
    pub fn hold(&self, acks: Vec<Subject>, now: Instant) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(id, Held { since: now, acks });
        id
    }

    pub fn release(&self, id: u64) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&id);
    }

    /// Deliveries held for `age` or more since they were fetched or last kept alive; they
    /// count as kept alive from `now`.
    pub fn due(&self, age: Duration, now: Instant) -> Vec<Subject> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for h in held.values_mut() {
            if now.saturating_duration_since(h.since) >= age {
                h.since = now;
                out.extend(h.acks.iter().cloned());
            }
        }
        out
    }

    pub fn set_ack_wait(&self, ack_wait: Duration) {
        self.ack_wait_ms
            .store(ack_wait.as_millis() as u64, Ordering::Relaxed);
    }

    /// How often held deliveries are kept alive: a third of the consumer's ack wait (30 s
    /// until it is known), so that a lost answer or a slow tick still leaves time.
    pub fn period(&self) -> Duration {
        let ms = match self.ack_wait_ms.load(Ordering::Relaxed) {
            0 => 30_000,
            ms => ms,
        };
        Duration::from_millis((ms / 3).max(50))
    }
}

impl Consumer {
    /// Tells the server every period that the deliveries held since the last one are still
    /// in progress: those queued behind the commit in hand, and the commit in hand while
    /// Postgres is away, so none is redelivered to another instance (or to this one) while
    /// it waits.
    pub(crate) async fn keep_alive(self: Arc<Self>, stop: CancellationToken) {
        let client = self.js.client();
        loop {
            // The period is known once the consumer is: look at least every second.
            let period = self.inflight.period();
            tokio::select! {
                _ = tokio::time::sleep(period.min(Duration::from_secs(1))) => {}
                _ = stop.cancelled() => return,
            }
            let due = self.inflight.due(period, Instant::now());
            if !due.is_empty() {
                tracing::debug!(messages = due.len(), "keeping fetched messages in progress");
                metrics::counter!(m::KEPT_ALIVE).increment(due.len() as u64);
                answer(&client, due.iter(), AckKind::Progress).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deliveries_held_a_period_are_kept_alive_and_released_ones_never() {
        let f = InFlight::default();
        assert_eq!(f.period(), Duration::from_secs(10));
        f.set_ack_wait(Duration::from_secs(3));
        let period = f.period();
        assert_eq!(period, Duration::from_secs(1));
        let t0 = Instant::now();
        let subject = |s: &str| Subject::from(s);
        let a = f.hold(vec![subject("a1"), subject("a2")], t0);
        let b = f.hold(vec![subject("b1")], t0 + Duration::from_millis(600));
        assert!(f.due(period, t0 + Duration::from_millis(500)).is_empty());
        let first = f.due(period, t0 + Duration::from_millis(1000));
        assert_eq!(first, vec![subject("a1"), subject("a2")]);
        // a was kept alive at 1.0 s, b fetched at 0.6 s
        let second = f.due(period, t0 + Duration::from_millis(1700));
        assert_eq!(second, vec![subject("b1")]);
        f.release(a);
        f.release(b);
        assert!(f.due(period, t0 + Duration::from_secs(60)).is_empty());
    }
}

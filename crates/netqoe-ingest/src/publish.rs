//! Durable publishing to JetStream: one message per event, acks pipelined per request.
//!
//! Every event of a request is handed to the client first and the acks are awaited together,
//! so a request of N events costs about one round trip, not N. A process-wide semaphore bounds
//! the acks in flight below what async-nats allows; a request waits for room in that window
//! at most `publish_wait`, then is refused (503) so that a slow JetStream sheds load instead
//! of queueing requests for ever. A failure of any ack fails the request
//! (503): the client retries the whole batch and JetStream's duplicate window (keyed by
//! `Nats-Msg-Id`) keeps the events that did land from being stored twice.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use futures::future::join_all;
use tokio::sync::Semaphore;

/// Acks in flight across all requests (async-nats allows about 5 000 pending).
pub const ACK_WINDOW: usize = 4096;

/// One event ready to publish.
pub struct Outgoing {
    pub subject: String,
    pub msg_id: String,
    pub payload: Bytes,
}

/// What JetStream said about a request's events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: usize,
    pub duplicates: usize,
}

/// Why publishing failed; every variant is answered with 503.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("NATS is not connected")]
    Disconnected,
    #[error("stream QOE_EVENTS is full")]
    StreamFull,
    #[error("JetStream did not acknowledge within {0:?}")]
    Timeout(Duration),
    #[error("JetStream refused the event: {0}")]
    Refused(String),
    #[error("JetStream is acknowledging slower than events arrive (no room in the publish window within {0:?})")]
    Busy(Duration),
}

impl PublishError {
    /// Bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::Disconnected => "disconnected",
            PublishError::StreamFull => "stream_full",
            PublishError::Timeout(_) => "ack_timeout",
            PublishError::Refused(_) => "refused",
            PublishError::Busy(_) => "publish_busy",
        }
    }
}

/// Publishes events and awaits their acks.
#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    window: Arc<Semaphore>,
    window_size: usize,
    window_wait: Duration,
    ack_timeout: Duration,
}

impl Publisher {
    /// A publisher with at most `window` unacknowledged events across all requests, each
    /// request waiting at most `window_wait` for room.
    pub fn new(
        client: async_nats::Client,
        ack_timeout: Duration,
        window: usize,
        window_wait: Duration,
    ) -> Publisher {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(ack_timeout);
        let window_size = window.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Publisher {
            client,
            js,
            window: Arc::new(Semaphore::new(window_size)),
            window_size,
            window_wait,
            ack_timeout,
        }
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Whether the client currently holds a connection to the server.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Publishes every event and returns once JetStream acknowledged all of them.
    pub async fn publish(&self, events: Vec<Outgoing>) -> Result<Outcome, PublishError> {
        if !self.connected() {
            return Err(PublishError::Disconnected);
        }
        let permits = u32::try_from(events.len().clamp(1, self.window_size)).unwrap_or(u32::MAX);
        let _permits = tokio::time::timeout(self.window_wait, self.window.acquire_many(permits))
            .await
            .map_err(|_| PublishError::Busy(self.window_wait))?
            .map_err(|_| PublishError::Disconnected)?;
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", e.msg_id.as_str());
            let ack = self
                .js
                .publish_with_headers(e.subject, headers, e.payload)
                .await
                .map_err(|err| classify(&err.to_string(), self.ack_timeout))?;
            acks.push(std::future::IntoFuture::into_future(ack));
        }
        let results = tokio::time::timeout(
            self.ack_timeout + Duration::from_millis(500),
            join_all(acks),
        )
        .await
        .map_err(|_| PublishError::Timeout(self.ack_timeout))?;
        let mut outcome = Outcome::default();
        for result in results {
            match result {
                Ok(ack) if ack.duplicate => outcome.duplicates += 1,
                Ok(_) => outcome.accepted += 1,
                Err(err) => return Err(classify(&err.to_string(), self.ack_timeout)),
            }
        }
        Ok(outcome)
    }
}

/// Maps an async-nats publish error to what the client is told.
fn classify(message: &str, timeout: Duration) -> PublishError {
    let lower = message.to_ascii_lowercase();
    if lower.contains("maximum") && (lower.contains("exceeded") || lower.contains("bytes")) {
        PublishError::StreamFull
    } else if lower.contains("timed out") || lower.contains("timeout") {
        PublishError::Timeout(timeout)
    } else if lower.contains("no responders")
        || lower.contains("disconnected")
        || lower.contains("broken pipe")
    {
        PublishError::Disconnected
    } else {
        PublishError::Refused(message.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_errors_are_classified() {
        let t = Duration::from_secs(5);
        assert!(matches!(
            classify("maximum bytes exceeded", t),
            PublishError::StreamFull
        ));
        assert!(matches!(
            classify("timed out: didn't receive ack in time", t),
            PublishError::Timeout(_)
        ));
        assert!(matches!(
            classify("no responders", t),
            PublishError::Disconnected
        ));
        assert!(matches!(
            classify("wrong last sequence", t),
            PublishError::Refused(_)
        ));
    }
}

//! Messages the aggregator cannot merge: undecodable or invalid ones, and events whose window
//! Postgres refuses for good (a stored state that cannot be decoded, a data error), which are
//! isolated from the rest of their batch and sent to `QOE_DLQ`.

use std::ops::Range;

use async_nats::jetstream::{self, AckKind};
use async_nats::Subject;
use netqoe_model::Event;

use crate::consume::{answer, BadMessage, Chunks, Commit, Consumer};
use crate::dlq::{self, Letter};
use crate::metrics as m;
use crate::store;
use crate::window::WindowKey;

/// Whether retrying `error` can never succeed: the stored state of a window cannot be
/// decoded, or Postgres refuses the data itself. Connection failures, serialization
/// failures, deadlocks, lock timeouts, shutdowns and anything unknown are transient: the
/// batch is retried as it is, and a database outage never sends an event to the DLQ.
pub fn is_permanent(error: &store::Error) -> bool {
    match error {
        store::Error::State(_) => true,
        // A value sqlx cannot decode is treated like a stored state; a column of the wrong
        // type (ColumnDecode) would be the schema's fault, true of every window: not isolated.
        store::Error::Db(sqlx::Error::Decode(_)) => true,
        store::Error::Db(sqlx::Error::Database(e)) => {
            e.code().is_some_and(|code| permanent_sqlstate(&code))
        }
        store::Error::Db(_) | store::Error::LockedRowsChanged(_) => false,
    }
}

/// Whether `error` fails every event of a window alike (its stored state cannot be read),
/// so that bisecting stops at window boundaries.
fn fails_whole_window(error: &store::Error) -> bool {
    matches!(
        error,
        store::Error::State(_) | store::Error::Db(sqlx::Error::Decode(_))
    )
}

/// SQLSTATEs that depend on the rows written, not on the database's condition: data
/// exceptions (22), integrity constraint violations (23), program limits such as a row too
/// large (54), and data or index corruption (XX001, XX002).
pub fn permanent_sqlstate(code: &str) -> bool {
    code.starts_with("22")
        || code.starts_with("23")
        || code.starts_with("54")
        || code == "XX001"
        || code == "XX002"
}

/// Where to split `range` of events sorted by window (`starts`: the index of each window's
/// first event) to find the ones that fail: at the window boundary nearest its middle; inside
/// one window at its middle, unless the whole window fails (`whole_window`, its stored state
/// is unreadable). None: `range` is what fails.
pub fn split_at(starts: &[usize], range: &Range<usize>, whole_window: bool) -> Option<usize> {
    let mid = range.start + range.len() / 2;
    let inside = |s: &&usize| **s > range.start && **s < range.end;
    let i = starts.partition_point(|&s| s < mid);
    let above = starts.get(i).filter(inside);
    let below = i.checked_sub(1).and_then(|j| starts.get(j)).filter(inside);
    match (below, above) {
        (Some(&b), Some(&a)) => Some(if mid - b <= a - mid { b } else { a }),
        (Some(&s), None) | (None, Some(&s)) => Some(s),
        (None, None) if !whole_window && range.len() > 1 => Some(mid),
        (None, None) => None,
    }
}

/// How a dead letter's reason names its window.
pub fn describe(key: &WindowKey) -> String {
    format!(
        "client_id={} target={} probe_kind={} ip_version={} window_start={}",
        key.client_id,
        key.target,
        key.probe_kind.as_str(),
        key.ip_version,
        crate::store::ts(key.window_start_ms).to_rfc3339(),
    )
}

/// A letter for the DLQ, the ack subject of its delivery and its reason's metric label.
pub(crate) type Dead = (Letter, Option<Subject>, &'static str);

/// The dead letter of a message that cannot be decoded or is invalid.
pub(crate) fn letter(msg: jetstream::Message, reason: BadMessage) -> Dead {
    let info = msg.info().ok().map(|i| (i.delivered, i.stream_sequence));
    let letter = dlq::Letter {
        subject: msg.subject.to_string(),
        payload: msg.payload.clone(),
        reason: reason.to_string(),
        deliveries: info.map_or(1, |i| i.0),
        msg_id: info.map(|i| dlq::letter_id(i.1)),
    };
    (letter, msg.message.reply.clone(), reason.label())
}

impl Consumer {
    /// Commits the events of a batch that failed with the permanent `error` in smaller
    /// transactions, bisecting by window, and sends the events that still fail alone to the
    /// DLQ; acks everything committed or dead-lettered.
    pub(crate) async fn isolate(&self, chunks: Chunks, error: store::Error) {
        let mut items: Vec<(WindowKey, &Event, Option<&Subject>)> = chunks
            .iter()
            .flat_map(|c| c.events.iter().zip(c.acks.iter().map(Option::as_ref)))
            .map(|(e, a)| (WindowKey::of(e), e, a))
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let starts: Vec<usize> = (0..items.len())
            .filter(|&i| i == 0 || items[i].0 != items[i - 1].0)
            .collect();
        let client = self.js.client();
        let mut good: Vec<&Subject> = Vec::new();
        let mut bad: Vec<(Range<usize>, String)> = Vec::new();
        let mut work = vec![(0..items.len(), Some(error))];
        let mut transactions = 0u32;
        while let Some((range, known)) = work.pop() {
            let error = match known {
                Some(error) => error,
                None => {
                    let events: Vec<&Event> = items[range.clone()].iter().map(|i| i.1).collect();
                    let acks: Vec<&Subject> =
                        items[range.clone()].iter().filter_map(|i| i.2).collect();
                    transactions += 1;
                    match self.commit(&events).await {
                        Commit::Done => {
                            good.extend(acks);
                            continue;
                        }
                        Commit::Permanent(error) => error,
                        Commit::Shutdown => {
                            // Untried, failing and not yet dead-lettered: all come back.
                            let mut naks: Vec<&Subject> = Vec::new();
                            let failing = bad.iter().map(|(r, _)| r);
                            for r in work.iter().map(|(r, _)| r).chain(failing).chain([&range]) {
                                naks.extend(items[r.clone()].iter().filter_map(|i| i.2));
                            }
                            answer(&client, naks.into_iter(), AckKind::Nak(None)).await;
                            answer(&client, good.into_iter(), AckKind::Ack).await;
                            return;
                        }
                    }
                }
            };
            match split_at(&starts, &range, fails_whole_window(&error)) {
                Some(at) => {
                    work.push((at..range.end, None));
                    work.push((range.start..at, None));
                }
                None => bad.push((range, error.to_string())),
            }
        }
        answer(&client, good.into_iter(), AckKind::Ack).await;
        let events: usize = bad.iter().map(|(r, _)| r.len()).sum();
        if let Some((first, error)) = bad.first() {
            tracing::error!(
                events,
                windows = bad.len(),
                window = describe(&items[first.start].0),
                error = %error,
                transactions,
                "events that cannot be merged into their windows sent to QOE_DLQ"
            );
        }
        let mut dead: Vec<Dead> = Vec::with_capacity(events);
        for (range, error) in bad {
            for (key, event, ack) in &items[range] {
                let (deliveries, seq) = ack.and_then(|a| dlq::delivery_of(a)).unzip();
                let letter = Letter {
                    subject: netqoe_nats::event_subject(&event.client_id),
                    payload: serde_json::to_vec(event).unwrap_or_default().into(),
                    reason: format!("cannot merge into window {}: {error}", describe(key)),
                    deliveries: deliveries.unwrap_or(1),
                    msg_id: seq.map(dlq::letter_id),
                };
                dead.push((letter, ack.cloned(), "unmergeable"));
            }
        }
        self.dead_letters(dead).await;
    }

    /// Sends `dead` to the DLQ all at once and acks each message whose letter was stored;
    /// the others are handed back for redelivery after a pause.
    pub(crate) async fn dead_letters(&self, dead: Vec<Dead>) {
        if dead.is_empty() {
            return;
        }
        let letters: Vec<Letter> = dead.iter().map(|d| d.0.clone()).collect();
        let room = dlq::Room::of(&self.js).await;
        let results = dlq::send_all(&self.js, &letters).await;
        let sent = letters.iter().zip(&results).filter(|(_, r)| r.is_ok());
        let (n, bytes) = sent.fold((0, 0), |(n, b), (l, _)| (n + 1, b + dlq::size_of(l)));
        let pushed_out = room.map_or(0, |room| room.pushed_out(n, bytes));
        if pushed_out > 0 {
            metrics::counter!(m::DLQ_PUSHED_OUT).increment(pushed_out);
            tracing::error!(
                letters = pushed_out,
                "QOE_DLQ is full: storing new dead letters discarded the oldest"
            );
        }
        let client = self.js.client();
        let (mut stored, mut failed) = (Vec::new(), Vec::new());
        for ((letter, ack, label), result) in dead.iter().zip(results) {
            match result {
                Ok(()) => {
                    metrics::counter!(m::DLQ, "reason" => *label).increment(1);
                    metrics::counter!(m::EVENTS, "outcome" => "dlq").increment(1);
                    tracing::debug!(subject = %letter.subject, reason = %letter.reason, "message sent to QOE_DLQ");
                    stored.extend(ack.as_ref());
                }
                Err(error) => {
                    if failed.is_empty() {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "cannot publish to QOE_DLQ; the message will be redelivered"
                        );
                    }
                    metrics::counter!(m::NATS_ERRORS).increment(1);
                    failed.extend(ack.as_ref());
                }
            }
        }
        if stored.len() == 1 && failed.is_empty() {
            let (letter, _, _) = &dead[0];
            tracing::warn!(subject = %letter.subject, reason = %letter.reason, "message sent to QOE_DLQ");
        } else if !stored.is_empty() {
            tracing::warn!(letters = stored.len(), "messages sent to QOE_DLQ");
        }
        answer(&client, stored.into_iter(), AckKind::Ack).await;
        let pause = AckKind::Nak(Some(self.settings.max_backoff));
        answer(&client, failed.into_iter(), pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_errors_are_permanent_and_outages_are_not() {
        for code in ["22P02", "22021", "23505", "23514", "54000", "XX001"] {
            assert!(permanent_sqlstate(code), "{code}");
        }
        // connection, serialization failure, deadlock, lock timeout, shutdown, disk full,
        // undefined table
        for code in [
            "08006", "40001", "40P01", "55P03", "57P01", "53100", "42P01",
        ] {
            assert!(!permanent_sqlstate(code), "{code}");
        }
        let unreadable = crate::window::StateError::UnknownFormat(0xff);
        assert!(is_permanent(&unreadable.into()));
        assert!(is_permanent(
            &sqlx::Error::Decode("bad state".into()).into()
        ));
        assert!(!is_permanent(&sqlx::Error::PoolTimedOut.into()));
        assert!(!is_permanent(
            &sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)).into()
        ));
        assert!(!is_permanent(&store::Error::LockedRowsChanged(1)));
    }

    #[test]
    fn batches_split_at_window_boundaries_then_inside_a_window() {
        // windows start at 0, 3, 4, 9 (10 events)
        let starts = [0, 3, 4, 9];
        assert_eq!(split_at(&starts, &(0..10), false), Some(4));
        assert_eq!(split_at(&starts, &(0..4), false), Some(3));
        assert_eq!(split_at(&starts, &(4..10), false), Some(9));
        // one window of five events: halves, unless its stored state is what fails
        assert_eq!(split_at(&starts, &(4..9), false), Some(6));
        assert_eq!(split_at(&starts, &(4..9), true), None);
        assert_eq!(split_at(&starts, &(6..7), false), None);
    }
}

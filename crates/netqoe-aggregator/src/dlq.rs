//! The dead-letter queue: sending undecodable or invalid messages to `QOE_DLQ`, and the
//! `dlq list` / `dlq replay` subcommands.

use anyhow::Context;
use async_nats::jetstream;
use bytes::Bytes;
use netqoe_nats::{
    DLQ_STREAM, DLQ_SUBJECT_PREFIX, HEADER_DLQ_DELIVERIES, HEADER_DLQ_REASON, HEADER_DLQ_SUBJECT,
};
use serde::Serialize;

use crate::config::DlqCommand;

/// A message on its way to `QOE_DLQ`.
#[derive(Debug, Clone)]
pub struct Letter {
    /// The subject the message was published on.
    pub subject: String,
    pub payload: Bytes,
    pub reason: String,
    /// How many times it had been delivered.
    pub deliveries: i64,
    /// Its `Nats-Msg-Id` in `QOE_DLQ` (see [`letter_id`]), so that sending it again after a
    /// crash within the stream's duplicate window stores it once.
    pub msg_id: Option<String>,
}

/// The `Nats-Msg-Id` of the dead letter of the `QOE_EVENTS` message at `stream_seq`.
pub fn letter_id(stream_seq: u64) -> String {
    format!("{}:{stream_seq}", netqoe_nats::EVENTS_STREAM)
}

/// The `Nats-Msg-Id` of the replay of the dead letter at `dlq_seq`.
pub fn replay_id(dlq_seq: u64) -> String {
    format!("{DLQ_STREAM}:{dlq_seq}:replay")
}

/// Delivery count and stream sequence of a JetStream delivery, read from its ack subject
/// (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...`, or with domain and account
/// hash before the stream in the newer form).
pub fn delivery_of(ack_subject: &str) -> Option<(i64, u64)> {
    let tokens: Vec<&str> = ack_subject.strip_prefix("$JS.ACK.")?.split('.').collect();
    let at = match tokens.len() {
        7 => 2,
        n if n >= 9 => 4,
        _ => return None,
    };
    Some((tokens[at].parse().ok()?, tokens[at + 1].parse().ok()?))
}

/// Publishes `letter` to `qoe.dlq.<subject>` with the reason and delivery count headers and
/// waits for the ack.
pub async fn send(js: &jetstream::Context, letter: &Letter) -> anyhow::Result<()> {
    send_all(js, std::slice::from_ref(letter))
        .await
        .pop()
        .unwrap_or(Ok(()))
}

/// Publishes every letter at once and then waits for all their acks; one result per letter,
/// in order.
pub async fn send_all(js: &jetstream::Context, letters: &[Letter]) -> Vec<anyhow::Result<()>> {
    let mut acks = Vec::with_capacity(letters.len());
    for letter in letters {
        let mut headers = async_nats::HeaderMap::new();
        // Header values must be one line.
        let reason: String = letter
            .reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(512)
            .collect();
        headers.insert(HEADER_DLQ_REASON, reason.as_str());
        headers.insert(
            HEADER_DLQ_DELIVERIES,
            letter.deliveries.to_string().as_str(),
        );
        headers.insert(HEADER_DLQ_SUBJECT, letter.subject.as_str());
        if let Some(id) = &letter.msg_id {
            headers.insert("Nats-Msg-Id", id.as_str());
        }
        let subject = format!("{DLQ_SUBJECT_PREFIX}{}", letter.subject);
        acks.push(
            js.publish_with_headers(subject, headers, letter.payload.clone())
                .await
                .context("publish to QOE_DLQ"),
        );
    }
    futures::future::join_all(acks.into_iter().map(|ack| async move {
        ack?.await.context("ack from QOE_DLQ")?;
        Ok(())
    }))
    .await
}

/// How full `QOE_DLQ` is, against its limits (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Room {
    pub messages: u64,
    pub bytes: u64,
    pub max_messages: i64,
    pub max_bytes: i64,
    /// The stream refuses new letters when full instead of discarding old ones.
    pub discard_new: bool,
}

impl Room {
    /// `QOE_DLQ`'s state and limits as the server has them now.
    pub async fn of(js: &jetstream::Context) -> anyhow::Result<Room> {
        let stream = js
            .get_stream(DLQ_STREAM)
            .await
            .context("stream QOE_DLQ not found")?;
        let info = stream.cached_info();
        Ok(Room {
            messages: info.state.messages,
            bytes: info.state.bytes,
            max_messages: info.config.max_messages,
            max_bytes: info.config.max_bytes,
            discard_new: info.config.discard == jetstream::stream::DiscardPolicy::New,
        })
    }

    /// How many old letters storing `n` new ones of `bytes` in all pushes out: exact at
    /// `max_messages`, estimated from the average letter at `max_bytes`.
    pub fn pushed_out(&self, n: u64, bytes: u64) -> u64 {
        if self.discard_new || n == 0 {
            return 0;
        }
        let by_count = u64::try_from(self.max_messages)
            .ok()
            .filter(|&max| max > 0)
            .map_or(0, |max| (self.messages + n).saturating_sub(max));
        let by_bytes = match u64::try_from(self.max_bytes).ok().filter(|&max| max > 0) {
            Some(max) if self.bytes + bytes > max && self.messages > 0 => {
                let average = (self.bytes / self.messages).max(1);
                (self.bytes + bytes - max)
                    .div_ceil(average)
                    .min(self.messages)
            }
            _ => 0,
        };
        by_count.max(by_bytes)
    }
}

/// The stored size of `letter`, near enough: payload, headers and subject.
pub fn size_of(letter: &Letter) -> u64 {
    (letter.payload.len() + letter.reason.len().min(512) + 2 * letter.subject.len() + 120) as u64
}

/// One dead letter as `dlq list` shows it.
#[derive(Debug, Serialize)]
pub struct Entry {
    pub seq: u64,
    pub subject: String,
    pub reason: String,
    pub deliveries: String,
    #[serde(skip)]
    pub payload: Bytes,
}

/// Every message currently in `QOE_DLQ`, oldest first.
pub async fn list(js: &jetstream::Context) -> anyhow::Result<Vec<Entry>> {
    let mut stream = js
        .get_stream(DLQ_STREAM)
        .await
        .context("stream QOE_DLQ not found")?;
    let state = stream.info().await?.state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        let Ok(msg) = stream.get_raw_message(seq).await else {
            continue; // deleted (replayed) messages leave gaps
        };
        let header = |name: &str| {
            msg.headers
                .get(name)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        out.push(Entry {
            seq,
            subject: header(HEADER_DLQ_SUBJECT),
            reason: header(HEADER_DLQ_REASON),
            deliveries: header(HEADER_DLQ_DELIVERIES),
            payload: msg.payload.clone(),
        });
    }
    Ok(out)
}

/// Republishes the chosen dead letters to their original subjects and removes them from the
/// DLQ. Returns how many were replayed. A replay carries a `Nats-Msg-Id` of the letter's
/// sequence, so replaying again after a crash between the publish and the removal stores it
/// once (within `QOE_EVENTS`' duplicate window).
pub async fn replay(js: &jetstream::Context, seq: Option<u64>) -> anyhow::Result<usize> {
    let stream = js
        .get_stream(DLQ_STREAM)
        .await
        .context("stream QOE_DLQ not found")?;
    let entries = list(js).await?;
    let mut replayed = 0;
    for e in entries
        .into_iter()
        .filter(|e| seq.is_none_or(|s| s == e.seq))
    {
        if e.subject.is_empty() {
            anyhow::bail!("dead letter {} has no {HEADER_DLQ_SUBJECT} header", e.seq);
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", replay_id(e.seq).as_str());
        js.publish_with_headers(e.subject.clone(), headers, e.payload.clone())
            .await
            .context("republish")?
            .await
            .with_context(|| format!("republish dead letter {} to {}", e.seq, e.subject))?;
        stream
            .delete_message(e.seq)
            .await
            .context("remove replayed dead letter")?;
        replayed += 1;
    }
    if let (Some(s), 0) = (seq, replayed) {
        anyhow::bail!("no dead letter with sequence {s}");
    }
    Ok(replayed)
}

/// Runs `dlq list` or `dlq replay` against the NATS at `nats_url`, writing what it finds
/// or did to `out`.
pub async fn execute(
    nats_url: &str,
    command: &DlqCommand,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let client = netqoe_nats::connect(nats_url, "netqoe-aggregator-dlq", true).await?;
    let js = jetstream::new(client);
    match command {
        DlqCommand::List { json } => {
            for e in list(&js).await? {
                writeln!(out, "{}", list_line(&e, *json)?)?;
            }
        }
        DlqCommand::Replay { seq, .. } => {
            let n = replay(&js, *seq).await?;
            writeln!(out, "replayed {n} dead letters")?;
        }
    }
    Ok(())
}

/// The line of `dlq list` for one dead letter: a JSON object, or tab-separated sequence,
/// subject, delivery count and reason.
pub fn list_line(e: &Entry, json: bool) -> anyhow::Result<String> {
    Ok(if json {
        serde_json::to_string(e)?
    } else {
        format!(
            "{}\t{}\tdeliveries={}\t{}",
            e.seq, e.subject, e.deliveries, e.reason
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines_are_a_table_row_or_a_json_object() {
        let e = Entry {
            seq: 7,
            subject: "qoe.events.probe-x".into(),
            reason: "invalid JSON".into(),
            deliveries: "1".into(),
            payload: Bytes::from_static(b"not json"),
        };
        assert_eq!(
            list_line(&e, false).unwrap(),
            "7\tqoe.events.probe-x\tdeliveries=1\tinvalid JSON"
        );
        assert_eq!(
            list_line(&e, true).unwrap(),
            r#"{"seq":7,"subject":"qoe.events.probe-x","reason":"invalid JSON","deliveries":"1"}"#
        );
    }

    #[test]
    fn deliveries_and_sequences_are_read_from_both_ack_subject_forms() {
        assert_eq!(
            delivery_of("$JS.ACK.QOE_EVENTS.aggregator.3.1234.1200.1733380000000000000.7"),
            Some((3, 1234))
        );
        assert_eq!(
            delivery_of(
                "$JS.ACK._.ACCHASH.QOE_EVENTS.aggregator.1.99.98.1733380000000000000.0.xyz"
            ),
            Some((1, 99))
        );
        assert_eq!(delivery_of("_INBOX.abc"), None);
        assert_eq!(delivery_of("$JS.ACK.QOE_EVENTS.aggregator.x.1.2.3.4"), None);
    }

    #[test]
    fn a_full_dlq_is_seen_to_push_out_old_letters() {
        let room = Room {
            messages: 100,
            bytes: 100_000,
            max_messages: -1,
            max_bytes: 100_500,
            discard_new: false,
        };
        assert_eq!(room.pushed_out(1, 400), 0, "still room");
        assert_eq!(room.pushed_out(1, 600), 1);
        assert_eq!(
            room.pushed_out(3, 3_000),
            3,
            "2 500 bytes over, letters of 1 000"
        );
        let counted = Room {
            max_messages: 100,
            max_bytes: -1,
            ..room
        };
        assert_eq!(counted.pushed_out(5, 10), 5);
        assert_eq!(
            Room {
                discard_new: true,
                ..counted
            }
            .pushed_out(5, 10),
            0,
            "refused, not pushed out"
        );
        assert_eq!(Room::default().pushed_out(5, 10), 0, "no limits");
    }

    #[test]
    fn letters_and_replays_have_ids_of_their_own() {
        assert_eq!(letter_id(42), "QOE_EVENTS:42");
        assert_eq!(replay_id(42), "QOE_DLQ:42:replay");
    }
}

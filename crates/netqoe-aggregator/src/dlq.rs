//! The dead-letter queue: sending undecodable or invalid messages to `QOE_DLQ`, and the
//! `dlq list` / `dlq replay` subcommands.

use anyhow::Context;
use async_nats::jetstream;
use bytes::Bytes;
use netqoe_nats::{
    DLQ_STREAM, DLQ_SUBJECT_PREFIX, HEADER_DLQ_DELIVERIES, HEADER_DLQ_REASON, HEADER_DLQ_SUBJECT,
};
use serde::Serialize;

/// Publishes `payload` to `qoe.dlq.<subject>` with the reason and delivery count headers and
/// waits for the ack.
pub async fn send(
    js: &jetstream::Context,
    subject: &str,
    payload: Bytes,
    reason: &str,
    deliveries: i64,
) -> anyhow::Result<()> {
    let mut headers = async_nats::HeaderMap::new();
    // Header values must be one line.
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect();
    headers.insert(HEADER_DLQ_REASON, reason.as_str());
    headers.insert(HEADER_DLQ_DELIVERIES, deliveries.to_string().as_str());
    headers.insert(HEADER_DLQ_SUBJECT, subject);
    js.publish_with_headers(format!("{DLQ_SUBJECT_PREFIX}{subject}"), headers, payload)
        .await
        .context("publish to QOE_DLQ")?
        .await
        .context("ack from QOE_DLQ")?;
    Ok(())
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
/// DLQ. Returns how many were replayed.
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
        js.publish(e.subject.clone(), e.payload.clone())
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

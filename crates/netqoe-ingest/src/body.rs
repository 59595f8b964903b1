//! Request bodies: content type and encoding, size limits while streaming and after gunzip,
//! and splitting a body into events (one object, a JSON array, or NDJSON).

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::error::{ApiError, Detail};

/// How the events are framed in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object or a JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// Reads `Content-Type` (missing = JSON) and `Content-Encoding` (identity or gzip).
pub fn format_of(headers: &HeaderMap) -> Result<(Format, bool), ApiError> {
    let format = match headers.get(header::CONTENT_TYPE) {
        None => Format::Json,
        Some(v) => {
            let v = v.to_str().unwrap_or("");
            let mime = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match mime.as_str() {
                "application/json" | "" => Format::Json,
                "application/x-ndjson" | "application/ndjson" => Format::Ndjson,
                _ => {
                    return Err(ApiError::unsupported(format!(
                        "content type {v:?} is not supported: use application/json or application/x-ndjson"
                    )))
                }
            }
        }
    };
    let gzip = match headers.get(header::CONTENT_ENCODING) {
        None => false,
        Some(v) => match v
            .to_str()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "" | "identity" => false,
            "gzip" | "x-gzip" => true,
            other => {
                return Err(ApiError::unsupported(format!(
                    "content encoding {other:?} is not supported: use identity or gzip"
                )))
            }
        },
    };
    Ok((format, gzip))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::too_large(format!("request body exceeds the limit of {limit} bytes"))
}

/// Reads the body, failing as soon as more than `limit` bytes have arrived (or are
/// announced). What is left of a refused body of at most four times `limit` is read and
/// dropped in the background for up to `drain` so that the client, still sending, gets to
/// read the 413 instead of a reset connection.
pub async fn read_limited(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
    drain: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let drain_max = limit.saturating_mul(4);
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        if n <= drain_max as u64 {
            drain_later(body, drain_max, drain);
        }
        return Err(too_large(limit));
    }
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::timeout(format!("request body could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain_later(
                    body,
                    drain_max.saturating_sub(buf.len() + data.len()),
                    drain,
                );
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.into())
}

/// Reads and drops up to `max` more bytes of `body` for at most `within`, in the background.
fn drain_later(mut body: Body, max: usize, within: Duration) {
    tokio::spawn(tokio::time::timeout(within, async move {
        let mut left = max;
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, Bytes::len);
            if n > left {
                break;
            }
            left -= n;
        }
    }));
}

/// Inflates a gzip body, failing once the output passes `limit` bytes (bounded memory).
pub fn gunzip_limited(compressed: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| ApiError::invalid_json(format!("body is not valid gzip: {e}"), Vec::new()))?;
    if out.len() > limit {
        return Err(ApiError::too_large(format!(
            "decompressed request body exceeds the limit of {limit} bytes"
        )));
    }
    Ok(out)
}

/// How many events one request may hold: `--max-batch`, and the token's burst (a request
/// larger than the burst could never be admitted by the rate limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimit {
    pub max_batch: usize,
    pub burst: usize,
}

impl EventLimit {
    /// The most events a request may hold.
    pub fn max(&self) -> usize {
        self.max_batch.min(self.burst)
    }

    /// The 413 for a request of `n` events, saying how many fit.
    pub fn refuse(&self, n: usize) -> ApiError {
        let max = self.max();
        let message = if self.burst < self.max_batch {
            format!(
                "request holds {n} events, this token admits at most {max} per request (its burst); send smaller batches"
            )
        } else {
            format!(
                "request holds {n} events, this ingest admits at most {max} per request (--max-batch); send smaller batches"
            )
        };
        ApiError::too_many_events(message, max)
    }

    fn check(&self, n: usize) -> Result<(), ApiError> {
        if n > self.max() {
            Err(self.refuse(n))
        } else {
            Ok(())
        }
    }
}

/// Splits a body into its events' JSON values; 413 when there are more than `limit` allows.
pub fn parse(body: &[u8], format: Format, limit: EventLimit) -> Result<Vec<Value>, ApiError> {
    match format {
        Format::Json => parse_json(body, limit),
        Format::Ndjson => parse_ndjson(body, limit),
    }
}

fn parse_json(body: &[u8], limit: EventLimit) -> Result<Vec<Value>, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let invalid = |e: serde_json::Error| {
        ApiError::invalid_json(
            format!("body is not valid JSON: {e}"),
            vec![Detail {
                index: 0,
                field: String::new(),
                problem: format!("invalid JSON at line {} column {}", e.line(), e.column()),
            }],
        )
    };
    match first {
        Some(b'[') => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let mut over = None;
            let events = serde::Deserializer::deserialize_seq(
                &mut de,
                BoundedEvents {
                    max: limit.max(),
                    over: &mut over,
                },
            );
            if let Some(n) = over {
                return Err(limit.refuse(n));
            }
            let events = events.map_err(invalid)?;
            de.end().map_err(invalid)?;
            if events.is_empty() {
                return Err(ApiError::invalid_events(
                    "the event array is empty",
                    Vec::new(),
                ));
            }
            Ok(events)
        }
        Some(b'{') => Ok(vec![serde_json::from_slice(body).map_err(invalid)?]),
        Some(_) => Err(ApiError::invalid_json(
            "body must be a JSON object (one event) or a JSON array of events",
            Vec::new(),
        )),
        None => Err(ApiError::invalid_json("request body is empty", Vec::new())),
    }
}

/// Reads a JSON array of at most `max` events while parsing: past `max`, the rest is only
/// counted (nothing more is kept), so memory stays proportional to what may be admitted
/// rather than to the element count of the body (`[0,0,0,...]`).
struct BoundedEvents<'a> {
    max: usize,
    /// Set to the element count when the array holds more than `max`.
    over: &'a mut Option<usize>,
}

impl<'de> serde::de::Visitor<'de> for BoundedEvents<'_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut events = Vec::new();
        while let Some(event) = seq.next_element::<Value>()? {
            if events.len() == self.max {
                let mut n = events.len() + 1;
                drop(events);
                while let Ok(Some(serde::de::IgnoredAny)) = seq.next_element() {
                    n += 1;
                }
                *self.over = Some(n);
                return Err(serde::de::Error::custom("too many events"));
            }
            events.push(event);
        }
        Ok(events)
    }
}

fn parse_ndjson(body: &[u8], limit: EventLimit) -> Result<Vec<Value>, ApiError> {
    let lines = || {
        body.split(|b| *b == b'\n')
            .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
    };
    let n = lines().count();
    if n == 0 {
        return Err(ApiError::invalid_json("request body is empty", Vec::new()));
    }
    limit.check(n)?;
    let mut events = Vec::with_capacity(n);
    let mut details = Vec::new();
    for (index, line) in lines().enumerate() {
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => events.push(v),
            Err(e) => details.push(Detail {
                index,
                field: String::new(),
                problem: format!("line is not valid JSON: {e}"),
            }),
        }
    }
    if !details.is_empty() {
        return Err(ApiError::invalid_json(
            format!("{} of the NDJSON lines are not valid JSON", details.len()),
            details,
        ));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};
    use std::io::Write;

    fn headers(ct: Option<&str>, ce: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        if let Some(ce) = ce {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_str(ce).unwrap());
        }
        h
    }

    #[test]
    fn content_types_and_encodings() {
        assert_eq!(
            format_of(&headers(None, None)).unwrap(),
            (Format::Json, false)
        );
        assert_eq!(
            format_of(&headers(
                Some("application/json; charset=utf-8"),
                Some("gzip")
            ))
            .unwrap(),
            (Format::Json, true)
        );
        assert_eq!(
            format_of(&headers(Some("application/x-ndjson"), None)).unwrap(),
            (Format::Ndjson, false)
        );
        for (ct, ce) in [(Some("text/plain"), None), (None, Some("br"))] {
            assert_eq!(
                format_of(&headers(ct, ce)).unwrap_err().status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            );
        }
    }

    fn batch(max_batch: usize) -> EventLimit {
        EventLimit {
            max_batch,
            burst: usize::MAX,
        }
    }

    #[test]
    fn splits_objects_arrays_and_ndjson() {
        assert_eq!(
            parse(b" {\"a\":1}", Format::Json, batch(10)).unwrap().len(),
            1
        );
        assert_eq!(
            parse(b"[{},{},{}]", Format::Json, batch(10)).unwrap().len(),
            3
        );
        assert_eq!(
            parse(b"{}\n\n{}\r\n{}\n", Format::Ndjson, batch(10))
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            parse(b"[{},{},{}]", Format::Json, batch(2))
                .unwrap_err()
                .status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            parse(b"{}\n{}\n{}", Format::Ndjson, batch(2))
                .unwrap_err()
                .status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let err = parse(b"{}\nnope\n{}\n{", Format::Ndjson, batch(10)).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.details.iter().map(|d| d.index).collect::<Vec<_>>(),
            vec![1, 3]
        );
        for bad in [&b""[..], b"   ", b"42", b"[", b"[]"] {
            assert_eq!(
                parse(bad, Format::Json, batch(10)).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn too_many_events_says_how_many_fit_and_which_limit() {
        let by_burst = EventLimit {
            max_batch: 1000,
            burst: 2,
        };
        let err = parse(b"[{},{},{}]", Format::Json, by_burst).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!((err.code, err.max_events), ("too_many_events", Some(2)));
        assert!(err.message.contains("3 events"), "{}", err.message);
        assert!(
            err.message.contains("this token admits at most 2"),
            "{}",
            err.message
        );
        let err = parse(b"{}\n{}\n{}", Format::Ndjson, batch(2)).unwrap_err();
        assert_eq!(err.max_events, Some(2));
        assert!(err.message.contains("--max-batch"), "{}", err.message);
        assert_eq!(
            parse(b"[{},{}]", Format::Json, by_burst).unwrap().len(),
            2,
            "exactly the burst fits"
        );
    }

    #[test]
    fn a_huge_array_is_refused_after_max_elements_and_counted() {
        let mut body = b"[0".to_vec();
        body.extend(",0".repeat(300_000).as_bytes());
        body.push(b']');
        let err = parse(&body, Format::Json, batch(1000)).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(err.message.contains("300001 events"), "{}", err.message);
        // past the limit a broken tail still answers 413, and a broken head 400
        let err = parse(b"[{},{},{},{", Format::Json, batch(2)).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        let err = parse(b"[{},{] ", Format::Json, batch(2)).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        let err = parse(b"[{},{}] x", Format::Json, batch(2)).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST, "trailing characters");
        let deep = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        let err = parse(deep.as_bytes(), Format::Json, batch(2)).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST, "recursion limit");
    }

    #[test]
    fn gunzip_stops_at_the_limit() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b' '; 4 << 20]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 16 << 10);
        let err = gunzip_limited(&bomb, 1 << 20).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"{\"a\":1}").unwrap();
        assert_eq!(
            gunzip_limited(&enc.finish().unwrap(), 100).unwrap(),
            b"{\"a\":1}"
        );
        assert_eq!(
            gunzip_limited(b"not gzip", 100).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}

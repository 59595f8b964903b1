//! A request's events validated as a whole against the ingest clock: every problem of every
//! event listed on failure, and the warnings of a success capped for the 202 reply.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::error::{ApiError, Detail};

/// Most warnings a 202 lists one by one; the rest are summed up in one last line.
pub use netqoe_model::MAX_WARNINGS;

/// The events of a request, normalised, and the warnings to answer with.
pub type Checked = (Vec<netqoe_model::Event>, Vec<String>);

/// Validates every event at `now` (ms since the epoch, also set as `recv_ts_ms`); on any
/// problem, an `invalid_events` 400 lists all of them.
pub fn validate_all(values: &[Value], now: i64) -> Result<Checked, ApiError> {
    let mut events = Vec::with_capacity(values.len());
    let mut warnings = Warnings::default();
    let mut details = Vec::new();
    for (index, value) in values.iter().enumerate() {
        match netqoe_model::validate_at(value, now) {
            Ok(mut valid) => {
                valid.event.recv_ts_ms = Some(now);
                for w in valid.warnings {
                    warnings.push(|| format!("event {index}: {w}"));
                }
                warnings.more += valid.more_warnings;
                events.push(valid.event);
            }
            Err(errors) => details.extend(errors.into_iter().map(|e| Detail {
                index,
                field: e.field,
                problem: e.problem,
            })),
        }
    }
    if details.is_empty() {
        return Ok((events, warnings.finish()));
    }
    let bad: BTreeSet<usize> = details.iter().map(|d| d.index).collect();
    Err(ApiError::invalid_events(
        format!(
            "{} of {} events are invalid; nothing from this request was stored",
            bad.len(),
            values.len()
        ),
        details,
    ))
}

/// The first [`MAX_WARNINGS`] warnings, and how many more there were.
#[derive(Default)]
struct Warnings {
    listed: Vec<String>,
    more: usize,
}

impl Warnings {
    fn push(&mut self, warning: impl FnOnce() -> String) {
        if self.listed.len() < MAX_WARNINGS {
            self.listed.push(warning());
        } else {
            self.more += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.more > 0 {
            self.listed
                .push(format!("{} more warnings not listed", self.more));
        }
        self.listed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{parse, EventLimit, Format};
    use axum::http::StatusCode;
    use proptest::prelude::*;
    use serde_json::json;

    const NOW: i64 = 1_750_000_000_000;

    fn event() -> Value {
        json!({
            "schema_version": "1",
            "event_id": "0b9e8f4e-6a5b-4c1d-9e2f-3a4b5c6d7e8f",
            "client_id": "probe-a1",
            "ts_ms": NOW - 1000,
            "target": "https://example.com/health",
            "timings": {"dns_ms": 3.5, "total_ms": 90.0},
            "http_status": 200
        })
    }

    #[test]
    fn warnings_are_capped_with_a_count_of_the_rest() {
        let mut e = event();
        for k in 0..100_000 {
            e[format!("k{k}")] = json!(0);
        }
        let (events, warnings) = validate_all(&[e, event()], NOW).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].recv_ts_ms, Some(NOW));
        assert_eq!(warnings.len(), MAX_WARNINGS + 1);
        assert!(
            warnings[0].starts_with("event 0: unknown field"),
            "{warnings:?}"
        );
        assert_eq!(warnings[MAX_WARNINGS], "99980 more warnings not listed");

        let mut e = event();
        e["colour"] = json!("blue");
        let (_, warnings) = validate_all(&[event(), e], NOW).unwrap();
        assert_eq!(warnings, ["event 1: unknown field `colour` ignored"]);
    }

    #[test]
    fn every_problem_of_every_event_is_listed() {
        let mut bad = event();
        bad["timings"]["dns_ms"] = json!(-4);
        bad["http_status"] = json!(42);
        let err = validate_all(&[event(), bad, json!(7)], NOW).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.starts_with("2 of 3 events"), "{}", err.message);
        let at: Vec<(usize, &str)> = err
            .details
            .iter()
            .map(|d| (d.index, d.field.as_str()))
            .collect();
        assert_eq!(at, [(1, "timings.dns_ms"), (1, "http_status"), (2, "")]);
    }

    /// Body decoding then validation, as the handler does: success or a 4xx, never a panic.
    fn decode(body: &[u8], format: Format) -> Result<usize, StatusCode> {
        let limit = EventLimit {
            max_batch: 50,
            burst: 40,
        };
        let values = parse(body, format, limit).map_err(|e| e.status)?;
        assert!(!values.is_empty() && values.len() <= 40);
        let (events, warnings) = validate_all(&values, NOW).map_err(|e| e.status)?;
        assert!(warnings.len() <= MAX_WARNINGS + 1);
        Ok(events.len())
    }

    fn assert_client_error(result: Result<usize, StatusCode>) {
        if let Err(status) = result {
            assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
                "{status}"
            );
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map("[a-z_]{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A valid event with some of its fields (or new ones) set to arbitrary JSON.
    fn mutated_event() -> impl Strategy<Value = Value> {
        let fields = prop_oneof![
            Just("schema_version"),
            Just("event_id"),
            Just("client_id"),
            Just("ts_ms"),
            Just("target"),
            Just("probe_kind"),
            Just("timings"),
            Just("network_context"),
            Just("ping"),
            Just("tls"),
            Just("error_stage"),
            Just("http_status"),
            Just("bytes"),
            Just("unknown"),
        ];
        prop::collection::vec((fields, json_value()), 0..4).prop_map(|changes| {
            let mut e = event();
            for (field, value) in changes {
                e[field] = value;
            }
            e
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn arbitrary_bytes_decode_or_get_a_client_error(
            body in prop::collection::vec(any::<u8>(), 0..256),
            ndjson in any::<bool>(),
        ) {
            let format = if ndjson { Format::Ndjson } else { Format::Json };
            assert_client_error(decode(&body, format));
            // the same bytes inside an array, after a valid event
            let mut wrapped = format!("[{},", event()).into_bytes();
            wrapped.extend(&body);
            wrapped.push(b']');
            assert_client_error(decode(&wrapped, Format::Json));
        }

        #[test]
        fn arbitrary_json_shapes_decode_or_get_a_client_error(
            events in prop::collection::vec(prop_oneof![json_value(), mutated_event()], 1..60),
            cut in any::<prop::sample::Index>(),
        ) {
            let array = serde_json::to_vec(&events).unwrap();
            let result = decode(&array, Format::Json);
            assert_client_error(result);
            if events.len() > 40 {
                prop_assert_eq!(result, Err(StatusCode::PAYLOAD_TOO_LARGE));
            }
            let ndjson: String = events.iter().map(|e| format!("{e}\n")).collect();
            assert_client_error(decode(ndjson.as_bytes(), Format::Ndjson));
            // truncated anywhere
            assert_client_error(decode(&array[..cut.index(array.len())], Format::Json));
        }

        #[test]
        fn valid_events_pass(n in 1usize..40) {
            let events: Vec<Value> = (0..n).map(|_| event()).collect();
            let array = serde_json::to_vec(&events).unwrap();
            prop_assert_eq!(decode(&array, Format::Json), Ok(n));
        }
    }
}

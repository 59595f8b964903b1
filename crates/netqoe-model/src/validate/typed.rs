//! The fast path for events already in canonical form (what ingest publishes): parse the
//! JSON straight into an [`Event`] and check every rule on the typed fields.
//!
//! It only ever accepts: whatever it does not accept (a type serde rejects, a non-canonical
//! spelling such as `"schema_version": 1` or `"error_stage": "TLS"`, a broken rule) goes to
//! [`validate_at`](super::validate_at), which decides and explains. So for any input, an
//! event the fast path returns is the event the full validator would return. The tests below
//! check that implication over every rule.

use std::net::IpAddr;

use crate::event::{Event, NetworkContext, PingStats, Timings, TlsInfo, SCHEMA_VERSION};

use super::{
    client_id_problem, is_valid_target_for, MAX_CLIENT_ID_CHARS, MAX_ERROR_MESSAGE_CHARS,
    MAX_FUTURE_MS, MAX_LABEL_CHARS, MAX_PAST_MS, MAX_TARGET_CHARS, MAX_THROUGHPUT_KBPS,
    MAX_TIMING_MS,
};

/// Parses `payload` as a canonical event valid at `now(recv_ts_ms)`; None when the full
/// validator must look at it.
pub fn parse_canonical(payload: &[u8], now: impl FnOnce(Option<i64>) -> i64) -> Option<Event> {
    // Serde reads a JSON array as a struct's fields in order, which the schema does not
    // allow; an event has no array anywhere, so any array goes to the validator.
    if has_array(payload) {
        return None;
    }
    let event: Event = serde_json::from_slice(payload).ok()?;
    conforms(&event, now(event.recv_ts_ms)).then_some(event)
}

/// True when `e` breaks no rule of schema v1 at `now_ms` and is in normalised form.
pub fn conforms(e: &Event, now_ms: i64) -> bool {
    e.schema_version == SCHEMA_VERSION
        && matches!(e.event_id.get_version_num(), 4 | 7)
        && chars_within(&e.client_id, 1, MAX_CLIENT_ID_CHARS)
        && client_id_problem(&e.client_id).is_none()
        && e.ts_ms >= now_ms.saturating_sub(MAX_PAST_MS)
        && e.ts_ms <= now_ms.saturating_add(MAX_FUTURE_MS)
        && chars_within(&e.target, 1, MAX_TARGET_CHARS)
        && is_valid_target_for(&e.target, e.probe_kind)
        && e.network_context.as_ref().is_none_or(network_context)
        && e.timings.as_ref().is_none_or(timings)
        && e.throughput_kbps
            .is_none_or(|x| x.is_finite() && (0.0..=MAX_THROUGHPUT_KBPS).contains(&x))
        && e.bytes.is_none_or(|b| b <= i64::MAX as u64)
        && e.http_status.is_none_or(|s| (100..=599).contains(&s))
        && e.ping.as_ref().is_none_or(ping)
        && e.tls.as_ref().is_none_or(tls)
        && e.error_message
            .as_ref()
            .is_none_or(|m| m.chars().count() <= MAX_ERROR_MESSAGE_CHARS)
}

/// True when the JSON text opens an array outside a string.
fn has_array(json: &[u8]) -> bool {
    // Almost no event has a `[` at all: one vectorised search settles it.
    if memchr::memchr(b'[', json).is_none() {
        return false;
    }
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'[' {
            return true;
        }
    }
    false
}

fn chars_within(s: &str, min: usize, max: usize) -> bool {
    // Byte length bounds the character count from above, so most strings need no count.
    if s.len() <= max {
        return s.len() >= min;
    }
    (min..=max).contains(&s.chars().count())
}

fn timing(x: Option<f64>) -> bool {
    x.is_none_or(|x| x.is_finite() && (0.0..=MAX_TIMING_MS).contains(&x))
}

fn network_context(c: &NetworkContext) -> bool {
    let label = |s: &Option<String>, ip: bool| {
        s.as_ref().is_none_or(|s| {
            chars_within(s, 1, MAX_LABEL_CHARS) && (!ip || s.parse::<IpAddr>().is_ok())
        })
    };
    label(&c.user_label, false)
        && label(&c.local_ip, true)
        && label(&c.remote_ip, true)
        && label(&c.resolver, false)
        && c.ip_version.is_none_or(|v| v == 4 || v == 6)
}

fn timings(t: &Timings) -> bool {
    [
        t.dns_ms,
        t.tcp_ms,
        t.tls_ms,
        t.http_ttfb_ms,
        t.transfer_ms,
        t.total_ms,
    ]
    .into_iter()
    .all(timing)
}

fn ping(p: &PingStats) -> bool {
    let counts_ok = match (p.sent, p.received) {
        (Some(sent), Some(received)) => received <= sent,
        _ => true,
    };
    counts_ok
        && [p.rtt_min_ms, p.rtt_avg_ms, p.rtt_max_ms, p.jitter_ms]
            .into_iter()
            .all(timing)
}

fn tls(t: &TlsInfo) -> bool {
    t.version
        .as_ref()
        .is_none_or(|v| chars_within(v, 1, MAX_LABEL_CHARS))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::validate::validate_at;

    const NOW: i64 = crate::validate::fixtures::TEST_NOW;

    /// The shared valid event with every optional field of the schema set as well.
    fn full() -> Value {
        let mut v = crate::validate::fixtures::sample_event();
        let extra = json!({
            "probe_kind": "http",
            "network_context": {"interface_type": "wifi", "vpn_enabled": false, "user_label": "home",
                "local_ip": "10.0.0.2", "remote_ip": "2001:db8::1", "ip_version": 4, "resolver": "1.1.1.1:53"},
            "throughput_kbps": 2500.0,
            "bytes": 65536,
            "ping": {"sent": 5, "received": 4, "rtt_min_ms": 1.0, "rtt_avg_ms": 2.0, "rtt_max_ms": 3.0, "jitter_ms": 0.5},
            "tls": {"version": "TLSv1.3", "cert_not_after_ms": NOW + 86_400_000},
            "error_stage": "tls",
            "error_message": "handshake failed",
            "recv_ts_ms": NOW
        });
        for (key, value) in extra.as_object().expect("object") {
            v[key] = value.clone();
        }
        v["timings"]["transfer_ms"] = json!(4.0);
        v
    }

    fn with(field: &str, value: Value) -> Value {
        crate::validate::fixtures::with_field(full(), field, value)
    }

    /// The fast path's answer, checked against the full validator: whatever it accepts, the
    /// validator accepts as the same event.
    fn fast(v: &Value) -> Option<Event> {
        let got = parse_canonical(v.to_string().as_bytes(), |_| NOW);
        if let Some(event) = &got {
            let slow = validate_at(v, NOW).map(|ok| ok.event);
            assert_eq!(slow.as_ref(), Ok(event), "fast path accepted {v}");
        }
        got
    }

    #[test]
    fn accepts_what_ingest_publishes() {
        let event = validate_at(&full(), NOW).expect("valid").event;
        let published = serde_json::to_vec(&event).expect("serialise");
        assert_eq!(parse_canonical(&published, |_| NOW), Some(event));
        let minimal = validate_at(
            &json!({"schema_version": "1", "event_id": "0190b5c2-7a1e-7c3a-9b1e-3f6f0e2a1b2c",
                "client_id": "c", "ts_ms": NOW, "target": "h:1"}),
            NOW,
        )
        .expect("valid")
        .event;
        let published = serde_json::to_vec(&minimal).expect("serialise");
        assert_eq!(parse_canonical(&published, |_| NOW), Some(minimal));
    }

    #[test]
    fn never_accepts_what_the_validator_rejects() {
        let long = |n: usize| Value::String("a".repeat(n));
        // Beyond the validator's own table: values near what the typed parse could let by.
        let cases: Vec<(&str, Value)> = vec![
            ("schema_version", json!("1.x")),
            ("event_id", json!("0190b5c2-7a1e-1c3a-9b1e-3f6f0e2a1b2c")),
            ("client_id", json!("é")),
            ("ts_ms", json!(NOW - MAX_PAST_MS - 1)),
            ("ts_ms", json!(NOW + MAX_FUTURE_MS + 1)),
            ("target", json!("")),
            ("target", json!("no port")),
            ("target", json!("host:0")),
            (
                "target",
                Value::String(format!("https://{}", "a".repeat(505))),
            ),
            ("network_context.interface_type", json!("modem")),
            ("network_context.user_label", json!("")),
            ("network_context.user_label", long(257)),
            ("network_context.local_ip", json!("10.0.0")),
            ("network_context.remote_ip", json!("host")),
            ("network_context.resolver", json!("")),
            ("timings.dns_ms", json!(-1.0)),
            ("timings.tcp_ms", json!(600_000.5)),
            ("timings.total_ms", json!("12")),
            ("bytes", json!(u64::MAX)),
            ("ping.received", json!(6)),
            ("ping.sent", json!(-1)),
            ("ping.jitter_ms", json!(700_000.0)),
            ("tls.version", json!("")),
            ("error_stage", json!("dhcp")),
            ("recv_ts_ms", json!(1.5)),
        ];
        let shared = crate::validate::fixtures::rejected_cases()
            .into_iter()
            .map(|(field, value, _)| (field, value));
        for (field, value) in shared.chain(cases) {
            let v = with(field, value.clone());
            assert!(
                validate_at(&v, NOW).is_err(),
                "{field}={value} must be invalid"
            );
            assert_eq!(fast(&v), None, "{field}={value}");
        }
    }

    #[test]
    fn leaves_other_spellings_to_the_validator() {
        // Valid, but not in canonical form: the validator normalises these.
        for (field, value) in [
            ("schema_version", json!(1)),
            ("schema_version", json!("1.0")),
            ("error_stage", json!("TLS")),
            ("probe_kind", Value::Null),
        ] {
            let v = with(field, value.clone());
            assert!(validate_at(&v, NOW).is_ok(), "{field}={value} is valid");
            assert_eq!(fast(&v), None, "{field}={value}");
        }
    }

    #[test]
    fn arrays_in_place_of_objects_go_to_the_validator() {
        for field in ["network_context", "timings", "ping", "tls"] {
            let v = with(field, json!([]));
            assert!(validate_at(&v, NOW).is_err(), "{field}=[] is invalid");
            assert_eq!(fast(&v), None, "{field}=[]");
        }
        let v = with("target", json!("[::1]:8080"));
        assert!(
            fast(&v).is_some(),
            "brackets inside a string are not an array"
        );
        let v = with("error_message", json!("quote \" then [ bracket"));
        assert!(fast(&v).is_some(), "escaped quotes keep the string open");
        assert!(
            has_array(br#"{"a":"\\",[1]}"#),
            "an escaped backslash ends the escape"
        );
        assert!(
            has_array(br#"{"t":"[::1]:80","a":[1]}"#),
            "an array after a bracket inside a string"
        );
        assert!(!has_array(br#"{"t":"[::1]:80"}"#));
    }

    #[test]
    fn accepts_edge_values_exactly_as_the_validator_does() {
        for (field, value) in [
            ("ts_ms", json!(NOW - MAX_PAST_MS)),
            ("ts_ms", json!(NOW + MAX_FUTURE_MS)),
            ("client_id", Value::String("a".repeat(128))),
            ("timings.dns_ms", json!(0)),
            ("timings.dns_ms", json!(600_000)),
            ("timings.tls_ms", Value::Null),
            ("http_status", json!(100)),
            ("http_status", json!(599)),
            ("ping.received", json!(5)),
            ("error_message", json!("")),
            ("error_stage", Value::Null),
            ("unknown_field", json!({"x": 1})),
        ] {
            let v = with(field, value.clone());
            assert!(fast(&v).is_some(), "{field}={value}");
        }
    }

    #[test]
    fn dns_host_name_targets_follow_the_kind() {
        let mut v = with("target", json!("www.lab.netqoe"));
        v["probe_kind"] = json!("dns");
        assert!(fast(&v).is_some(), "a dns event names the host queried");
        v["probe_kind"] = json!("tcp");
        assert_eq!(fast(&v), None, "other kinds need a URL or host:port");
        assert!(validate_at(&v, NOW).is_err());
    }
}

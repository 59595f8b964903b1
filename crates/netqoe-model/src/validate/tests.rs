//! Table-driven unit tests of the validator rules.

use serde_json::{json, Value};

use super::fixtures::*;
use super::*;

const NOW: i64 = TEST_NOW;

fn valid() -> Value {
    sample_event()
}

fn with(field: &str, value: Value) -> Value {
    with_field(valid(), field, value)
}

fn errors(v: &Value) -> Vec<FieldError> {
    validate_at(v, NOW).expect_err("event must be rejected")
}

#[test]
fn accepts_a_valid_event_and_normalises_it() {
    let mut v = valid();
    v["error_stage"] = json!("TLS");
    v["schema_version"] = json!(1);
    let ok = validate_at(&v, NOW).expect("valid");
    assert_eq!(ok.event.error_stage, Some(ErrorStage::Tls));
    assert_eq!(ok.event.schema_version, "1");
    assert_eq!(ok.event.probe_kind, ProbeKind::Http);
    assert!(ok.warnings.is_empty());
    let out = serde_json::to_value(&ok.event).unwrap();
    assert_eq!(out["error_stage"], "tls");
    assert_eq!(out["schema_version"], "1");
}

#[test]
fn each_rule_names_its_field() {
    for (field, value, expect) in rejected_cases() {
        let errs = errors(&with(field, value.clone()));
        assert!(
            errs.iter()
                .any(|e| e.field == expect && !e.problem.is_empty()),
            "{field}={value}: expected an error on {expect}, got {errs:?}"
        );
    }
}

#[test]
fn accepts_the_edges_of_each_range() {
    let cases: Vec<(&str, Value)> = vec![
        ("schema_version", json!("1.0")),
        ("schema_version", json!("1")),
        ("event_id", json!("F47AC10B-58CC-4372-A567-0E02B2C3D479")),
        ("client_id", json!("a")),
        ("client_id", json!("edge-7.eu:west_1")),
        ("ts_ms", json!(NOW - 7 * 24 * 3600 * 1000)),
        ("ts_ms", json!(NOW + 5 * 60 * 1000)),
        ("target", json!("10.0.0.1:443")),
        ("target", json!("[::1]:8443")),
        ("target", json!("dns.example:53")),
        ("timings.dns_ms", json!(0)),
        ("timings.dns_ms", json!(600000)),
        ("http_status", json!(100)),
        ("http_status", json!(599)),
        ("error_stage", Value::Null),
        ("error_message", json!("e".repeat(1024))),
    ];
    for (field, value) in cases {
        let v = with(field, value.clone());
        assert!(
            validate_at(&v, NOW).is_ok(),
            "{field}={value} should be valid: {:?}",
            validate_at(&v, NOW).err()
        );
    }
}

#[test]
fn client_ids_with_an_empty_dot_part_are_refused_with_the_reason() {
    for id in ["a..b", ".x", "x.", ".", "probe..", "a.b..c.d"] {
        assert!(
            client_id_problem(id).is_some_and(|p| p.contains("NATS subject token")),
            "{id}"
        );
        let errs = errors(&with("client_id", json!(id)));
        assert_eq!(errs.len(), 1, "{id}: {errs:?}");
        assert_eq!(errs[0].field, "client_id");
        assert!(errs[0].problem.contains("two dots in a row"), "{errs:?}");
    }
    for id in ["a", "a.b", "edge-7.eu:west_1", "x.y.z"] {
        assert_eq!(client_id_problem(id), None, "{id}");
    }
    assert!(client_id_problem("").is_some());
    assert!(client_id_problem(&"a".repeat(129)).is_some());
    assert!(client_id_problem("a b").is_some());
}

#[test]
fn dns_targets_may_be_the_bare_name_queried() {
    let dns = |target: &str| {
        let mut v = with("target", json!(target));
        v["probe_kind"] = json!("dns");
        v
    };
    let longest = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(longest.len(), 253);
    for target in [
        "www.lab.netqoe",
        "www.lab.netqoe.",
        "localhost",
        "xn--bcher-kva.example",
        "10.0.0.1",
        "dns.example:53",
        "https://example.com/",
        longest.as_str(),
    ] {
        let ok = validate_at(&dns(target), NOW)
            .unwrap_or_else(|e| panic!("{target}: {e:?}"))
            .event;
        assert_eq!(ok.target, target, "stored exactly as sent");
        assert_eq!(ok.probe_kind, ProbeKind::Dns);
    }
    let too_long = format!("{longest}x");
    let label_64 = format!("{}.example", "a".repeat(64));
    for target in [
        "a..b",
        ".example",
        "bad name.example",
        "under_score.example",
        "example.com..",
        too_long.as_str(),
        label_64.as_str(),
    ] {
        let errs = errors(&dns(target));
        assert_eq!(errs.len(), 1, "{target}: {errs:?}");
        assert_eq!(errs[0].field, "target");
        assert!(errs[0].problem.contains("host name"), "{errs:?}");
    }
    // other kinds keep the URL or host:port rule
    for kind in ["http", "tcp", "ping"] {
        let mut v = with("target", json!("www.lab.netqoe"));
        v["probe_kind"] = json!(kind);
        let errs = errors(&v);
        assert_eq!(errs[0].field, "target", "{kind}");
        assert!(
            errs[0].problem.contains("only with probe_kind dns"),
            "{errs:?}"
        );
    }
    // an invalid probe_kind is blamed alone
    let mut v = with("target", json!("www.lab.netqoe"));
    v["probe_kind"] = json!("DNS");
    let fields: Vec<String> = errors(&v).into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["probe_kind"]);
}

#[test]
fn reports_every_problem_not_only_the_first() {
    let v = json!({
        "schema_version": "9",
        "event_id": 17,
        "client_id": "bad id",
        "target": "",
        "timings": {"dns_ms": -1, "tcp_ms": "x"},
        "http_status": 1000
    });
    let fields: Vec<String> = errors(&v).into_iter().map(|e| e.field).collect();
    for f in [
        "schema_version",
        "event_id",
        "client_id",
        "ts_ms",
        "target",
        "timings.dns_ms",
        "timings.tcp_ms",
        "http_status",
    ] {
        assert!(
            fields.iter().any(|x| x == f),
            "missing error for {f}: {fields:?}"
        );
    }
}

#[test]
fn missing_required_fields_are_named() {
    let errs = errors(&json!({}));
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["schema_version", "event_id", "client_id", "ts_ms", "target"]
    );
    assert!(errs.iter().all(|e| e.problem == "is required"));
}

#[test]
fn non_objects_are_rejected_with_a_clear_problem() {
    for v in [json!(null), json!(3), json!("event"), json!([])] {
        let errs = errors(&v);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].problem.contains("must be a JSON object"),
            "{errs:?}"
        );
    }
}

#[test]
fn unknown_fields_are_ignored_with_a_warning() {
    let mut v = valid();
    v["timings"]["dns_msec"] = json!(3);
    v["colour"] = json!("blue");
    let ok = validate_at(&v, NOW).expect("valid");
    assert_eq!(
        ok.warnings,
        vec![
            "unknown field `colour` ignored".to_string(),
            "unknown field `timings.dns_msec` ignored".to_string()
        ]
    );
    assert_eq!(ok.more_warnings, 0);
}

#[test]
fn warnings_past_the_cap_are_counted_not_written() {
    let mut v = valid();
    for i in 0..10_000 {
        v[format!("x{i}")] = json!(1);
    }
    let ok = validate_at(&v, NOW).expect("valid");
    assert_eq!(ok.warnings.len(), MAX_WARNINGS);
    assert_eq!(ok.more_warnings, 10_000 - MAX_WARNINGS);
}

#[test]
fn client_sent_recv_ts_is_kept_for_ingest_to_overwrite() {
    let mut v = valid();
    v["recv_ts_ms"] = json!(5);
    let ok = validate_at(&v, NOW).unwrap();
    assert_eq!(ok.event.recv_ts_ms, Some(5));
}

/// A message published straight to the stream can carry any `recv_ts_ms`, and the aggregator
/// judges `ts_ms` by it: the range check saturates instead of overflowing.
#[test]
fn extreme_clocks_and_timestamps_never_overflow() {
    for (now, ts, ok) in [
        (i64::MIN, i64::MIN, true),
        (i64::MIN, 0, false),
        (i64::MAX, i64::MAX, true),
        (i64::MAX, i64::MIN, false),
        (NOW, i64::MAX, false),
        (NOW, i64::MIN, false),
    ] {
        let mut v = with("ts_ms", json!(ts));
        v["recv_ts_ms"] = json!(now);
        let got = validate_at(&v, now);
        assert_eq!(got.is_ok(), ok, "now {now}, ts {ts}: {got:?}");
        if let Err(errs) = got {
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!(errs[0].field, "ts_ms");
        }
        let published = serde_json::to_vec(&v).unwrap();
        let fast = parse_canonical(&published, |recv| recv.unwrap_or(NOW));
        assert_eq!(fast.is_some(), ok, "fast path: now {now}, ts {ts}");
    }
}

#[test]
fn throughput_is_bounded_at_100_gbit_per_second() {
    let ok = validate_at(&with("throughput_kbps", json!(MAX_THROUGHPUT_KBPS)), NOW)
        .expect("100 Gbit/s is accepted");
    assert_eq!(ok.event.throughput_kbps, Some(100_000_000.0));
    let errs = errors(&with("throughput_kbps", json!(2e8)));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "throughput_kbps");
    assert_eq!(
        errs[0].problem,
        "must be a finite number from 0 to 100000000, got 200000000"
    );
}

//! Fixtures shared by the validator's and the typed fast path's unit tests: the test clock, a
//! valid event, a field setter and the table of values each rule rejects.

use serde_json::{json, Value};

/// Test clock of the validator's unit tests.
pub(crate) const TEST_NOW: i64 = 1_800_000_000_000;

/// Test fixture: a valid event at [`TEST_NOW`] with the required fields, timings and status.
pub(crate) fn sample_event() -> Value {
    json!({
        "schema_version": "1",
        "event_id": "0190b5c2-7a1e-7c3a-9b1e-3f6f0e2a1b2c",
        "client_id": "probe-a1",
        "ts_ms": TEST_NOW - 1000,
        "target": "https://example.com/health",
        "timings": {"dns_ms": 12.5, "tcp_ms": 20.0, "tls_ms": 31.0, "http_ttfb_ms": 80.0, "total_ms": 150.0},
        "http_status": 200
    })
}

/// Test helper: `v` with the field at dotted `path` (`timings.dns_ms`) set to `value`.
pub(crate) fn with_field(mut v: Value, path: &str, value: Value) -> Value {
    let parts: Vec<&str> = path.split('.').collect();
    let mut cur = &mut v;
    for p in &parts[..parts.len() - 1] {
        cur = cur.get_mut(*p).expect("parent exists");
    }
    cur[parts[parts.len() - 1]] = value;
    v
}

/// One value per rule that the validator rejects: (dotted field set, value, field the error
/// names). The fast path must turn down every one of them too.
pub(crate) fn rejected_cases() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("schema_version", json!("2"), "schema_version"),
        ("schema_version", json!("2.0"), "schema_version"),
        ("schema_version", json!(true), "schema_version"),
        ("event_id", json!("not-a-uuid"), "event_id"),
        (
            "event_id",
            json!("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            "event_id",
        ),
        ("client_id", json!(""), "client_id"),
        ("client_id", json!("bad id"), "client_id"),
        ("client_id", json!("x".repeat(129)), "client_id"),
        ("client_id", json!("a..b"), "client_id"),
        ("client_id", json!(".x"), "client_id"),
        ("client_id", json!("x."), "client_id"),
        ("client_id", json!("."), "client_id"),
        ("ts_ms", json!(TEST_NOW - 8 * 24 * 3600 * 1000), "ts_ms"),
        ("ts_ms", json!(TEST_NOW + 6 * 60 * 1000), "ts_ms"),
        ("ts_ms", json!(1.5), "ts_ms"),
        ("ts_ms", json!("1700000000000"), "ts_ms"),
        ("target", json!("example.com"), "target"),
        ("target", json!("https:///nohost"), "target"),
        ("target", json!("host:99999"), "target"),
        ("target", json!("a b:80"), "target"),
        ("target", json!("x".repeat(513)), "target"),
        ("probe_kind", json!("icmp"), "probe_kind"),
        ("timings.dns_ms", json!(-1), "timings.dns_ms"),
        ("timings.dns_ms", json!(600001), "timings.dns_ms"),
        ("timings.dns_ms", json!("12"), "timings.dns_ms"),
        ("timings", json!([1, 2]), "timings"),
        ("throughput_kbps", json!(-0.5), "throughput_kbps"),
        ("throughput_kbps", json!(100_000_000.5), "throughput_kbps"),
        ("throughput_kbps", json!(1e300), "throughput_kbps"),
        ("bytes", json!(-1), "bytes"),
        ("http_status", json!(99), "http_status"),
        ("http_status", json!(600), "http_status"),
        ("error_stage", json!("network"), "error_stage"),
        ("error_message", json!("e".repeat(1025)), "error_message"),
        (
            "network_context",
            json!({"interface_type": "fiber"}),
            "network_context.interface_type",
        ),
        (
            "network_context",
            json!({"ip_version": 5}),
            "network_context.ip_version",
        ),
        (
            "network_context",
            json!({"local_ip": "300.1.1.1"}),
            "network_context.local_ip",
        ),
        (
            "network_context",
            json!({"vpn_enabled": "yes"}),
            "network_context.vpn_enabled",
        ),
        ("ping", json!({"sent": 3, "received": 4}), "ping.received"),
        ("ping", json!({"jitter_ms": -2}), "ping.jitter_ms"),
        (
            "tls",
            json!({"cert_not_after_ms": "soon"}),
            "tls.cert_not_after_ms",
        ),
    ]
}

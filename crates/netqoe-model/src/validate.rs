//! The event validator: turns untrusted JSON into an [`Event`], reporting every problem.
//!
//! Validation walks the JSON value once, collecting a [`FieldError`] (field path + rule) for
//! every violation instead of stopping at the first, and builds the normalised event as it goes
//! (schema version `"1"`, lowercase `error_stage`, canonical UUID). Unknown fields are ignored
//! and reported as warnings so that a typo is visible to the sender.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::{
    ErrorStage, Event, InterfaceType, NetworkContext, PingStats, ProbeKind, Timings, TlsInfo,
    SCHEMA_VERSION,
};

/// Oldest accepted `ts_ms`, relative to the validating clock (7 days).
pub const MAX_PAST_MS: i64 = 7 * 24 * 3600 * 1000;
/// Furthest accepted `ts_ms` ahead of the validating clock (5 minutes).
pub const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;
/// Largest accepted phase timing in milliseconds.
pub const MAX_TIMING_MS: f64 = 600_000.0;
/// Longest accepted `error_message`, in characters.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 1024;
/// Largest accepted `throughput_kbps`: 100 Gbit/s, beyond any link a probe measures.
pub const MAX_THROUGHPUT_KBPS: f64 = 100_000_000.0;

const MAX_CLIENT_ID_CHARS: usize = 128;
const MAX_TARGET_CHARS: usize = 512;
const MAX_LABEL_CHARS: usize = 256;

/// One violated rule: the field's path (`timings.dns_ms`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Most warnings of one event written out; the rest are only counted, so that an event
/// of 100 000 unknown keys costs no 100 000 messages.
pub const MAX_WARNINGS: usize = 20;

/// A valid event plus the warnings (unknown fields) met on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub event: Event,
    /// The first [`MAX_WARNINGS`] warnings.
    pub warnings: Vec<String>,
    /// Warnings past the first [`MAX_WARNINGS`], not written out.
    pub more_warnings: usize,
}

/// Validates `value` against schema v1 using the system clock for the `ts_ms` range.
pub fn validate(value: &Value) -> Result<Validated, Vec<FieldError>> {
    validate_at(value, crate::now_ms())
}

/// Validates `value` against schema v1 with `now_ms` as the reference clock.
///
/// Ingest passes its own clock; the aggregator passes the event's `recv_ts_ms` so that an
/// event accepted by ingest stays valid however late it is consumed.
pub fn validate_at(value: &Value, now_ms: i64) -> Result<Validated, Vec<FieldError>> {
    let Some(obj) = value.as_object() else {
        return Err(vec![FieldError {
            field: String::new(),
            problem: format!("an event must be a JSON object, got {}", kind(value)),
        }]);
    };
    let mut c = Checker::default();
    let event = c.event(obj, now_ms);
    match event {
        Some(event) if c.errors.is_empty() => Ok(Validated {
            event,
            warnings: c.warnings,
            more_warnings: c.more_warnings,
        }),
        _ => Err(c.errors),
    }
}

impl Checker {
    fn event(&mut self, obj: &Map<String, Value>, now_ms: i64) -> Option<Event> {
        self.unknown_fields(
            obj,
            "",
            &[
                "schema_version",
                "event_id",
                "client_id",
                "ts_ms",
                "target",
                "probe_kind",
                "network_context",
                "timings",
                "throughput_kbps",
                "bytes",
                "http_status",
                "ping",
                "tls",
                "error_stage",
                "error_message",
                "recv_ts_ms",
            ],
        );
        let schema_ok = self
            .required(obj, "schema_version")
            .is_some_and(|v| self.schema_version(v));
        let event_id = self
            .required(obj, "event_id")
            .and_then(|v| self.event_id(v));
        let client_id = self
            .required(obj, "client_id")
            .and_then(|v| self.client_id(v));
        let ts_ms = self.required(obj, "ts_ms").and_then(|v| {
            let ts = self.integer("ts_ms", v, i64::MIN, i64::MAX)?;
            // saturating: the clock may be any i64 (an aggregator judges by a stream message's
            // own recv_ts_ms)
            if ts < now_ms.saturating_sub(MAX_PAST_MS) {
                self.fail("ts_ms", "must not be more than 7 days in the past");
                return None;
            }
            if ts > now_ms.saturating_add(MAX_FUTURE_MS) {
                self.fail("ts_ms", "must not be more than 5 minutes in the future");
                return None;
            }
            Some(ts)
        });
        let probe_kind = match Self::opt(obj, "probe_kind") {
            None => Some(ProbeKind::Http),
            Some(v) => self.enum_of("probe_kind", v, &ProbeKind::ALL, |k| k.as_str()),
        };
        let target = self
            .required(obj, "target")
            .and_then(|v| self.target(v, probe_kind));
        let network_context = Self::opt(obj, "network_context").map(|v| self.network_context(v));
        let timings = Self::opt(obj, "timings").map(|v| self.timings(v));
        let throughput_kbps = Self::opt(obj, "throughput_kbps")
            .map(|v| self.number("throughput_kbps", v, MAX_THROUGHPUT_KBPS));
        let bytes = Self::opt(obj, "bytes").map(|v| self.integer("bytes", v, 0, i64::MAX));
        let http_status =
            Self::opt(obj, "http_status").map(|v| self.integer("http_status", v, 100, 599));
        let ping = Self::opt(obj, "ping").map(|v| self.ping(v));
        let tls = Self::opt(obj, "tls").map(|v| self.tls(v));
        let error_stage = Self::opt(obj, "error_stage").map(|v| {
            let s = self.string("error_stage", v)?;
            let stage = ErrorStage::parse(s);
            if stage.is_none() {
                self.fail(
                    "error_stage",
                    "must be one of dns, tcp, tls, http, throughput, timeout (or null)",
                );
            }
            stage
        });
        let error_message = Self::opt(obj, "error_message").map(|v| {
            let s = self.string("error_message", v)?;
            if s.chars().count() > MAX_ERROR_MESSAGE_CHARS {
                self.fail(
                    "error_message",
                    format!("must be at most {MAX_ERROR_MESSAGE_CHARS} characters"),
                );
                return None;
            }
            Some(s.to_string())
        });
        let recv_ts_ms =
            Self::opt(obj, "recv_ts_ms").map(|v| self.integer("recv_ts_ms", v, i64::MIN, i64::MAX));

        if !schema_ok || !self.errors.is_empty() {
            return None;
        }
        Some(Event {
            schema_version: SCHEMA_VERSION.to_string(),
            event_id: event_id?,
            client_id: client_id?,
            ts_ms: ts_ms?,
            target: target?,
            probe_kind: probe_kind?,
            network_context: network_context.flatten(),
            timings: timings.flatten(),
            throughput_kbps: throughput_kbps.flatten(),
            bytes: bytes.flatten().map(|b| b as u64),
            http_status: http_status.flatten().map(|s| s as u16),
            ping: ping.flatten(),
            tls: tls.flatten(),
            error_stage: error_stage.flatten(),
            error_message: error_message.flatten(),
            recv_ts_ms: recv_ts_ms.flatten(),
        })
    }

    fn schema_version(&mut self, v: &Value) -> bool {
        let ok = match v {
            Value::Number(n) => n.as_u64() == Some(1),
            Value::String(s) => match s.split_once('.') {
                None => s == "1",
                Some((major, minor)) => {
                    major == "1" && !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
                }
            },
            _ => false,
        };
        if !ok {
            self.fail(
                "schema_version",
                format!("unsupported schema version {v}: this ingest accepts major version 1 (\"1\", \"1.0\" or 1)"),
            );
        }
        ok
    }

    fn event_id(&mut self, v: &Value) -> Option<Uuid> {
        let s = self.string("event_id", v)?;
        match Uuid::try_parse(s) {
            Ok(id) if matches!(id.get_version_num(), 4 | 7) => Some(id),
            Ok(id) => {
                self.fail(
                    "event_id",
                    format!(
                        "must be a version 4 or 7 UUID, got version {}",
                        id.get_version_num()
                    ),
                );
                None
            }
            Err(_) => {
                self.fail("event_id", "must be a UUID (v4 or v7)");
                None
            }
        }
    }

    fn client_id(&mut self, v: &Value) -> Option<String> {
        let s = self.string_len("client_id", v, MAX_CLIENT_ID_CHARS)?;
        if let Some(problem) = client_id_problem(s) {
            self.fail("client_id", problem);
            return None;
        }
        Some(s.to_string())
    }

    /// `kind` is None when `probe_kind` itself is invalid: then either form is let by, so that
    /// only `probe_kind` is blamed.
    fn target(&mut self, v: &Value, kind: Option<ProbeKind>) -> Option<String> {
        let s = self.string_len("target", v, MAX_TARGET_CHARS)?;
        let host_name_ok = kind.is_none_or(|k| k == ProbeKind::Dns);
        let valid = is_valid_target(s) || (host_name_ok && is_host_name(s));
        if !valid {
            self.fail(
                "target",
                if kind == Some(ProbeKind::Dns) {
                    "must be a host name (the name queried: letters, digits, hyphens and dots, at most 253 characters), an absolute URL or host:port"
                } else {
                    "must be an absolute URL (scheme://host/path) or host:port (a bare host name only with probe_kind dns)"
                },
            );
            return None;
        }
        Some(s.to_string())
    }

    fn enum_of<T: Copy>(
        &mut self,
        field: &str,
        v: &Value,
        all: &[T],
        name: impl Fn(T) -> &'static str,
    ) -> Option<T> {
        let s = self.string(field, v)?;
        let found = all.iter().copied().find(|k| name(*k) == s);
        if found.is_none() {
            let names: Vec<_> = all.iter().map(|k| name(*k)).collect();
            self.fail(field, format!("must be one of {}", names.join(", ")));
        }
        found
    }

    fn network_context(&mut self, v: &Value) -> Option<NetworkContext> {
        let obj = self.object("network_context", v)?;
        let p = "network_context";
        self.unknown_fields(
            obj,
            p,
            &[
                "interface_type",
                "vpn_enabled",
                "user_label",
                "local_ip",
                "remote_ip",
                "ip_version",
                "resolver",
            ],
        );
        let before = self.errors.len();
        let mut ctx = NetworkContext::default();
        if let Some(v) = Self::opt(obj, "interface_type") {
            ctx.interface_type =
                self.enum_of(&path(p, "interface_type"), v, &InterfaceType::ALL, |k| {
                    k.as_str()
                });
        }
        if let Some(v) = Self::opt(obj, "vpn_enabled") {
            ctx.vpn_enabled = v.as_bool();
            if ctx.vpn_enabled.is_none() {
                self.fail(path(p, "vpn_enabled"), "must be a boolean");
            }
        }
        for (key, slot, is_ip) in [
            ("user_label", &mut ctx.user_label, false),
            ("local_ip", &mut ctx.local_ip, true),
            ("remote_ip", &mut ctx.remote_ip, true),
            ("resolver", &mut ctx.resolver, false),
        ] {
            let Some(v) = Self::opt(obj, key) else {
                continue;
            };
            let field = path(p, key);
            let Some(s) = self.string_len(&field, v, MAX_LABEL_CHARS) else {
                continue;
            };
            if is_ip && s.parse::<IpAddr>().is_err() {
                self.fail(field, "must be an IPv4 or IPv6 address");
                continue;
            }
            *slot = Some(s.to_string());
        }
        if let Some(v) = Self::opt(obj, "ip_version") {
            let field = path(p, "ip_version");
            match v.as_u64() {
                Some(4) => ctx.ip_version = Some(4),
                Some(6) => ctx.ip_version = Some(6),
                _ => self.fail(field, "must be 4 or 6"),
            }
        }
        (self.errors.len() == before).then_some(ctx)
    }

    fn timings(&mut self, v: &Value) -> Option<Timings> {
        let obj = self.object("timings", v)?;
        let p = "timings";
        let keys = [
            "dns_ms",
            "tcp_ms",
            "tls_ms",
            "http_ttfb_ms",
            "transfer_ms",
            "total_ms",
        ];
        self.unknown_fields(obj, p, &keys);
        let mut t = Timings::default();
        let slots = [
            &mut t.dns_ms,
            &mut t.tcp_ms,
            &mut t.tls_ms,
            &mut t.http_ttfb_ms,
            &mut t.transfer_ms,
            &mut t.total_ms,
        ];
        for (key, slot) in keys.into_iter().zip(slots) {
            if let Some(v) = Self::opt(obj, key) {
                *slot = self.number(&path(p, key), v, MAX_TIMING_MS);
            }
        }
        Some(t)
    }

    fn ping(&mut self, v: &Value) -> Option<PingStats> {
        let obj = self.object("ping", v)?;
        let p = "ping";
        self.unknown_fields(
            obj,
            p,
            &[
                "sent",
                "received",
                "rtt_min_ms",
                "rtt_avg_ms",
                "rtt_max_ms",
                "jitter_ms",
            ],
        );
        let mut s = PingStats::default();
        for (key, slot) in [("sent", &mut s.sent), ("received", &mut s.received)] {
            if let Some(v) = Self::opt(obj, key) {
                *slot = self
                    .integer(&path(p, key), v, 0, u32::MAX as i64)
                    .map(|n| n as u32);
            }
        }
        if let (Some(sent), Some(received)) = (s.sent, s.received) {
            if received > sent {
                self.fail("ping.received", "must not exceed ping.sent");
            }
        }
        for (key, slot) in [
            ("rtt_min_ms", &mut s.rtt_min_ms),
            ("rtt_avg_ms", &mut s.rtt_avg_ms),
            ("rtt_max_ms", &mut s.rtt_max_ms),
            ("jitter_ms", &mut s.jitter_ms),
        ] {
            if let Some(v) = Self::opt(obj, key) {
                *slot = self.number(&path(p, key), v, MAX_TIMING_MS);
            }
        }
        Some(s)
    }

    fn tls(&mut self, v: &Value) -> Option<TlsInfo> {
        let obj = self.object("tls", v)?;
        self.unknown_fields(obj, "tls", &["version", "cert_not_after_ms"]);
        let mut t = TlsInfo::default();
        if let Some(v) = Self::opt(obj, "version") {
            t.version = self
                .string_len("tls.version", v, MAX_LABEL_CHARS)
                .map(str::to_string);
        }
        if let Some(v) = Self::opt(obj, "cert_not_after_ms") {
            t.cert_not_after_ms = self.integer("tls.cert_not_after_ms", v, i64::MIN, i64::MAX);
        }
        Some(t)
    }
}

mod checker;
mod names;
mod typed;
use checker::{kind, path, Checker};
pub use names::client_id_problem;
pub(crate) use names::is_valid_target_for;
use names::{is_host_name, is_valid_target};
pub use typed::{conforms, parse_canonical};

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

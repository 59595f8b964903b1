//! Prometheus metrics of the probe (names in docs/metrics.md). Labels are bounded: no client
//! ids, no target names.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram};
use netqoe_model::Event;

use crate::config::Kind;

pub const MEASUREMENTS: &str = "netqoe_probe_measurements_total";
pub const PHASE: &str = "netqoe_probe_phase_duration_seconds";
pub const SPOOL_DROPPED: &str = "netqoe_probe_spool_dropped_events_total";
pub const SPOOL_ERRORS: &str = "netqoe_probe_spool_errors_total";
pub const SHIPPED: &str = "netqoe_probe_events_shipped_total";
pub const REJECTED: &str = "netqoe_probe_events_rejected_total";
pub const REQUESTS: &str = "netqoe_probe_ship_requests_total";
pub const SPOOL_ROLLED: &str = "netqoe_probe_spool_segments_rolled_total";
pub const SPOOL_DELETED: &str = "netqoe_probe_spool_segments_deleted_total";
pub const SPOOL_CORRUPT: &str = "netqoe_probe_spool_corrupt_bytes_total";
pub const SPOOL_BYTES: &str = "netqoe_probe_spool_bytes";
pub const SPOOL_SEGMENTS: &str = "netqoe_probe_spool_segments";
pub const SPOOL_PENDING: &str = "netqoe_probe_spool_pending_events";
pub const BATCH_LIMIT: &str = "netqoe_probe_ship_batch_limit_events";

/// Registers the descriptions shown in the exposition.
pub fn describe() {
    describe_counter!(
        MEASUREMENTS,
        "Measurements taken, by target kind and outcome (ok, or the failing stage)"
    );
    describe_histogram!(
        PHASE,
        metrics::Unit::Seconds,
        "Duration of each measured phase (dns, tcp, tls, ttfb, transfer, total)"
    );
    describe_counter!(
        SPOOL_DROPPED,
        "Events dropped from the spool: reason=full (oldest over the byte bound) or age (older than 7 days)"
    );
    describe_counter!(
        SPOOL_ERRORS,
        "Events that could not be written to the spool"
    );
    describe_counter!(
        SHIPPED,
        "Events ingest accepted (202): each spooled event is counted once"
    );
    describe_counter!(
        REJECTED,
        "Events ingest rejected with 400/413 when alone in a request: logged and dropped"
    );
    describe_counter!(
        REQUESTS,
        "Requests to ingest by result: delivered, rejected, too_large, unauthorized, retry, unreachable"
    );
    describe_counter!(
        SPOOL_ROLLED,
        "New spool segments started because the active one reached spool_segment_bytes"
    );
    describe_counter!(
        SPOOL_DELETED,
        "Spool segments deleted: reason=shipped (every event in it delivered), full or age (unsent events dropped)"
    );
    describe_counter!(
        SPOOL_CORRUPT,
        metrics::Unit::Bytes,
        "Corrupt bytes found inside spool segments at open and stepped over: the events in them are lost"
    );
    describe_gauge!(
        SPOOL_BYTES,
        metrics::Unit::Bytes,
        "Bytes of the spool's segment files"
    );
    describe_gauge!(SPOOL_SEGMENTS, "Spool segment files on disk");
    describe_gauge!(
        SPOOL_PENDING,
        "Events in the spool not yet delivered to ingest"
    );
    describe_gauge!(
        BATCH_LIMIT,
        "Most events the shipper puts in one request: batch_size, lowered after a 413"
    );
    // Every series exists from the start, at zero, so alerts on rates see it before the
    // first occurrence.
    for reason in ["full", "age"] {
        counter!(SPOOL_DROPPED, "reason" => reason).increment(0);
    }
    for reason in ["shipped", "full", "age"] {
        counter!(SPOOL_DELETED, "reason" => reason).increment(0);
    }
    for name in [SPOOL_ERRORS, SHIPPED, REJECTED, SPOOL_ROLLED, SPOOL_CORRUPT] {
        counter!(name).increment(0);
    }
}

fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Http => "http",
        Kind::Tcp => "tcp",
        Kind::Dns => "dns",
        Kind::Ping => "ping",
    }
}

/// Counts one measurement and records its phase durations.
pub fn measured(kind: Kind, event: &Event) {
    let outcome = event.error_stage.map_or("ok", |s| s.as_str());
    counter!(MEASUREMENTS, "kind" => kind_label(kind), "outcome" => outcome).increment(1);
    if let Some(t) = &event.timings {
        let phases = [
            ("dns", t.dns_ms),
            ("tcp", t.tcp_ms),
            ("tls", t.tls_ms),
            ("ttfb", t.http_ttfb_ms),
            ("transfer", t.transfer_ms),
            ("total", t.total_ms),
        ];
        for (phase, ms) in phases {
            if let Some(ms) = ms {
                histogram!(PHASE, "phase" => phase).record(ms / 1000.0);
            }
        }
    }
}

/// Counts one request to ingest by its result.
pub fn request(result: &'static str) {
    counter!(REQUESTS, "result" => result).increment(1);
}

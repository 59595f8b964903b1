//! Names and help texts of every ingest metric (listed in docs/metrics.md).

pub const REQUESTS: &str = "netqoe_ingest_requests_total";
pub const REQUEST_DURATION: &str = "netqoe_ingest_request_duration_seconds";
pub const REQUESTS_IN_FLIGHT: &str = "netqoe_ingest_requests_in_flight";
pub const EVENTS_ACCEPTED: &str = "netqoe_ingest_events_accepted_total";
pub const EVENTS_REJECTED: &str = "netqoe_ingest_events_rejected_total";
pub const EVENTS_DUPLICATE: &str = "netqoe_ingest_events_duplicate_total";
pub const EVENTS_RATE_LIMITED: &str = "netqoe_ingest_events_rate_limited_total";
pub const PUBLISH_DURATION: &str = "netqoe_ingest_publish_duration_seconds";
pub const NATS_CONNECTED: &str = "netqoe_ingest_nats_connected";
pub const STREAM_READY: &str = "netqoe_ingest_stream_ready";
pub const TOKENS_LOADED: &str = "netqoe_ingest_tokens_loaded";
pub const RELOADS: &str = "netqoe_ingest_reloads_total";
pub const SHED: &str = "netqoe_ingest_shed_total";
pub const TIMEOUTS: &str = "netqoe_ingest_request_timeouts_total";

/// Registers help texts with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(REQUESTS, "HTTP requests by route and status class");
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency by route"
    );
    describe_gauge!(REQUESTS_IN_FLIGHT, "HTTP requests being served");
    describe_counter!(EVENTS_ACCEPTED, "events newly stored in QOE_EVENTS");
    describe_counter!(EVENTS_REJECTED, "events not published, by reason");
    describe_counter!(
        EVENTS_DUPLICATE,
        "events JetStream already held (duplicate event_id)"
    );
    describe_counter!(
        EVENTS_RATE_LIMITED,
        "events refused by the per-token rate limit"
    );
    describe_histogram!(
        PUBLISH_DURATION,
        Unit::Seconds,
        "time from first publish to last ack of a request"
    );
    describe_gauge!(NATS_CONNECTED, "1 while the NATS connection is up");
    describe_gauge!(STREAM_READY, "1 while QOE_EVENTS exists and is reachable");
    describe_gauge!(TOKENS_LOADED, "tokens in the active tokens file");
    describe_counter!(RELOADS, "tokens file reloads by result");
    describe_counter!(
        SHED,
        "requests and connections refused with 503 because a limit was reached, by limit"
    );
    describe_counter!(
        TIMEOUTS,
        "requests whose headers or body did not arrive within their deadline, by phase"
    );
    // Every series exists from the start, at zero, so alerts on rates see it before the
    // first occurrence.
    for name in [EVENTS_ACCEPTED, EVENTS_DUPLICATE, EVENTS_RATE_LIMITED] {
        metrics::counter!(name).increment(0);
    }
    for reason in [
        "too_large",
        "invalid",
        "disconnected",
        "stream_full",
        "ack_timeout",
        "refused",
        "publish_busy",
        "overloaded",
        "body_timeout",
    ] {
        metrics::counter!(EVENTS_REJECTED, "reason" => reason).increment(0);
    }
    for limit in ["connections", "requests", "publish"] {
        metrics::counter!(SHED, "limit" => limit).increment(0);
    }
    for phase in ["header", "body"] {
        metrics::counter!(TIMEOUTS, "phase" => phase).increment(0);
    }
    for result in ["ok", "error"] {
        metrics::counter!(RELOADS, "result" => result).increment(0);
    }
}

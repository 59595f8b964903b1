//! Metric names of netqoe-lab, declared once.

/// HTTP requests served, by `kind` (`ok`, `injected_error`, `control`, `not_found`).
pub const REQUESTS_TOTAL: &str = "netqoe_lab_requests_total";
/// Connections reset on purpose.
pub const RESETS_TOTAL: &str = "netqoe_lab_resets_total";
/// DNS queries, by `rcode` (`noerror`, `servfail`, `refused`, `formerr`, `notimp`, `dropped`).
pub const DNS_QUERIES_TOTAL: &str = "netqoe_lab_dns_queries_total";
/// TLS handshakes that failed.
pub const TLS_HANDSHAKE_ERRORS_TOTAL: &str = "netqoe_lab_tls_handshake_errors_total";

pub fn describe() {
    metrics::describe_counter!(REQUESTS_TOTAL, "http requests served by kind");
    metrics::describe_counter!(RESETS_TOTAL, "connections reset on purpose");
    metrics::describe_counter!(DNS_QUERIES_TOTAL, "dns queries answered by response code");
    metrics::describe_counter!(TLS_HANDSHAKE_ERRORS_TOTAL, "tls handshakes that failed");
}

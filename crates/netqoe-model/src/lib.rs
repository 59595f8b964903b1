//! The netqoe event model: schema v1 types, the validator and window helpers (no IO).
//!
//! Every binary speaks this model: the probe produces [`Event`]s, ingest turns untrusted JSON
//! into validated events with [`validate`], the aggregator re-validates what it reads from the
//! stream and assigns each event to its one-minute window with [`window_start_ms`].

mod diagnosis;
mod event;
mod validate;
mod window;

pub use diagnosis::{InjectedIncident, Label, Scope, Severity};
pub use event::{
    ErrorStage, Event, InterfaceType, NetworkContext, PingStats, ProbeKind, Timings, TlsInfo,
    SCHEMA_VERSION,
};
pub use validate::{
    client_id_problem, conforms, parse_canonical, validate, validate_at, FieldError, Validated,
    MAX_ERROR_MESSAGE_CHARS, MAX_FUTURE_MS, MAX_PAST_MS, MAX_THROUGHPUT_KBPS, MAX_TIMING_MS,
    MAX_WARNINGS,
};
pub use window::{window_start_ms, WINDOW_MS};

/// Milliseconds since the Unix epoch, read from the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

//! What `netqoe-loadgen scenario` writes: the events as NDJSON, the ground truth as JSON,
//! and the summary people read.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use netqoe_model::InjectedIncident;

use crate::scenario::Scenario;
use crate::send::SendReport;

/// Writes every event of `scenario`, one JSON object per line, in time order of minutes;
/// returns how many.
pub fn write_ndjson(w: &mut impl Write, scenario: &Scenario) -> std::io::Result<u64> {
    let mut n = 0;
    for m in 0..scenario.minutes() {
        for e in scenario.minute(m) {
            serde_json::to_writer(&mut *w, &e)?;
            w.write_all(b"\n")?;
            n += 1;
        }
    }
    w.flush()?;
    Ok(n)
}

/// Writes the ground truth: a JSON array of [`InjectedIncident`].
pub fn write_truth(path: &Path, truth: &[InjectedIncident]) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(truth)?;
    text.push('\n');
    std::fs::write(path, text)
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

/// The summary: series, events, incidents by label and scope, one line per incident, and the
/// sending's figures when there was any.
pub fn summary_text(scenario: &Scenario, sent: Option<&SendReport>) -> String {
    let s = scenario.summary();
    let (start, end) = scenario.period_ms();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "period {} .. {} ({} min)",
        rfc3339(start),
        rfc3339(end),
        scenario.minutes()
    );
    let _ = writeln!(
        out,
        "series: {} http, {} sparse http, {} ping; events: {}",
        s.series_http, s.series_http_sparse, s.series_ping, s.events
    );
    let join = |v: Vec<String>| v.join(", ");
    let _ = writeln!(
        out,
        "incidents: {} by label ({}) by scope ({})",
        s.incidents,
        join(
            s.by_label
                .iter()
                .map(|(l, n)| format!("{} {n}", l.as_str()))
                .collect()
        ),
        join(
            s.by_scope
                .iter()
                .map(|(l, n)| format!("{} {n}", l.as_str()))
                .collect()
        ),
    );
    for t in scenario.truth() {
        let entity = match (&t.client_id, &t.target) {
            (Some(c), Some(t)) => format!("{c} -> {t}"),
            (Some(c), None) => c.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "  {} {:>3} min  {:<10} {:<6} {:<40} {}",
            rfc3339(t.start_ms),
            (t.end_ms - t.start_ms) / 60_000,
            t.label.as_str(),
            t.scope.as_str(),
            entity,
            t.description
        );
    }
    if let Some(r) = sent {
        let _ = writeln!(
            out,
            "sent {} events in {} requests in {:.1}s ({:.0} events/s): accepted {}, duplicates {}; retried 429 x{}, 503 x{}, transport x{}",
            r.events, r.requests, r.elapsed_s, r.events_per_s, r.accepted, r.duplicates,
            r.rate_limited, r.unavailable, r.transport_errors
        );
    }
    out
}

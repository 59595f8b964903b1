//! Names and help texts of every diagnoser metric (listed in docs/metrics.md).

pub const RUNS: &str = "netqoe_diagnoser_runs_total";
pub const RUN_DURATION: &str = "netqoe_diagnoser_run_duration_seconds";
pub const WINDOWS: &str = "netqoe_diagnoser_windows_total";
pub const DIAGNOSES: &str = "netqoe_diagnoser_diagnoses_total";
pub const INCIDENTS_OPEN: &str = "netqoe_diagnoser_incidents_open";
pub const INCIDENTS_OPENED: &str = "netqoe_diagnoser_incidents_opened_total";
pub const LAG: &str = "netqoe_diagnoser_lag_seconds";
pub const STALE_SERIES: &str = "netqoe_diagnoser_stale_series";

/// Registers help texts with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(RUNS, "diagnoser runs by result (ok, error)");
    describe_histogram!(RUN_DURATION, Unit::Seconds, "time of one diagnoser run");
    describe_counter!(WINDOWS, "agg_1m windows judged");
    describe_counter!(DIAGNOSES, "anomalous windows written, by label");
    describe_gauge!(INCIDENTS_OPEN, "incidents open after the last run");
    describe_counter!(
        INCIDENTS_OPENED,
        "incidents stored for the first time, by label and peak severity when stored"
    );
    describe_gauge!(
        LAG,
        "age of the newest window processed when the last run ended"
    );
    describe_gauge!(
        STALE_SERIES,
        "series that stopped reporting (no window for 3 of their intervals and 10 minutes) within the last day"
    );
    // Every series exists from the start, at zero, so alerts on rates see it before the
    // first occurrence.
    for result in ["ok", "error"] {
        metrics::counter!(RUNS, "result" => result).increment(0);
    }
    for label in netqoe_model::Label::ALL {
        metrics::counter!(DIAGNOSES, "label" => label.as_str()).increment(0);
        for severity in netqoe_model::Severity::ALL {
            metrics::counter!(INCIDENTS_OPENED, "label" => label.as_str(), "severity" => severity.as_str())
                .increment(0);
        }
    }
    metrics::counter!(WINDOWS).increment(0);
}

//! `netqoe-diagnoser report`: open and recent incidents, the series behind them with their
//! windows against the baseline band, the worst series and the series that stopped
//! reporting, as a terminal table, JSON or one self-contained HTML page.

mod html;
mod svg;

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::config::{parse_time, Format, ReportArgs};
use crate::label::format_value;
use crate::series::{Kind, Metric};
use crate::store::{self, report as q};
use crate::Error;

/// Series charted per incident.
const CHARTS_PER_INCIDENT: i64 = 3;
/// Worst series listed.
const WORST: i64 = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub since: String,
    pub client: Option<String>,
    pub target: Option<String>,
    pub incidents: Vec<Incident>,
    pub worst_series: Vec<Worst>,
    pub stale_series: Vec<Stale>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub id: i64,
    pub label: String,
    pub scope: String,
    pub client_id: Option<String>,
    pub target: Option<String>,
    pub started_at: String,
    pub ended_at: String,
    pub minutes: i64,
    pub open: bool,
    pub peak_severity: String,
    pub windows: i32,
    pub series: i32,
    pub summary: String,
    pub charts: Vec<Chart>,
}

/// One series' windows around an incident.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub client_id: String,
    pub target: String,
    /// Probe kind and family, e.g. `http/v4`.
    pub series: String,
    pub metric: String,
    pub title: String,
    pub unit: String,
    pub from_ms: i64,
    pub until_ms: i64,
    /// Line names (e.g. `p50`, `p95`) and their (window start, value) points.
    pub lines: Vec<(String, Vec<(i64, f64)>)>,
    /// Usual value and the band outside which a window is anomalous.
    pub baseline: Option<(f64, f64, f64)>,
    /// Starts of the anomalous windows.
    pub anomalous: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Worst {
    pub client_id: String,
    pub target: String,
    pub series: String,
    pub anomalous_minutes: i64,
    pub windows: i64,
    pub worst_severity: String,
    pub main_label: String,
    pub worst_detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stale {
    pub client_id: String,
    pub target: String,
    pub series: String,
    pub last_window: String,
}

pub fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

/// What a chart of `m` draws: title, unit, (line name, SQL expression) pairs.
fn chart_spec(m: Metric) -> (&'static str, Vec<(&'static str, &'static str)>) {
    use Metric::*;
    let rate = |name, expr| (name, vec![(name, expr)]);
    match m {
        DnsP50 | DnsP95 => ("dns resolution (ms)", vec![("p50", "dns_p50"), ("p95", "dns_p95")]),
        TcpP50 | TcpP95 => ("tcp connect (ms)", vec![("p50", "tcp_p50"), ("p95", "tcp_p95")]),
        TlsP50 | TlsP95 => ("tls handshake (ms)", vec![("p50", "tls_p50"), ("p95", "tls_p95")]),
        TtfbP50 | TtfbP95 => ("time to first byte (ms)", vec![("p50", "ttfb_p50"), ("p95", "ttfb_p95")]),
        TotalP50 | TotalP95 => ("total time (ms)", vec![("p50", "total_p50"), ("p95", "total_p95")]),
        ThroughputP50 => ("throughput", vec![("p50", "throughput_p50"), ("p05", "throughput_p05")]),
        JitterP50 => ("ping jitter (ms)", vec![("p50", "jitter_p50")]),
        DnsFailures => rate("dns failures", "dns_error_count::float8 / NULLIF(count_total, 0)"),
        ConnectFailures => rate("connect failures", "tcp_error_count::float8 / NULLIF(count_total, 0)"),
        TlsFailures => rate("tls failures", "tls_error_count::float8 / NULLIF(count_total, 0)"),
        ErrorRate => rate(
            "http errors and timeouts",
            "(http_error_count + throughput_error_count + timeout_error_count)::float8 / NULLIF(count_total, 0)",
        ),
        PingLoss => rate("ping loss", "1 - ping_received::float8 / NULLIF(ping_sent, 0)"),
    }
}

/// Reads everything the report shows.
pub async fn gather(pool: &PgPool, args: &ReportArgs) -> Result<Report, Error> {
    let now = store::db_now(pool).await?;
    let since = parse_time(&args.since, now).map_err(Error::Input)?;
    let (client, target) = (args.client.as_deref(), args.target.as_deref());
    let mut incidents = Vec::new();
    for row in q::incidents(pool, since, client, target).await? {
        let mut charts = Vec::new();
        for (key, metric) in q::incident_series(pool, &row, CHARTS_PER_INCIDENT).await? {
            let Some(m) = Metric::parse(&metric) else {
                continue;
            };
            let (title, spec) = chart_spec(m);
            let from = row.start_ms - 90 * 60_000;
            // Half an hour after the incident, never past now (an open one ends at the chart's edge).
            let until = (row.end_ms + 30 * 60_000).min(now.max(row.end_ms + 60_000));
            let pts =
                q::points(pool, &key, spec[0].1, spec.get(1).map(|s| s.1), from, until).await?;
            let mut lines = Vec::new();
            for (i, (name, _)) in spec.iter().enumerate() {
                let line: Vec<(i64, f64)> = pts
                    .iter()
                    .filter_map(|p| if i == 0 { p.1 } else { p.2 }.map(|v| (p.0, v)))
                    .collect();
                lines.push((name.to_string(), line));
            }
            let anomalous = q::anomalies(pool, &key, from, until)
                .await?
                .into_iter()
                .filter(|a| a.1 == row.label)
                .map(|a| a.0)
                .collect();
            charts.push(Chart {
                series: key.kind_family(),
                baseline: q::baseline(pool, &key, &metric).await?,
                client_id: key.client_id,
                target: key.target,
                metric,
                title: title.to_string(),
                unit: match m.kind() {
                    Kind::Latency => "ms",
                    Kind::Throughput => "kbit/s",
                    Kind::Rate => "fraction",
                }
                .to_string(),
                from_ms: from,
                until_ms: until,
                lines,
                anomalous,
            });
        }
        incidents.push(Incident {
            id: row.id,
            label: row.label,
            scope: row.scope,
            client_id: row.client_id,
            target: row.target,
            started_at: iso(row.start_ms),
            ended_at: iso(row.end_ms),
            minutes: (row.end_ms - row.start_ms) / 60_000,
            open: row.open,
            peak_severity: row.peak_severity,
            windows: row.windows,
            series: row.series,
            summary: row.summary,
            charts,
        });
    }
    let worst_series = q::worst_series(pool, since, client, target, WORST)
        .await?
        .into_iter()
        .map(|w| Worst {
            series: w.key.kind_family(),
            client_id: w.key.client_id,
            target: w.key.target,
            anomalous_minutes: w.anomalous,
            windows: w.windows,
            worst_severity: w.worst_severity,
            main_label: w.main_label,
            worst_detail: w.worst_detail,
        })
        .collect();
    let stale_series = store::stale_series(pool, now)
        .await?
        .into_iter()
        .filter(|(k, _)| client.is_none_or(|c| c == k.client_id))
        .filter(|(k, _)| target.is_none_or(|t| t == k.target))
        .map(|(k, last)| Stale {
            series: k.kind_family(),
            client_id: k.client_id,
            target: k.target,
            last_window: iso(last),
        })
        .collect();
    Ok(Report {
        generated_at: iso(now),
        since: iso(since),
        client: args.client.clone(),
        target: args.target.clone(),
        incidents,
        worst_series,
        stale_series,
    })
}

/// Gathers and writes the report in the chosen format.
pub async fn run(pool: &PgPool, args: &ReportArgs) -> Result<(), Error> {
    let report = gather(pool, args).await?;
    let text = match args.format {
        Format::Table => table(&report),
        Format::Json => {
            serde_json::to_string_pretty(&report).map_err(|e| Error::Input(e.to_string()))? + "\n"
        }
        Format::Html => html::page(&report),
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)?,
        None => print!("{text}"),
    }
    Ok(())
}

fn entity(i: &Incident) -> String {
    match (&i.client_id, &i.target) {
        (Some(c), Some(t)) => format!("{c} → {t}"),
        (Some(c), None) => c.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => "?".into(),
    }
}

/// The terminal table.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let open = r.incidents.iter().filter(|i| i.open).count();
    let _ = writeln!(
        out,
        "netqoe diagnoser report · since {} · generated {} · {} incidents ({open} open)\n",
        r.since,
        r.generated_at,
        r.incidents.len()
    );
    let _ = writeln!(
        out,
        "{:>5}  {:<6}  {:<8}  {:<10}  {:<6}  {:<40}  {:<20}  {:>5}",
        "id", "state", "severity", "label", "scope", "where", "start", "min"
    );
    for i in &r.incidents {
        let _ = writeln!(
            out,
            "{:>5}  {:<6}  {:<8}  {:<10}  {:<6}  {:<40}  {:<20}  {:>5}\n       {}",
            i.id,
            if i.open { "OPEN" } else { "closed" },
            i.peak_severity,
            i.label,
            i.scope,
            entity(i),
            i.started_at,
            i.minutes,
            i.summary
        );
    }
    if r.incidents.is_empty() {
        let _ = writeln!(out, "no incidents");
    }
    let _ = writeln!(out, "\nworst series");
    for w in &r.worst_series {
        let _ = writeln!(
            out,
            "  {:<20} {:<32} {:<8} {:>4} of {:>5} windows anomalous, mostly {:<10} worst: {}",
            w.client_id,
            w.target,
            w.series,
            w.anomalous_minutes,
            w.windows,
            w.main_label,
            w.worst_detail
        );
    }
    if !r.stale_series.is_empty() {
        let _ = writeln!(out, "\nseries that stopped reporting");
        for s in &r.stale_series {
            let _ = writeln!(
                out,
                "  {:<20} {:<32} {:<8} last window {}",
                s.client_id, s.target, s.series, s.last_window
            );
        }
    }
    out
}

/// A chart value in its unit, for axis labels.
pub fn axis_value(chart: &Chart, v: f64) -> String {
    match chart.unit.as_str() {
        "fraction" => format_value(Metric::ErrorRate, v),
        "kbit/s" => format_value(Metric::ThroughputP50, v),
        _ => format_value(Metric::TcpP50, v),
    }
}

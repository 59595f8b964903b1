//! The report's reads: incidents, the series behind them, their windows and baselines, the
//! worst series.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use super::{ms, ts};
use crate::series::SeriesKey;
use crate::Error;

/// An incident row.
#[derive(Debug, Clone)]
pub struct IncidentRow {
    pub id: i64,
    pub label: String,
    pub scope: String,
    pub client_id: Option<String>,
    pub target: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub open: bool,
    pub peak_severity: String,
    pub windows: i32,
    pub series: i32,
    pub summary: String,
}

/// Incidents open or overlapping `[since_ms, now]`, filtered by client and target.
pub async fn incidents(
    pool: &PgPool,
    since_ms: i64,
    client: Option<&str>,
    target: Option<&str>,
) -> Result<Vec<IncidentRow>, Error> {
    let rows = sqlx::query(
        "SELECT id, label, scope, client_id, target, started_at, ended_at, open, peak_severity, \
           windows, series, summary FROM incidents \
         WHERE (open OR ended_at >= $1) AND ($2::text IS NULL OR client_id = $2) \
           AND ($3::text IS NULL OR target = $3) \
         ORDER BY open DESC, CASE peak_severity WHEN 'critical' THEN 3 WHEN 'major' THEN 2 ELSE 1 END DESC, \
           started_at DESC",
    )
    .bind(ts(since_ms))
    .bind(client)
    .bind(target)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| IncidentRow {
            id: r.get(0),
            label: r.get(1),
            scope: r.get(2),
            client_id: r.get(3),
            target: r.get(4),
            start_ms: ms(r.get(5)),
            end_ms: ms(r.get(6)),
            open: r.get(7),
            peak_severity: r.get(8),
            windows: r.get(9),
            series: r.get(10),
            summary: r.get(11),
        })
        .collect())
}

/// The series with the most anomalous windows in an incident (up to `limit`), each with its
/// most frequent diagnosed metric.
pub async fn incident_series(
    pool: &PgPool,
    inc: &IncidentRow,
    limit: i64,
) -> Result<Vec<(SeriesKey, String)>, Error> {
    let rows = sqlx::query(
        "SELECT client_id, target, probe_kind, ip_version, mode() WITHIN GROUP (ORDER BY metric) \
         FROM diagnoses WHERE label = $1 AND scope = $2 AND ($3::text IS NULL OR client_id = $3) \
           AND ($4::text IS NULL OR target = $4) AND window_start_ts >= $5 AND window_start_ts < $6 \
         GROUP BY 1, 2, 3, 4 ORDER BY count(*) DESC, 1, 2, 3, 4 LIMIT $7",
    )
    .bind(&inc.label)
    .bind(&inc.scope)
    .bind(inc.client_id.as_deref())
    .bind(inc.target.as_deref())
    .bind(ts(inc.start_ms))
    .bind(ts(inc.end_ms))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                SeriesKey::new(r.get(0), r.get(1), r.get(2), r.get(3)),
                r.get(4),
            )
        })
        .collect())
}

/// (window start, first value, second value) of a series over `[from_ms, until_ms)`, the values
/// computed by the given SQL expressions over agg_1m columns (fixed strings of this crate).
pub async fn points(
    pool: &PgPool,
    key: &SeriesKey,
    first: &str,
    second: Option<&str>,
    from_ms: i64,
    until_ms: i64,
) -> Result<Vec<(i64, Option<f64>, Option<f64>)>, Error> {
    let sql = format!(
        "SELECT window_start_ts, ({first})::float8, ({})::float8 FROM agg_1m \
         WHERE client_id = $1 AND target = $2 AND probe_kind = $3 AND ip_version = $4 \
           AND window_start_ts >= $5 AND window_start_ts < $6 ORDER BY window_start_ts",
        second.unwrap_or("NULL")
    );
    let rows = sqlx::query(&sql)
        .bind(&key.client_id)
        .bind(&key.target)
        .bind(&key.probe_kind)
        .bind(key.ip_version)
        .bind(ts(from_ms))
        .bind(ts(until_ms))
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (ms(r.get::<DateTime<Utc>, _>(0)), r.get(1), r.get(2)))
        .collect())
}

/// Anomalous windows of a series in `[from_ms, until_ms)`: (start, label).
pub async fn anomalies(
    pool: &PgPool,
    key: &SeriesKey,
    from_ms: i64,
    until_ms: i64,
) -> Result<Vec<(i64, String)>, Error> {
    let rows = sqlx::query(
        "SELECT window_start_ts, label FROM diagnoses WHERE client_id = $1 AND target = $2 \
           AND probe_kind = $3 AND ip_version = $4 AND window_start_ts >= $5 AND window_start_ts < $6 \
         ORDER BY window_start_ts",
    )
    .bind(&key.client_id)
    .bind(&key.target)
    .bind(&key.probe_kind)
    .bind(key.ip_version)
    .bind(ts(from_ms))
    .bind(ts(until_ms))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (ms(r.get(0)), r.get(1))).collect())
}

/// (median, band_low, band_high) of a series' metric.
pub async fn baseline(
    pool: &PgPool,
    key: &SeriesKey,
    metric: &str,
) -> Result<Option<(f64, f64, f64)>, Error> {
    Ok(sqlx::query_as(
        "SELECT median, band_low, band_high FROM baselines WHERE client_id = $1 AND target = $2 \
           AND probe_kind = $3 AND ip_version = $4 AND metric = $5 AND hour_of_day = -1",
    )
    .bind(&key.client_id)
    .bind(&key.target)
    .bind(&key.probe_kind)
    .bind(key.ip_version)
    .bind(metric)
    .fetch_optional(pool)
    .await?)
}

/// A series ranked by its anomalous windows.
#[derive(Debug, Clone)]
pub struct WorstRow {
    pub key: SeriesKey,
    pub anomalous: i64,
    pub windows: i64,
    pub worst_severity: String,
    pub main_label: String,
    pub worst_detail: String,
}

/// The `limit` series with the most anomalous windows since `since_ms`.
pub async fn worst_series(
    pool: &PgPool,
    since_ms: i64,
    client: Option<&str>,
    target: Option<&str>,
    limit: i64,
) -> Result<Vec<WorstRow>, Error> {
    let rows = sqlx::query(
        "SELECT d.client_id, d.target, d.probe_kind, d.ip_version, count(*), \
           (SELECT count(*) FROM agg_1m a WHERE a.client_id = d.client_id AND a.target = d.target \
              AND a.probe_kind = d.probe_kind AND a.ip_version = d.ip_version AND a.window_start_ts >= $1), \
           (array_agg(d.severity ORDER BY CASE d.severity WHEN 'critical' THEN 3 WHEN 'major' THEN 2 ELSE 1 END DESC))[1], \
           mode() WITHIN GROUP (ORDER BY d.label), \
           (array_agg(d.detail ORDER BY d.score DESC NULLS LAST))[1] \
         FROM diagnoses d WHERE d.window_start_ts >= $1 AND ($2::text IS NULL OR d.client_id = $2) \
           AND ($3::text IS NULL OR d.target = $3) \
         GROUP BY 1, 2, 3, 4 ORDER BY count(*) DESC, 1, 2, 3, 4 LIMIT $4",
    )
    .bind(ts(since_ms))
    .bind(client)
    .bind(target)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| WorstRow {
            key: SeriesKey::new(r.get(0), r.get(1), r.get(2), r.get(3)),
            anomalous: r.get(4),
            windows: r.get(5),
            worst_severity: r.get(6),
            main_label: r.get(7),
            worst_detail: r.get(8),
        })
        .collect())
}

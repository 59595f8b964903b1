//! Every SQL statement of the diagnoser: reading windows and learnt state, writing diagnoses,
//! labels, baselines, incidents and the watermark. Batches go through UNNEST arrays, keys sorted.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use netqoe_model::{Label, Scope, Severity};
use sqlx::{PgConnection, PgPool, Row};

use crate::baseline::SeriesState;
use crate::engine::{BaselineRow, Diagnosis};
use crate::incident::{summary, Changes, Diag, Group, Stored};
use crate::series::{SeriesKey, Window};
use crate::Error;

pub mod evaluate;
pub mod report;

/// Rows per batched statement.
const CHUNK: usize = 2000;
/// Name of the watermark row.
const WATERMARK: &str = "diagnoser";
/// Transaction-level advisory lock serialising the writes of concurrent runs.
const LOCK_KEY: i64 = 0x6e71_6f65_6469_6167;

pub fn ts(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The database's clock, ms since the epoch.
pub async fn db_now(pool: &PgPool) -> Result<i64, Error> {
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(pool).await?;
    Ok(ms(now))
}

/// (newest window processed, database time the run that processed it started reading).
pub async fn watermark(pool: &PgPool) -> Result<Option<(i64, i64)>, Error> {
    let row: Option<(DateTime<Utc>, DateTime<Utc>)> =
        sqlx::query_as("SELECT watermark, last_run_at FROM diagnoser_watermark WHERE name = $1")
            .bind(WATERMARK)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(w, r)| (ms(w), ms(r))))
}

/// Transactions of the aggregator still open when a pass starts stamp their events with a
/// `seen_at` before the pass's start although the pass cannot see them yet: the late check
/// looks back this much further.
const SEEN_MARGIN_MS: i64 = 120_000;

/// Earliest window in `[from_ms, until_ms)` that events merged after `after_ms` changed (late
/// events), found in the aggregator's ledger `events_seen`: its rows are written in `seen_at`
/// order with a BRIN index on it, so the check reads the events merged since the last pass, not
/// the windows of the lookback.
pub async fn earliest_changed(
    pool: &PgPool,
    from_ms: i64,
    until_ms: i64,
    after_ms: i64,
) -> Result<Option<i64>, Error> {
    let t: Option<i64> = sqlx::query_scalar(
        "SELECT min(ts_ms) FROM events_seen WHERE seen_at > $1 AND ts_ms >= $2 AND ts_ms < $3",
    )
    .bind(ts(after_ms - SEEN_MARGIN_MS))
    .bind(from_ms)
    .bind(until_ms)
    .fetch_one(pool)
    .await?;
    Ok(t.map(|t| t - t.rem_euclid(60_000)))
}

/// Learnt state of the series `keys` that have one.
pub async fn load_states(
    pool: &PgPool,
    keys: &[&SeriesKey],
) -> Result<HashMap<SeriesKey, SeriesState>, Error> {
    let rows = sqlx::query(
        // One primary-key lookup per key (the LIMIT keeps the planner from hashing the whole
        // table instead: a pass of many batches would read every state once per batch).
        "SELECT k.client_id, k.target, k.probe_kind, k.ip_version, s.state \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int2[]) AS k(client_id, target, probe_kind, ip_version) \
         CROSS JOIN LATERAL (SELECT state FROM diagnoser_series s \
           WHERE s.client_id = k.client_id AND s.target = k.target \
             AND s.probe_kind = k.probe_kind AND s.ip_version = k.ip_version LIMIT 1) s",
    )
    .bind(keys.iter().map(|k| k.client_id.as_str()).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.target.as_str()).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.probe_kind.as_str()).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.ip_version).collect::<Vec<_>>())
    .fetch_all(pool)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let key = SeriesKey {
            client_id: r.get(0),
            target: r.get(1),
            probe_kind: r.get(2),
            ip_version: r.get(3),
        };
        let bytes: &[u8] = r.get(4);
        out.insert(key, SeriesState::decode(bytes)?);
    }
    Ok(out)
}

/// The expressions over `agg_1m` a run reads, in the order [`windows`] decodes them (also the
/// benchmark's reference read).
pub const WINDOW_COLUMNS: &str = "client_id, target, probe_kind, ip_version, \
    (extract(epoch FROM window_start_ts) * 1000)::bigint, count_total, \
    dns_error_count, tcp_error_count, tls_error_count, \
    http_error_count + throughput_error_count + timeout_error_count, \
    dns_p50, dns_p95, tcp_p50, tcp_p95, tls_p50, tls_p95, ttfb_p50, ttfb_p95, \
    total_p50, total_p95, throughput_p50, ping_sent, ping_received, jitter_p50";

/// The order a run reads windows in: one series after the other, each in time order.
pub const WINDOW_ORDER: &str = "client_id, target, probe_kind, ip_version, window_start_ts";

/// Windows of `[from_ms, until_ms)` in series order, then time: one series after the other.
pub fn windows(
    pool: &PgPool,
    from_ms: i64,
    until_ms: i64,
) -> BoxStream<'_, Result<(SeriesKey, Window), Error>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {WINDOW_COLUMNS} FROM agg_1m WHERE window_start_ts >= $1 AND window_start_ts < $2 \
             ORDER BY {WINDOW_ORDER}"
        )
    });
    sqlx::query(SQL.as_str())
        .bind(ts(from_ms))
        .bind(ts(until_ms))
        .fetch(pool)
        .map(|r| {
            let r = r?;
            let key = SeriesKey {
                client_id: r.get(0),
                target: r.get(1),
                probe_kind: r.get(2),
                ip_version: r.get(3),
            };
            let w = Window {
                ts_ms: r.get(4),
                count_total: r.get(5),
                dns_errors: r.get(6),
                tcp_errors: r.get(7),
                tls_errors: r.get(8),
                other_errors: r.get(9),
                dns_p50: r.get(10),
                dns_p95: r.get(11),
                tcp_p50: r.get(12),
                tcp_p95: r.get(13),
                tls_p50: r.get(14),
                tls_p95: r.get(15),
                ttfb_p50: r.get(16),
                ttfb_p95: r.get(17),
                total_p50: r.get(18),
                total_p95: r.get(19),
                throughput_p50: r.get(20),
                ping_sent: r.get(21),
                ping_received: r.get(22),
                jitter_p50: r.get(23),
            };
            Ok((key, w))
        })
        .boxed()
}

/// Serialises writers: two runs never reconcile incidents at the same time.
pub async fn lock(conn: &mut PgConnection) -> Result<(), Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces the diagnoses of `[from_ms, until_ms)` with `diags` and sets `agg_1m.diagnosis_label`
/// of the range to match (the main label of anomalous windows, NULL elsewhere).
///
/// A window has a label exactly when it has a diagnosis, so the labels that can change are
/// those of the diagnoses replaced and of the new ones: they are updated by key, and the
/// range's other windows are never read.
pub async fn replace_diagnoses(
    conn: &mut PgConnection,
    from_ms: i64,
    until_ms: i64,
    diags: &[Diagnosis],
) -> Result<(), Error> {
    let replaced: Vec<(String, String, String, i16, DateTime<Utc>)> = sqlx::query_as(
        "DELETE FROM diagnoses WHERE window_start_ts >= $1 AND window_start_ts < $2 \
         RETURNING client_id, target, probe_kind, ip_version, window_start_ts",
    )
    .bind(ts(from_ms))
    .bind(ts(until_ms))
    .fetch_all(&mut *conn)
    .await?;
    let mut sorted: Vec<&Diagnosis> = diags.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key).then(a.ts_ms.cmp(&b.ts_ms)));
    for chunk in sorted.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO diagnoses (client_id, target, probe_kind, ip_version, window_start_ts, label, \
               scope, severity, metric, observed, baseline, score, detail, interval_s) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int2[], $5::timestamptz[], \
               $6::text[], $7::text[], $8::text[], $9::text[], $10::float8[], $11::float8[], \
               $12::float8[], $13::text[], $14::float8[])",
        )
        .bind(chunk.iter().map(|d| d.key.client_id.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.key.target.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.key.probe_kind.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.key.ip_version).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| ts(d.ts_ms)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.label.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.scope.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.severity.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.metric.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.observed).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.baseline).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.score).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.detail.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|d| d.interval_ms / 1000.0).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    // The label each affected window should have: its new diagnosis', or none.
    let mut labels: BTreeMap<(SeriesKey, i64), Option<&str>> = replaced
        .into_iter()
        .map(|(c, t, k, v, at)| ((SeriesKey::new(&c, &t, &k, v), ms(at)), None))
        .collect();
    for d in &sorted {
        labels.insert((d.key.clone(), d.ts_ms), Some(d.label.as_str()));
    }
    // Rows locked in key order, as the aggregator's upserts lock them, so the two never
    // deadlock; only rows whose label changes are written (a HOT update: no index touched).
    for chunk in labels.iter().collect::<Vec<_>>().chunks(CHUNK) {
        sqlx::query(
            "WITH want AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int2[], \
                $5::timestamptz[], $6::text[]) AS w(client_id, target, probe_kind, ip_version, ts, label)), \
             cur AS (SELECT a.client_id, a.target, a.probe_kind, a.ip_version, a.window_start_ts, w.label \
                FROM want w JOIN agg_1m a ON a.client_id = w.client_id AND a.target = w.target \
                  AND a.probe_kind = w.probe_kind AND a.ip_version = w.ip_version AND a.window_start_ts = w.ts \
                WHERE a.diagnosis_label IS DISTINCT FROM w.label \
                ORDER BY a.client_id, a.target, a.probe_kind, a.ip_version, a.window_start_ts \
                FOR UPDATE OF a) \
             UPDATE agg_1m a SET diagnosis_label = cur.label FROM cur \
             WHERE a.client_id = cur.client_id AND a.target = cur.target AND a.probe_kind = cur.probe_kind \
               AND a.ip_version = cur.ip_version AND a.window_start_ts = cur.window_start_ts",
        )
        .bind(chunk.iter().map(|((k, _), _)| k.client_id.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|((k, _), _)| k.target.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|((k, _), _)| k.probe_kind.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|((k, _), _)| k.ip_version).collect::<Vec<_>>())
        .bind(chunk.iter().map(|((_, at), _)| ts(*at)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, l)| **l).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Stores the learnt state and the baselines of each series in `states`.
pub async fn save_states(
    conn: &mut PgConnection,
    states: &[(SeriesKey, SeriesState, Vec<BaselineRow>)],
) -> Result<(), Error> {
    for chunk in states.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO diagnoser_series (client_id, target, probe_kind, ip_version, state, first_ts, \
               last_ts, windows, interval_s, updated_at) \
             SELECT *, now() FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int2[], $5::bytea[], \
               $6::timestamptz[], $7::timestamptz[], $8::int8[], $9::float8[]) \
             ON CONFLICT (client_id, target, probe_kind, ip_version) DO UPDATE SET state = excluded.state, \
               first_ts = excluded.first_ts, last_ts = excluded.last_ts, windows = excluded.windows, \
               interval_s = excluded.interval_s, updated_at = now()",
        )
        .bind(chunk.iter().map(|s| s.0.client_id.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| s.0.target.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| s.0.probe_kind.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| s.0.ip_version).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| s.1.encode()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| ts(s.1.first_ms)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| ts(s.1.last_ms)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| s.1.windows as i64).collect::<Vec<_>>())
        .bind(chunk.iter().map(|s| s.1.interval_ms() / 1000.0).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let rows: Vec<(&SeriesKey, &SeriesState, &BaselineRow)> = states
        .iter()
        .flat_map(|(k, s, rows)| rows.iter().map(move |r| (k, s, r)))
        .collect();
    for chunk in rows.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO baselines (client_id, target, probe_kind, ip_version, metric, hour_of_day, \
               median, mad, band_low, band_high, n_windows, from_ts, until_ts, computed_at) \
             SELECT c, t, k, v, m, -1, med, mad, lo, hi, n, f, u, now() FROM UNNEST($1::text[], \
               $2::text[], $3::text[], $4::int2[], $5::text[], $6::float8[], $7::float8[], \
               $8::float8[], $9::float8[], $10::int8[], $11::timestamptz[], $12::timestamptz[]) \
               AS x(c, t, k, v, m, med, mad, lo, hi, n, f, u) \
             ON CONFLICT (client_id, target, probe_kind, ip_version, metric, hour_of_day) DO UPDATE SET \
               median = excluded.median, mad = excluded.mad, band_low = excluded.band_low, \
               band_high = excluded.band_high, n_windows = excluded.n_windows, \
               from_ts = excluded.from_ts, until_ts = excluded.until_ts, computed_at = now()",
        )
        .bind(chunk.iter().map(|r| r.0.client_id.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.0.target.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.0.probe_kind.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.0.ip_version).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.2.metric.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.2.median).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.2.mad).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.2.band_low).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.2.band_high).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.2.n as i64).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| ts(r.1.first_ms)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| ts(r.1.last_ms)).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn entity_of(
    label: &str,
    scope: &str,
    client: Option<String>,
    target: Option<String>,
) -> Result<crate::incident::Entity, Error> {
    let label = Label::parse(label).ok_or_else(|| Error::Corrupt(format!("label {label}")))?;
    let scope = Scope::parse(scope).ok_or_else(|| Error::Corrupt(format!("scope {scope}")))?;
    Ok((label, scope, client, target))
}

/// Incidents still open or ended at or after `cut_ms`.
pub async fn active_incidents(conn: &mut PgConnection, cut_ms: i64) -> Result<Vec<Stored>, Error> {
    let rows = sqlx::query(
        "SELECT id, label, scope, client_id, target, started_at, ended_at FROM incidents \
         WHERE open OR ended_at >= $1 ORDER BY id",
    )
    .bind(ts(cut_ms))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Stored {
                id: r.get(0),
                entity: entity_of(r.get(1), r.get(2), r.get(3), r.get(4))?,
                start_ms: ms(r.get(5)),
                end_ms: ms(r.get(6)),
            })
        })
        .collect()
}

/// Stored diagnoses from `from_ms` on.
pub async fn diagnoses_since(conn: &mut PgConnection, from_ms: i64) -> Result<Vec<Diag>, Error> {
    let rows = sqlx::query(
        "SELECT label, scope, client_id, target, probe_kind, ip_version, window_start_ts, severity, \
           interval_s, detail, score FROM diagnoses WHERE window_start_ts >= $1",
    )
    .bind(ts(from_ms))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let (label, scope, ..) = entity_of(r.get(0), r.get(1), None, None)?;
            let key = SeriesKey::new(r.get(2), r.get(3), r.get(4), r.get(5));
            let sev: &str = r.get(7);
            Ok(Diag {
                label,
                scope,
                series: key.kind_family(),
                client_id: key.client_id,
                target: key.target,
                ts_ms: ms(r.get(6)),
                severity: Severity::parse(sev)
                    .ok_or_else(|| Error::Corrupt(format!("severity {sev}")))?,
                interval_ms: r.get::<f64, _>(8) * 1000.0,
                detail: r.get(9),
                score: r.get::<Option<f64>, _>(10).unwrap_or(0.0),
            })
        })
        .collect()
}

fn bind_group<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    g: &'q Group,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let (label, scope, client, target) = &g.entity;
    q.bind(label.as_str())
        .bind(scope.as_str())
        .bind(client.as_deref())
        .bind(target.as_deref())
        .bind(ts(g.start_ms))
        .bind(ts(g.end_ms))
        .bind(g.open)
        .bind(g.peak.as_str())
        .bind(g.windows as i32)
        .bind(g.series as i32)
        .bind(summary(g))
}

/// Applies reconciled incident changes. Returns (inserted, updated, deleted).
pub async fn apply_incidents(
    conn: &mut PgConnection,
    changes: &Changes,
) -> Result<(usize, usize, usize), Error> {
    let mut updated = 0;
    for (id, g) in &changes.update {
        let q = sqlx::query(
            "UPDATE incidents SET label = $1, scope = $2, client_id = $3, target = $4, started_at = $5, \
               ended_at = $6, open = $7, peak_severity = $8, windows = $9, series = $10, summary = $11, \
               updated_at = now() \
             WHERE id = $12 AND (started_at, ended_at, open, peak_severity, windows, series, summary) \
               IS DISTINCT FROM ($5, $6, $7, $8, $9, $10, $11)",
        );
        updated += bind_group(q, g)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected() as usize;
    }
    for g in &changes.insert {
        let q = sqlx::query(
            "INSERT INTO incidents (label, scope, client_id, target, started_at, ended_at, open, \
               peak_severity, windows, series, summary) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        );
        bind_group(q, g).execute(&mut *conn).await?;
    }
    if !changes.delete.is_empty() {
        sqlx::query("DELETE FROM incidents WHERE id = ANY($1)")
            .bind(&changes.delete)
            .execute(&mut *conn)
            .await?;
    }
    Ok((changes.insert.len(), updated, changes.delete.len()))
}

pub async fn set_watermark(
    conn: &mut PgConnection,
    watermark_ms: i64,
    run_at_ms: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO diagnoser_watermark (name, watermark, last_run_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET watermark = excluded.watermark, \
           last_run_at = excluded.last_run_at, updated_at = now()",
    )
    .bind(WATERMARK)
    .bind(ts(watermark_ms))
    .bind(ts(run_at_ms))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn open_incidents(pool: &PgPool) -> Result<i64, Error> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM incidents WHERE open")
            .fetch_one(pool)
            .await?,
    )
}

/// Series whose last window is older than three of their intervals (and 10 minutes) before
/// `now_ms`, having reported within the day before.
pub async fn stale_series(pool: &PgPool, now_ms: i64) -> Result<Vec<(SeriesKey, i64)>, Error> {
    let rows = sqlx::query(
        "SELECT client_id, target, probe_kind, ip_version, last_ts FROM diagnoser_series \
         WHERE last_ts < $1 - greatest(interval '10 minutes', 3 * interval_s * interval '1 second') \
           AND last_ts >= $1 - interval '1 day' ORDER BY last_ts",
    )
    .bind(ts(now_ms))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                SeriesKey::new(r.get(0), r.get(1), r.get(2), r.get(3)),
                ms(r.get(4)),
            )
        })
        .collect())
}

//! The evaluation's reads: every incident, and anomalous and healthy windows outside the truth.

use netqoe_model::{InjectedIncident, Label, Scope};
use sqlx::{PgPool, Row};

use super::{ms, ts};
use crate::evaluate::Found;
use crate::Error;

/// Every stored incident.
pub async fn incidents(pool: &PgPool) -> Result<Vec<Found>, Error> {
    let rows = sqlx::query(
        "SELECT id, label, scope, client_id, target, started_at, ended_at FROM incidents ORDER BY started_at, id",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            let label: String = r.get(1);
            let scope: String = r.get(2);
            Ok(Found {
                id: r.get(0),
                label: Label::parse(&label)
                    .ok_or_else(|| Error::Corrupt(format!("label {label}")))?,
                scope: Scope::parse(&scope)
                    .ok_or_else(|| Error::Corrupt(format!("scope {scope}")))?,
                client_id: r.get(3),
                target: r.get(4),
                start_ms: ms(r.get(5)),
                end_ms: ms(r.get(6)),
            })
        })
        .collect()
}

/// (anomalous windows outside the truth, windows outside the truth). A window is inside an
/// injected incident when its series belongs to the incident's entity and it starts within
/// `[start − slack, end + slack)`. Windows of the `excluded` targets are left out.
pub async fn outside_truth(
    pool: &PgPool,
    truth: &[InjectedIncident],
    slack_ms: i64,
    excluded: &[String],
) -> Result<(i64, i64), Error> {
    let clients: Vec<Option<&str>> = truth.iter().map(|t| t.client_id.as_deref()).collect();
    let targets: Vec<Option<&str>> = truth.iter().map(|t| t.target.as_deref()).collect();
    let starts: Vec<_> = truth.iter().map(|t| ts(t.start_ms - slack_ms)).collect();
    let ends: Vec<_> = truth.iter().map(|t| ts(t.end_ms + slack_ms)).collect();
    let row = sqlx::query(
        "WITH t AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) \
            AS t(c, tg, s, e)) \
         SELECT count(*) FILTER (WHERE a.diagnosis_label IS NOT NULL), count(*) FROM agg_1m a \
         WHERE NOT EXISTS (SELECT 1 FROM t WHERE (t.c IS NULL OR t.c = a.client_id) \
           AND (t.tg IS NULL OR t.tg = a.target) AND a.window_start_ts >= t.s AND a.window_start_ts < t.e) \
           AND a.target <> ALL($5::text[])",
    )
    .bind(clients)
    .bind(targets)
    .bind(starts)
    .bind(ends)
    .bind(excluded)
    .fetch_one(pool)
    .await?;
    Ok((row.get(0), row.get(1)))
}

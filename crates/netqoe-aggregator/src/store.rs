//! The per-batch Postgres transaction: record new event ids, merge only their events into
//! `agg_1m`, commit. The caller acks the batch's messages only after this returns Ok.
//!
//! Lock order: event ids and window keys are sorted (byte order, `COLLATE "C"` in SQL) so two
//! instances working on overlapping batches queue behind each other instead of deadlocking.
//! New windows are first inserted as empty placeholders (`ON CONFLICT DO NOTHING` waits for a
//! concurrent insert of the same key to commit), then every row of the batch is read `FOR
//! UPDATE`, merged in memory and written back: a row is never overwritten from a stale copy.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use chrono::{DateTime, TimeZone, Utc};
use netqoe_model::{ErrorStage, Event};
use sqlx::PgPool;
use uuid::Uuid;

use crate::window::{group, summarise, WindowKey, WindowState};

/// What a committed batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Events merged into windows for the first time.
    pub new: usize,
    /// Events already merged before (redeliveries, replays).
    pub duplicate: usize,
    /// Window rows written.
    pub rows: usize,
}

fn ts(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Merges `events` exactly once in one transaction.
pub async fn apply(pool: &PgPool, events: &[Event]) -> Result<Applied, sqlx::Error> {
    // One entry per event id, sorted: the insert order into events_seen.
    let mut by_id: BTreeMap<Uuid, &Event> = BTreeMap::new();
    for e in events {
        by_id.entry(e.event_id).or_insert(e);
    }
    let ids: Vec<Uuid> = by_id.keys().copied().collect();
    let clients: Vec<&str> = by_id.values().map(|e| e.client_id.as_str()).collect();
    let ts_ms: Vec<i64> = by_id.values().map(|e| e.ts_ms).collect();

    let mut tx = pool.begin().await?;
    let fresh: HashSet<Uuid> = sqlx::query_scalar(
        "INSERT INTO events_seen (event_id, client_id, ts_ms) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bigint[]) \
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
    )
    .bind(&ids)
    .bind(&clients)
    .bind(&ts_ms)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let new_events: Vec<Event> = by_id
        .values()
        .filter(|e| fresh.contains(&e.event_id))
        .map(|e| (*e).clone())
        .collect();
    let groups = group(&new_events);
    let applied = Applied {
        new: new_events.len(),
        duplicate: events.len() - new_events.len(),
        rows: groups.len(),
    };
    if groups.is_empty() {
        tx.commit().await?;
        return Ok(applied);
    }

    let k_client: Vec<&str> = groups.keys().map(|k| k.client_id.as_str()).collect();
    let k_target: Vec<&str> = groups.keys().map(|k| k.target.as_str()).collect();
    let k_window: Vec<DateTime<Utc>> = groups.keys().map(|k| ts(k.window_start_ms)).collect();
    sqlx::query(
        "INSERT INTO agg_1m (client_id, target, window_start_ts, sketch_state) \
         SELECT c, t, w, '\\x'::bytea FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS u(c, t, w) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&k_client)
    .bind(&k_target)
    .bind(&k_window)
    .execute(&mut *tx)
    .await?;
    let existing: Vec<(String, String, DateTime<Utc>, Vec<u8>)> = sqlx::query_as(
        "SELECT a.client_id, a.target, a.window_start_ts, a.sketch_state FROM agg_1m a \
         JOIN UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS u(c, t, w) \
           ON a.client_id = u.c AND a.target = u.t AND a.window_start_ts = u.w \
         ORDER BY a.client_id COLLATE \"C\", a.target COLLATE \"C\", a.window_start_ts \
         FOR UPDATE OF a",
    )
    .bind(&k_client)
    .bind(&k_target)
    .bind(&k_window)
    .fetch_all(&mut *tx)
    .await?;

    let mut merged: BTreeMap<WindowKey, WindowState> = BTreeMap::new();
    for (client_id, target, window, bytes) in existing {
        let key = WindowKey {
            client_id,
            target,
            window_start_ms: window.timestamp_millis(),
        };
        let Some(add) = groups.get(&key) else {
            continue;
        };
        // A row that cannot be decoded is never silently reset: fail the batch loudly.
        let mut state = WindowState::decode(&bytes).map_err(|e| sqlx::Error::Decode(e.into()))?;
        state.merge(add);
        merged.insert(key, state);
    }
    write_rows(&mut tx, &merged).await?;
    tx.commit().await?;
    Ok(applied)
}

const TIMING_STATS: [&str; 5] = ["p50", "p95", "p99", "min", "max"];

/// `(column, array cast)` of every column the UPDATE writes, in bind order.
fn columns() -> Vec<(String, &'static str)> {
    let mut cols: Vec<(String, &'static str)> = vec![
        ("client_id".into(), "text[]"),
        ("target".into(), "text[]"),
        ("window_start_ts".into(), "timestamptz[]"),
        ("count_total".into(), "bigint[]"),
        ("count_success".into(), "bigint[]"),
        ("count_error".into(), "bigint[]"),
    ];
    for stage in ErrorStage::ALL {
        cols.push((format!("{}_error_count", stage.as_str()), "bigint[]"));
    }
    for m in crate::window::TIMINGS {
        cols.push((format!("{m}_count"), "bigint[]"));
        for s in TIMING_STATS {
            cols.push((format!("{m}_{s}"), "float8[]"));
        }
    }
    cols.push(("throughput_count".into(), "bigint[]"));
    for c in ["throughput_p05", "throughput_p50", "throughput_p95"] {
        cols.push((c.into(), "float8[]"));
    }
    for c in ["ping_sent", "ping_received", "jitter_count"] {
        cols.push((c.into(), "bigint[]"));
    }
    cols.push(("jitter_p50".into(), "float8[]"));
    cols.push(("sketch_state".into(), "bytea[]"));
    cols.push(("last_recv_ts".into(), "timestamptz[]"));
    cols
}

fn update_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let cols = columns();
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        let params: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, (_, cast))| format!("${}::{cast}", i + 1))
            .collect();
        let sets: Vec<String> = names[3..].iter().map(|n| format!("{n} = u.{n}")).collect();
        format!(
            "UPDATE agg_1m a SET {}, version = a.version + 1, updated_at = now() \
             FROM UNNEST({}) AS u({}) \
             WHERE a.client_id = u.client_id AND a.target = u.target AND a.window_start_ts = u.window_start_ts",
            sets.join(", "),
            params.join(", "),
            names.join(", ")
        )
    })
}

async fn write_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &BTreeMap<WindowKey, WindowState>,
) -> Result<(), sqlx::Error> {
    let n = rows.len();
    let mut ints: Vec<Vec<i64>> = Vec::new();
    let mut floats: Vec<Vec<Option<f64>>> = Vec::new();
    let int_col = |ints: &mut Vec<Vec<i64>>, f: &dyn Fn(&WindowState) -> u64| {
        ints.push(rows.values().map(|w| f(w) as i64).collect());
    };
    // Bind order must follow `columns()`: keys, 3 counts, 6 error counts, then per timing
    // metric a count and five stats, throughput, ping, jitter, state, last_recv.
    let mut q = sqlx::query(update_sql())
        .bind(
            rows.keys()
                .map(|k| k.client_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.keys().map(|k| k.target.as_str()).collect::<Vec<_>>())
        .bind(
            rows.keys()
                .map(|k| ts(k.window_start_ms))
                .collect::<Vec<_>>(),
        );
    int_col(&mut ints, &|w| w.count_total);
    int_col(&mut ints, &|w| w.count_success);
    int_col(&mut ints, &|w| w.count_error());
    for stage in ErrorStage::ALL {
        int_col(&mut ints, &|w| w.errors_of(stage));
    }
    for v in ints.drain(..) {
        q = q.bind(v);
    }
    for i in 0..crate::window::TIMINGS.len() {
        let sums: Vec<_> = rows.values().map(|w| summarise(&w.timings[i])).collect();
        q = q.bind(sums.iter().map(|s| s.count as i64).collect::<Vec<_>>());
        floats.push(sums.iter().map(|s| s.p50).collect());
        floats.push(sums.iter().map(|s| s.p95).collect());
        floats.push(sums.iter().map(|s| s.p99).collect());
        floats.push(sums.iter().map(|s| s.min).collect());
        floats.push(sums.iter().map(|s| s.max).collect());
        for v in floats.drain(..) {
            q = q.bind(v);
        }
    }
    let tput: Vec<_> = rows.values().map(|w| summarise(&w.throughput)).collect();
    q = q
        .bind(tput.iter().map(|s| s.count as i64).collect::<Vec<_>>())
        .bind(tput.iter().map(|s| s.p05).collect::<Vec<_>>())
        .bind(tput.iter().map(|s| s.p50).collect::<Vec<_>>())
        .bind(tput.iter().map(|s| s.p95).collect::<Vec<_>>());
    let jitter: Vec<_> = rows.values().map(|w| summarise(&w.jitter)).collect();
    q = q
        .bind(
            rows.values()
                .map(|w| w.ping_sent as i64)
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.values()
                .map(|w| w.ping_received as i64)
                .collect::<Vec<_>>(),
        )
        .bind(jitter.iter().map(|s| s.count as i64).collect::<Vec<_>>())
        .bind(jitter.iter().map(|s| s.p50).collect::<Vec<_>>())
        .bind(rows.values().map(WindowState::encode).collect::<Vec<_>>())
        .bind(
            rows.values()
                .map(|w| w.last_recv_ms.map(ts))
                .collect::<Vec<_>>(),
        );
    let done = q.execute(&mut **tx).await?;
    debug_assert_eq!(done.rows_affected() as usize, n);
    Ok(())
}

/// Deletes `events_seen` rows seen before `older_than`, `batch` rows per statement; returns
/// how many were deleted.
pub async fn prune_seen(
    pool: &PgPool,
    older_than: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let n = sqlx::query(
            "DELETE FROM events_seen WHERE event_id IN \
             (SELECT event_id FROM events_seen WHERE seen_at < $1 LIMIT $2)",
        )
        .bind(older_than)
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        total += n;
        if n < batch as u64 {
            return Ok(total);
        }
    }
}

/// Deletes `agg_1m` windows that started before `older_than`, in batches.
pub async fn prune_windows(
    pool: &PgPool,
    older_than: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let n = sqlx::query(
            "DELETE FROM agg_1m WHERE ctid IN \
             (SELECT ctid FROM agg_1m WHERE window_start_ts < $1 LIMIT $2)",
        )
        .bind(older_than)
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        total += n;
        if n < batch as u64 {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_binds_every_column_once() {
        let sql = update_sql();
        let cols = columns();
        assert_eq!(cols.len(), 3 + 3 + 6 + 5 * 6 + 4 + 4 + 2);
        assert!(sql.contains(&format!("${}::timestamptz[]", cols.len())));
        assert!(!sql.contains(&format!("${}", cols.len() + 1)));
        for (name, _) in &cols[3..] {
            assert!(sql.contains(&format!("{name} = u.{name}")), "{name}");
        }
    }
}

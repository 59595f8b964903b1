//! Writing `agg_1m` rows: the column list, the version-guarded upsert of a batch's merged
//! windows, and the cache of rows this instance wrote last.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};
use netqoe_model::ErrorStage;

use super::ts;
use crate::window::{summarise_some, Summary, Wanted, WindowKey, WindowState};

/// A window to write: its merged state and the version it was merged onto (0: the row did
/// not exist).
pub(super) struct Row {
    pub state: WindowState,
    pub base_version: i64,
}

impl Row {
    /// The version the write gives the row. A new row starts at the current time in
    /// microseconds, so a cached copy of a deleted row with the same key can never match it.
    fn next_version(&self, now_us: i64) -> i64 {
        if self.base_version == 0 {
            now_us
        } else {
            self.base_version + 1
        }
    }
}

/// Recently written rows (encoded state and version), so the next batch that touches them
/// needs no read. A copy is only ever used as the base of a write guarded by its version.
pub struct RowCache {
    rows: Option<Mutex<lru::LruCache<WindowKey, Versioned>>>,
}

/// A row's version and encoded state.
pub(super) type Versioned = (i64, Vec<u8>);

impl RowCache {
    /// A cache of up to `capacity` rows; 0 disables it.
    pub fn new(capacity: usize) -> RowCache {
        RowCache {
            rows: NonZeroUsize::new(capacity).map(|c| Mutex::new(lru::LruCache::new(c))),
        }
    }

    /// Whether rows are kept at all (a capacity above 0).
    pub(super) fn enabled(&self) -> bool {
        self.rows.is_some()
    }

    pub(super) fn get(&self, key: &WindowKey) -> Option<Versioned> {
        let rows = self.rows.as_ref()?;
        let mut rows = rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.get(key).cloned()
    }

    pub(super) fn put(&self, key: WindowKey, version: i64, state: Vec<u8>) {
        if let Some(rows) = &self.rows {
            let mut rows = rows.lock().unwrap_or_else(|p| p.into_inner());
            rows.put(key, (version, state));
        }
    }
}

const TIMING_STATS: [&str; 5] = ["p50", "p95", "p99", "min", "max"];

/// `(column, array cast)` of every column a write sets, in bind order.
pub fn columns() -> Vec<(String, &'static str)> {
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
    cols.push(("version".into(), "bigint[]"));
    cols
}

/// Inserts new windows and updates existing ones in one statement, in key order. The
/// conflict action only writes a row still at the version the merge started from
/// (`version - 1`); a row another instance changed meanwhile is left alone but locked, and
/// not counted in the rows affected.
///
/// The arrays are unnested in the select list, not in `FROM UNNEST(...)`: in FROM, Postgres
/// first copies every row of all the arrays into a tuplestore and then reads it back; in the
/// select list the rows stream straight into the insert (one `ProjectSet` node, the arrays in
/// lockstep). For rows this wide that cut Postgres's CPU per event by about a tenth.
pub(super) fn upsert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| upsert_statement("agg_1m", Some("a.version = excluded.version - 1")))
}

/// The upsert of `columns()` into `table` (of `agg_1m`'s shape), with `guard` as the
/// condition of its conflict action: the aggregator's own statement, which benchmarks also run
/// unguarded against a copy of the table to measure what Postgres alone takes for the rows.
pub fn upsert_statement(table: &str, guard: Option<&str>) -> String {
    let cols = columns();
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    let values: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, (name, cast))| format!("unnest(${}::{cast}) AS {name}", i + 1))
        .collect();
    let sets: Vec<String> = names[3..]
        .iter()
        .map(|n| format!("{n} = excluded.{n}"))
        .collect();
    let guard = guard.map(|g| format!(" WHERE {g}")).unwrap_or_default();
    format!(
        "INSERT INTO {table} AS a ({names}, updated_at) \
         SELECT {values}, now() \
         ON CONFLICT (client_id, target, window_start_ts) DO UPDATE SET {sets}, updated_at = now(){guard}",
        names = names.join(", "),
        values = values.join(", "),
        sets = sets.join(", "),
    )
}

/// What a write stored for a row: its new version and encoded state.
pub(super) type Written = BTreeMap<WindowKey, Versioned>;

/// One column's values.
enum Column {
    Int(Vec<i64>),
    Float(Vec<Option<f64>>),
}

/// Everything the upsert of a set of rows binds, computed without touching the database
/// (percentiles, encoded states, versions), so it can be done while Postgres works on
/// something else.
pub(super) struct Prepared {
    /// The counts and statistics, in the order of `columns()` after the key.
    values: Vec<Column>,
    encoded: Vec<Vec<u8>>,
    last_recv: Vec<Option<DateTime<Utc>>>,
    versions: Vec<i64>,
}

impl Prepared {
    /// The bind values of `rows`' upsert.
    pub(super) fn of(rows: &BTreeMap<WindowKey, Row>) -> Prepared {
        let now_us = Utc::now().timestamp_micros();
        let states = || rows.values().map(|r| &r.state);
        let int =
            |f: &dyn Fn(&WindowState) -> u64| Column::Int(states().map(|w| f(w) as i64).collect());
        let count = |sums: &[Summary]| Column::Int(sums.iter().map(|s| s.count as i64).collect());
        let float = |sums: &[Summary], f: fn(&Summary) -> Option<f64>| {
            Column::Float(sums.iter().map(f).collect())
        };
        // Order must follow `columns()`: 3 counts, 6 error counts, then per timing metric a
        // count and five stats, throughput, ping, jitter; state, last_recv and version apart.
        let mut values = vec![
            int(&|w| w.count_total),
            int(&|w| w.count_success),
            int(&|w| w.count_error()),
        ];
        for stage in ErrorStage::ALL {
            values.push(int(&|w| w.errors_of(stage)));
        }
        for i in 0..crate::window::TIMINGS.len() {
            let sums: Vec<Summary> = states()
                .map(|w| summarise_some(&w.timings[i], Wanted::TIMING))
                .collect();
            values.push(count(&sums));
            values.push(float(&sums, |s| s.p50));
            values.push(float(&sums, |s| s.p95));
            values.push(float(&sums, |s| s.p99));
            values.push(float(&sums, |s| s.min));
            values.push(float(&sums, |s| s.max));
        }
        let tput: Vec<Summary> = states()
            .map(|w| summarise_some(&w.throughput, Wanted::THROUGHPUT))
            .collect();
        let jitter: Vec<Summary> = states()
            .map(|w| summarise_some(&w.jitter, Wanted::MEDIAN))
            .collect();
        values.extend([
            count(&tput),
            float(&tput, |s| s.p05),
            float(&tput, |s| s.p50),
            float(&tput, |s| s.p95),
            int(&|w| w.ping_sent),
            int(&|w| w.ping_received),
            count(&jitter),
            float(&jitter, |s| s.p50),
        ]);
        Prepared {
            values,
            encoded: states().map(WindowState::encode).collect(),
            last_recv: states().map(|w| w.last_recv_ms.map(ts)).collect(),
            versions: rows.values().map(|r| r.next_version(now_us)).collect(),
        }
    }
}

/// Writes `rows` with their prepared values; returns the rows written. Rows missing from the
/// answer were changed by another instance since their base was read (or taken to be new and
/// found to exist); they are now locked by `tx`. No keys of `rows` may have been written
/// earlier in `tx`.
pub(super) async fn write_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &BTreeMap<WindowKey, Row>,
    prepared: Prepared,
) -> Result<Written, sqlx::Error> {
    let mut q = sqlx::query(upsert_sql())
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
    for column in &prepared.values {
        q = match column {
            Column::Int(v) => q.bind(v),
            Column::Float(v) => q.bind(v),
        };
    }
    let affected = q
        .bind(&prepared.encoded)
        .bind(&prepared.last_recv)
        .bind(&prepared.versions)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    let rows_and_writes = rows
        .keys()
        .zip(prepared.versions.into_iter().zip(prepared.encoded));
    if affected == rows.len() as u64 {
        return Ok(rows_and_writes.map(|(k, v)| (k.clone(), v)).collect());
    }
    let written = written_by(tx, rows.keys()).await?;
    Ok(rows_and_writes
        .filter(|(k, _)| written.contains(*k))
        .map(|(k, v)| (k.clone(), v))
        .collect())
}

/// Which of `keys` this transaction has written: rows it only locked keep the xmin of the
/// transaction that wrote them.
async fn written_by<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    keys: impl Iterator<Item = &'a WindowKey> + Clone,
) -> Result<BTreeSet<WindowKey>, sqlx::Error> {
    let found: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT a.client_id, a.target, a.window_start_ts FROM agg_1m a \
         JOIN UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS u(c, t, w) \
           ON a.client_id = u.c AND a.target = u.t AND a.window_start_ts = u.w \
         WHERE a.xmin = pg_current_xact_id()::xid",
    )
    .bind(
        keys.clone()
            .map(|k| k.client_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(keys.clone().map(|k| k.target.as_str()).collect::<Vec<_>>())
    .bind(keys.map(|k| ts(k.window_start_ms)).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    Ok(found
        .into_iter()
        .map(|(client_id, target, w)| WindowKey {
            client_id,
            target,
            window_start_ms: w.timestamp_millis(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_binds_every_column_once_and_guards_on_the_version() {
        let sql = upsert_sql();
        let cols = columns();
        assert_eq!(cols.len(), 3 + 3 + 6 + 5 * 6 + 4 + 4 + 2 + 1);
        assert!(sql.contains(&format!("unnest(${}::bigint[]) AS version", cols.len())));
        assert!(!sql.contains(&format!("${}", cols.len() + 1)));
        for (name, _) in &cols[3..] {
            assert!(sql.contains(&format!("{name} = excluded.{name}")), "{name}");
        }
        assert!(sql.contains("WHERE a.version = excluded.version - 1"));
    }

    #[test]
    fn new_rows_start_at_the_clock_and_existing_ones_count_up() {
        let new = Row {
            state: WindowState::default(),
            base_version: 0,
        };
        let old = Row {
            state: WindowState::default(),
            base_version: 41,
        };
        assert_eq!(
            new.next_version(1_700_000_000_000_000),
            1_700_000_000_000_000
        );
        assert_eq!(old.next_version(1_700_000_000_000_000), 42);
    }

    #[test]
    fn cache_keeps_recent_rows_and_can_be_disabled() {
        let key = |m: i64| WindowKey {
            client_id: "c".into(),
            target: "t".into(),
            window_start_ms: m,
        };
        let cache = RowCache::new(2);
        cache.put(key(1), 5, vec![1]);
        cache.put(key(2), 6, vec![2]);
        cache.put(key(3), 7, vec![3]);
        assert_eq!(cache.get(&key(1)), None, "least recent row evicted");
        assert_eq!(cache.get(&key(3)), Some((7, vec![3])));
        assert!(cache.enabled());
        let off = RowCache::new(0);
        assert!(!off.enabled());
        off.put(key(1), 1, vec![]);
        assert_eq!(off.get(&key(1)), None);
    }
}

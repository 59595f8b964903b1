//! Writing `agg_1m` rows: the column list, the version-guarded upsert of a batch's merged
//! windows, and the cache of rows this instance wrote last.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};
use netqoe_model::{ErrorStage, ProbeKind};

use super::ts;
use crate::window::{summarise_some, Summary, Wanted, WindowKey, WindowState};

/// A window to write: its merged state and the version it was merged onto (0: the row did
/// not exist).
pub(super) struct Row {
    pub state: WindowState,
    pub base_version: i64,
}

impl Row {
    /// The version the write gives the row: `new_version` for a row taken to be new, else
    /// one more than its base.
    fn next_version(&self, new_version: i64) -> i64 {
        if self.base_version == 0 {
            new_version
        } else {
            self.base_version + 1
        }
    }
}

/// The version a batch gives the rows it takes to be new: the current time in microseconds
/// (so a cached copy of a deleted row with the same key can never match it), moved on past
/// any version the batch's existing rows will get. The upsert's conflict action refuses every
/// row carrying it, so a write that assumed a new row never overwrites one that exists.
fn new_row_version(rows: &BTreeMap<WindowKey, Row>, now_us: i64) -> i64 {
    let mut v = now_us;
    while rows
        .values()
        .any(|r| r.base_version != 0 && r.base_version + 1 == v)
    {
        v += 1;
    }
    v
}

/// The key columns of `agg_1m` bound as arrays, in `WindowKey` order.
pub(super) struct KeyArrays<'k> {
    clients: Vec<&'k str>,
    targets: Vec<&'k str>,
    kinds: Vec<&'static str>,
    ip_versions: Vec<i16>,
    windows: Vec<DateTime<Utc>>,
}

/// Joins `agg_1m a` to the key arrays bound as `$1`..`$5` by [`KeyArrays::bind`].
pub(super) const JOIN_KEYS: &str = "JOIN UNNEST($1::text[], $2::text[], $3::text[], \
     $4::smallint[], $5::timestamptz[]) AS u(c, t, k, v, w) \
     ON a.client_id = u.c AND a.target = u.t AND a.probe_kind = u.k \
     AND a.ip_version = u.v AND a.window_start_ts = u.w";

/// The key columns a select of `agg_1m a` returns, read back by [`key_of`].
pub(super) const KEY_COLUMNS: &str =
    "a.client_id, a.target, a.probe_kind, a.ip_version, a.window_start_ts";

/// A row's key columns as selected by [`KEY_COLUMNS`].
pub(super) type KeyRow = (String, String, String, i16, DateTime<Utc>);

/// The key of a row read with [`KEY_COLUMNS`]; the table's checks admit only known kinds.
pub(super) fn key_of((client_id, target, kind, ip_version, window): KeyRow) -> WindowKey {
    WindowKey {
        client_id,
        target,
        probe_kind: ProbeKind::parse(&kind).unwrap_or_default(),
        ip_version: ip_version as u8,
        window_start_ms: window.timestamp_millis(),
    }
}

impl<'k> KeyArrays<'k> {
    pub(super) fn of(keys: impl Iterator<Item = &'k WindowKey>) -> KeyArrays<'k> {
        let mut a = KeyArrays {
            clients: Vec::new(),
            targets: Vec::new(),
            kinds: Vec::new(),
            ip_versions: Vec::new(),
            windows: Vec::new(),
        };
        for k in keys {
            a.clients.push(&k.client_id);
            a.targets.push(&k.target);
            a.kinds.push(k.probe_kind.as_str());
            a.ip_versions.push(i16::from(k.ip_version));
            a.windows.push(ts(k.window_start_ms));
        }
        a
    }

    /// Binds the five arrays as the query's next parameters.
    pub(super) fn bind<'q, O>(
        self,
        q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>
    where
        'k: 'q,
    {
        q.bind(self.clients)
            .bind(self.targets)
            .bind(self.kinds)
            .bind(self.ip_versions)
            .bind(self.windows)
    }

    fn bind_query<'q>(
        self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>
    where
        'k: 'q,
    {
        q.bind(self.clients)
            .bind(self.targets)
            .bind(self.kinds)
            .bind(self.ip_versions)
            .bind(self.windows)
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

/// Key columns at the head of [`columns`], in `WindowKey` order.
const KEY_LEN: usize = 5;

/// `(column, array cast)` of every column a write sets, in bind order: the key first.
pub fn columns() -> Vec<(String, &'static str)> {
    let mut cols: Vec<(String, &'static str)> = vec![
        ("client_id".into(), "text[]"),
        ("target".into(), "text[]"),
        ("probe_kind".into(), "text[]"),
        ("ip_version".into(), "smallint[]"),
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
/// (`version - 1`), and never a row the batch took to be new (its version is the batch's
/// new-row version, bound last); a row another instance changed meanwhile, or one taken to
/// be new that exists, is left alone but locked, and not counted in the rows affected.
///
/// The arrays are unnested in the select list, not in `FROM UNNEST(...)`: in FROM, Postgres
/// first copies every row of all the arrays into a tuplestore and then reads it back; in the
/// select list the rows stream straight into the insert (one `ProjectSet` node, the arrays in
/// lockstep). For rows this wide that cut Postgres's CPU per event by about a tenth.
pub(super) fn upsert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let new_version = columns().len() + 1;
        upsert_statement(
            "agg_1m",
            Some(&format!(
                "a.version = excluded.version - 1 AND excluded.version <> ${new_version}"
            )),
        )
    })
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
    let sets: Vec<String> = names[KEY_LEN..]
        .iter()
        .map(|n| format!("{n} = excluded.{n}"))
        .collect();
    let guard = guard.map(|g| format!(" WHERE {g}")).unwrap_or_default();
    format!(
        "INSERT INTO {table} AS a ({names}, updated_at) \
         SELECT {values}, now() \
         ON CONFLICT ({key}) DO UPDATE SET {sets}, updated_at = now(){guard}",
        names = names.join(", "),
        key = names[..KEY_LEN].join(", "),
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
    /// The version of the rows taken to be new.
    new_version: i64,
}

impl Prepared {
    /// The bind values of `rows`' upsert; rows taken to be new get a version from `now_us`.
    pub(super) fn of(rows: &BTreeMap<WindowKey, Row>, now_us: i64) -> Prepared {
        let new_version = new_row_version(rows, now_us);
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
            versions: rows.values().map(|r| r.next_version(new_version)).collect(),
            new_version,
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
    let mut q = KeyArrays::of(rows.keys()).bind_query(sqlx::query(upsert_sql()));
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
        .bind(prepared.new_version)
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

/// The `agg_1m a` rows the current transaction wrote: rows it only locked keep the `xmin`
/// and `updated_at` of the transaction that wrote them. `xmin` alone could match an old
/// frozen row after the 32-bit transaction ids wrap around; `updated_at` (set to `now()`,
/// the transaction's start time, by every write) cannot belong to an old row, and
/// transactions that could share it never share the id.
pub const WRITTEN_HERE: &str = "a.xmin = pg_current_xact_id()::xid AND a.updated_at = now()";

/// Which of `keys` this transaction has written (see [`WRITTEN_HERE`]).
async fn written_by<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    keys: impl Iterator<Item = &'a WindowKey>,
) -> Result<BTreeSet<WindowKey>, sqlx::Error> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM agg_1m a {JOIN_KEYS} WHERE {WRITTEN_HERE}");
    let found: Vec<KeyRow> = KeyArrays::of(keys)
        .bind(sqlx::query_as(&sql))
        .fetch_all(&mut **tx)
        .await?;
    Ok(found.into_iter().map(key_of).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_binds_every_column_once_and_guards_on_the_version() {
        let sql = upsert_sql();
        let cols = columns();
        assert_eq!(cols.len(), 5 + 3 + 6 + 5 * 6 + 4 + 4 + 2 + 1);
        assert!(sql.contains(&format!("unnest(${}::bigint[]) AS version", cols.len())));
        assert!(!sql.contains(&format!("${}", cols.len() + 2)));
        for (name, _) in &cols[KEY_LEN..] {
            assert!(sql.contains(&format!("{name} = excluded.{name}")), "{name}");
        }
        for (name, _) in &cols[..KEY_LEN] {
            assert!(
                !sql.contains(&format!("{name} = excluded.{name}")),
                "{name}"
            );
        }
        assert!(sql
            .contains("ON CONFLICT (client_id, target, probe_kind, ip_version, window_start_ts)"));
        assert!(sql.contains(&format!(
            "WHERE a.version = excluded.version - 1 AND excluded.version <> ${}",
            cols.len() + 1
        )));
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
    fn the_new_row_version_is_never_one_an_existing_row_gets() {
        let row = |base_version| Row {
            state: WindowState::default(),
            base_version,
        };
        let key = |m: i64| WindowKey {
            client_id: "c".into(),
            target: "t".into(),
            probe_kind: ProbeKind::Http,
            ip_version: 0,
            window_start_ms: m,
        };
        let rows: BTreeMap<WindowKey, Row> =
            [(key(1), row(0)), (key(2), row(99)), (key(3), row(100))].into();
        // 100 and 101 are what the existing rows become: the new rows skip past them.
        assert_eq!(new_row_version(&rows, 100), 102);
        assert_eq!(new_row_version(&rows, 50), 50);
        let versions = Prepared::of(&rows, 100).versions;
        assert_eq!(versions, vec![102, 100, 101]);
    }

    #[test]
    fn cache_keeps_recent_rows_and_can_be_disabled() {
        let key = |m: i64| WindowKey {
            client_id: "c".into(),
            target: "t".into(),
            probe_kind: ProbeKind::Tcp,
            ip_version: 6,
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

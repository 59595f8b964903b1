//! Writing `agg_1m` rows: the version-guarded upsert of a batch's merged windows (its
//! columns are described in `columns`), and the cache of rows this instance wrote last.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use sqlx::postgres::PgRow;

use super::columns::{join_keys, key_of, key_select, KeyArrays, Prepared};
use crate::window::{WindowKey, WindowState};

/// A window to write: its merged state and the version it was merged onto (0: the row did
/// not exist).
pub(super) struct Row {
    pub state: WindowState,
    pub base_version: i64,
}

impl Row {
    /// The version the write gives the row: `new_version` for a row taken to be new, else
    /// one more than its base.
    pub(super) fn next_version(&self, new_version: i64) -> i64 {
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
pub(super) fn new_row_version(rows: &BTreeMap<WindowKey, Row>, now_us: i64) -> i64 {
    let mut v = now_us;
    while rows
        .values()
        .any(|r| r.base_version != 0 && r.base_version + 1 == v)
    {
        v += 1;
    }
    v
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

/// What a write stored for a row: its new version and encoded state.
pub(super) type Written = BTreeMap<WindowKey, Versioned>;

/// Writes `rows` with their prepared values; returns the rows written. Rows missing from the
/// answer were changed by another instance since their base was read (or taken to be new and
/// found to exist); they are now locked by `tx`. No keys of `rows` may have been written
/// earlier in `tx`.
pub(super) async fn write_rows(
    tx: &mut sqlx::PgConnection,
    rows: &BTreeMap<WindowKey, Row>,
    prepared: Prepared,
) -> Result<Written, sqlx::Error> {
    let keys = KeyArrays::of(rows.keys());
    let affected = prepared
        .bind(&keys)
        .execute(&mut *tx)
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
    tx: &mut sqlx::PgConnection,
    keys: impl Iterator<Item = &'a WindowKey>,
) -> Result<BTreeSet<WindowKey>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM agg_1m a {} WHERE {WRITTEN_HERE}",
        key_select(),
        join_keys()
    );
    let keys = KeyArrays::of(keys);
    keys.bind_all(sqlx::query(&sql))
        .try_map(|row: PgRow| key_of(&row))
        .fetch_all(tx)
        .await
        .map(BTreeSet::from_iter)
}

#[cfg(test)]
mod tests {
    use netqoe_model::ProbeKind;

    use super::*;

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

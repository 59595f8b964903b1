//! The per-batch Postgres transaction: record new event ids, merge only their events into
//! `agg_1m`, commit. The caller acks the batch's messages only after this returns Ok.
//!
//! While Postgres inserts the event ids, the aggregator merges the batch's windows and
//! encodes their upsert as if every event were new (with the cache on, the merge needs
//! nothing from the database); when some ids turn out to have been seen, that work is
//! dropped and the new events alone are merged.
//!
//! Concurrency: every transaction first inserts its event ids into `events_seen`, then writes
//! its windows with one upsert, each statement in sorted key order, so two instances working
//! on overlapping batches queue behind each other instead of deadlocking. A window is merged
//! onto a base (this instance's cached last write, else the committed row) and written only
//! if the row still has the base's version; a row another instance changed meanwhile is
//! locked by the upsert, re-read and merged again. A stale copy never overwrites a newer row.
//!
//! With the cache on, a window missing from it is taken to be new and written as an insert
//! without reading it first: in a stream that moves forward in time, that is what a miss
//! almost always is. When the row exists after all (written by another instance, evicted, or
//! from before a restart), the insert's version guard leaves it alone but locked, and it is
//! read and merged like any row changed by another writer.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use netqoe_model::Event;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row as _};
use uuid::Uuid;

mod columns;
mod rows;

pub use columns::{columns, upsert_statement};
use rows::{Row, Versioned, Written};
pub use rows::{RowCache, WRITTEN_HERE};

use crate::window::{by_window, StateError, WindowKey, WindowState};

/// The `events_seen` rows the current transaction inserted. `xmin` alone is a 32-bit
/// transaction id: after wrap-around an old (frozen) row can carry the same number as the
/// current transaction. `seen_at` is the inserting transaction's start time, which an old
/// row cannot share; concurrent transactions, which can share the time, never share the id.
pub const SEEN_HERE: &str = "xmin = pg_current_xact_id()::xid AND seen_at = now()";

/// Why a batch was not applied (its transaction rolled back).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The stored state of one of the batch's windows cannot be read: retrying cannot help,
    /// and no event of that window can be merged until the row is repaired.
    #[error(transparent)]
    State(#[from] StateError),
    /// Rows the upsert had locked changed under the transaction: Postgres broke its locks.
    #[error("{0} locked windows changed under the transaction")]
    LockedRowsChanged(usize),
}

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

/// Durations of the phases of one transaction, for the debug log.
struct Phases {
    last: Instant,
    laps: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn start() -> Phases {
        Phases {
            last: Instant::now(),
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.laps.push((name, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, d)) in self.laps.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{name}={:.1}", d.as_secs_f64() * 1000.0)?;
        }
        Ok(())
    }
}

/// Reads the committed rows of `keys` (without locking them): key, version, state.
async fn read_rows(
    tx: &mut PgConnection,
    keys: &[&WindowKey],
) -> Result<Vec<(WindowKey, Versioned)>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {}, a.version, a.sketch_state FROM agg_1m a {}",
        columns::key_select(),
        columns::join_keys()
    );
    let keys = columns::KeyArrays::of(keys.iter().copied());
    keys.bind_all(sqlx::query(&sql))
        .try_map(|row: PgRow| {
            let key = columns::key_of(&row)?;
            Ok((key, (row.try_get("version")?, row.try_get("sketch_state")?)))
        })
        .fetch_all(tx)
        .await
}

/// The batch's events of `keys` added onto their bases (`base(key)`: version and encoded
/// state, None for a window that does not exist yet). Adding each event to the decoded base
/// costs less than folding the events into a state of their own and merging that. A base
/// that cannot be decoded is never silently reset: the batch fails.
fn merge_onto<'a>(
    groups: &BTreeMap<WindowKey, Vec<&Event>>,
    keys: impl Iterator<Item = &'a WindowKey>,
    mut base: impl FnMut(&WindowKey) -> Option<Versioned>,
) -> Result<BTreeMap<WindowKey, Row>, StateError> {
    let mut out = BTreeMap::new();
    for key in keys {
        let (base_version, mut state) = match base(key) {
            Some((version, bytes)) => (version, WindowState::decode(&bytes)?),
            None => (0, WindowState::default()),
        };
        for e in groups.get(key).into_iter().flatten() {
            state.add(e);
        }
        let row = Row {
            state,
            base_version,
        };
        out.insert(key.clone(), row);
    }
    Ok(out)
}

pub(crate) fn ts(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A batch's windows merged onto their bases, with their upsert's values.
struct Merged<'e> {
    groups: BTreeMap<WindowKey, Vec<&'e Event>>,
    rows: BTreeMap<WindowKey, Row>,
    prepared: columns::Prepared,
    /// Windows whose base came from the cache.
    hits: usize,
}

impl Merged<'_> {
    /// What committing it does, for a batch of `events` (duplicates included).
    fn applied(&self, events: usize) -> Applied {
        let new = self.groups.values().map(Vec::len).sum::<usize>();
        Applied {
            new,
            duplicate: events - new,
            rows: self.groups.len(),
        }
    }
}

/// Merges `groups` onto their bases: this instance's cached last write of each window; with
/// the cache on, a window missing from it is taken to be new, with it off every miss is read
/// (`tx` None: the cache must be on).
async fn merge<'e>(
    tx: Option<&mut PgConnection>,
    groups: BTreeMap<WindowKey, Vec<&'e Event>>,
    cache: &RowCache,
    now_us: i64,
) -> Result<Merged<'e>, Error> {
    let mut base: BTreeMap<&WindowKey, Versioned> = BTreeMap::new();
    let mut misses: Vec<&WindowKey> = Vec::new();
    for key in groups.keys() {
        match cache.get(key) {
            Some(hit) => {
                base.insert(key, hit);
            }
            None => misses.push(key),
        }
    }
    let hits = base.len();
    if let Some(tx) = tx.filter(|_| !cache.enabled()) {
        for (key, versioned) in read_rows(tx, &misses).await? {
            if let Some((k, _)) = groups.get_key_value(&key) {
                base.insert(k, versioned);
            }
        }
    }
    let rows = merge_onto(&groups, groups.keys(), |k| base.remove(k))?;
    let prepared = columns::Prepared::of(&rows, now_us);
    Ok(Merged {
        groups,
        rows,
        prepared,
        hits,
    })
}

/// Merges `events` exactly once in one transaction; `cache` holds this instance's last
/// writes and is only updated after the commit.
pub async fn apply(pool: &PgPool, events: &[&Event], cache: &RowCache) -> Result<Applied, Error> {
    apply_at(pool, events, cache, Utc::now().timestamp_micros()).await
}

/// [`apply`] with the clock (µs since the epoch) that versions new rows given, so a test can
/// make a new row's version meet an existing row's on purpose.
pub async fn apply_at(
    pool: &PgPool,
    events: &[&Event],
    cache: &RowCache,
    now_us: i64,
) -> Result<Applied, Error> {
    // One entry per event id, sorted: the insert order into events_seen.
    let mut by_id: Vec<&Event> = events.to_vec();
    by_id.sort_unstable_by_key(|e| e.event_id);
    by_id.dedup_by_key(|e| e.event_id);

    let mut clock = Phases::start();
    let mut tx = pool.begin().await?;
    // While Postgres inserts the ids, merge and encode the windows as if every event were
    // new (the usual case), when the cache is on: the windows then need nothing from the
    // database. The merge is thrown away when some ids were seen before.
    let speculate = async {
        if !cache.enabled() || by_id.is_empty() {
            return Ok(None);
        }
        merge(None, by_window(by_id.iter().copied()), cache, now_us)
            .await
            .map(Some)
    };
    let (inserted, speculated) =
        futures::future::join(insert_seen(&mut tx, &by_id), speculate).await;
    let all_new = inserted? == by_id.len() as u64;
    clock.lap("seen");
    // The speculative merge stands when every event was new; else merge the new ones.
    let merged = match speculated?.filter(|_| all_new) {
        Some(merged) => merged,
        None => {
            let fresh = if all_new {
                by_id
            } else {
                inserted_here(&mut tx, by_id).await?
            };
            if fresh.is_empty() {
                tx.commit().await?;
                return Ok(Applied {
                    new: 0,
                    duplicate: events.len(),
                    rows: 0,
                });
            }
            let merged = merge(Some(&mut *tx), by_window(fresh), cache, now_us).await?;
            clock.lap("merge");
            merged
        }
    };
    let applied = merged.applied(events.len());
    let hits = merged.hits;
    let written = write(&mut tx, merged, now_us).await?;
    clock.lap("write");
    tx.commit().await?;
    clock.lap("commit");
    for (key, (version, bytes)) in written {
        cache.put(key, version, bytes);
    }
    tracing::debug!(
        events = events.len(),
        new = applied.new,
        rows = applied.rows,
        cached = hits,
        phases_ms = %clock,
        "batch applied"
    );
    Ok(applied)
}

/// Inserts the ids of `by_id` (sorted, distinct) into `events_seen`, skipping those already
/// there; returns how many were inserted.
async fn insert_seen(tx: &mut PgConnection, by_id: &[&Event]) -> Result<u64, sqlx::Error> {
    let ids: Vec<Uuid> = by_id.iter().map(|e| e.event_id).collect();
    let clients: Vec<&str> = by_id.iter().map(|e| e.client_id.as_str()).collect();
    let ts_ms: Vec<i64> = by_id.iter().map(|e| e.ts_ms).collect();
    let done = sqlx::query(
        "INSERT INTO events_seen (event_id, client_id, ts_ms) \
         SELECT unnest($1::uuid[]), unnest($2::text[]), unnest($3::bigint[]) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&clients)
    .bind(&ts_ms)
    .execute(tx)
    .await?;
    Ok(done.rows_affected())
}

/// The events of `by_id` whose ids this transaction inserted (see [`SEEN_HERE`]); the others
/// were merged before, or by an instance that committed them first.
async fn inserted_here<'e>(
    tx: &mut PgConnection,
    by_id: Vec<&'e Event>,
) -> Result<Vec<&'e Event>, sqlx::Error> {
    let ids: Vec<Uuid> = by_id.iter().map(|e| e.event_id).collect();
    let new: HashSet<Uuid> = sqlx::query_scalar(&format!(
        "SELECT event_id FROM events_seen WHERE event_id = ANY($1) AND {SEEN_HERE}"
    ))
    .bind(&ids)
    .fetch_all(tx)
    .await?
    .into_iter()
    .collect();
    Ok(by_id
        .into_iter()
        .filter(|e| new.contains(&e.event_id))
        .collect())
}

/// Writes the merged windows with one version-guarded upsert in key order. Rows changed by
/// another instance since their base was read, and rows taken to be new that exist, are
/// locked by it and not written: they are read again, merged onto their current state and
/// written by a second upsert. Returns what was stored for every window.
async fn write(tx: &mut PgConnection, merged: Merged<'_>, now_us: i64) -> Result<Written, Error> {
    let Merged {
        groups,
        rows,
        prepared,
        ..
    } = merged;
    let mut written = rows::write_rows(tx, &rows, prepared).await?;
    let stale: Vec<&WindowKey> = rows.keys().filter(|k| !written.contains_key(*k)).collect();
    if stale.is_empty() {
        return Ok(written);
    }
    tracing::debug!(
        rows = stale.len(),
        "windows not cached or changed by another writer; merging again"
    );
    let mut current: BTreeMap<WindowKey, Versioned> =
        read_rows(tx, &stale).await?.into_iter().collect();
    let again = merge_onto(&groups, stale.iter().copied(), |k| current.remove(k))?;
    let prepared = columns::Prepared::of(&again, now_us);
    let more = rows::write_rows(tx, &again, prepared).await?;
    if more.len() != again.len() {
        return Err(Error::LockedRowsChanged(again.len() - more.len()));
    }
    written.extend(more);
    Ok(written)
}

/// How much longer than `--seen-retention` an event id is kept: ingest accepts `ts_ms` up to
/// 5 minutes ahead of its clock, and the clocks of ingest, the aggregator and Postgres differ.
pub const SEEN_MARGIN: Duration = Duration::from_secs(600);

/// The cutoff of `events_seen` retention at `now`: rows both seen and timed (`ts_ms`)
/// before it are pruned.
pub fn seen_cutoff(now: DateTime<Utc>, retention: Duration) -> DateTime<Utc> {
    let keep = chrono::Duration::from_std(retention + SEEN_MARGIN).unwrap_or(chrono::Duration::MAX);
    now.checked_sub_signed(keep)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Deletes `events_seen` rows whose later of `seen_at` and `ts_ms` is before `older_than`
/// (see [`seen_cutoff`]), `batch` rows per statement; returns how many were deleted.
pub async fn prune_seen(
    pool: &PgPool,
    older_than: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    delete_in_batches(batch, || {
        sqlx::query(
            "DELETE FROM events_seen WHERE event_id IN \
             (SELECT event_id FROM events_seen WHERE seen_at < $1 AND ts_ms < $3 LIMIT $2)",
        )
        .bind(older_than)
        .bind(batch)
        .bind(older_than.timestamp_millis())
        .execute(pool)
    })
    .await
}

/// Deletes `agg_1m` windows that started before `older_than`, in batches.
pub async fn prune_windows(
    pool: &PgPool,
    older_than: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    delete_in_batches(batch, || {
        sqlx::query(
            "DELETE FROM agg_1m WHERE ctid IN \
             (SELECT ctid FROM agg_1m WHERE window_start_ts < $1 LIMIT $2)",
        )
        .bind(older_than)
        .bind(batch)
        .execute(pool)
    })
    .await
}

/// Runs `delete` (a statement removing at most `batch` rows) until it removes fewer, so no
/// statement holds its locks for long; returns the rows removed.
async fn delete_in_batches<F, Fut>(batch: i64, mut delete: F) -> Result<u64, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<sqlx::postgres::PgQueryResult, sqlx::Error>>,
{
    let mut total = 0;
    loop {
        let n = delete().await?.rows_affected();
        total += n;
        if n < batch as u64 {
            return Ok(total);
        }
    }
}

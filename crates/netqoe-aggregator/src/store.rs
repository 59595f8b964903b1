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
use sqlx::PgPool;
use uuid::Uuid;

mod rows;

pub use rows::{columns, upsert_statement, RowCache, WRITTEN_HERE};
use rows::{KeyArrays, Row, Versioned};

use crate::window::{by_window, WindowKey, WindowState};

/// The `events_seen` rows the current transaction inserted. `xmin` alone is a 32-bit
/// transaction id: after wrap-around an old (frozen) row can carry the same number as the
/// current transaction. `seen_at` is the inserting transaction's start time, which an old
/// row cannot share; concurrent transactions, which can share the time, never share the id.
pub const SEEN_HERE: &str = "xmin = pg_current_xact_id()::xid AND seen_at = now()";

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
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    keys: &[&WindowKey],
) -> Result<Vec<(WindowKey, i64, Vec<u8>)>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {}, a.version, a.sketch_state FROM agg_1m a {}",
        rows::KEY_COLUMNS,
        rows::JOIN_KEYS
    );
    type Found = (String, String, String, i16, DateTime<Utc>, i64, Vec<u8>);
    let found: Vec<Found> = KeyArrays::of(keys.iter().copied())
        .bind(sqlx::query_as(&sql))
        .fetch_all(&mut **tx)
        .await?;
    Ok(found
        .into_iter()
        .map(|(c, t, k, v, w, version, bytes)| (rows::key_of((c, t, k, v, w)), version, bytes))
        .collect())
}

/// The batch's events of `keys` added onto their bases (`base(key)`: version and encoded
/// state, None for a window that does not exist yet). Adding each event to the decoded base
/// costs less than folding the events into a state of their own and merging that.
fn merge_onto<'a>(
    groups: &BTreeMap<WindowKey, Vec<&Event>>,
    keys: impl Iterator<Item = &'a WindowKey>,
    mut base: impl FnMut(&WindowKey) -> Option<Versioned>,
) -> Result<BTreeMap<WindowKey, Row>, sqlx::Error> {
    let mut out = BTreeMap::new();
    for key in keys {
        let (base_version, mut state) = match base(key) {
            // A row that cannot be decoded is never silently reset: fail the batch loudly.
            Some((v, bytes)) => (
                v,
                WindowState::decode(&bytes).map_err(|e| sqlx::Error::Decode(e.into()))?,
            ),
            None => (0, WindowState::default()),
        };
        for e in groups.get(key).into_iter().flatten() {
            state.add(e);
        }
        out.insert(
            key.clone(),
            Row {
                state,
                base_version,
            },
        );
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
    prepared: rows::Prepared,
    /// Windows whose base came from the cache.
    hits: usize,
}

/// Merges `groups` onto their bases: this instance's cached last write of each window; with
/// the cache on, a window missing from it is taken to be new, with it off every miss is read.
async fn merge<'e>(
    tx: Option<&mut sqlx::Transaction<'_, sqlx::Postgres>>,
    groups: BTreeMap<WindowKey, Vec<&'e Event>>,
    cache: &RowCache,
    now_us: i64,
) -> Result<Merged<'e>, sqlx::Error> {
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
        for (key, version, bytes) in read_rows(tx, &misses).await? {
            if let Some((k, _)) = groups.get_key_value(&key) {
                base.insert(k, (version, bytes));
            }
        }
    }
    let rows = merge_onto(&groups, groups.keys(), |k| base.remove(k))?;
    let prepared = rows::Prepared::of(&rows, now_us);
    Ok(Merged {
        groups,
        rows,
        prepared,
        hits,
    })
}

/// Merges `events` exactly once in one transaction; `cache` holds this instance's last
/// writes and is only updated after the commit.
pub async fn apply(
    pool: &PgPool,
    events: &[&Event],
    cache: &RowCache,
) -> Result<Applied, sqlx::Error> {
    apply_at(pool, events, cache, Utc::now().timestamp_micros()).await
}

/// [`apply`] with the clock (µs since the epoch) that versions new rows given, so a test can
/// make a new row's version meet an existing row's on purpose.
pub async fn apply_at(
    pool: &PgPool,
    events: &[&Event],
    cache: &RowCache,
    now_us: i64,
) -> Result<Applied, sqlx::Error> {
    // One entry per event id, sorted: the insert order into events_seen.
    let mut by_id: Vec<&Event> = events.to_vec();
    by_id.sort_unstable_by_key(|e| e.event_id);
    by_id.dedup_by_key(|e| e.event_id);
    let ids: Vec<Uuid> = by_id.iter().map(|e| e.event_id).collect();
    let clients: Vec<&str> = by_id.iter().map(|e| e.client_id.as_str()).collect();
    let ts_ms: Vec<i64> = by_id.iter().map(|e| e.ts_ms).collect();

    let mut clock = Phases::start();
    let mut tx = pool.begin().await?;
    let insert = sqlx::query(
        "INSERT INTO events_seen (event_id, client_id, ts_ms) \
         SELECT unnest($1::uuid[]), unnest($2::text[]), unnest($3::bigint[]) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&clients)
    .bind(&ts_ms)
    .execute(&mut *tx);
    // While Postgres inserts the ids, and with the cache on (the windows then need nothing
    // from the database), merge and encode the windows as if every event were new: the
    // usual case. The merge is thrown away when some ids were seen before.
    let speculate = async {
        if !cache.enabled() || by_id.is_empty() {
            return Ok(None);
        }
        merge(None, by_window(by_id.iter().copied()), cache, now_us)
            .await
            .map(Some)
    };
    let (inserted, speculated) = futures::future::join(insert, speculate).await;
    let inserted = inserted?.rows_affected();
    clock.lap("seen");
    let all_new = inserted == ids.len() as u64;
    let merged = match speculated? {
        Some(merged) if all_new => merged,
        _ => {
            // The new events are those this transaction inserted (see `SEEN_HERE`); the
            // others were merged before, or by an instance that committed them first.
            let fresh: Vec<&Event> = if all_new {
                by_id
            } else {
                let new: HashSet<Uuid> = sqlx::query_scalar(&format!(
                    "SELECT event_id FROM events_seen WHERE event_id = ANY($1) AND {SEEN_HERE}"
                ))
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
                by_id
                    .into_iter()
                    .filter(|e| new.contains(&e.event_id))
                    .collect()
            };
            let groups = by_window(fresh);
            if groups.is_empty() {
                tx.commit().await?;
                return Ok(Applied {
                    new: 0,
                    duplicate: events.len(),
                    rows: 0,
                });
            }
            let merged = merge(Some(&mut tx), groups, cache, now_us).await?;
            clock.lap("merge");
            merged
        }
    };
    let fresh = merged.groups.values().map(Vec::len).sum::<usize>();
    let applied = Applied {
        new: fresh,
        duplicate: events.len() - fresh,
        rows: merged.groups.len(),
    };
    let Merged {
        groups,
        rows,
        prepared,
        hits,
    } = merged;

    // One version-guarded upsert in key order; rows changed by another instance since their
    // base was read, and rows taken to be new that exist, are locked by it and merged again
    // onto their current state.
    let mut written = rows::write_rows(&mut tx, &rows, prepared).await?;
    let stale: Vec<&WindowKey> = rows.keys().filter(|k| !written.contains_key(*k)).collect();
    if !stale.is_empty() {
        tracing::debug!(
            rows = stale.len(),
            "windows not cached or changed by another writer; merging again"
        );
        let mut current: BTreeMap<WindowKey, Versioned> = read_rows(&mut tx, &stale)
            .await?
            .into_iter()
            .map(|(k, v, b)| (k, (v, b)))
            .collect();
        let again = merge_onto(&groups, stale.iter().copied(), |k| current.remove(k))?;
        let more = rows::write_rows(&mut tx, &again, rows::Prepared::of(&again, now_us)).await?;
        if more.len() != again.len() {
            return Err(sqlx::Error::Protocol(format!(
                "{} locked windows changed under the transaction",
                again.len() - more.len()
            )));
        }
        written.extend(more);
    }
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
    let mut total = 0;
    loop {
        let n = sqlx::query(
            "DELETE FROM events_seen WHERE event_id IN \
             (SELECT event_id FROM events_seen WHERE seen_at < $1 AND ts_ms < $3 LIMIT $2)",
        )
        .bind(older_than)
        .bind(batch)
        .bind(older_than.timestamp_millis())
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

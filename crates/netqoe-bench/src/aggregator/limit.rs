//! The limits of `aggregator_events_per_s`: Postgres alone inserting the batch's event ids and
//! upserting the windows the aggregator wrote, with nothing else to do.
//!
//! Both limits insert the same event ids as the aggregator into an indexed uuid table and do one
//! upsert per distinct window key of each transaction, in transactions as large as the
//! aggregator's while it works off a backlog, with the aggregator's own statement forms. They
//! differ in the rows: the `rows` limit upserts the rows the aggregator wrote (every column of
//! `agg_1m`, its indexes and fillfactor, its final values), the `narrow` one a counter per key
//! in a table of four columns. The reported limit is `rows`: the aggregator cannot write fewer
//! or narrower rows than the schema it must fill. The narrow one is printed beside it to show
//! what the width of the rows costs Postgres.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{DateTime, Utc};
use sqlx::{postgres::PgRow, PgPool, Row};

use super::{checkpoint, wal_bytes, CpuSplit, Stack};

/// What one limit took: events per second, upserts, CPU per event and WAL per event.
pub struct Reading {
    pub rate: f64,
    pub upserts: usize,
    cpu: CpuSplit,
    wal: i64,
    events: usize,
}

impl Reading {
    pub fn describe(&self, name: &str) -> String {
        let n = self.events as f64;
        format!(
            "limit ({name}) {:.0} events/s, {} row upserts ({:.3} per event); CPU per event: client {:.1} µs, postgres {:.1} µs; WAL {} bytes per event",
            self.rate,
            self.upserts,
            self.upserts as f64 / n,
            self.cpu.aggregator / n * 1e6,
            self.cpu.postgres / n * 1e6,
            self.wal / self.events as i64,
        )
    }
}

/// One column's values for a set of rows, typed as the upsert binds them.
enum Values {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Small(Vec<Option<i16>>),
    Float(Vec<Option<f64>>),
    Bytes(Vec<Option<Vec<u8>>>),
    Ts(Vec<Option<DateTime<Utc>>>),
}

impl Values {
    fn empty(cast: &str) -> anyhow::Result<Values> {
        Ok(match cast {
            "text[]" => Values::Text(Vec::new()),
            "bigint[]" => Values::Int(Vec::new()),
            "smallint[]" => Values::Small(Vec::new()),
            "float8[]" => Values::Float(Vec::new()),
            "bytea[]" => Values::Bytes(Vec::new()),
            "timestamptz[]" => Values::Ts(Vec::new()),
            other => anyhow::bail!("no values of type {other}"),
        })
    }

    fn push(&mut self, row: &PgRow, i: usize) -> Result<(), sqlx::Error> {
        match self {
            Values::Text(v) => v.push(row.try_get(i)?),
            Values::Int(v) => v.push(row.try_get(i)?),
            Values::Small(v) => v.push(row.try_get(i)?),
            Values::Float(v) => v.push(row.try_get(i)?),
            Values::Bytes(v) => v.push(row.try_get(i)?),
            Values::Ts(v) => v.push(row.try_get(i)?),
        }
        Ok(())
    }

    /// The values of rows `at`, in that order.
    fn pick(&self, at: &[usize]) -> Values {
        fn of<T: Clone>(v: &[T], at: &[usize]) -> Vec<T> {
            at.iter().map(|&i| v[i].clone()).collect()
        }
        match self {
            Values::Text(v) => Values::Text(of(v, at)),
            Values::Int(v) => Values::Int(of(v, at)),
            Values::Small(v) => Values::Small(of(v, at)),
            Values::Float(v) => Values::Float(of(v, at)),
            Values::Bytes(v) => Values::Bytes(of(v, at)),
            Values::Ts(v) => Values::Ts(of(v, at)),
        }
    }
}

/// The window key of every event of `chunk`, distinct and sorted, with its event count.
fn keys(chunk: &[netqoe_model::Event]) -> BTreeMap<(&str, &str, i64), i64> {
    let mut keys = BTreeMap::new();
    for e in chunk {
        let key = (
            e.client_id.as_str(),
            e.target.as_str(),
            netqoe_model::window_start_ms(e.ts_ms),
        );
        *keys.entry(key).or_default() += 1;
    }
    keys
}

/// The event ids of `chunk` into `table`, as the aggregator inserts them into `events_seen`.
async fn insert_ids(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    table: &str,
    chunk: &[netqoe_model::Event],
) -> Result<(), sqlx::Error> {
    let ids: Vec<uuid::Uuid> = chunk.iter().map(|e| e.event_id).collect();
    let clients: Vec<&str> = chunk.iter().map(|e| e.client_id.as_str()).collect();
    let ts: Vec<i64> = chunk.iter().map(|e| e.ts_ms).collect();
    sqlx::query(&format!(
        "INSERT INTO {table} SELECT unnest($1::uuid[]), unnest($2::text[]), unnest($3::bigint[]) ON CONFLICT DO NOTHING"
    ))
    .bind(&ids)
    .bind(&clients)
    .bind(&ts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const IDS_TABLE: &str =
    "(event_id uuid PRIMARY KEY, client_id text NOT NULL, ts_ms bigint NOT NULL)";

/// Runs transactions of `work(tx, i)` for i = 0, 1, … until it answers false, and measures
/// them from a checkpoint.
async fn measure<F>(
    s: &Stack,
    events: usize,
    upserts: usize,
    mut work: F,
) -> anyhow::Result<Reading>
where
    F: AsyncFnMut(
        &mut sqlx::Transaction<'static, sqlx::Postgres>,
        usize,
    ) -> Result<bool, sqlx::Error>,
{
    checkpoint(&s.pool).await?;
    let wal_before = wal_bytes(&s.pool).await?;
    let cpu_before = CpuSplit::read(s)?;
    let start = Instant::now();
    let mut i = 0;
    loop {
        let mut tx = s.pool.begin().await?;
        let more = work(&mut tx, i).await?;
        tx.commit().await?;
        if !more {
            break;
        }
        i += 1;
    }
    Ok(Reading {
        rate: events as f64 / start.elapsed().as_secs_f64(),
        upserts,
        cpu: CpuSplit::read(s)?.minus(&cpu_before),
        wal: wal_bytes(&s.pool).await? - wal_before,
        events,
    })
}

/// The `narrow` limit: a counter per window key in a table of four columns.
pub async fn narrow(
    s: &Stack,
    evs: &[netqoe_model::Event],
    batch: usize,
) -> anyhow::Result<Reading> {
    sqlx::raw_sql(&format!(
        "CREATE TABLE raw_seen {IDS_TABLE}; \
         CREATE TABLE raw_agg (client_id text, target text, window_start_ts timestamptz, n bigint, \
           PRIMARY KEY (client_id, target, window_start_ts))"
    ))
    .execute(&s.pool)
    .await?;
    let chunks: Vec<&[netqoe_model::Event]> = evs.chunks(batch).collect();
    let upserts = chunks.iter().map(|c| keys(c).len()).sum();
    measure(s, evs.len(), upserts, async |tx, i| {
        let chunk = chunks[i];
        insert_ids(tx, "raw_seen", chunk).await?;
        let keys = keys(chunk);
        let c: Vec<&str> = keys.keys().map(|k| k.0).collect();
        let t: Vec<&str> = keys.keys().map(|k| k.1).collect();
        let w: Vec<f64> = keys.keys().map(|k| k.2 as f64 / 1000.0).collect();
        let n: Vec<i64> = keys.values().copied().collect();
        sqlx::query(
            "INSERT INTO raw_agg SELECT unnest($1::text[]), unnest($2::text[]), to_timestamp(unnest($3::float8[])), unnest($4::bigint[]) \
             ON CONFLICT (client_id, target, window_start_ts) DO UPDATE SET n = raw_agg.n + excluded.n",
        )
        .bind(&c)
        .bind(&t)
        .bind(&w)
        .bind(&n)
        .execute(&mut **tx)
        .await?;
        Ok(i + 1 < chunks.len())
    })
    .await
}

/// Every column the aggregator writes of every `agg_1m` row, with each row's index by key.
async fn load_rows(
    pool: &PgPool,
) -> anyhow::Result<(Vec<Values>, HashMap<(String, String, i64), usize>)> {
    let cols = netqoe_aggregator::store::columns();
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    let rows = sqlx::query(&format!("SELECT {} FROM agg_1m", names.join(", ")))
        .fetch_all(pool)
        .await?;
    let mut values = cols
        .iter()
        .map(|(_, cast)| Values::empty(cast))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut at = HashMap::with_capacity(rows.len());
    for (n, row) in rows.iter().enumerate() {
        for (i, v) in values.iter_mut().enumerate() {
            v.push(row, i)?;
        }
        // The key: client_id, target, probe_kind, ip_version, window_start_ts; the bench's
        // events all measure one kind over one family, so client, target and minute suffice.
        let window: DateTime<Utc> = row.try_get(4)?;
        at.insert(
            (row.try_get(0)?, row.try_get(1)?, window.timestamp_millis()),
            n,
        );
    }
    Ok((values, at))
}

/// The `rows` limit: the windows the aggregator wrote, upserted into a copy of `agg_1m` (its
/// columns, indexes and fillfactor) with the aggregator's statement, without its version guard.
/// Each upsert writes the row's final values, prepared before the clock starts (a window the
/// aggregator wrote twice is written with its final state both times: a first write's state
/// in the limit is a little larger than the aggregator's).
pub async fn rows(s: &Stack, evs: &[netqoe_model::Event], batch: usize) -> anyhow::Result<Reading> {
    let options: Option<Vec<String>> =
        sqlx::query_scalar("SELECT reloptions FROM pg_class WHERE relname = 'agg_1m'")
            .fetch_one(&s.pool)
            .await?;
    let with = options
        .filter(|o| !o.is_empty())
        .map(|o| format!(" WITH ({})", o.join(", ")))
        .unwrap_or_default();
    sqlx::raw_sql(&format!(
        "CREATE TABLE raw_rows_seen {IDS_TABLE}; \
         CREATE TABLE raw_rows (LIKE agg_1m INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES){with}"
    ))
    .execute(&s.pool)
    .await?;
    let (values, at) = load_rows(&s.pool).await?;
    let chunks: Vec<&[netqoe_model::Event]> = evs.chunks(batch).collect();
    let mut prepared = Vec::with_capacity(chunks.len());
    let mut upserts = 0;
    for chunk in &chunks {
        let rows = keys(chunk)
            .keys()
            .map(|&(c, t, w)| {
                at.get(&(c.to_string(), t.to_string(), w))
                    .copied()
                    .ok_or_else(|| anyhow::anyhow!("agg_1m has no row {c} {t} {w}"))
            })
            .collect::<anyhow::Result<Vec<usize>>>()?;
        upserts += rows.len();
        prepared.push(values.iter().map(|v| v.pick(&rows)).collect::<Vec<_>>());
    }
    let sql = netqoe_aggregator::store::upsert_statement("raw_rows", None);
    measure(s, evs.len(), upserts, async |tx, i| {
        insert_ids(tx, "raw_rows_seen", chunks[i]).await?;
        let mut q = sqlx::query(&sql);
        for column in &prepared[i] {
            q = match column {
                Values::Text(v) => q.bind(v),
                Values::Int(v) => q.bind(v),
                Values::Small(v) => q.bind(v),
                Values::Float(v) => q.bind(v),
                Values::Bytes(v) => q.bind(v),
                Values::Ts(v) => q.bind(v),
            };
        }
        q.execute(&mut **tx).await?;
        Ok(i + 1 < chunks.len())
    })
    .await
}

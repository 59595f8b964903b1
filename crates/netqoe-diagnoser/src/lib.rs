//! netqoe-diagnoser: learns per-series baselines from `agg_1m`, labels anomalous windows with
//! the stage that explains them, localises them to a target, a client or the pair, groups
//! them into incidents, and reports them.
//!
//! The rules are pure modules (`baseline`, `score`, `label`, `localise`, `incident`, glued by
//! `engine`); `store` holds every SQL statement; `run` drives one pass or a loop.

pub mod baseline;
pub mod command;
pub mod config;
pub mod engine;
pub mod evaluate;
pub mod incident;
pub mod label;
pub mod localise;
pub mod metrics;
pub mod report;
pub mod score;
pub mod series;
pub mod store;

use std::time::{Duration, Instant};

use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use config::{Cli, Command, Settings};

use crate::baseline::SeriesState;
use crate::engine::{baseline_rows, judge_series, BaselineRow, Collector};
use crate::incident::{group, reconcile};
use crate::series::{SeriesKey, Window};

/// Errors of the diagnoser library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    State(#[from] baseline::StateError),
    #[error("unexpected value in the database: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("invalid input: {0}")]
    Input(String),
}

/// Incidents never span a gap longer than two of the longest measurement interval.
const MAX_GAP_MS: i64 = 2 * baseline::MAX_INTERVAL_MS as i64;

/// End of an open range: 9999-12-31T23:59:59Z (Postgres' and chrono's ranges both hold it).
const FAR_FUTURE_MS: i64 = 253_402_300_799_000;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Judged range `[from, until)`, None when there was nothing new.
    pub range: Option<(i64, i64)>,
    pub windows: u64,
    pub series: u64,
    pub diagnoses: usize,
    pub incidents_inserted: usize,
    pub incidents_updated: usize,
    pub incidents_deleted: usize,
    /// Newest window processed so far.
    pub watermark_ms: Option<i64>,
}

/// Runs once, or every `settings.every` until `shutdown` fires.
pub async fn run(
    settings: Settings,
    pool: PgPool,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    metrics::describe();
    loop {
        let started = Instant::now();
        let result = run_once(&settings, &pool).await;
        ::metrics::histogram!(metrics::RUN_DURATION).record(started.elapsed().as_secs_f64());
        match &result {
            Ok(o) => {
                ::metrics::counter!(metrics::RUNS, "result" => "ok").increment(1);
                tracing::info!(
                    windows = o.windows,
                    series = o.series,
                    diagnoses = o.diagnoses,
                    incidents_new = o.incidents_inserted,
                    incidents_changed = o.incidents_updated,
                    incidents_removed = o.incidents_deleted,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "diagnoser run finished"
                );
                if let Err(error) = publish_gauges(&pool, o).await {
                    tracing::warn!(error = %error, "failed to read gauges");
                }
            }
            Err(error) => {
                ::metrics::counter!(metrics::RUNS, "result" => "error").increment(1);
                tracing::error!(error = %error, "diagnoser run failed");
            }
        }
        let Some(every) = settings.every else {
            return result.map(|_| ());
        };
        let wait = every
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn publish_gauges(pool: &PgPool, o: &Outcome) -> Result<(), Error> {
    let now = store::db_now(pool).await?;
    ::metrics::gauge!(metrics::INCIDENTS_OPEN).set(store::open_incidents(pool).await? as f64);
    ::metrics::gauge!(metrics::STALE_SERIES)
        .set(store::stale_series(pool, now).await?.len() as f64);
    if let Some(w) = o.watermark_ms {
        ::metrics::gauge!(metrics::LAG).set((now - w).max(0) as f64 / 1000.0);
    }
    Ok(())
}

/// Series judged together: their learnt states are read in one statement and written in one.
const BATCH_SERIES: usize = 1000;
/// Windows held before a batch is judged, whatever its number of series.
const BATCH_WINDOWS: usize = 50_000;

/// One pass: judges the windows newer than the watermark (plus windows rewritten by late
/// events within the lookback), or the configured range, and writes everything in one
/// transaction. A pass with nothing new writes nothing.
///
/// Windows stream in series order; the series are judged in batches, each reading the learnt
/// state of its series and writing it back (within the pass's transaction), so memory holds
/// two or three batches, the localisation counts per entity and minute, and the anomalous
/// windows, never the range's windows or every series' state.
pub async fn run_once(settings: &Settings, pool: &PgPool) -> Result<Outcome, Error> {
    let run_at = store::db_now(pool).await?;
    let mut tx = pool.begin().await?;
    // First: an overlapping pass waits here, then starts from what the one before it stored.
    store::lock(&mut tx).await?;
    let previous = store::watermark(pool).await?;
    let (from, until, advance) = match (settings.range, previous) {
        (Some((f, u)), _) => (f, u, false),
        (None, None) => (0, FAR_FUTURE_MS, true),
        (None, Some((wm, last_run))) => {
            let next = wm + 60_000;
            let changed =
                store::earliest_changed(pool, wm - settings.lookback_ms, next, last_run).await?;
            (changed.map_or(next, |c| c.min(next)), FAR_FUTURE_MS, true)
        }
    };
    // Reading and judging overlap: the read decodes the next batch while the one before it
    // is judged on a blocking thread; at most one full batch waits between them.
    let (ready, mut batches) = tokio::sync::mpsc::channel::<Vec<Series>>(1);
    let read = async move {
        let mut rows = store::windows(pool, from, until);
        let mut batch = Batch::default();
        let mut current: Option<Series> = None;
        let mut data_end: Option<i64> = None;
        while let Some(row) = rows.next().await {
            let (key, w) = row?;
            data_end = Some(data_end.map_or(w.ts_ms, |d: i64| d.max(w.ts_ms)));
            match &mut current {
                Some((k, ws)) if *k == key => ws.push(w),
                _ => {
                    if let Some(done) = current.take() {
                        batch.push(done);
                        // A closed channel means judging failed: its error is the pass's.
                        if batch.is_full() && ready.send(batch.take()).await.is_err() {
                            return Ok(data_end);
                        }
                    }
                    current = Some((key, vec![w]));
                }
            }
        }
        batch.series.extend(current);
        if !batch.series.is_empty() {
            let _ = ready.send(batch.take()).await;
        }
        Ok::<_, Error>(data_end)
    };
    let mut collector = Collector::default();
    let judge = async {
        while let Some(series) = batches.recv().await {
            judge_batch(settings, pool, &mut tx, &mut collector, series).await?;
        }
        Ok::<_, Error>(())
    };
    let (data_end, judged) = futures::join!(read, judge);
    judged?;
    let data_end = data_end?;
    let prev_wm = previous.map(|p| p.0);
    let Some(data_end) = data_end else {
        return Ok(Outcome {
            watermark_ms: prev_wm,
            ..Outcome::default()
        });
    };
    let (windows, series) = (collector.windows, collector.series);
    let diagnoses = collector.finish();
    ::metrics::counter!(metrics::WINDOWS).increment(windows);
    for d in &diagnoses {
        ::metrics::counter!(metrics::DIAGNOSES, "label" => d.label.as_str()).increment(1);
    }
    let watermark = prev_wm.map_or(data_end, |w| w.max(data_end));
    // The range actually replaced: a first or incremental run owns everything from `from` on.
    let replace_until = if advance { watermark + 60_000 } else { until };

    store::replace_diagnoses(&mut tx, from, replace_until, &diagnoses).await?;
    let cut = from.saturating_sub(MAX_GAP_MS);
    let stored = store::active_incidents(&mut tx, cut).await?;
    let reach = stored.iter().map(|s| s.start_ms).fold(cut, i64::min);
    let all = store::diagnoses_since(&mut tx, reach).await?;
    let groups: Vec<_> = group(&all, settings.min_incident_windows, watermark)
        .into_iter()
        .filter(|g| g.end_ms >= cut)
        .collect();
    let changes = reconcile(&stored, groups);
    let (inserted, updated, deleted) = store::apply_incidents(&mut tx, &changes).await?;
    if advance || prev_wm.is_none() {
        store::set_watermark(&mut tx, watermark, run_at).await?;
    }
    tx.commit().await?;
    for g in &changes.insert {
        ::metrics::counter!(metrics::INCIDENTS_OPENED,
            "label" => g.entity.0.as_str(), "severity" => g.peak.as_str())
        .increment(1);
    }
    Ok(Outcome {
        range: Some((from, replace_until)),
        windows,
        series,
        diagnoses: diagnoses.len(),
        incidents_inserted: inserted,
        incidents_updated: updated,
        incidents_deleted: deleted,
        watermark_ms: Some(watermark),
    })
}

/// One series' key and its windows, in time order.
type Series = (SeriesKey, Vec<Window>);

/// Series read but not judged yet, in series order.
#[derive(Default)]
struct Batch {
    series: Vec<Series>,
    windows: usize,
}

impl Batch {
    fn push(&mut self, series: Series) {
        self.windows += series.1.len();
        self.series.push(series);
    }

    fn is_full(&self) -> bool {
        self.series.len() >= BATCH_SERIES || self.windows >= BATCH_WINDOWS
    }

    fn take(&mut self) -> Vec<Series> {
        self.windows = 0;
        std::mem::take(&mut self.series)
    }
}

/// Judges a batch of series against their stored states (new series start empty) on a
/// blocking thread, hands the verdicts to `collector` in series order, and writes the states
/// back within `tx`, with the `baselines` rows that moved.
async fn judge_batch(
    settings: &Settings,
    pool: &PgPool,
    tx: &mut sqlx::PgConnection,
    collector: &mut Collector,
    series: Vec<Series>,
) -> Result<(), Error> {
    let keys: Vec<&SeriesKey> = series.iter().map(|s| &s.0).collect();
    let mut states = store::load_states(pool, &keys).await?;
    let engine = settings.engine;
    let judged = tokio::task::spawn_blocking(move || {
        series
            .into_iter()
            .map(|(key, windows)| {
                let mut state = states.remove(&key).unwrap_or_default();
                let before = baseline_rows(&state, &engine);
                let verdicts = judge_series(&mut state, &windows, &engine);
                let mut rows = baseline_rows(&state, &engine);
                rows.retain(|r| moved(&before, r));
                (key, state, rows, verdicts)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let mut saved: Vec<(SeriesKey, SeriesState, _)> = Vec::with_capacity(judged.len());
    for (key, state, rows, verdicts) in judged {
        collector.push(&key, state.interval_ms(), verdicts);
        saved.push((key, state, rows));
    }
    store::save_states(tx, &saved).await
}

/// Whether baseline `row` differs from its version in `before` (or is new) in its median,
/// spread or band. A series' medians are recomputed every few windows and a rate without
/// failures stays at its floor, so most passes rewrite few `baselines` rows; `n_windows` and
/// `until_ts` are as of the last write, and `diagnoser_series` always holds the live state.
fn moved(before: &[BaselineRow], row: &BaselineRow) -> bool {
    before
        .iter()
        .find(|b| b.metric == row.metric)
        .is_none_or(|b| {
            (b.median, b.mad, b.band_low, b.band_high)
                != (row.median, row.mad, row.band_low, row.band_high)
        })
}

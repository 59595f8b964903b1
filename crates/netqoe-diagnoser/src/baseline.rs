//! Per-series baselines learnt incrementally from non-anomalous windows (pure, no IO).
//!
//! Timings and throughput go into a decayed histogram of `ln(1 + value)` with 0.01-wide bins
//! (1 % of the value): its weighted median and MAD are the baseline and its spread, and recent
//! windows weigh more (weight halves every `half_life`, a third of the trailing window, so the
//! baseline follows the last days rather than the whole history). Failure rates keep decayed
//! trial and failure counts (their mean is the usual failure probability) and the counts of
//! the last two windows, so a single-event window can be judged together with its
//! neighbours. The whole state of a series is a few kilobytes, stored as one row: a run reads
//! the new windows and these rows, never the history.
//!
//! Hour of day: each timing also keeps, per UTC hour, the decayed mean of its healthy windows'
//! distance from the all-day median (log units). Once the series has [`PROFILE_HISTORY_MS`]
//! (7 days) of history and an hour has [`PROFILE_MIN_WINDOWS`] (decayed) windows, a window is judged
//! against the all-day median moved by its hour's offset, so a daily peak is not an anomaly
//! and a rise at a quiet hour is judged against that hour.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::series::{Kind, Metric, Trials, Window};

/// Width of a histogram bin in `ln(1 + x)`.
pub const BIN: f64 = 0.01;
/// Format byte in front of a stored state (1: before the hour-of-day profile).
const FORMAT: u8 = 2;
/// History a series needs before its hour-of-day profile is used.
pub const PROFILE_HISTORY_MS: i64 = 7 * 86_400_000;
/// Windows (decayed) an hour of the profile needs before it is used.
pub const PROFILE_MIN_WINDOWS: f64 = 20.0;
/// Rate windows remembered for pooling.
const RECENT: usize = 2;
/// Shortest and longest measurement interval assumed for a series.
pub const MIN_INTERVAL_MS: f64 = 60_000.0;
pub const MAX_INTERVAL_MS: f64 = 30.0 * 60_000.0;

/// A baseline in log units: `median` and `mad` of `ln(1 + x)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogSummary {
    pub median: f64,
    pub mad: f64,
    pub n: u64,
}

/// A decayed histogram of `ln(1 + x)`. Newer samples get exponentially larger weights (the same
/// as decaying the old ones), rescaled when they grow large.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogHist {
    /// (bin index, weight), sorted by bin.
    bins: Vec<(i32, f64)>,
    /// Time at which a sample weighs 1.
    t0_ms: i64,
    /// Samples ever added.
    n: u64,
    /// Summary as of the last refresh, and samples added since.
    summary: Option<LogSummary>,
    stale: u32,
}

/// Samples added between recomputations of a histogram's median and MAD.
const REFRESH_EVERY: u32 = 8;

impl LogHist {
    pub fn add(&mut self, ts_ms: i64, x: f64, half_life_ms: f64) {
        if self.n == 0 {
            self.t0_ms = ts_ms;
        }
        let mut w = ((ts_ms - self.t0_ms) as f64 / half_life_ms).exp2();
        if w > 1e9 {
            for b in &mut self.bins {
                b.1 /= w;
            }
            self.bins.retain(|b| b.1 > 1e-9);
            self.t0_ms = ts_ms;
            w = 1.0;
        }
        let idx = ((1.0 + x.max(0.0)).ln() / BIN).round() as i32;
        match self.bins.binary_search_by_key(&idx, |b| b.0) {
            Ok(i) => self.bins[i].1 += w,
            Err(i) => self.bins.insert(i, (idx, w)),
        }
        self.n += 1;
        self.stale += 1;
        if self.summary.is_none() || self.stale >= REFRESH_EVERY {
            self.summary = self.compute();
            self.stale = 0;
        }
    }

    pub fn n(&self) -> u64 {
        self.n
    }

    /// Median and MAD as of the last refresh (at most a few samples old).
    pub fn summary(&self) -> Option<LogSummary> {
        self.summary.map(|s| LogSummary { n: self.n, ..s })
    }

    fn compute(&self) -> Option<LogSummary> {
        let total: f64 = self.bins.iter().map(|b| b.1).sum();
        if total <= 0.0 {
            return None;
        }
        let median = weighted_median(self.bins.iter().map(|&(i, w)| (i as f64 * BIN, w)), total);
        let mut dev: Vec<(f64, f64)> = self
            .bins
            .iter()
            .map(|&(i, w)| ((i as f64 * BIN - median).abs(), w))
            .collect();
        dev.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mad = weighted_median(dev.into_iter(), total);
        Some(LogSummary {
            median,
            mad,
            n: self.n,
        })
    }
}

/// The first value at which the cumulative weight reaches half of `total` (values sorted).
fn weighted_median(sorted: impl Iterator<Item = (f64, f64)>, total: f64) -> f64 {
    let mut acc = 0.0;
    let mut last = 0.0;
    for (v, w) in sorted {
        acc += w;
        last = v;
        if acc >= total / 2.0 {
            return v;
        }
    }
    last
}

/// Per UTC hour, the decayed mean distance of healthy windows from the all-day median
/// (single precision: 200 bytes a metric).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HourProfile {
    /// Decayed sums of distances and of weights (windows), per hour.
    sum: Vec<f32>,
    weight: Vec<f32>,
    last_ms: i64,
}

/// The UTC hour of `ts_ms`.
pub fn hour_of(ts_ms: i64) -> usize {
    (ts_ms.rem_euclid(86_400_000) / 3_600_000) as usize
}

impl HourProfile {
    fn add(&mut self, ts_ms: i64, distance: f64, half_life_ms: f64) {
        if self.sum.is_empty() {
            self.sum = vec![0.0; 24];
            self.weight = vec![0.0; 24];
        }
        if ts_ms > self.last_ms && self.last_ms > 0 {
            let f = (-((ts_ms - self.last_ms) as f64) / half_life_ms).exp2() as f32;
            self.sum.iter_mut().for_each(|x| *x *= f);
            self.weight.iter_mut().for_each(|x| *x *= f);
        }
        self.last_ms = self.last_ms.max(ts_ms);
        let h = hour_of(ts_ms);
        self.sum[h] += distance as f32;
        self.weight[h] += 1.0;
    }

    /// The offset (log units) of hour `h` from the all-day median, once it has (decayed)
    /// enough windows.
    pub fn offset(&self, h: usize) -> Option<f64> {
        let w = f64::from(*self.weight.get(h)?);
        (w >= PROFILE_MIN_WINDOWS).then(|| f64::from(self.sum[h]) / w)
    }
}

/// Decayed trials and failures of a rate, plus the last windows' counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateState {
    trials: f64,
    failures: f64,
    last_ms: i64,
    n: u64,
    /// (window start, trials, failures) of the last windows, oldest first.
    recent: VecDeque<(i64, f64, f64)>,
}

/// Smallest failure probability assumed: a series that never failed is not certain never to.
pub const P0_FLOOR: f64 = 0.001;

impl RateState {
    fn decay(&mut self, ts_ms: i64, half_life_ms: f64) {
        if self.n > 0 && ts_ms > self.last_ms {
            let f = (-((ts_ms - self.last_ms) as f64) / half_life_ms).exp2();
            self.trials *= f;
            self.failures *= f;
        }
        self.last_ms = self.last_ms.max(ts_ms);
    }

    fn add(&mut self, ts_ms: i64, (n, k): Trials, half_life_ms: f64) {
        self.decay(ts_ms, half_life_ms);
        self.trials += n;
        self.failures += k;
        self.n += 1;
    }

    fn remember(&mut self, ts_ms: i64, (n, k): Trials) {
        self.recent.push_back((ts_ms, n, k));
        while self.recent.len() > RECENT {
            self.recent.pop_front();
        }
    }

    /// Usual failure probability, never below [`P0_FLOOR`].
    pub fn p0(&self) -> f64 {
        if self.trials <= 0.0 {
            return P0_FLOOR;
        }
        (self.failures / self.trials).max(P0_FLOOR)
    }

    pub fn n(&self) -> u64 {
        self.n
    }

    /// Trials and failures of the remembered windows that started in `[from_ms, before_ms)`.
    pub fn recent_between(&self, from_ms: i64, before_ms: i64) -> Trials {
        self.recent
            .iter()
            .filter(|r| r.0 >= from_ms && r.0 < before_ms)
            .fold((0.0, 0.0), |a, r| (a.0 + r.1, a.1 + r.2))
    }
}

/// Everything learnt of one series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesState {
    pub hists: BTreeMap<Metric, LogHist>,
    pub rates: BTreeMap<Metric, RateState>,
    pub first_ms: i64,
    /// Newest window folded in (0 before the first).
    pub last_ms: i64,
    pub windows: u64,
    /// Typical gap between the series' windows.
    pub interval_ms: f64,
    /// Hour-of-day offsets of the timings and throughput.
    pub hourly: BTreeMap<Metric, HourProfile>,
}

/// A state as format 1 stored it (before the hour-of-day profile).
#[derive(Deserialize)]
struct SeriesStateV1 {
    hists: BTreeMap<Metric, LogHist>,
    rates: BTreeMap<Metric, RateState>,
    first_ms: i64,
    last_ms: i64,
    windows: u64,
    interval_ms: f64,
}

/// Errors of reading a stored state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("unknown baseline state format {0}")]
    Format(u8),
    #[error("corrupt baseline state: {0}")]
    Decode(#[from] postcard::Error),
}

impl SeriesState {
    /// Whether `ts_ms` was already folded in (a re-diagnosed window is never counted twice).
    pub fn has_seen(&self, ts_ms: i64) -> bool {
        self.windows > 0 && ts_ms <= self.last_ms
    }

    /// The series' measurement interval, at least a minute.
    pub fn interval_ms(&self) -> f64 {
        self.interval_ms.clamp(MIN_INTERVAL_MS, MAX_INTERVAL_MS)
    }

    /// Takes window `w` into the state. Its values join the baselines only when `healthy`;
    /// its failure counts are remembered either way for pooling with the next windows.
    pub fn fold(&mut self, w: &Window, healthy: bool, half_life_ms: f64) {
        if self.has_seen(w.ts_ms) {
            return;
        }
        if self.windows == 0 {
            self.first_ms = w.ts_ms;
            self.interval_ms = MIN_INTERVAL_MS;
        } else {
            let gap = ((w.ts_ms - self.last_ms) as f64).clamp(MIN_INTERVAL_MS, MAX_INTERVAL_MS);
            // The first gap sets the interval; later ones move it slowly, so one missed
            // window does not double it.
            self.interval_ms = if self.windows == 1 {
                gap
            } else {
                0.8 * self.interval_ms + 0.2 * gap
            };
        }
        self.windows += 1;
        self.last_ms = w.ts_ms;
        for m in Metric::ALL {
            match m.kind() {
                Kind::Rate => {
                    if let Some(t) = w.trials(m) {
                        let r = self.rates.entry(m).or_default();
                        if healthy {
                            r.add(w.ts_ms, t, half_life_ms);
                        }
                        r.remember(w.ts_ms, t);
                    }
                }
                Kind::Latency | Kind::Throughput => {
                    if healthy {
                        if let Some(x) = w.value(m) {
                            let h = self.hists.entry(m).or_default();
                            if let Some(base) = h.summary() {
                                // Clipped, so one odd window moves its hour little.
                                let d = ((1.0 + x).ln() - base.median).clamp(-1.0, 1.0);
                                self.hourly
                                    .entry(m)
                                    .or_default()
                                    .add(w.ts_ms, d, half_life_ms);
                            }
                            h.add(w.ts_ms, x, half_life_ms);
                        }
                    }
                }
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        out.extend(postcard::to_stdvec(self).expect("a series state always serialises"));
        out
    }

    /// The baseline of timing `m` for a window at `ts_ms`: the all-day median and MAD, the
    /// median moved to the window's hour once the profile may be used.
    pub fn summary_at(&self, m: Metric, ts_ms: i64) -> Option<LogSummary> {
        let mut s = self.hists.get(&m)?.summary()?;
        if ts_ms - self.first_ms >= PROFILE_HISTORY_MS {
            if let Some(off) = self.hourly.get(&m).and_then(|p| p.offset(hour_of(ts_ms))) {
                s.median += off;
            }
        }
        Some(s)
    }

    pub fn decode(bytes: &[u8]) -> Result<SeriesState, StateError> {
        match bytes.split_first() {
            Some((&FORMAT, rest)) => Ok(postcard::from_bytes(rest)?),
            Some((&1, rest)) => {
                let v: SeriesStateV1 = postcard::from_bytes(rest)?;
                Ok(SeriesState {
                    hists: v.hists,
                    rates: v.rates,
                    first_ms: v.first_ms,
                    last_ms: v.last_ms,
                    windows: v.windows,
                    interval_ms: v.interval_ms,
                    hourly: BTreeMap::new(),
                })
            }
            Some((&f, _)) => Err(StateError::Format(f)),
            None => Err(StateError::Format(0)),
        }
    }
}

/// `exp(v) - 1`: a log value back in the metric's unit.
pub fn unlog(v: f64) -> f64 {
    v.exp() - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: f64 = 86_400_000.0;

    #[test]
    fn a_flat_series_has_its_value_as_median_and_no_spread() {
        let mut h = LogHist::default();
        for i in 0..100 {
            h.add(i * 60_000, 18.0, DAY);
        }
        let s = h.summary().unwrap();
        assert!((unlog(s.median) - 18.0).abs() < 0.2, "{}", unlog(s.median));
        assert_eq!(s.mad, 0.0);
        assert_eq!(s.n, 100);
    }

    #[test]
    fn old_samples_fade_behind_new_ones() {
        let mut h = LogHist::default();
        for i in 0..100 {
            h.add(i * 60_000, 10.0, DAY);
        }
        // Two days later, fewer samples at a new level win (each weighs four times more).
        for i in 0..40 {
            h.add(2 * DAY as i64 + i * 60_000, 50.0, DAY);
        }
        let s = h.summary().unwrap();
        assert!((unlog(s.median) - 50.0).abs() < 1.0, "{}", unlog(s.median));
    }

    #[test]
    fn anomalous_windows_do_not_move_the_baseline_but_their_failures_are_remembered() {
        let mut s = SeriesState::default();
        let ok = |ts| Window {
            ts_ms: ts,
            count_total: 2,
            tcp_p50: Some(20.0),
            ..Default::default()
        };
        for i in 0..10 {
            s.fold(&ok(i * 60_000), true, DAY);
        }
        let bad = Window {
            ts_ms: 600_000,
            count_total: 2,
            tcp_errors: 2,
            tcp_p50: Some(900.0),
            ..Default::default()
        };
        s.fold(&bad, false, DAY);
        let h = s.hists[&Metric::TcpP50].summary().unwrap();
        assert!((unlog(h.median) - 20.0).abs() < 0.3);
        let r = &s.rates[&Metric::ConnectFailures];
        assert_eq!(r.p0(), P0_FLOOR);
        assert_eq!(r.recent_between(600_000, 600_001), (2.0, 2.0));
        // Folding the same window again changes nothing.
        let before = s.clone();
        s.fold(&bad, false, DAY);
        assert_eq!(s, before);
    }

    #[test]
    fn the_interval_follows_the_series_cadence() {
        let mut s = SeriesState::default();
        for i in 0..20 {
            let w = Window {
                ts_ms: i * 300_000,
                ..Default::default()
            };
            s.fold(&w, true, DAY);
        }
        assert_eq!(s.interval_ms(), 300_000.0);
        // One missing window moves it by a fifth of the gap, not to the gap.
        s.fold(
            &Window {
                ts_ms: 19 * 300_000 + 600_000,
                ..Default::default()
            },
            true,
            DAY,
        );
        assert_eq!(s.interval_ms(), 360_000.0);
    }

    #[test]
    fn the_hour_of_day_profile_applies_after_seven_days() {
        const HOUR: i64 = 3_600_000;
        // Every 5 minutes for 9 days: 100 ms, but 200 ms from 14:00 to 15:00 UTC.
        let value = |ts: i64| if hour_of(ts) == 14 { 200.0 } else { 100.0 };
        let mut s = SeriesState::default();
        let at = |s: &SeriesState, ts| unlog(s.summary_at(Metric::TtfbP50, ts).unwrap().median);
        let mut ts = 0;
        while ts < 9 * 24 * HOUR {
            if ts == 6 * 24 * HOUR + 14 * HOUR {
                // Six days in: not yet, the all-day baseline.
                assert!((at(&s, ts) - 100.0).abs() < 2.0, "{}", at(&s, ts));
            }
            let w = Window {
                ts_ms: ts,
                count_total: 1,
                ttfb_p50: Some(value(ts)),
                ..Default::default()
            };
            s.fold(&w, true, 7.0 * DAY / 3.0);
            ts += 300_000;
        }
        // Nine days in: 14:00 is judged against its own level, the other hours unchanged.
        assert!(
            (at(&s, ts + 14 * HOUR) - 200.0).abs() < 10.0,
            "{}",
            at(&s, ts + 14 * HOUR)
        );
        assert!(
            (at(&s, ts + 3 * HOUR) - 100.0).abs() < 2.0,
            "{}",
            at(&s, ts + 3 * HOUR)
        );
        // A stored state of the first format still reads, without a profile.
        let mut old = vec![1u8];
        let v1 = (
            &s.hists,
            &s.rates,
            s.first_ms,
            s.last_ms,
            s.windows,
            s.interval_ms,
        );
        old.extend(postcard::to_stdvec(&v1).unwrap());
        let back = SeriesState::decode(&old).unwrap();
        assert_eq!(back.hists, s.hists);
        assert!(back.hourly.is_empty());
    }

    proptest! {
        #[test]
        fn median_lies_within_the_samples_and_state_round_trips(
            xs in proptest::collection::vec(0.0f64..5_000.0, 1..200),
        ) {
            let mut s = SeriesState::default();
            for (i, x) in xs.iter().enumerate() {
                let w = Window { ts_ms: i as i64 * 60_000, count_total: 1, ttfb_p50: Some(*x), ..Default::default() };
                s.fold(&w, true, DAY);
            }
            let h = &s.hists[&Metric::TtfbP50];
            let sum = h.compute().unwrap();
            let lo = xs.iter().cloned().fold(f64::MAX, f64::min);
            let hi = xs.iter().cloned().fold(0.0, f64::max);
            let m = unlog(sum.median);
            prop_assert!(m >= lo * 0.99 - 0.01 && m <= hi * 1.01 + 0.01, "{m} not in [{lo}, {hi}]");
            prop_assert!(sum.mad >= 0.0);
            prop_assert_eq!(SeriesState::decode(&s.encode()).unwrap(), s);
        }
    }
}

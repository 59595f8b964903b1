//! Whether one metric of one window is anomalous against its baseline (pure, no IO).
//!
//! Timings and throughput: the modified z-score `0.6745 (ln(1+x) − median) / MAD` on a log
//! scale must pass the threshold (default 3.5, raised for a window judged on several timings,
//! see [`window_threshold`]) **and** the change must pass the metric's
//! absolute and relative floors (e.g. +20 ms and +20 % for a connect time, −30 % for
//! throughput); the MAD is never taken below `mad_floor` (default 0.03, i.e. ~3 %), so a flat
//! series does not fire on a 0.1 ms rise. Rates: the window's failures, pooled with the series'
//! previous two windows (so a series measured once a minute can show an outage), must be
//! improbable under the usual failure probability (binomial tail below `alpha`, default 0.001)
//! and the window's own rate must be at least 10 points above it; the score is −log10 of that
//! probability.

use netqoe_model::Severity;

use crate::baseline::{unlog, LogSummary};
use crate::series::{Kind, Metric, Trials};

/// Thresholds of the tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreConfig {
    pub z_threshold: f64,
    pub mad_floor: f64,
    pub alpha: f64,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            z_threshold: 3.5,
            mad_floor: 0.03,
            alpha: 1e-3,
        }
    }
}

/// One anomalous metric of a window, in the metric's own unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub metric: Metric,
    pub observed: f64,
    /// The usual value (median, or usual failure fraction).
    pub baseline: f64,
    /// Typical deviation around the usual value (about one standard deviation).
    pub spread: f64,
    pub score: f64,
    pub severity: Severity,
    /// Trials behind a rate (events or ping packets), 0 for timings.
    pub trials: f64,
}

/// P(Z > z) for a standard normal Z (erfc after W. J. Cody's rational approximations, as in
/// Numerical Recipes' `erfcc`: relative error below 1.2e-7).
pub fn normal_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    0.5 * if x >= 0.0 { erfc } else { 2.0 - erfc }
}

/// The z threshold for each of `tests` timings judged in one window, so that a healthy window
/// is as likely to get a finding as with a single test at `z` (Bonferroni): P(Z > z') =
/// P(Z > z) / tests. An HTTP window is judged on up to 12 timings; at 3.5 each, about 3 in
/// 1000 healthy windows would fire by chance alone, at the raised 4.1 one in 4000.
pub fn window_threshold(z: f64, tests: usize) -> f64 {
    if tests <= 1 {
        return z;
    }
    let want = normal_tail(z) / tests as f64;
    let (mut lo, mut hi) = (z, z + 10.0);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if normal_tail(mid) > want {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// Judges a timing or throughput value against its log-scale baseline (threshold
/// `cfg.z_threshold`).
pub fn judge_value(m: Metric, x: f64, base: &LogSummary, cfg: &ScoreConfig) -> Option<Finding> {
    judge_value_at(m, x, base, cfg, cfg.z_threshold)
}

/// [`judge_value`] with the z threshold `z_threshold` (see [`window_threshold`]).
pub fn judge_value_at(
    m: Metric,
    x: f64,
    base: &LogSummary,
    cfg: &ScoreConfig,
    z_threshold: f64,
) -> Option<Finding> {
    let (abs_floor, rel_floor) = m.floors();
    let xl = (1.0 + x.max(0.0)).ln();
    let mad = base.mad.max(cfg.mad_floor);
    let usual = unlog(base.median);
    let spread = unlog(base.median + 1.4826 * mad) - usual;
    let (z, severity) = match m.kind() {
        Kind::Latency => {
            let z = 0.6745 * (xl - base.median) / mad;
            if x - usual < abs_floor || x < usual * (1.0 + rel_floor) {
                return None;
            }
            let ratio = (1.0 + x) / (1.0 + usual);
            let sev = if ratio >= 5.0 {
                Severity::Critical
            } else if ratio >= 2.0 {
                Severity::Major
            } else {
                Severity::Minor
            };
            (z, sev)
        }
        Kind::Throughput => {
            let z = 0.6745 * (base.median - xl) / mad;
            if x > usual * (1.0 - rel_floor) {
                return None;
            }
            let drop = 1.0 - x / usual.max(f64::MIN_POSITIVE);
            let sev = if drop >= 0.8 {
                Severity::Critical
            } else if drop >= 0.5 {
                Severity::Major
            } else {
                Severity::Minor
            };
            (z, sev)
        }
        Kind::Rate => return None,
    };
    (z > z_threshold).then_some(Finding {
        metric: m,
        observed: x,
        baseline: usual,
        spread,
        score: z,
        severity,
        trials: 0.0,
    })
}

/// Judges a window's failures of a rate metric. `pooled` are the window's trials and failures
/// plus those of the series' previous windows; `p0` the usual failure probability.
pub fn judge_rate(
    m: Metric,
    window: Trials,
    pooled: Trials,
    p0: f64,
    cfg: &ScoreConfig,
) -> Option<Finding> {
    let (n, k) = window;
    if n <= 0.0 || k < 1.0 {
        return None;
    }
    let rate = k / n;
    let (abs_floor, _) = m.floors();
    if rate - p0 < abs_floor {
        return None;
    }
    let p = binomial_tail(pooled.0.round() as u64, pooled.1.round() as u64, p0);
    if p >= cfg.alpha {
        return None;
    }
    let severity = if rate >= 0.5 {
        Severity::Critical
    } else if rate >= 0.2 {
        Severity::Major
    } else {
        Severity::Minor
    };
    Some(Finding {
        metric: m,
        observed: rate,
        baseline: p0,
        spread: (p0 * (1.0 - p0) / n).sqrt(),
        score: (-p.max(1e-99).log10()).min(99.0),
        severity,
        trials: n,
    })
}

/// P(X ≥ k) for X ~ Binomial(n, p).
pub fn binomial_tail(n: u64, k: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    // ln of the pmf at k, then the following terms by their ratio, summed in log space
    // (terms rise up to the mode before they fall, and may be far below f64's range).
    let ln_choose: f64 = (1..=k)
        .map(|i| (((n - k + i) as f64) / i as f64).ln())
        .sum();
    let ln_ratio = (p / (1.0 - p)).ln();
    let mut ln_term = ln_choose + k as f64 * p.ln() + (n - k) as f64 * (1.0 - p).ln();
    let mut terms = Vec::with_capacity((n - k + 1) as usize);
    for i in k..=n {
        terms.push(ln_term);
        if i < n {
            ln_term += ((n - i) as f64 / (i + 1) as f64).ln() + ln_ratio;
        }
    }
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    (max + sum.ln()).exp().min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn flat(v: f64) -> LogSummary {
        LogSummary {
            median: (1.0 + v).ln(),
            mad: 0.0,
            n: 100,
        }
    }

    fn noisy(v: f64, rel: f64) -> LogSummary {
        LogSummary {
            median: (1.0 + v).ln(),
            mad: rel,
            n: 100,
        }
    }

    #[test]
    fn latency_table() {
        let cfg = ScoreConfig::default();
        // (metric, baseline, observed, expected severity or None)
        let cases: &[(Metric, LogSummary, f64, Option<Severity>)] = &[
            // Flat series: +0.1 ms and +0.5 ms never fire (MAD floor and absolute floor).
            (Metric::TcpP95, flat(18.0), 18.1, None),
            (Metric::TcpP95, flat(18.0), 18.5, None),
            // +15 ms is large in z but under the +20 ms floor.
            (Metric::TcpP95, flat(18.0), 33.0, None),
            (Metric::TcpP95, flat(18.0), 218.0, Some(Severity::Critical)),
            (Metric::TtfbP50, flat(100.0), 300.0, Some(Severity::Major)),
            // +30 % on a quiet 100 ms series: minor.
            (
                Metric::TcpP50,
                noisy(100.0, 0.03),
                130.0,
                Some(Severity::Minor),
            ),
            // The same rise on a series that varies ±40 % is normal.
            (Metric::TcpP50, noisy(100.0, 0.4), 130.0, None),
            // +25 ms on a 400 ms series is under the +20 % floor.
            (Metric::TtfbP95, flat(400.0), 425.0, None),
            // Faster is never anomalous.
            (Metric::DnsP50, flat(50.0), 5.0, None),
            // Throughput: −50 % fires, +50 % and −20 % do not.
            (
                Metric::ThroughputP50,
                noisy(10_000.0, 0.05),
                5_000.0,
                Some(Severity::Major),
            ),
            (Metric::ThroughputP50, noisy(10_000.0, 0.05), 15_000.0, None),
            (Metric::ThroughputP50, noisy(10_000.0, 0.05), 8_000.0, None),
        ];
        for (m, base, x, want) in cases {
            let got = judge_value(*m, *x, base, &cfg).map(|f| f.severity);
            assert_eq!(
                got,
                *want,
                "{m:?} baseline {} observed {x}",
                unlog(base.median)
            );
        }
    }

    #[test]
    fn rate_table() {
        let cfg = ScoreConfig::default();
        // (window, pooled, p0, fires)
        let cases: &[(Trials, Trials, f64, bool)] = &[
            // One failed event after two good ones, on a series that never fails: not yet.
            ((1.0, 1.0), (3.0, 1.0), 0.001, false),
            // The second failure in a row: an outage.
            ((1.0, 1.0), (3.0, 2.0), 0.001, true),
            // A series failing 2 % of the time: one failure among 100 events is normal.
            ((100.0, 3.0), (300.0, 5.0), 0.02, false),
            // 30 of 100 events failing is not.
            ((100.0, 30.0), (300.0, 32.0), 0.02, true),
            // Rate under the +10 points floor.
            ((1000.0, 60.0), (3000.0, 180.0), 0.01, false),
            ((0.0, 0.0), (0.0, 0.0), 0.001, false),
        ];
        for (w, pooled, p0, fires) in cases {
            let got = judge_rate(Metric::ConnectFailures, *w, *pooled, *p0, &cfg);
            assert_eq!(got.is_some(), *fires, "{w:?} {pooled:?} {p0}");
        }
    }

    #[test]
    fn the_threshold_rises_with_the_tests_of_a_window() {
        assert!((normal_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_tail(3.5) - 2.326e-4).abs() < 1e-7);
        assert!((normal_tail(-1.0) - 0.841_345).abs() < 1e-6);
        assert_eq!(window_threshold(3.5, 1), 3.5);
        // (tests, expected threshold)
        for (tests, want) in [(2, 3.68), (3, 3.78), (12, 4.11)] {
            let got = window_threshold(3.5, tests);
            assert!((got - want).abs() < 0.01, "{tests} tests: {got}");
            assert!((normal_tail(got) * tests as f64 - normal_tail(3.5)).abs() < 1e-8);
        }
    }

    #[test]
    fn binomial_tail_matches_known_values() {
        assert!((binomial_tail(3, 1, 0.5) - 0.875).abs() < 1e-12);
        assert!((binomial_tail(10, 10, 0.5) - 0.5f64.powi(10)).abs() < 1e-15);
        assert_eq!(binomial_tail(5, 0, 0.1), 1.0);
        assert_eq!(binomial_tail(5, 6, 0.1), 0.0);
        assert!((binomial_tail(1, 1, 0.001) - 0.001).abs() < 1e-15);
    }

    proptest! {
        #[test]
        fn a_value_within_the_floors_never_fires(base in 1.0f64..2000.0, mad in 0.0f64..1.0, rise in 0.0f64..1.0) {
            // A rise below both floors (under 20 ms or under 20 %) is never anomalous.
            let x = base + rise * 19.9;
            let b = noisy(base, mad);
            prop_assert!(judge_value(Metric::TcpP95, x, &b, &ScoreConfig::default()).is_none());
        }

        #[test]
        fn tail_is_a_probability_and_falls_with_k(n in 1u64..300, p in 0.0001f64..0.9999) {
            let mut prev = 1.0;
            for k in 0..=n.min(40) {
                let t = binomial_tail(n, k, p);
                prop_assert!((0.0..=1.0).contains(&t));
                prop_assert!(t <= prev + 1e-9);
                prev = t;
            }
        }
    }
}

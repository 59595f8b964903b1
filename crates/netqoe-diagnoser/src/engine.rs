//! One run's judgement: each series' windows scored against its baselines in time order, then
//! every anomalous window localised and turned into a diagnosis (pure, no IO).

use std::collections::BTreeMap;

use netqoe_model::{Label, Scope, Severity};

use crate::baseline::{unlog, SeriesState};
use crate::incident::Diag;
use crate::label::{detail, label, Verdict};
use crate::localise::{mask, observable, Localiser};
use crate::score::{judge_rate, judge_value_at, window_threshold, ScoreConfig};
use crate::series::{Kind, Metric, SeriesKey, Window};

/// Settings of the judgement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    pub score: ScoreConfig,
    /// Baseline windows a metric needs before it can be anomalous.
    pub min_windows: u64,
    /// Half-life of a sample's weight in the baselines.
    pub half_life_ms: f64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            score: ScoreConfig::default(),
            min_windows: 30,
            half_life_ms: 7.0 * 86_400_000.0 / 3.0,
        }
    }
}

/// One window after judgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub ts_ms: i64,
    pub verdict: Option<Verdict>,
}

/// Judges one series' windows (sorted by time) against `state`, folding each healthy window
/// into it afterwards, so each window is judged by what came before it.
pub fn judge_series(
    state: &mut SeriesState,
    windows: &[Window],
    cfg: &EngineConfig,
) -> Vec<Judged> {
    let mut out = Vec::with_capacity(windows.len());
    // Threshold by the number of timings a window is judged on.
    let thresholds: Vec<f64> = (0..=Metric::ALL.len())
        .map(|n| window_threshold(cfg.score.z_threshold, n))
        .collect();
    for w in windows {
        let mut findings = Vec::new();
        let tests = Metric::ALL
            .iter()
            .filter(|m| m.kind() != Kind::Rate && w.value(**m).is_some())
            .filter(|m| state.hists.get(m).is_some_and(|h| h.n() >= cfg.min_windows))
            .count();
        let z = thresholds[tests];
        for m in Metric::ALL {
            let f = match m.kind() {
                Kind::Rate => {
                    let Some(t) = w.trials(m) else { continue };
                    let Some(r) = state.rates.get(&m) else {
                        continue;
                    };
                    if r.n() < cfg.min_windows {
                        continue;
                    }
                    let from = w.ts_ms - (3.0 * state.interval_ms()) as i64;
                    let before = r.recent_between(from, w.ts_ms);
                    judge_rate(m, t, (t.0 + before.0, t.1 + before.1), r.p0(), &cfg.score)
                }
                Kind::Latency | Kind::Throughput => {
                    let Some(x) = w.value(m) else { continue };
                    let Some(h) = state.hists.get(&m) else {
                        continue;
                    };
                    if h.n() < cfg.min_windows {
                        continue;
                    }
                    let Some(base) = state.summary_at(m, w.ts_ms) else {
                        continue;
                    };
                    judge_value_at(m, x, &base, &cfg.score, z)
                }
            };
            findings.extend(f);
        }
        let verdict = label(&findings);
        state.fold(w, verdict.is_none(), cfg.half_life_ms);
        out.push(Judged {
            ts_ms: w.ts_ms,
            verdict,
        });
    }
    out
}

/// One anomalous window, localised: a row of `diagnoses`.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    pub key: SeriesKey,
    pub ts_ms: i64,
    pub label: Label,
    pub scope: Scope,
    pub severity: Severity,
    pub metric: Metric,
    pub observed: f64,
    pub baseline: f64,
    pub score: f64,
    /// The finding, the localisation evidence, and the other stages it explains.
    pub detail: String,
    pub interval_ms: f64,
}

impl Diagnosis {
    pub fn to_diag(&self) -> Diag {
        Diag {
            label: self.label,
            scope: self.scope,
            client_id: self.key.client_id.clone(),
            target: self.key.target.clone(),
            series: self.key.kind_family(),
            ts_ms: self.ts_ms,
            severity: self.severity,
            interval_ms: self.interval_ms,
            detail: self.detail.clone(),
            score: self.score,
        }
    }
}

struct Pending {
    key: SeriesKey,
    ts_ms: i64,
    verdict: Verdict,
    interval_ms: f64,
}

/// Collects judged series in (client, target, kind, family) order, then localises.
#[derive(Default)]
pub struct Collector {
    localiser: Localiser,
    pair: Option<(String, String)>,
    /// Per minute of the current pair: labels its series can show, labels they showed.
    pair_minutes: BTreeMap<i64, (u8, u8)>,
    pending: Vec<Pending>,
    pub windows: u64,
    pub series: u64,
}

impl Collector {
    /// Adds one series' judged windows. Series must come grouped by (client, target).
    pub fn push(&mut self, key: &SeriesKey, interval_ms: f64, judged: Vec<Judged>) {
        let same = self
            .pair
            .as_ref()
            .is_some_and(|(c, t)| *c == key.client_id && *t == key.target);
        if !same {
            self.flush_pair();
            self.pair = Some((key.client_id.clone(), key.target.clone()));
        }
        self.series += 1;
        let can = observable(&key.probe_kind);
        for j in judged {
            self.windows += 1;
            let bits = j.verdict.as_ref().map(|v| mask([v.label])).unwrap_or(0);
            let minute = self.pair_minutes.entry(j.ts_ms).or_insert((0, 0));
            minute.0 |= can;
            minute.1 |= bits;
            if let Some(verdict) = j.verdict {
                self.pending.push(Pending {
                    key: key.clone(),
                    ts_ms: j.ts_ms,
                    verdict,
                    interval_ms,
                });
            }
        }
    }

    fn flush_pair(&mut self) {
        if let Some((c, t)) = self.pair.take() {
            let minutes = std::mem::take(&mut self.pair_minutes);
            self.localiser
                .add(&c, &t, minutes.into_iter().map(|(m, (o, l))| (m, o, l)));
        }
    }

    /// The run's diagnoses, localised.
    pub fn finish(mut self) -> Vec<Diagnosis> {
        self.flush_pair();
        let localiser = &self.localiser;
        self.pending
            .into_iter()
            .map(|p| {
                let v = p.verdict;
                let (scope, evidence) =
                    localiser.scope(&p.key.client_id, &p.key.target, p.ts_ms, v.label);
                let mut text = format!("{}; {evidence}", detail(&v.main));
                if !v.also.is_empty() {
                    let also: Vec<&str> = v.also.iter().map(|l| l.as_str()).collect();
                    text.push_str(&format!("; also slow or failing: {}", also.join(", ")));
                }
                Diagnosis {
                    ts_ms: p.ts_ms,
                    label: v.label,
                    scope,
                    severity: v.main.severity,
                    metric: v.main.metric,
                    observed: v.main.observed,
                    baseline: v.main.baseline,
                    score: v.main.score,
                    detail: text,
                    interval_ms: p.interval_ms,
                    key: p.key,
                }
            })
            .collect()
    }
}

/// A metric's baseline in its own unit, as stored in `baselines`.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineRow {
    pub metric: Metric,
    pub median: f64,
    pub mad: f64,
    /// Values inside [band_low, band_high] are never anomalous.
    pub band_low: f64,
    pub band_high: f64,
    pub n: u64,
}

/// The baselines of every metric `state` has learnt.
pub fn baseline_rows(state: &SeriesState, cfg: &EngineConfig) -> Vec<BaselineRow> {
    let mut out = Vec::new();
    // A window of this series is judged on about as many timings as it has baselines.
    let z = window_threshold(cfg.score.z_threshold, state.hists.len());
    for (m, h) in &state.hists {
        let Some(s) = h.summary() else { continue };
        let (abs, rel) = m.floors();
        let usual = unlog(s.median);
        let reach = z / 0.6745 * s.mad.max(cfg.score.mad_floor);
        let (lo, hi) = match m.kind() {
            Kind::Throughput => (
                unlog(s.median - reach).min(usual * (1.0 - rel)),
                unlog(s.median + reach),
            ),
            _ => (
                unlog(s.median - reach).max(0.0),
                unlog(s.median + reach)
                    .max(usual + abs)
                    .max(usual * (1.0 + rel)),
            ),
        };
        out.push(BaselineRow {
            metric: *m,
            median: usual,
            mad: s.mad,
            band_low: lo,
            band_high: hi,
            n: s.n,
        });
    }
    for (m, r) in &state.rates {
        let (abs, _) = m.floors();
        let p0 = r.p0();
        out.push(BaselineRow {
            metric: *m,
            median: p0,
            mad: 0.0,
            band_low: 0.0,
            band_high: (p0 + abs).min(1.0),
            n: r.n(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn w(minute: i64, tcp: f64, ttfb: f64) -> Window {
        Window {
            ts_ms: minute * MIN,
            count_total: 2,
            tcp_p50: Some(tcp),
            tcp_p95: Some(tcp),
            ttfb_p50: Some(ttfb),
            ttfb_p95: Some(ttfb),
            total_p50: Some(tcp + ttfb),
            total_p95: Some(tcp + ttfb),
            ..Default::default()
        }
    }

    fn labels(windows: &[Window]) -> Vec<(i64, Label)> {
        let mut state = SeriesState::default();
        judge_series(&mut state, windows, &EngineConfig::default())
            .into_iter()
            .filter_map(|j| j.verdict.map(|v| (j.ts_ms / MIN, v.label)))
            .collect()
    }

    #[test]
    fn steps_on_a_flat_series() {
        let flat: Vec<Window> = (0..120).map(|m| w(m, 18.0, 40.0)).collect();
        // +0.5 ms: nothing.
        let mut s = flat.clone();
        s.extend((120..180).map(|m| w(m, 18.5, 40.5)));
        assert_eq!(labels(&s), vec![]);
        // +200 ms connect for five minutes: connect, and only then.
        let mut s = flat.clone();
        s.extend((120..125).map(|m| w(m, 218.0, 40.0)));
        s.extend((125..140).map(|m| w(m, 18.0, 40.0)));
        let want: Vec<(i64, Label)> = (120..125).map(|m| (m, Label::Connect)).collect();
        assert_eq!(labels(&s), want);
        // +200 ms first byte: server.
        let mut s = flat;
        s.extend((120..125).map(|m| w(m, 18.0, 240.0)));
        assert!(labels(&s).iter().all(|(_, l)| *l == Label::Server));
        assert_eq!(labels(&s).len(), 5);
    }

    #[test]
    fn nothing_is_labelled_before_min_windows() {
        let mut s: Vec<Window> = (0..20).map(|m| w(m, 18.0, 40.0)).collect();
        s.push(w(20, 900.0, 40.0));
        assert_eq!(labels(&s), vec![]);
    }

    #[test]
    fn failures_count_toward_their_stage() {
        let mut s: Vec<Window> = (0..60).map(|m| w(m, 18.0, 40.0)).collect();
        for m in 60..64 {
            s.push(Window {
                ts_ms: m * MIN,
                count_total: 2,
                tcp_errors: 2,
                ..Default::default()
            });
        }
        let got = labels(&s);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got.iter().all(|(_, l)| *l == Label::Connect));
    }

    #[test]
    fn collector_localises_a_target_fault() {
        let mut c = Collector::default();
        let cfg = EngineConfig::default();
        for client in ["c1", "c2", "c3", "c4"] {
            let key = SeriesKey::new(client, "https://a/", "http", 4);
            let mut ws: Vec<Window> = (0..60).map(|m| w(m, 18.0, 40.0)).collect();
            let bad = if client == "c4" { 18.0 } else { 300.0 };
            ws.extend((60..65).map(|m| w(m, bad, 40.0)));
            let mut state = SeriesState::default();
            let judged = judge_series(&mut state, &ws, &cfg);
            c.push(&key, state.interval_ms(), judged);
        }
        let d = c.finish();
        assert_eq!(d.len(), 15);
        assert!(d
            .iter()
            .all(|d| d.scope == Scope::Target && d.label == Label::Connect));
        assert!(
            d[0].detail.contains("3 of 4 clients reporting this target"),
            "{}",
            d[0].detail
        );
    }
}

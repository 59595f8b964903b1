//! The scenario generator behind `netqoe-loadgen scenario`: N clients × M targets over a
//! period, with realistic noise and injected incidents of known label and scope, the ground
//! truth the diagnoser is judged by.
//!
//! Pure and deterministic: the entities and the incidents' placement depend on the seed, the
//! noise and the event ids on the seed and the period's end, and [`Scenario::minute`] yields
//! one minute's events at a time, so a day of events streams without being held in memory.

use std::collections::BTreeMap;
use std::time::Duration;

use netqoe_model::{Event, InjectedIncident, InterfaceType, Label, ProbeKind, Scope};
use rand::Rng;

use crate::faults::{self, Fault};
use crate::noise::{rng_of, unit};

const MINUTE_MS: i64 = 60_000;
/// Oldest the first event may be when generated, leaving an hour to send them before they
/// pass ingest's 7-day rule.
pub const MAX_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600 - 3600);

/// The example targets; more than six are named `https://svc<k>.example/`.
pub const TARGETS: [&str; 6] = [
    "https://shop.example/",
    "https://api.example/health",
    "https://cdn.example/static/app.js",
    "https://auth.example/login",
    "https://search.example/q?term=shoes",
    "https://media.example/video/seg-001.ts",
];

// stream names of the seeded generators
const ENTITIES: u64 = 1;
const INCIDENTS: u64 = 2;
const MINUTES: u64 = 3;
const SPIKES: u64 = 4;

/// What to generate.
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    pub seed: u64,
    pub clients: usize,
    pub targets: usize,
    /// Client ids are this prefix and a two-digit number or more (`client-07`).
    pub client_prefix: String,
    /// End of the period, ms since the epoch (rounded down to the minute).
    pub end_ms: i64,
    pub period: Duration,
    /// Measurement interval of an HTTP series.
    pub interval: Duration,
    /// Interval of the sparse HTTP series, one pair in `sparse_one_in` (0 = none).
    pub sparse_interval: Duration,
    pub sparse_one_in: usize,
    /// Every client pings this many target hosts (`host:443`), one round per `ping_interval`.
    pub ping_targets: usize,
    pub ping_interval: Duration,
    /// Probes per ping round.
    pub ping_count: u32,
    pub incidents: usize,
    /// No incident starts before this much of the period has passed (baselines first).
    pub warmup: Duration,
    /// Chance per series-minute of an isolated one-minute spike (not an incident).
    pub spike_rate: f64,
    /// Chance per measurement of an isolated failure (not an incident).
    pub error_rate: f64,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            seed: 1,
            clients: 40,
            targets: 6,
            client_prefix: "client-".into(),
            end_ms: netqoe_model::now_ms(),
            period: Duration::from_secs(24 * 3600),
            interval: Duration::from_secs(30),
            sparse_interval: Duration::from_secs(300),
            sparse_one_in: 5,
            ping_targets: 3,
            ping_interval: Duration::from_secs(60),
            ping_count: 10,
            incidents: 14,
            warmup: Duration::from_secs(3 * 3600),
            spike_rate: 1e-4,
            error_rate: 1e-4,
        }
    }
}

/// Why a scenario cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("invalid scenario: {0}")]
    Invalid(String),
    #[error("no room for incident {index} ({label}/{scope}) without overlapping another on the same series or label: use a longer period, a shorter warmup or fewer incidents")]
    NoRoom {
        index: usize,
        label: &'static str,
        scope: &'static str,
    },
}

/// A client's own character: distance, resolver, access link.
#[derive(Debug, Clone)]
struct Client {
    id: String,
    rtt_ms: f64,
    dns_ms: f64,
    jitter_ms: f64,
    kbps: f64,
    interface: InterfaceType,
}

/// A target's own character: server time, response size.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    host: String,
    ttfb_ms: f64,
    bytes: u64,
}

/// One series: a client measuring one target with one probe kind.
#[derive(Debug, Clone)]
pub struct Series {
    pub index: usize,
    pub client: usize,
    pub target: usize,
    pub client_id: String,
    /// The URL (http) or `host:443` (ping) as it appears in events.
    pub target_str: String,
    pub kind: ProbeKind,
    pub interval_ms: i64,
    pub offset_ms: i64,
    pub sparse: bool,
    tcp_ms: f64,
    kbps: f64,
}

/// A built scenario: entities, series and incidents, ready to yield events.
#[derive(Debug, Clone)]
pub struct Scenario {
    cfg: ScenarioConfig,
    start_ms: i64,
    end_ms: i64,
    clients: Vec<Client>,
    targets: Vec<Target>,
    series: Vec<Series>,
    incidents: Vec<faults::Placed>,
    /// Per series: (start, end, fault) of the incidents that touch it.
    active: Vec<Vec<(i64, i64, Fault)>>,
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

impl Scenario {
    pub fn new(cfg: ScenarioConfig) -> Result<Scenario, ScenarioError> {
        let bad = |m: &str| Err(ScenarioError::Invalid(m.to_string()));
        if cfg.clients < 3 || cfg.targets < 3 {
            return bad("at least 3 clients and 3 targets (a target or client scope needs 3)");
        }
        if cfg.period > MAX_PERIOD || cfg.period < Duration::from_secs(3600) {
            return bad("the period must be between 1 h and 7 days less an hour");
        }
        if cfg.ping_targets > cfg.targets {
            return bad("ping targets cannot exceed targets");
        }
        for d in [cfg.interval, cfg.sparse_interval, cfg.ping_interval] {
            if d < Duration::from_secs(1) {
                return bad("intervals must be at least 1 s");
            }
        }
        if cfg.warmup >= cfg.period {
            return bad("the warmup must be shorter than the period");
        }
        let end_ms = cfg.end_ms - cfg.end_ms.rem_euclid(MINUTE_MS);
        let start_ms = end_ms - ms(cfg.period) / MINUTE_MS * MINUTE_MS;
        let mut rng = rng_of(&[cfg.seed, ENTITIES]);
        let clients = (0..cfg.clients)
            .map(|c| Client {
                id: format!("{}{:02}", cfg.client_prefix, c + 1),
                rtt_ms: rng.random_range(10.0..40.0),
                dns_ms: rng.random_range(2.0..8.0),
                jitter_ms: rng.random_range(0.5..3.0),
                kbps: rng.random_range(20_000.0..100_000.0),
                interface: [InterfaceType::Ethernet, InterfaceType::Wifi][rng.random_range(0..2)],
            })
            .collect::<Vec<_>>();
        let targets = (0..cfg.targets)
            .map(|t| {
                let url = TARGETS
                    .get(t)
                    .map_or_else(|| format!("https://svc{t}.example/"), |u| u.to_string());
                let host = url["https://".len()..]
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .into();
                Target {
                    url,
                    host,
                    ttfb_ms: rng.random_range(30.0..100.0),
                    bytes: rng.random_range(50_000..400_000),
                }
            })
            .collect::<Vec<_>>();
        let mut series = Vec::new();
        for (c, client) in clients.iter().enumerate() {
            for (t, target) in targets.iter().enumerate() {
                let pair = c * cfg.targets + t;
                let sparse =
                    cfg.sparse_one_in > 0 && pair % cfg.sparse_one_in == cfg.sparse_one_in - 1;
                let interval_ms = ms(if sparse {
                    cfg.sparse_interval
                } else {
                    cfg.interval
                });
                series.push(Series {
                    index: series.len(),
                    client: c,
                    target: t,
                    client_id: client.id.clone(),
                    target_str: target.url.clone(),
                    kind: ProbeKind::Http,
                    interval_ms,
                    offset_ms: rng.random_range(0..interval_ms),
                    sparse,
                    tcp_ms: client.rtt_ms * rng.random_range(0.85..1.15),
                    kbps: client.kbps * rng.random_range(0.5..1.0),
                });
            }
            for k in 0..cfg.ping_targets {
                let t = (c + k) % cfg.targets;
                let interval_ms = ms(cfg.ping_interval);
                series.push(Series {
                    index: series.len(),
                    client: c,
                    target: t,
                    client_id: client.id.clone(),
                    target_str: format!("{}:443", targets[t].host),
                    kind: ProbeKind::Ping,
                    interval_ms,
                    offset_ms: rng.random_range(0..interval_ms),
                    sparse: false,
                    tcp_ms: client.rtt_ms * rng.random_range(0.85..1.15),
                    kbps: 0.0,
                });
            }
        }
        let mut rng = rng_of(&[cfg.seed, INCIDENTS]);
        let incidents = faults::place(
            &mut rng,
            cfg.incidents,
            (start_ms, end_ms, ms(cfg.warmup)),
            &series,
        )?;
        let mut active = vec![Vec::new(); series.len()];
        for p in &incidents {
            for &s in &p.series {
                active[s].push((p.truth.start_ms, p.truth.end_ms, p.fault));
            }
        }
        Ok(Scenario {
            cfg,
            start_ms,
            end_ms,
            clients,
            targets,
            series,
            incidents,
            active,
        })
    }

    /// First and last-plus-one millisecond of the period (minute-aligned).
    pub fn period_ms(&self) -> (i64, i64) {
        (self.start_ms, self.end_ms)
    }

    /// Minutes in the period; [`Scenario::minute`] takes 0 to this, exclusive.
    pub fn minutes(&self) -> i64 {
        (self.end_ms - self.start_ms) / MINUTE_MS
    }

    pub fn series(&self) -> &[Series] {
        &self.series
    }

    /// The ground truth: every injected incident, by start time.
    pub fn truth(&self) -> Vec<InjectedIncident> {
        self.incidents.iter().map(|p| p.truth.clone()).collect()
    }

    /// Measurement times of series `s` in [`from`, `to`).
    fn times(&self, s: &Series, from: i64, to: i64) -> impl Iterator<Item = i64> + use<> {
        let base = self.start_ms + s.offset_ms;
        let step = s.interval_ms;
        let k0 = (from - base + step - 1).div_euclid(step).max(0);
        let end = to.min(self.end_ms);
        (k0..)
            .map(move |k| base + k * step)
            .take_while(move |t| *t < end)
    }

    /// How many events the whole period holds.
    pub fn event_count(&self) -> u64 {
        let (from, to) = (self.start_ms, self.end_ms);
        self.series
            .iter()
            .map(|s| self.times(s, from, to).count() as u64)
            .sum()
    }

    /// The events measured in minute `m` of the period, series by series.
    pub fn minute(&self, m: i64) -> Vec<Event> {
        let from = self.start_ms + m * MINUTE_MS;
        let mut out = Vec::new();
        for s in &self.series {
            let mut times = self.times(s, from, from + MINUTE_MS).peekable();
            if times.peek().is_none() {
                continue;
            }
            let mut rng = rng_of(&[
                self.cfg.seed,
                MINUTES,
                self.end_ms as u64,
                s.index as u64,
                m as u64,
            ]);
            let spike = self.spike(s, m, from);
            for ts in times {
                let fault = self.active[s.index]
                    .iter()
                    .find(|(a, b, _)| (*a..*b).contains(&ts))
                    .map(|f| f.2);
                out.push(match s.kind {
                    ProbeKind::Ping => self.ping_event(s, ts, &mut rng, spike, fault),
                    _ => self.http_event(s, ts, &mut rng, spike, fault),
                });
            }
        }
        out
    }

    /// Whether series `s` has an isolated spike in minute `m`: never two within three minutes
    /// of each other, never within ten minutes of one of the series' incidents.
    fn spike(&self, s: &Series, m: i64, from: i64) -> bool {
        let hit =
            |m: i64| unit(&[self.cfg.seed, SPIKES, s.index as u64, m as u64]) < self.cfg.spike_rate;
        hit(m)
            && !hit(m - 1)
            && !hit(m - 2)
            && !self.active[s.index]
                .iter()
                .any(|(a, b, _)| from + MINUTE_MS > a - 10 * MINUTE_MS && from < b + 10 * MINUTE_MS)
    }

    /// Counts for the summary.
    pub fn summary(&self) -> Summary {
        let mut by_label = BTreeMap::new();
        let mut by_scope = BTreeMap::new();
        for p in &self.incidents {
            *by_label.entry(p.truth.label).or_insert(0) += 1;
            *by_scope.entry(p.truth.scope).or_insert(0) += 1;
        }
        let count = |f: &dyn Fn(&Series) -> bool| self.series.iter().filter(|s| f(s)).count();
        Summary {
            events: self.event_count(),
            series_http: count(&|s| s.kind == ProbeKind::Http && !s.sparse),
            series_http_sparse: count(&|s| s.sparse),
            series_ping: count(&|s| s.kind == ProbeKind::Ping),
            incidents: self.incidents.len(),
            by_label,
            by_scope,
        }
    }
}

/// What a scenario holds, for the printed summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub events: u64,
    pub series_http: usize,
    pub series_http_sparse: usize,
    pub series_ping: usize,
    pub incidents: usize,
    pub by_label: BTreeMap<Label, usize>,
    pub by_scope: BTreeMap<Scope, usize>,
}

#[path = "scenario_events.rs"]
mod events;

#[cfg(test)]
#[path = "scenario_tests.rs"]
mod tests;

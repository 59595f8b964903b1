//! The scenario's injected faults: what each label's fault does to a measurement, the plan of
//! label and scope pairs, and the placement of incidents in time without overlaps.
//!
//! Each fault moves the metrics of its own stage only, by several times their usual spread,
//! so the ground truth is unambiguous: a connect fault leaves DNS, TLS and first byte alone.

use netqoe_model::{ErrorStage, InjectedIncident, Label, ProbeKind, Scope};
use rand::rngs::StdRng;
use rand::Rng;

use crate::noise::lognormal;
use crate::scenario::{ScenarioError, Series};

/// One HTTP measurement before it becomes an event (times in ms, throughput in kbit/s).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSample {
    pub dns: f64,
    pub tcp: f64,
    pub tls: f64,
    pub ttfb: f64,
    pub kbps: f64,
    /// HTTP status when the request got an answer.
    pub status: u16,
    /// The failing stage, if any, and how long the stage ran before failing.
    pub fail: Option<ErrorStage>,
}

/// One round of ping probes before it becomes an event.
#[derive(Debug, Clone, PartialEq)]
pub struct PingSample {
    pub sent: u32,
    pub received: u32,
    pub rtt_avg: f64,
    pub jitter: f64,
}

/// What an injected incident does to every measurement of its series while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// DNS resolution +300 ms.
    DnsSlow,
    /// 70 % of resolutions fail (SERVFAIL after about a second).
    DnsFail,
    /// TCP connect +200 ms, 10 % of connects time out.
    ConnectSlow,
    /// TLS handshake +250 ms, 10 % of handshakes fail.
    TlsSlow,
    /// Time to first byte ×4.
    ServerSlow,
    /// Throughput ÷5 (so transfer and total time grow too).
    ThroughputLow,
    /// 70 % of requests answered 5xx (`error_stage` `http`).
    HttpErrors,
    /// Ping: 3 to 6 of 10 probes lost, jitter ×4 + 15 ms.
    Loss,
}

impl Fault {
    pub fn label(self) -> Label {
        match self {
            Fault::DnsSlow | Fault::DnsFail => Label::Dns,
            Fault::ConnectSlow => Label::Connect,
            Fault::TlsSlow => Label::Tls,
            Fault::ServerSlow => Label::Server,
            Fault::ThroughputLow => Label::Throughput,
            Fault::HttpErrors => Label::Errors,
            Fault::Loss => Label::Loss,
        }
    }

    /// The probe kind whose series show this fault.
    pub fn kind(self) -> ProbeKind {
        match self {
            Fault::Loss => ProbeKind::Ping,
            _ => ProbeKind::Http,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Fault::DnsSlow => "dns resolution +300 ms",
            Fault::DnsFail => "70 % of dns resolutions fail",
            Fault::ConnectSlow => "tcp connect +200 ms, 10 % of connects time out",
            Fault::TlsSlow => "tls handshake +250 ms, 10 % of handshakes fail",
            Fault::ServerSlow => "time to first byte x4",
            Fault::ThroughputLow => "throughput /5",
            Fault::HttpErrors => "70 % of requests answered 5xx",
            Fault::Loss => "ping loss 30-60 %, jitter x4 +15 ms",
        }
    }

    /// The fault for `label`; DNS faults are slow or failing, at the toss of a coin.
    fn for_label(label: Label, rng: &mut StdRng) -> Fault {
        match label {
            Label::Dns if rng.random_bool(0.5) => Fault::DnsFail,
            Label::Dns => Fault::DnsSlow,
            Label::Connect => Fault::ConnectSlow,
            Label::Tls => Fault::TlsSlow,
            Label::Server => Fault::ServerSlow,
            Label::Throughput => Fault::ThroughputLow,
            Label::Errors => Fault::HttpErrors,
            Label::Loss => Fault::Loss,
        }
    }

    pub fn apply_http(self, s: &mut HttpSample, rng: &mut StdRng) {
        match self {
            Fault::DnsSlow => s.dns += lognormal(rng, 300.0, 0.15),
            Fault::DnsFail if rng.random_bool(0.7) => {
                s.dns = lognormal(rng, 1000.0, 0.3);
                s.fail = Some(ErrorStage::Dns);
            }
            Fault::DnsFail => {}
            Fault::ConnectSlow if rng.random_bool(0.1) => {
                s.tcp = 3000.0;
                s.fail = Some(ErrorStage::Tcp);
            }
            Fault::ConnectSlow => s.tcp += lognormal(rng, 200.0, 0.15),
            Fault::TlsSlow if rng.random_bool(0.1) => {
                s.tls = lognormal(rng, 300.0, 0.2);
                s.fail = Some(ErrorStage::Tls);
            }
            Fault::TlsSlow => s.tls += lognormal(rng, 250.0, 0.15),
            Fault::ServerSlow => s.ttfb *= 4.0,
            Fault::ThroughputLow => s.kbps /= 5.0,
            Fault::HttpErrors if rng.random_bool(0.7) => {
                s.status = [500, 502, 503, 503][rng.random_range(0..4)];
                s.fail = Some(ErrorStage::Http);
            }
            Fault::HttpErrors | Fault::Loss => {}
        }
    }

    pub fn apply_ping(self, p: &mut PingSample, rng: &mut StdRng) {
        if self == Fault::Loss {
            let lost = rng.random_range(3..=6).min(p.sent);
            p.received = p.sent - lost;
            p.jitter = p.jitter * 4.0 + 15.0;
        }
    }
}

/// Label and scope of the k-th injected incident (cycled): the first seven cover every label
/// and every scope, the first fourteen (the default count) every label in two scopes.
pub const PLAN: [(Label, Scope); 20] = [
    (Label::Connect, Scope::Target),
    (Label::Dns, Scope::Client),
    (Label::Tls, Scope::Target),
    (Label::Server, Scope::Target),
    (Label::Throughput, Scope::Pair),
    (Label::Errors, Scope::Target),
    (Label::Loss, Scope::Client),
    (Label::Connect, Scope::Pair),
    (Label::Server, Scope::Pair),
    (Label::Dns, Scope::Target),
    (Label::Errors, Scope::Client),
    (Label::Loss, Scope::Target),
    (Label::Tls, Scope::Client),
    (Label::Throughput, Scope::Client),
    (Label::Connect, Scope::Client),
    (Label::Errors, Scope::Pair),
    (Label::Dns, Scope::Pair),
    (Label::Throughput, Scope::Target),
    (Label::Tls, Scope::Pair),
    (Label::Loss, Scope::Pair),
];

/// An incident with the series it touches.
#[derive(Debug, Clone)]
pub struct Placed {
    pub truth: InjectedIncident,
    pub fault: Fault,
    /// Indices into the scenario's series, sorted.
    pub series: Vec<usize>,
}

/// Time kept free around an incident on the same series or label (ms).
const MARGIN_MS: i64 = 20 * 60_000;
/// Time kept free at the end of the period, so every incident has ended by then (ms).
const TAIL_MS: i64 = 15 * 60_000;
/// Fewest series a target or client scope needs (SPEC §6).
const MIN_SCOPE_SERIES: usize = 3;

/// Places `count` incidents after `warmup_ms` in [`start_ms`, `end_ms`): each 10–60 whole
/// minutes, minute-aligned; two incidents overlap in time (with a margin) only when they have
/// different labels and share no series. Starts over a few times when an early incident took
/// the room a later one needs.
pub fn place(
    rng: &mut StdRng,
    count: usize,
    period: (i64, i64, i64),
    series: &[Series],
) -> Result<Vec<Placed>, ScenarioError> {
    let mut last = None;
    for _ in 0..50 {
        match place_once(rng, count, period, series) {
            Ok(placed) => return Ok(placed),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one try"))
}

fn place_once(
    rng: &mut StdRng,
    count: usize,
    period: (i64, i64, i64),
    series: &[Series],
) -> Result<Vec<Placed>, ScenarioError> {
    let mut placed: Vec<Placed> = Vec::with_capacity(count);
    for index in 0..count {
        let (label, scope) = PLAN[index % PLAN.len()];
        let mut ok = None;
        for _ in 0..500 {
            let Some(candidate) = candidate(rng, label, scope, period, series) else {
                continue;
            };
            let clash = placed.iter().any(|p| {
                p.truth.start_ms < candidate.truth.end_ms + MARGIN_MS
                    && candidate.truth.start_ms < p.truth.end_ms + MARGIN_MS
                    && (p.truth.label == label || shares(&p.series, &candidate.series))
            });
            if !clash {
                ok = Some(candidate);
                break;
            }
        }
        let Some(p) = ok else {
            return Err(ScenarioError::NoRoom {
                index,
                label: label.as_str(),
                scope: scope.as_str(),
            });
        };
        placed.push(p);
    }
    placed.sort_by_key(|p| p.truth.start_ms);
    Ok(placed)
}

fn shares(a: &[usize], b: &[usize]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
    false
}

/// A random incident of `label` and `scope`, or `None` when the entity drawn cannot carry it.
fn candidate(
    rng: &mut StdRng,
    label: Label,
    scope: Scope,
    (start_ms, end_ms, warmup_ms): (i64, i64, i64),
    series: &[Series],
) -> Option<Placed> {
    let fault = Fault::for_label(label, rng);
    let kind = fault.kind();
    let of_kind: Vec<&Series> = series.iter().filter(|s| s.kind == kind).collect();
    // the entity: one series drawn at random names the target, the client or the pair
    let pick = of_kind.get(rng.random_range(0..of_kind.len().max(1)))?;
    let (client_id, target, members): (Option<String>, Option<String>, Vec<usize>) = match scope {
        Scope::Target => (
            None,
            Some(pick.target_str.clone()),
            of_kind
                .iter()
                .filter(|s| s.target_str == pick.target_str)
                .map(|s| s.index)
                .collect(),
        ),
        Scope::Client => (
            Some(pick.client_id.clone()),
            None,
            of_kind
                .iter()
                .filter(|s| s.client_id == pick.client_id)
                .map(|s| s.index)
                .collect(),
        ),
        // a pair incident sits on a series measured every interval, not a sparse one
        Scope::Pair if pick.sparse => return None,
        Scope::Pair => (
            Some(pick.client_id.clone()),
            Some(pick.target_str.clone()),
            vec![pick.index],
        ),
    };
    if scope != Scope::Pair && members.len() < MIN_SCOPE_SERIES {
        return None;
    }
    let minutes = rng.random_range(10..=60i64);
    let first = (start_ms + warmup_ms) / 60_000;
    let last = (end_ms - TAIL_MS) / 60_000 - minutes;
    if last < first {
        return None;
    }
    let start = rng.random_range(first..=last) * 60_000;
    let end = start + minutes * 60_000;
    let place = match scope {
        Scope::Target => format!("every client of {}", pick.target_str),
        Scope::Client => format!("every target of {}", pick.client_id),
        Scope::Pair => format!("{} measuring {}", pick.client_id, pick.target_str),
    };
    let mut members = members;
    members.sort_unstable();
    Some(Placed {
        truth: InjectedIncident {
            label,
            scope,
            client_id,
            target,
            probe_kind: kind,
            start_ms: start,
            end_ms: end,
            description: format!(
                "{} on {place} ({} series, {minutes} min)",
                fault.describe(),
                members.len()
            ),
        },
        fault,
        series: members,
    })
}

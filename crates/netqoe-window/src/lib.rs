//! Mergeable one-minute window state (pure, no IO): counters, error counts by stage, and a
//! DDSketch per metric, with the percentiles derived from them.
//!
//! A window's state is a commutative monoid: merging the states of any split of its events,
//! in any order, gives the state of all of them. That is what makes late events, redeliveries
//! (after dedup) and several aggregator instances safe.
//!
//! The `agg_1m` row a window is written as is described once, in [`row`].
//!
//! Encoding of `agg_1m.sketch_state`: [`WindowState`] behind a one-byte format version,
//! always 3: the compact format of [`compact`] (sparse bins, the sketches' shared
//! configuration in one byte). Formats 1 and 2 were never written by a release. Empty bytes
//! mean an empty state.

use std::collections::BTreeMap;

use netqoe_model::{ErrorStage, Event, ProbeKind};
use sketches_ddsketch::{Config, DDSketch};

mod compact;
pub mod row;

/// Relative accuracy of every sketch. sketches-ddsketch's bins stray slightly past `alpha`,
/// so 0.5 % keeps the error of reported percentiles under the 1 % promise.
///
/// Format 3 of `sketch_state` writes this configuration as one byte meaning "the one in
/// force": changing any of these three constants needs a new format version that stores the
/// old one, or existing rows would be read with the wrong bins.
pub const SKETCH_ALPHA: f64 = 0.005;
const SKETCH_MAX_BINS: u32 = 4096;
const SKETCH_MIN_VALUE: f64 = 1e-6;
/// The compact format of [`compact`]: what `encode` writes and `decode` reads.
const FORMAT_COMPACT: u8 = 3;

/// The timing metrics of a window, in `agg_1m` column order.
pub const TIMINGS: [&str; 5] = ["dns", "tcp", "tls", "ttfb", "total"];

fn sketch() -> DDSketch {
    DDSketch::new(Config::new(SKETCH_ALPHA, SKETCH_MAX_BINS, SKETCH_MIN_VALUE))
}

/// Key of an `agg_1m` row: the series (client, target, probe kind, address family) and the
/// minute. Its order is the order rows are written in, the same in every instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowKey {
    pub client_id: String,
    pub target: String,
    pub probe_kind: ProbeKind,
    /// 4, 6, or 0 when the event does not say.
    pub ip_version: u8,
    pub window_start_ms: i64,
}

impl WindowKey {
    pub fn of(event: &Event) -> WindowKey {
        WindowKey {
            client_id: event.client_id.clone(),
            target: event.target.clone(),
            probe_kind: event.probe_kind,
            ip_version: event.ip_version(),
            window_start_ms: netqoe_model::window_start_ms(event.ts_ms),
        }
    }
}

/// Everything a window remembers about its events.
/// Its encoding is [`compact`]'s; tests compare states by their serde content.
#[derive(Clone)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct WindowState {
    pub count_total: u64,
    pub count_success: u64,
    /// Errors by stage, in [`ErrorStage::ALL`] order.
    pub errors: [u64; 6],
    /// Sketches of dns, tcp, tls, ttfb, total (ms), in [`TIMINGS`] order. The sketches are
    /// boxed so a state is cheap to move around.
    pub timings: Box<[DDSketch; 5]>,
    pub throughput: Box<DDSketch>,
    pub jitter: Box<DDSketch>,
    pub ping_sent: u64,
    pub ping_received: u64,
    /// Newest `recv_ts_ms` merged in.
    pub last_recv_ms: Option<i64>,
}

impl std::fmt::Debug for WindowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowState")
            .field("count_total", &self.count_total)
            .field("count_success", &self.count_success)
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

impl Default for WindowState {
    fn default() -> Self {
        WindowState {
            count_total: 0,
            count_success: 0,
            errors: [0; 6],
            timings: Box::new(std::array::from_fn(|_| sketch())),
            throughput: Box::new(sketch()),
            jitter: Box::new(sketch()),
            ping_sent: 0,
            ping_received: 0,
            last_recv_ms: None,
        }
    }
}

/// Percentiles and extremes of one sketch, NULL (None) when it holds no samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p05: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Which percentiles of a sketch to compute: each is a scan of its bins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub p05: bool,
    pub p50: bool,
    pub p95: bool,
    pub p99: bool,
}

impl Wanted {
    pub const NONE: Wanted = Wanted {
        p05: false,
        p50: false,
        p95: false,
        p99: false,
    };
    pub const ALL: Wanted = Wanted {
        p05: true,
        p50: true,
        p95: true,
        p99: true,
    };
    /// The `<m>_p50`, `_p95`, `_p99` columns of a timing metric.
    pub const TIMING: Wanted = Wanted {
        p05: false,
        ..Wanted::ALL
    };
    /// `throughput_p05`, `_p50`, `_p95`.
    pub const THROUGHPUT: Wanted = Wanted {
        p99: false,
        ..Wanted::ALL
    };
    /// `jitter_p50`.
    pub const MEDIAN: Wanted = Wanted {
        p05: false,
        p50: true,
        p95: false,
        p99: false,
    };
}

/// Summary of `s`: percentiles by sketches-ddsketch's rank `floor(q * (n - 1))`.
pub fn summarise(s: &DDSketch) -> Summary {
    summarise_some(s, Wanted::ALL)
}

/// Summary of `s` with only the `wanted` percentiles (the others None).
///
/// sketches-ddsketch answers `q` with the bin holding rank `floor(q * (n - 1))`, scanning the
/// bins from the lowest on every call. Percentiles that fall on one rank share one scan: in a
/// window of fewer than about 25 samples p95 and p99 are the same sample, and with one
/// sample every percentile is.
pub fn summarise_some(s: &DDSketch, wanted: Wanted) -> Summary {
    let n = s.count();
    let mut last: Option<(u64, Option<f64>)> = None;
    // Called in ascending q, so percentiles of one rank follow each other.
    let mut q = |want: bool, q: f64| {
        if !want {
            return None;
        }
        let rank = (q * (n as f64 - 1.0)) as u64;
        match last {
            Some((r, value)) if r == rank => value,
            _ => {
                let value = s.quantile(q).ok().flatten();
                last = Some((rank, value));
                value
            }
        }
    };
    Summary {
        count: n as u64,
        p05: q(wanted.p05, 0.05),
        p50: q(wanted.p50, 0.50),
        p95: q(wanted.p95, 0.95),
        p99: q(wanted.p99, 0.99),
        min: s.min(),
        max: s.max(),
    }
}

impl WindowState {
    /// Adds one event. Timings count whatever the event's outcome.
    pub fn add(&mut self, e: &Event) {
        self.count_total += 1;
        match e.error_stage {
            None => self.count_success += 1,
            Some(stage) => {
                let i = ErrorStage::ALL
                    .iter()
                    .position(|s| *s == stage)
                    .unwrap_or(0);
                self.errors[i] += 1;
            }
        }
        if let Some(t) = &e.timings {
            let values = [t.dns_ms, t.tcp_ms, t.tls_ms, t.http_ttfb_ms, t.total_ms];
            for (sketch, v) in self.timings.iter_mut().zip(values) {
                if let Some(v) = v {
                    sketch.add(v);
                }
            }
        }
        if let Some(kbps) = e.throughput_kbps {
            self.throughput.add(kbps);
        }
        if let Some(p) = &e.ping {
            self.ping_sent += u64::from(p.sent.unwrap_or(0));
            self.ping_received += u64::from(p.received.unwrap_or(0));
            if let Some(j) = p.jitter_ms {
                self.jitter.add(j);
            }
        }
        if let Some(recv) = e.recv_ts_ms {
            self.last_recv_ms = Some(self.last_recv_ms.map_or(recv, |l| l.max(recv)));
        }
    }

    /// Folds `other` into `self`; the result is the state of both sets of events.
    pub fn merge(&mut self, other: &WindowState) {
        self.count_total += other.count_total;
        self.count_success += other.count_success;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        for (a, b) in self.timings.iter_mut().zip(other.timings.iter()) {
            merge_sketch(a, b);
        }
        merge_sketch(&mut self.throughput, &other.throughput);
        merge_sketch(&mut self.jitter, &other.jitter);
        self.ping_sent += other.ping_sent;
        self.ping_received += other.ping_received;
        self.last_recv_ms = match (self.last_recv_ms, other.last_recv_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    pub fn count_error(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Errors of `stage`.
    pub fn errors_of(&self, stage: ErrorStage) -> u64 {
        let i = ErrorStage::ALL
            .iter()
            .position(|s| *s == stage)
            .unwrap_or(0);
        self.errors[i]
    }

    /// Bytes for `agg_1m.sketch_state` in format 3: exactly as long as they need to be
    /// (they are kept in the row cache). The encoding is written into a per-thread buffer
    /// that keeps its capacity, so encoding a batch's windows allocates one vector per window.
    pub fn encode(&self) -> Vec<u8> {
        thread_local! {
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUFFER.with_borrow_mut(|buf| {
            buf.clear();
            buf.push(FORMAT_COMPACT);
            compact::encode(self, buf).unwrap_or_else(|e| panic!("window state encodes: {e}"));
            buf.as_slice().to_vec()
        })
    }

    /// Reads `agg_1m.sketch_state`; empty bytes are an empty state.
    pub fn decode(bytes: &[u8]) -> Result<WindowState, StateError> {
        match bytes.split_first() {
            None => Ok(WindowState::default()),
            Some((&FORMAT_COMPACT, rest)) => Ok(compact::decode(rest)?),
            Some((&format, _)) => Err(StateError::UnknownFormat(format)),
        }
    }
}

/// Why a stored `sketch_state` cannot be read. Retrying cannot help: the events of its
/// window are sent to `QOE_DLQ` (see `quarantine`).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The leading format byte is not one this version reads.
    #[error("unknown sketch_state format version {0}")]
    UnknownFormat(u8),
    #[error("corrupt sketch_state: {0}")]
    Corrupt(#[from] compact::Error),
}

fn merge_sketch(a: &mut DDSketch, b: &DDSketch) {
    if b.count() > 0 {
        // Both sketches share one configuration, the only reason a merge can fail.
        a.merge(b).expect("sketches share a configuration");
    }
}

/// Events by window, keys in sorted order (the order rows are locked).
pub fn by_window<'a>(
    events: impl IntoIterator<Item = &'a Event>,
) -> BTreeMap<WindowKey, Vec<&'a Event>> {
    // Keyed by borrowed strings while sorting, so each window's key is allocated once.
    type Borrowed<'e> = (&'e str, &'e str, ProbeKind, u8, i64);
    let mut by_key: std::collections::HashMap<Borrowed, Vec<&Event>> =
        std::collections::HashMap::new();
    for e in events {
        let window = netqoe_model::window_start_ms(e.ts_ms);
        by_key
            .entry((
                e.client_id.as_str(),
                e.target.as_str(),
                e.probe_kind,
                e.ip_version(),
                window,
            ))
            .or_default()
            .push(e);
    }
    by_key
        .into_iter()
        .map(
            |((client_id, target, probe_kind, ip_version, window_start_ms), events)| {
                let key = WindowKey {
                    client_id: client_id.to_string(),
                    target: target.to_string(),
                    probe_kind,
                    ip_version,
                    window_start_ms,
                };
                (key, events)
            },
        )
        .collect()
}

/// Folds events into one state per window, keys in sorted order.
pub fn group<'a>(events: impl IntoIterator<Item = &'a Event>) -> BTreeMap<WindowKey, WindowState> {
    by_window(events)
        .into_iter()
        .map(|(key, events)| {
            let mut state = WindowState::default();
            for e in events {
                state.add(e);
            }
            (key, state)
        })
        .collect()
}

#[cfg(test)]
mod tests;

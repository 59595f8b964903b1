//! The `agg_1m` row a window is written as, each column described once: its name, its SQL
//! type, and how its value comes from the row's key or merged window. Pure: the aggregator
//! builds its statements and binds these values with sqlx; a rollup or a report reads the
//! same list.

use std::sync::OnceLock;

use chrono::{DateTime, TimeZone, Utc};
use netqoe_model::ErrorStage;
use sketches_ddsketch::DDSketch;

use crate::{summarise_some, Summary, Wanted, WindowState, TIMINGS};

/// One column a write of `agg_1m` sets.
#[derive(Debug)]
pub struct Column {
    pub name: String,
    /// Its SQL type, as in the migration (`bigint`, `float8`, ...).
    pub sql_type: &'static str,
    pub value: Value,
}

/// Where a column's value comes from.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    /// A part of the row's key: the conflict target, and what other statements join on.
    Key(KeyPart),
    /// A counter of the window.
    Counter(fn(&WindowState) -> u64),
    /// The window's errors of one stage.
    Errors(ErrorStage),
    /// The number of samples in one of the window's sketches.
    Samples(Metric),
    /// A statistic of one of the window's sketches (NULL when it holds no samples).
    Stat(Metric, Stat),
    /// The encoded window state (`sketch_state`, [`WindowState::encode`]).
    State,
    /// The newest receive time merged in.
    LastRecv,
    /// The version the write gives the row, which the writer's conflict action guards on.
    Version,
}

/// A part of the key of a row ([`crate::WindowKey`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPart {
    Client,
    Target,
    Kind,
    IpVersion,
    Window,
}

/// A sketch of the window whose statistics are columns named `<metric>_<stat>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// The timing of [`TIMINGS`] at this index.
    Timing(usize),
    Throughput,
    Jitter,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Timing(i) => TIMINGS[i],
            Metric::Throughput => "throughput",
            Metric::Jitter => "jitter",
        }
    }

    pub fn sketch(self, w: &WindowState) -> &DDSketch {
        match self {
            Metric::Timing(i) => &w.timings[i],
            Metric::Throughput => &w.throughput,
            Metric::Jitter => &w.jitter,
        }
    }
}

/// A statistic of a sketch stored in a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    P05,
    P50,
    P95,
    P99,
    Min,
    Max,
}

impl Stat {
    pub fn name(self) -> &'static str {
        match self {
            Stat::P05 => "p05",
            Stat::P50 => "p50",
            Stat::P95 => "p95",
            Stat::P99 => "p99",
            Stat::Min => "min",
            Stat::Max => "max",
        }
    }

    pub fn of(self, s: &Summary) -> Option<f64> {
        match self {
            Stat::P05 => s.p05,
            Stat::P50 => s.p50,
            Stat::P95 => s.p95,
            Stat::P99 => s.p99,
            Stat::Min => s.min,
            Stat::Max => s.max,
        }
    }

    fn want(self, w: &mut Wanted) {
        match self {
            Stat::P05 => w.p05 = true,
            Stat::P50 => w.p50 = true,
            Stat::P95 => w.p95 = true,
            Stat::P99 => w.p99 = true,
            Stat::Min | Stat::Max => {}
        }
    }
}

/// The columns in write order (the key first), and the metrics among them with the
/// percentiles their columns need (each percentile is a scan of the sketch's bins).
struct Table {
    columns: Vec<Column>,
    metrics: Vec<(Metric, Wanted)>,
}

/// The one description of what a write sets: adding a column is adding a line here (and to
/// a migration).
fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut columns = Vec::new();
        let mut add = |name: &str, sql_type: &'static str, value: Value| {
            let name = name.to_string();
            columns.push(Column {
                name,
                sql_type,
                value,
            });
        };
        add("client_id", "text", Value::Key(KeyPart::Client));
        add("target", "text", Value::Key(KeyPart::Target));
        add("probe_kind", "text", Value::Key(KeyPart::Kind));
        add("ip_version", "smallint", Value::Key(KeyPart::IpVersion));
        add(
            "window_start_ts",
            "timestamptz",
            Value::Key(KeyPart::Window),
        );
        add("count_total", "bigint", Value::Counter(|w| w.count_total));
        add(
            "count_success",
            "bigint",
            Value::Counter(|w| w.count_success),
        );
        add(
            "count_error",
            "bigint",
            Value::Counter(WindowState::count_error),
        );
        for stage in ErrorStage::ALL {
            let name = format!("{}_error_count", stage.as_str());
            add(&name, "bigint", Value::Errors(stage));
        }
        let mut metric = |m: Metric, stats: &[Stat]| {
            add(&format!("{}_count", m.name()), "bigint", Value::Samples(m));
            for &s in stats {
                let name = format!("{}_{}", m.name(), s.name());
                add(&name, "float8", Value::Stat(m, s));
            }
        };
        use Stat::*;
        for i in 0..TIMINGS.len() {
            metric(Metric::Timing(i), &[P50, P95, P99, Min, Max]);
        }
        metric(Metric::Throughput, &[P05, P50, P95]);
        add("ping_sent", "bigint", Value::Counter(|w| w.ping_sent));
        add(
            "ping_received",
            "bigint",
            Value::Counter(|w| w.ping_received),
        );
        add("jitter_count", "bigint", Value::Samples(Metric::Jitter));
        add("jitter_p50", "float8", Value::Stat(Metric::Jitter, P50));
        add("sketch_state", "bytea", Value::State);
        add("last_recv_ts", "timestamptz", Value::LastRecv);
        add("version", "bigint", Value::Version);

        let mut metrics: Vec<(Metric, Wanted)> = Vec::new();
        for c in &columns {
            let (m, stat) = match c.value {
                Value::Samples(m) => (m, None),
                Value::Stat(m, s) => (m, Some(s)),
                _ => continue,
            };
            let i = match metrics.iter().position(|(x, _)| *x == m) {
                Some(i) => i,
                None => {
                    metrics.push((m, Wanted::NONE));
                    metrics.len() - 1
                }
            };
            if let Some(s) = stat {
                s.want(&mut metrics[i].1);
            }
        }
        Table { columns, metrics }
    })
}

/// Every column a write of `agg_1m` sets, in write order: the key first.
pub fn columns() -> &'static [Column] {
    &table().columns
}

/// The key columns of `agg_1m`, in [`columns`] order.
pub fn key_columns() -> impl Iterator<Item = &'static Column> {
    columns()
        .iter()
        .filter(|c| matches!(c.value, Value::Key(_)))
}

/// One column's values for a set of windows.
#[derive(Debug, PartialEq)]
pub enum Values {
    /// Taken from the rows' keys by the writer.
    Key(KeyPart),
    Int(Vec<i64>),
    Float(Vec<Option<f64>>),
    Time(Vec<Option<DateTime<Utc>>>),
    /// [`WindowState::encode`] of each window, which the writer keeps by itself.
    State,
    /// Chosen by the writer.
    Version,
}

/// The values of every column of [`columns`] for `states`, in column order; each sketch's
/// percentiles are computed once, and only those its columns hold.
pub fn values(states: &[&WindowState]) -> Vec<Values> {
    let table = table();
    let summaries: Vec<(Metric, Vec<Summary>)> = table
        .metrics
        .iter()
        .map(|&(m, wanted)| {
            let sums = states.iter().map(|w| summarise_some(m.sketch(w), wanted));
            (m, sums.collect())
        })
        .collect();
    let summaries_of = |m: Metric| -> &[Summary] {
        let found = summaries.iter().find(|(x, _)| *x == m);
        found.map_or(&[], |(_, sums)| sums.as_slice())
    };
    let ints =
        |f: &dyn Fn(&WindowState) -> u64| Values::Int(states.iter().map(|w| f(w) as i64).collect());
    table
        .columns
        .iter()
        .map(|c| match c.value {
            Value::Key(part) => Values::Key(part),
            Value::Counter(f) => ints(&f),
            Value::Errors(stage) => ints(&|w| w.errors_of(stage)),
            Value::Samples(m) => {
                Values::Int(summaries_of(m).iter().map(|s| s.count as i64).collect())
            }
            Value::Stat(m, stat) => {
                Values::Float(summaries_of(m).iter().map(|s| stat.of(s)).collect())
            }
            Value::State => Values::State,
            Value::LastRecv => {
                let ms = states.iter().map(|w| w.last_recv_ms);
                Values::Time(ms.map(|ms| ms.map(time)).collect())
            }
            Value::Version => Values::Version,
        })
        .collect()
}

/// The time of `ms` since the epoch (the epoch itself if out of range, as the writer's keys).
fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_row_has_its_key_first_and_every_column_once() {
        let names: Vec<&str> = columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.len(), 5 + 3 + 6 + 5 * 6 + 4 + 4 + 2 + 1);
        let key: Vec<&str> = key_columns().map(|c| c.name.as_str()).collect();
        assert_eq!(
            key,
            [
                "client_id",
                "target",
                "probe_kind",
                "ip_version",
                "window_start_ts"
            ]
        );
        assert_eq!(&names[..5], &key[..]);
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a column is listed twice");
        for n in [
            "dns_p99",
            "total_max",
            "throughput_p05",
            "jitter_p50",
            "tls_error_count",
        ] {
            assert!(names.contains(&n), "{n}");
        }
    }

    #[test]
    fn metrics_compute_only_the_percentiles_their_columns_hold() {
        let wanted = |m| table().metrics.iter().find(|(x, _)| *x == m).unwrap().1;
        for i in 0..TIMINGS.len() {
            assert_eq!(wanted(Metric::Timing(i)), Wanted::TIMING);
        }
        assert_eq!(wanted(Metric::Throughput), Wanted::THROUGHPUT);
        assert_eq!(wanted(Metric::Jitter), Wanted::MEDIAN);
        assert_eq!(table().metrics.len(), TIMINGS.len() + 2);
    }

    #[test]
    fn values_follow_the_columns_and_come_from_the_window() {
        let mut w = WindowState {
            count_total: 3,
            count_success: 2,
            last_recv_ms: Some(1_700_000_000_123),
            ..WindowState::default()
        };
        for v in [10.0, 20.0, 30.0] {
            w.timings[0].add(v);
        }
        let values = values(&[&w]);
        assert_eq!(values.len(), columns().len());
        let of = |name: &str| {
            let i = columns().iter().position(|c| c.name == name).unwrap();
            &values[i]
        };
        assert_eq!(of("client_id"), &Values::Key(KeyPart::Client));
        assert_eq!(of("count_total"), &Values::Int(vec![3]));
        assert_eq!(of("count_error"), &Values::Int(vec![0]));
        assert_eq!(of("dns_count"), &Values::Int(vec![3]));
        assert_eq!(of("tcp_p50"), &Values::Float(vec![None]));
        let recv = Some(time(1_700_000_000_123));
        assert_eq!(of("last_recv_ts"), &Values::Time(vec![recv]));
        assert_eq!(of("sketch_state"), &Values::State);
        let Values::Float(p50) = of("dns_p50") else {
            panic!("dns_p50 is not a float column");
        };
        let p50 = p50[0].unwrap();
        assert!((p50 - 20.0).abs() <= 20.0 * 0.01, "dns_p50 {p50}");
    }
}

//! The columns of `agg_1m` a write sets, each described once (name, SQL type, how its value
//! comes from the row's key or merged window), and what is made from that list: the upsert
//! statement, the join on the key columns, and the values a batch of rows binds.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use netqoe_model::{ErrorStage, ProbeKind};
use sketches_ddsketch::DDSketch;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Postgres, Row as _};

use super::rows::{new_row_version, Row};
use super::ts;
use crate::window::{summarise_some, Summary, Wanted, WindowKey, WindowState, TIMINGS};

pub(super) type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// One column a write sets.
struct Column {
    name: String,
    /// The array type its values are bound as.
    cast: &'static str,
    value: Value,
}

/// Where a column's value comes from.
#[derive(Clone, Copy)]
enum Value {
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
    /// The encoded window state (`sketch_state`).
    State,
    /// The newest receive time merged in.
    LastRecv,
    /// The version the write gives the row, which the conflict action guards on.
    Version,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyPart {
    Client,
    Target,
    Kind,
    IpVersion,
    Window,
}

/// A sketch of the window whose statistics are columns named `<metric>_<stat>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metric {
    /// The timing of [`TIMINGS`] at this index.
    Timing(usize),
    Throughput,
    Jitter,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Timing(i) => TIMINGS[i],
            Metric::Throughput => "throughput",
            Metric::Jitter => "jitter",
        }
    }

    fn sketch(self, w: &WindowState) -> &DDSketch {
        match self {
            Metric::Timing(i) => &w.timings[i],
            Metric::Throughput => &w.throughput,
            Metric::Jitter => &w.jitter,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stat {
    P05,
    P50,
    P95,
    P99,
    Min,
    Max,
}

impl Stat {
    fn name(self) -> &'static str {
        match self {
            Stat::P05 => "p05",
            Stat::P50 => "p50",
            Stat::P95 => "p95",
            Stat::P99 => "p99",
            Stat::Min => "min",
            Stat::Max => "max",
        }
    }

    fn of(self, s: &Summary) -> Option<f64> {
        match self {
            Stat::P05 => s.p05,
            Stat::P50 => s.p50,
            Stat::P95 => s.p95,
            Stat::P99 => s.p99,
            Stat::Min => s.min,
            Stat::Max => s.max,
        }
    }
}

/// The columns in bind order (the key first), and the metrics among them with the
/// percentiles their columns need (each percentile is a scan of the sketch's bins).
struct Table {
    columns: Vec<Column>,
    metrics: Vec<(Metric, Wanted)>,
}

/// The one description of what a write sets: adding a column is adding a line here.
fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut columns = Vec::new();
        let mut add = |name: &str, cast: &'static str, value: Value| {
            columns.push(Column {
                name: name.to_string(),
                cast,
                value,
            });
        };
        add("client_id", "text[]", Value::Key(KeyPart::Client));
        add("target", "text[]", Value::Key(KeyPart::Target));
        add("probe_kind", "text[]", Value::Key(KeyPart::Kind));
        add("ip_version", "smallint[]", Value::Key(KeyPart::IpVersion));
        add(
            "window_start_ts",
            "timestamptz[]",
            Value::Key(KeyPart::Window),
        );
        add("count_total", "bigint[]", Value::Counter(|w| w.count_total));
        add(
            "count_success",
            "bigint[]",
            Value::Counter(|w| w.count_success),
        );
        add(
            "count_error",
            "bigint[]",
            Value::Counter(WindowState::count_error),
        );
        for stage in ErrorStage::ALL {
            let name = format!("{}_error_count", stage.as_str());
            add(&name, "bigint[]", Value::Errors(stage));
        }
        let mut metric = |m: Metric, stats: &[Stat]| {
            add(
                &format!("{}_count", m.name()),
                "bigint[]",
                Value::Samples(m),
            );
            for &s in stats {
                let name = format!("{}_{}", m.name(), s.name());
                add(&name, "float8[]", Value::Stat(m, s));
            }
        };
        use Stat::*;
        for i in 0..TIMINGS.len() {
            metric(Metric::Timing(i), &[P50, P95, P99, Min, Max]);
        }
        metric(Metric::Throughput, &[P05, P50, P95]);
        add("ping_sent", "bigint[]", Value::Counter(|w| w.ping_sent));
        add(
            "ping_received",
            "bigint[]",
            Value::Counter(|w| w.ping_received),
        );
        add("jitter_count", "bigint[]", Value::Samples(Metric::Jitter));
        add("jitter_p50", "float8[]", Value::Stat(Metric::Jitter, P50));
        add("sketch_state", "bytea[]", Value::State);
        add("last_recv_ts", "timestamptz[]", Value::LastRecv);
        add("version", "bigint[]", Value::Version);

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
                    let none = Wanted {
                        p05: false,
                        p50: false,
                        p95: false,
                        p99: false,
                    };
                    metrics.push((m, none));
                    metrics.len() - 1
                }
            };
            let wanted = &mut metrics[i].1;
            match stat {
                Some(P05) => wanted.p05 = true,
                Some(P50) => wanted.p50 = true,
                Some(P95) => wanted.p95 = true,
                Some(P99) => wanted.p99 = true,
                Some(Min | Max) | None => {}
            }
        }
        Table { columns, metrics }
    })
}

/// `(column, array cast)` of every column a write sets, in bind order: the key first.
pub fn columns() -> Vec<(String, &'static str)> {
    let cols = &table().columns;
    cols.iter().map(|c| (c.name.clone(), c.cast)).collect()
}

fn key_columns() -> impl Iterator<Item = &'static Column> {
    let cols = &table().columns;
    cols.iter().filter(|c| matches!(c.value, Value::Key(_)))
}

/// The upsert of [`columns`] into `table` (of `agg_1m`'s shape), with `guard` as the
/// condition of its conflict action: the aggregator's own statement, which benchmarks also run
/// unguarded against a copy of the table to measure what Postgres alone takes for the rows.
///
/// The arrays are unnested in the select list, not in `FROM UNNEST(...)`: in FROM, Postgres
/// first copies every row of all the arrays into a tuplestore and then reads it back; in the
/// select list the rows stream straight into the insert (one `ProjectSet` node, the arrays in
/// lockstep). For rows this wide that cut Postgres's CPU per event by about a tenth.
pub fn upsert_statement(table_name: &str, guard: Option<&str>) -> String {
    let cols = &table().columns;
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    let values: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!("unnest(${}::{}) AS {}", i + 1, c.cast, c.name))
        .collect();
    let key: Vec<&str> = key_columns().map(|c| c.name.as_str()).collect();
    let sets: Vec<String> = cols
        .iter()
        .filter(|c| !matches!(c.value, Value::Key(_)))
        .map(|c| format!("{n} = excluded.{n}", n = c.name))
        .collect();
    let guard = guard.map(|g| format!(" WHERE {g}")).unwrap_or_default();
    format!(
        "INSERT INTO {table_name} AS a ({names}, updated_at) \
         SELECT {values}, now() \
         ON CONFLICT ({key}) DO UPDATE SET {sets}, updated_at = now(){guard}",
        names = names.join(", "),
        key = key.join(", "),
        values = values.join(", "),
        sets = sets.join(", "),
    )
}

/// Inserts new windows and updates existing ones in one statement, in key order. The
/// conflict action only writes a row still at the version the merge started from
/// (`version - 1`), and never a row the batch took to be new (its version is the batch's
/// new-row version, bound last); a row another instance changed meanwhile, or one taken to
/// be new that exists, is left alone but locked, and not counted in the rows affected.
pub(super) fn upsert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let new_version = table().columns.len() + 1;
        upsert_statement(
            "agg_1m",
            Some(&format!(
                "a.version = excluded.version - 1 AND excluded.version <> ${new_version}"
            )),
        )
    })
}

/// Joins `agg_1m a` to the key arrays bound first by [`KeyArrays::bind_all`].
pub(super) fn join_keys() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let arrays: Vec<String> = key_columns()
            .enumerate()
            .map(|(i, c)| format!("${}::{}", i + 1, c.cast))
            .collect();
        let names: Vec<&str> = key_columns().map(|c| c.name.as_str()).collect();
        let on: Vec<String> = names.iter().map(|n| format!("a.{n} = u.{n}")).collect();
        format!(
            "JOIN UNNEST({}) AS u({}) ON {}",
            arrays.join(", "),
            names.join(", "),
            on.join(" AND ")
        )
    })
}

/// The key columns of a select of `agg_1m a`, read back by [`key_of`].
pub(super) fn key_select() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let names: Vec<String> = key_columns().map(|c| format!("a.{}", c.name)).collect();
        names.join(", ")
    })
}

/// The key of a row selected with [`key_select`]; the table's checks admit only known kinds.
pub(super) fn key_of(row: &PgRow) -> Result<WindowKey, sqlx::Error> {
    let window: DateTime<Utc> = row.try_get("window_start_ts")?;
    Ok(WindowKey {
        client_id: row.try_get("client_id")?,
        target: row.try_get("target")?,
        probe_kind: ProbeKind::parse(row.try_get("probe_kind")?).unwrap_or_default(),
        ip_version: row.try_get::<i16, _>("ip_version")? as u8,
        window_start_ms: window.timestamp_millis(),
    })
}

/// The key columns of a set of rows, one array per column.
pub(super) struct KeyArrays<'k> {
    clients: Vec<&'k str>,
    targets: Vec<&'k str>,
    kinds: Vec<&'static str>,
    ip_versions: Vec<i16>,
    windows: Vec<DateTime<Utc>>,
}

impl<'k> KeyArrays<'k> {
    pub(super) fn of(keys: impl Iterator<Item = &'k WindowKey>) -> KeyArrays<'k> {
        let mut a = KeyArrays {
            clients: Vec::new(),
            targets: Vec::new(),
            kinds: Vec::new(),
            ip_versions: Vec::new(),
            windows: Vec::new(),
        };
        for k in keys {
            a.clients.push(&k.client_id);
            a.targets.push(&k.target);
            a.kinds.push(k.probe_kind.as_str());
            a.ip_versions.push(i16::from(k.ip_version));
            a.windows.push(ts(k.window_start_ms));
        }
        a
    }

    /// Binds the array of `part` as the query's next parameter.
    fn bind<'q>(&'q self, q: Query<'q>, part: KeyPart) -> Query<'q> {
        match part {
            KeyPart::Client => q.bind(&self.clients),
            KeyPart::Target => q.bind(&self.targets),
            KeyPart::Kind => q.bind(&self.kinds),
            KeyPart::IpVersion => q.bind(&self.ip_versions),
            KeyPart::Window => q.bind(&self.windows),
        }
    }

    /// Binds every key array, in column order, as the query's next parameters: what
    /// [`join_keys`] joins on.
    pub(super) fn bind_all<'q>(&'q self, q: Query<'q>) -> Query<'q> {
        key_columns().fold(q, |q, c| match c.value {
            Value::Key(part) => self.bind(q, part),
            _ => q,
        })
    }
}

/// One column's values for a batch of rows, in [`table`] order.
enum Bound {
    Key(KeyPart),
    Int(Vec<i64>),
    Float(Vec<Option<f64>>),
    Time(Vec<Option<DateTime<Utc>>>),
    /// [`Prepared::encoded`].
    State,
    /// [`Prepared::versions`].
    Version,
}

/// Everything the upsert of a set of rows binds, computed without touching the database
/// (percentiles, encoded states, versions), so it can be done while Postgres works on
/// something else.
pub(super) struct Prepared {
    /// One entry per column.
    values: Vec<Bound>,
    pub(super) encoded: Vec<Vec<u8>>,
    pub(super) versions: Vec<i64>,
    /// The version of the rows taken to be new.
    new_version: i64,
}

impl Prepared {
    /// The bind values of `rows`' upsert; rows taken to be new get a version from `now_us`.
    pub(super) fn of(rows: &BTreeMap<WindowKey, Row>, now_us: i64) -> Prepared {
        let new_version = new_row_version(rows, now_us);
        let states: Vec<&WindowState> = rows.values().map(|r| &r.state).collect();
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
        let ints = |f: &dyn Fn(&WindowState) -> u64| {
            Bound::Int(states.iter().map(|w| f(w) as i64).collect())
        };
        let values = table
            .columns
            .iter()
            .map(|c| match c.value {
                Value::Key(part) => Bound::Key(part),
                Value::Counter(f) => ints(&f),
                Value::Errors(stage) => ints(&|w| w.errors_of(stage)),
                Value::Samples(m) => {
                    Bound::Int(summaries_of(m).iter().map(|s| s.count as i64).collect())
                }
                Value::Stat(m, stat) => {
                    Bound::Float(summaries_of(m).iter().map(|s| stat.of(s)).collect())
                }
                Value::State => Bound::State,
                Value::LastRecv => {
                    Bound::Time(states.iter().map(|w| w.last_recv_ms.map(ts)).collect())
                }
                Value::Version => Bound::Version,
            })
            .collect();
        Prepared {
            values,
            encoded: states.iter().map(|w| w.encode()).collect(),
            versions: rows.values().map(|r| r.next_version(new_version)).collect(),
            new_version,
        }
    }

    /// The upsert of the rows of `keys` (those `self` was prepared from, in order).
    pub(super) fn bind<'q>(&'q self, keys: &'q KeyArrays<'_>) -> Query<'q> {
        let mut q = sqlx::query(upsert_sql());
        for values in &self.values {
            q = match values {
                Bound::Key(part) => keys.bind(q, *part),
                Bound::Int(v) => q.bind(v),
                Bound::Float(v) => q.bind(v),
                Bound::Time(v) => q.bind(v),
                Bound::State => q.bind(&self.encoded),
                Bound::Version => q.bind(&self.versions),
            };
        }
        q.bind(self.new_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_binds_every_column_once_and_guards_on_the_version() {
        let sql = upsert_sql();
        let cols = columns();
        let key_len = key_columns().count();
        assert_eq!(key_len, 5);
        assert_eq!(cols.len(), 5 + 3 + 6 + 5 * 6 + 4 + 4 + 2 + 1);
        assert!(sql.contains(&format!("unnest(${}::bigint[]) AS version", cols.len())));
        assert!(!sql.contains(&format!("${}", cols.len() + 2)));
        for (name, _) in &cols[key_len..] {
            assert!(sql.contains(&format!("{name} = excluded.{name}")), "{name}");
        }
        for (name, _) in &cols[..key_len] {
            assert!(
                !sql.contains(&format!("{name} = excluded.{name}")),
                "{name}"
            );
        }
        assert!(sql
            .contains("ON CONFLICT (client_id, target, probe_kind, ip_version, window_start_ts)"));
        assert!(sql.contains(&format!(
            "WHERE a.version = excluded.version - 1 AND excluded.version <> ${}",
            cols.len() + 1
        )));
    }

    #[test]
    fn every_column_has_one_value_and_metrics_compute_only_their_percentiles() {
        let rows: BTreeMap<WindowKey, Row> = BTreeMap::new();
        assert_eq!(Prepared::of(&rows, 1).values.len(), columns().len());
        let wanted = |m| table().metrics.iter().find(|(x, _)| *x == m).unwrap().1;
        let flags = |w: Wanted| (w.p05, w.p50, w.p95, w.p99);
        for i in 0..TIMINGS.len() {
            let timing = flags(wanted(Metric::Timing(i)));
            assert_eq!(timing, flags(Wanted::TIMING));
        }
        assert_eq!(flags(wanted(Metric::Throughput)), flags(Wanted::THROUGHPUT));
        assert_eq!(flags(wanted(Metric::Jitter)), flags(Wanted::MEDIAN));
        assert_eq!(table().metrics.len(), TIMINGS.len() + 2);
        assert_eq!(
            join_keys(),
            "JOIN UNNEST($1::text[], $2::text[], $3::text[], $4::smallint[], \
             $5::timestamptz[]) AS u(client_id, target, probe_kind, ip_version, \
             window_start_ts) ON a.client_id = u.client_id AND a.target = u.target \
             AND a.probe_kind = u.probe_kind AND a.ip_version = u.ip_version \
             AND a.window_start_ts = u.window_start_ts"
        );
    }
}

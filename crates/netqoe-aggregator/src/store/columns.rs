//! The SQL of `agg_1m` writes made from the one column description
//! ([`crate::window::row`]): the upsert statement, the join on the key columns, and binding
//! a batch of rows' values with sqlx.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use netqoe_model::ProbeKind;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Postgres, Row as _};

use super::rows::{new_row_version, Row};
use super::ts;
use crate::window::row::{self, key_columns, Column, KeyPart, Value, Values};
use crate::window::{WindowKey, WindowState};

pub(super) type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// `(column, array cast)` of every column a write sets, in bind order: the key first.
pub fn columns() -> Vec<(String, String)> {
    let cols = row::columns().iter();
    cols.map(|c| (c.name.clone(), cast(c))).collect()
}

/// The array type a column's values are bound as.
fn cast(c: &Column) -> String {
    format!("{}[]", c.sql_type)
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
    let cols = row::columns();
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    let values: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!("unnest(${}::{}) AS {}", i + 1, cast(c), c.name))
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
        let new_version = row::columns().len() + 1;
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
            .map(|(i, c)| format!("${}::{}", i + 1, cast(c)))
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

/// Everything the upsert of a set of rows binds, computed without touching the database
/// (percentiles, encoded states, versions), so it can be done while Postgres works on
/// something else.
pub(super) struct Prepared {
    /// One entry per column, in [`row::columns`] order.
    values: Vec<Values>,
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
        let values = row::values(&states);
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
                Values::Key(part) => keys.bind(q, *part),
                Values::Int(v) => q.bind(v),
                Values::Float(v) => q.bind(v),
                Values::Time(v) => q.bind(v),
                Values::State => q.bind(&self.encoded),
                Values::Version => q.bind(&self.versions),
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
    fn every_column_is_bound_once_and_the_key_join_follows_the_key_columns() {
        let rows: BTreeMap<WindowKey, Row> = BTreeMap::new();
        assert_eq!(Prepared::of(&rows, 1).values.len(), columns().len());
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

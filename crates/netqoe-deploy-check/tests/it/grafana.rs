//! deploy/grafana: every panel uses a provisioned datasource, every metric the dashboards
//! name is documented and declared, and every SQL query (panels and variables) runs against
//! a freshly migrated database with Grafana's macros and the variables filled in.

use std::collections::BTreeSet;

use anyhow::{bail, ensure, Context, Result};
use netqoe_deploy_check::{ensure_metrics_exist, metric_names_in, read, yaml_documents};
use serde_json::Value;
use sqlx::{Column, Row};

const DASHBOARDS: [&str; 2] = [
    "deploy/grafana/dashboards/netqoe-pipeline.json",
    "deploy/grafana/dashboards/netqoe-qoe.json",
];
const FROM: &str = "2026-12-04T00:00:00Z";
const TO: &str = "2026-12-05T00:00:00Z";

fn dashboard(path: &str) -> Result<Value> {
    serde_json::from_str(&read(path)?).with_context(|| format!("{path} is not JSON"))
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// (panel title, target) of every query target.
fn targets(d: &Value) -> Vec<(String, &Value)> {
    panels(d)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t))
        })
        .collect()
}

#[test]
fn every_panel_uses_a_provisioned_datasource() -> Result<()> {
    let prov = &yaml_documents(&read("deploy/grafana/provisioning/datasources/netqoe.yml")?)?[0];
    let uids: BTreeSet<&str> = prov["datasources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["uid"].as_str())
        .collect();
    for path in DASHBOARDS {
        let d = dashboard(path)?;
        ensure!(!targets(&d).is_empty(), "{path} has no query");
        for p in panels(&d).into_iter().filter(|p| p["type"] != "row") {
            let uid = p["datasource"]["uid"].as_str().unwrap_or_default();
            ensure!(
                uids.contains(uid),
                "{path}: panel {} uses datasource {uid:?}",
                p["title"]
            );
        }
        for (title, t) in targets(&d) {
            let uid = t["datasource"]["uid"].as_str().unwrap_or_default();
            ensure!(
                uids.contains(uid),
                "{path}: {title}: query datasource {uid:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn every_metric_in_the_dashboards_exists() -> Result<()> {
    let mut used = BTreeSet::new();
    for path in DASHBOARDS {
        for (_, t) in targets(&dashboard(path)?) {
            used.extend(metric_names_in(t["expr"].as_str().unwrap_or_default()));
        }
    }
    ensure!(used.len() >= 30, "the dashboards name only {used:?}");
    ensure_metrics_exist("dashboards", &used)
}

/// Arguments of the macro call starting at `s` (just after its opening parenthesis), and
/// the rest after the closing one.
fn macro_args(s: &str) -> Result<(Vec<String>, &str)> {
    let end = s.find(')').context("unclosed macro")?;
    let args = s[..end]
        .split(',')
        .map(|a| a.trim().trim_matches('\'').to_string())
        .filter(|a| !a.is_empty())
        .collect();
    Ok((args, &s[end + 1..]))
}

fn interval_seconds(i: &str) -> Result<u64> {
    let (n, unit) = i.split_at(i.len() - 1);
    let n: u64 = n.parse().with_context(|| format!("interval {i}"))?;
    Ok(match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!("interval {i}"),
    })
}

/// The SQL Grafana's PostgreSQL datasource sends: macros expanded, multi-value variables as
/// quoted lists.
fn expand(sql: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$__timeFilter(") {
            let (a, r) = macro_args(t)?;
            out.push_str(&format!("{} BETWEEN '{FROM}' AND '{TO}'", a[0]));
            rest = r;
        } else if let Some(t) = tail.strip_prefix("$__timeGroupAlias(") {
            let (a, r) = macro_args(t)?;
            let s = interval_seconds(&a[1])?;
            out.push_str(&format!(
                "floor(extract(epoch from {})/{s})*{s} AS \"time\"",
                a[0]
            ));
            rest = r;
        } else if let Some(t) = tail.strip_prefix("$__timeFrom()") {
            out.push_str(&format!("'{FROM}'"));
            rest = t;
        } else if let Some(t) = tail.strip_prefix("$__timeTo()") {
            out.push_str(&format!("'{TO}'"));
            rest = t;
        } else if let Some(t) = tail.strip_prefix("$client") {
            out.push_str("'edge-1','edge-2'");
            rest = t;
        } else if let Some(t) = tail.strip_prefix("$target") {
            out.push_str("'https://www.example.com/','example.com:443'");
            rest = t;
        } else if let Some(t) = tail.strip_prefix("$kind") {
            out.push_str("'http','ping'");
            rest = t;
        } else {
            bail!(
                "unknown macro or variable at {:?}",
                &tail[..tail.len().min(30)]
            );
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// One window of two series, one diagnosis, one open incident and the watermark.
const SAMPLE: &[&str] = &[
    "INSERT INTO agg_1m (client_id, target, probe_kind, ip_version, window_start_ts, count_total, count_success, count_error,
       dns_error_count, dns_count, dns_p50, dns_p95, dns_p99, tcp_count, tcp_p50, tcp_p95, tcp_p99, tls_count, tls_p50, tls_p95, tls_p99,
       ttfb_count, ttfb_p50, ttfb_p95, ttfb_p99, total_count, total_p50, total_p95, total_p99,
       throughput_count, throughput_p05, throughput_p50, throughput_p95, sketch_state, diagnosis_label)
     VALUES ('edge-1', 'https://www.example.com/', 'http', 4, '2026-12-04T10:00:00Z', 3, 2, 1, 1, 3, 5, 9, 9, 2, 10, 12, 12, 2, 20, 25, 25,
       2, 40, 80, 80, 2, 100, 150, 150, 2, 900, 1500, 1800, '\\x00', 'dns')",
    "INSERT INTO agg_1m (client_id, target, probe_kind, ip_version, window_start_ts, count_total, count_success, ping_sent, ping_received, jitter_count, jitter_p50, sketch_state)
     VALUES ('edge-2', 'example.com:443', 'ping', 0, '2026-12-04T10:00:00Z', 1, 1, 5, 4, 1, 2.5, '\\x00')",
    "INSERT INTO diagnoses (client_id, target, probe_kind, ip_version, window_start_ts, label, scope, severity, metric, observed, baseline, score, detail, interval_s)
     VALUES ('edge-1', 'https://www.example.com/', 'http', 4, '2026-12-04T10:00:00Z', 'dns', 'pair', 'major', 'dns_p95', 9, 3, 6.1, 'dns slow', 60)",
    "INSERT INTO incidents (label, scope, client_id, target, started_at, ended_at, open, peak_severity, windows, series, summary)
     VALUES ('dns', 'pair', 'edge-1', 'https://www.example.com/', '2026-12-04T10:00:00Z', '2026-12-04T10:03:00Z', true, 'major', 3, 1, 'dns slow')",
    "INSERT INTO diagnoser_watermark (name, watermark, last_run_at) VALUES ('default', '2026-12-04T10:00:00Z', now())",
];

#[tokio::test]
async fn every_dashboard_query_runs_against_the_migrated_schema() -> Result<()> {
    let pg = netqoe_test_support::PgServer::start()?;
    let url = pg.url("netqoe");
    netqoe_db::ensure_database(&url).await?;
    let pool = netqoe_db::connect(&url, &netqoe_db::PoolConfig::default()).await?;
    netqoe_db::migrate(&pool).await?;
    for stmt in SAMPLE {
        sqlx::query(stmt)
            .execute(&pool)
            .await
            .with_context(|| format!("sample row: {stmt}"))?;
    }
    let d = dashboard("deploy/grafana/dashboards/netqoe-qoe.json")?;
    let mut queries: Vec<(String, String, String)> = targets(&d)
        .into_iter()
        .filter(|(_, t)| t["datasource"]["uid"] == "netqoe-postgres")
        .map(|(title, t)| {
            (
                title,
                t["rawSql"].as_str().unwrap_or_default().to_string(),
                t["format"].as_str().unwrap_or("table").to_string(),
            )
        })
        .collect();
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        queries.push((
            format!("variable {}", v["name"]),
            v["query"].as_str().unwrap_or_default().to_string(),
            "table".into(),
        ));
    }
    ensure!(queries.len() >= 12, "only {} SQL queries", queries.len());
    for (title, raw, format) in queries {
        ensure!(!raw.trim().is_empty(), "{title}: empty SQL");
        let sql = expand(&raw)?;
        let rows = sqlx::query(&sql)
            .fetch_all(&pool)
            .await
            .with_context(|| format!("{title}: query failed:\n{sql}"))?;
        ensure!(
            !rows.is_empty(),
            "{title}: no row from the sample data:\n{sql}"
        );
        if format == "time_series" {
            let columns: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
            ensure!(
                columns.contains(&"time"),
                "{title}: a time series needs a time column, has {columns:?}"
            );
        }
    }
    Ok(())
}

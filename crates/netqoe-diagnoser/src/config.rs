//! Command line (clap, every flag with its `NETQOE_DIAGNOSER_*` variable) and run settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use netqoe_common::{DbArgs, LogArgs};

use crate::engine::EngineConfig;
use crate::score::ScoreConfig;

#[derive(Debug, Parser)]
#[command(
    name = "netqoe-diagnoser",
    version,
    about = "Learns per-series baselines from agg_1m, labels anomalous windows by stage, localises them and groups incidents",
    long_about = "`run` judges every window newer than the stored watermark and exits (or keeps \
going with --every); `report` shows open and recent incidents and the worst series; `evaluate` \
scores the stored incidents against a scenario's ground truth. Exit codes: 0 ok, 1 failure, \
2 usage, 3 configuration, 4 database unreachable, 5 evaluation below its thresholds."
)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Judge new windows (or a range) and update diagnoses, incidents and baselines.
    Run(RunArgs),
    /// Open and recent incidents and the worst series, as a table, JSON or an HTML page.
    Report(ReportArgs),
    /// Score the stored incidents against a ground-truth file (JSON array of injected incidents).
    Evaluate(EvaluateArgs),
    /// Create the database if missing and apply pending migrations, then exit.
    Migrate,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Keep running, one run every this long (with /metrics and SIGTERM); default: once.
    #[arg(long, env = "NETQOE_DIAGNOSER_EVERY", value_parser = humantime::parse_duration)]
    pub every: Option<Duration>,
    /// Re-diagnose windows from this time (RFC 3339, or an age such as 6h), replacing what the
    /// range held.
    #[arg(long, env = "NETQOE_DIAGNOSER_SINCE")]
    pub since: Option<String>,
    /// End (exclusive) of the re-diagnosed range (RFC 3339 or an age); default: now.
    #[arg(long, env = "NETQOE_DIAGNOSER_UNTIL", requires = "since")]
    pub until: Option<String>,
    /// Baseline windows a metric needs before any window can be labelled.
    #[arg(long, env = "NETQOE_DIAGNOSER_MIN_WINDOWS", default_value_t = 30)]
    pub min_windows: u64,
    /// Anomalous minutes a group needs to become an incident.
    #[arg(
        long,
        env = "NETQOE_DIAGNOSER_MIN_INCIDENT_WINDOWS",
        default_value_t = 3
    )]
    pub min_incident_windows: usize,
    /// Trailing window of the baselines: a sample's weight halves every third of it.
    #[arg(long, env = "NETQOE_DIAGNOSER_BASELINE_WINDOW", default_value = "7d", value_parser = humantime::parse_duration)]
    pub baseline_window: Duration,
    /// Modified z-score (log scale) above which a timing or throughput is anomalous.
    #[arg(long, env = "NETQOE_DIAGNOSER_Z_THRESHOLD", default_value_t = 3.5)]
    pub z_threshold: f64,
    /// Largest probability of a window's failures under the usual failure rate to be anomalous.
    #[arg(long, env = "NETQOE_DIAGNOSER_ALPHA", default_value_t = 1e-3)]
    pub alpha: f64,
    /// Windows rewritten by late events within this long before the watermark are judged again.
    #[arg(long, env = "NETQOE_DIAGNOSER_LOOKBACK", default_value = "15m", value_parser = humantime::parse_duration)]
    pub lookback: Duration,
    /// Address of /metrics while running with --every.
    #[arg(
        long,
        env = "NETQOE_DIAGNOSER_METRICS_LISTEN",
        default_value = "0.0.0.0:9104"
    )]
    pub metrics_listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Html,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Incidents and series of this period (an age such as 24h, or RFC 3339).
    #[arg(long, env = "NETQOE_DIAGNOSER_REPORT_SINCE", default_value = "24h")]
    pub since: String,
    /// Only this client.
    #[arg(long, env = "NETQOE_DIAGNOSER_REPORT_CLIENT")]
    pub client: Option<String>,
    /// Only this target.
    #[arg(long, env = "NETQOE_DIAGNOSER_REPORT_TARGET")]
    pub target: Option<String>,
    #[arg(long, env = "NETQOE_DIAGNOSER_REPORT_FORMAT", value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write here instead of stdout.
    #[arg(long, env = "NETQOE_DIAGNOSER_REPORT_OUTPUT")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct EvaluateArgs {
    /// Ground truth: a JSON array of injected incidents.
    #[arg(long, env = "NETQOE_DIAGNOSER_TRUTH")]
    pub truth: PathBuf,
    #[arg(long, env = "NETQOE_DIAGNOSER_MIN_PRECISION", default_value_t = 0.9)]
    pub min_precision: f64,
    #[arg(long, env = "NETQOE_DIAGNOSER_MIN_RECALL", default_value_t = 0.9)]
    pub min_recall: f64,
    #[arg(long, env = "NETQOE_DIAGNOSER_MIN_LOCALISATION", default_value_t = 0.9)]
    pub min_localisation: f64,
    /// Most anomalous minutes outside the truth per 1000 healthy series-minutes.
    #[arg(
        long,
        env = "NETQOE_DIAGNOSER_MAX_FALSE_PER_1000",
        default_value_t = 1.0
    )]
    pub max_false_per_1000: f64,
    /// Print the scores as JSON instead of a table.
    #[arg(long, env = "NETQOE_DIAGNOSER_EVALUATE_JSON")]
    pub json: bool,
    /// Leave the incidents and windows of this target out of the scores (repeatable, or
    /// comma-separated): real probes measuring beside a generated scenario.
    #[arg(
        long = "exclude-target",
        env = "NETQOE_DIAGNOSER_EXCLUDE_TARGETS",
        value_delimiter = ','
    )]
    pub exclude_targets: Vec<String>,
}

/// Validated settings of `run`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub engine: EngineConfig,
    pub min_incident_windows: usize,
    pub every: Option<Duration>,
    /// Re-diagnosed range, ms since the epoch (`until` exclusive).
    pub range: Option<(i64, i64)>,
    pub lookback_ms: i64,
}

impl Settings {
    pub fn from_args(a: &RunArgs, now_ms: i64) -> Result<Settings, String> {
        if a.min_windows < 3 {
            return Err("--min-windows must be at least 3".into());
        }
        if a.min_incident_windows == 0 {
            return Err("--min-incident-windows must be at least 1".into());
        }
        if a.z_threshold.is_nan() || a.z_threshold <= 0.0 {
            return Err("--z-threshold must be positive".into());
        }
        if a.alpha.is_nan() || a.alpha <= 0.0 || a.alpha >= 1.0 {
            return Err("--alpha must be between 0 and 1".into());
        }
        if a.baseline_window < Duration::from_secs(3600) {
            return Err("--baseline-window must be at least 1h".into());
        }
        if a.every.is_some_and(|e| e < Duration::from_secs(1)) {
            return Err("--every must be at least 1s".into());
        }
        let range = match &a.since {
            None => None,
            Some(s) => {
                let from = parse_time(s, now_ms)?;
                let until = match &a.until {
                    Some(u) => parse_time(u, now_ms)?,
                    None => now_ms + 60_000,
                };
                if until <= from {
                    return Err("--until must be after --since".into());
                }
                Some((from, until))
            }
        };
        if range.is_some() && a.every.is_some() {
            return Err("--since re-diagnoses a range once; it cannot go with --every".into());
        }
        Ok(Settings {
            engine: EngineConfig {
                score: ScoreConfig {
                    z_threshold: a.z_threshold,
                    alpha: a.alpha,
                    ..ScoreConfig::default()
                },
                min_windows: a.min_windows,
                half_life_ms: a.baseline_window.as_millis() as f64 / 3.0,
            },
            min_incident_windows: a.min_incident_windows,
            every: a.every,
            range,
            lookback_ms: a.lookback.as_millis() as i64,
        })
    }
}

/// An RFC 3339 time, or an age before `now_ms` such as `24h` or `90m`, in ms since the epoch.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc).timestamp_millis());
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(now_ms - d.as_millis() as i64),
        Err(_) => Err(format!(
            "`{s}` is neither an RFC 3339 time nor an age such as 24h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["netqoe-diagnoser", "run"];
        argv.extend(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn defaults_and_validation() {
        let s = Settings::from_args(&args(&[]), 0).unwrap();
        assert_eq!(s.engine.min_windows, 30);
        assert_eq!(s.min_incident_windows, 3);
        assert_eq!(s.range, None);
        let now = 10 * 86_400_000;
        let s = Settings::from_args(&args(&["--since", "2h"]), now).unwrap();
        assert_eq!(s.range, Some((now - 7_200_000, now + 60_000)));
        let s = Settings::from_args(
            &args(&[
                "--since",
                "1970-01-01T00:00:00Z",
                "--until",
                "1970-01-01T01:00:00Z",
            ]),
            now,
        )
        .unwrap();
        assert_eq!(s.range, Some((0, 3_600_000)));
        assert!(Settings::from_args(&args(&["--min-windows", "1"]), 0).is_err());
        assert!(Settings::from_args(&args(&["--since", "yesterday"]), 0).is_err());
        assert!(Settings::from_args(&args(&["--since", "1h", "--every", "60s"]), 0).is_err());
    }
}

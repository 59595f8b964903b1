//! Command line of `netqoe-aggregator` (clap, every flag with its `NETQOE_AGGREGATOR_*`
//! variable) and the validated settings `run` works with; each default is declared once,
//! below, for both.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use netqoe_common::{DbArgs, LogArgs, NatsArgs};

/// Default `--batch-size`.
pub const DEFAULT_BATCH_SIZE: usize = 2000;
/// Default `--max-commit-events`.
pub const DEFAULT_MAX_COMMIT_EVENTS: usize = 20_000;
/// Default `--row-cache`.
pub const DEFAULT_ROW_CACHE: usize = 50_000;
/// Default `--commit-parallelism`.
pub const DEFAULT_COMMIT_PARALLELISM: usize = 1;
/// Default `--fetch-wait`.
pub const DEFAULT_FETCH_WAIT: Duration = Duration::from_millis(250);
/// Default `--max-backoff`.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Default `--db-connections`.
pub const DEFAULT_DB_CONNECTIONS: u32 = 4;
/// Default `--seen-retention`: the `max_age` of `QOE_EVENTS` (7 days).
pub const DEFAULT_SEEN_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// Default `--retention-interval`.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(600);

netqoe_nats::provision_args! {
    /// Provisioning of QOE_EVENTS, QOE_DLQ and the `aggregator` consumer at start
    /// (`NETQOE_AGGREGATOR_NO_PROVISION`, `NETQOE_AGGREGATOR_STREAM_*`).
    pub struct ProvisionArgs, env_prefix = "NETQOE_AGGREGATOR_"
}

#[derive(Debug, Parser)]
#[command(
    name = "netqoe-aggregator",
    version,
    about = "Consumes QOE_EVENTS and merges events exactly once into one-minute windows in Postgres",
    long_about = "Without a subcommand, runs the consumer (same as `run`). Each fetched batch is \
merged in one Postgres transaction and acknowledged only after it commits; undecodable or \
invalid messages go to QOE_DLQ. Exit codes: 0 ok, 1 failure, 2 usage, 3 configuration, 4 dependency or address unavailable."
)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume QOE_EVENTS into agg_1m until SIGTERM (the default).
    Run,
    /// Create the database if missing and apply pending migrations (safe to repeat), then exit.
    Migrate,
    /// Inspect or replay the dead-letter stream QOE_DLQ.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter: stream sequence, original subject, reason, delivery count.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Republish dead letters to their original subjects and remove them from QOE_DLQ.
    Replay {
        /// Replay every dead letter.
        #[arg(long, conflicts_with = "seq", required_unless_present = "seq")]
        all: bool,
        /// Replay the dead letter with this stream sequence.
        #[arg(long)]
        seq: Option<u64>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        global = true,
        env = "NETQOE_AGGREGATOR_METRICS_LISTEN",
        default_value = "0.0.0.0:9102"
    )]
    pub metrics_listen: SocketAddr,
    /// Messages fetched and committed per transaction.
    #[arg(
        long,
        global = true,
        env = "NETQOE_AGGREGATOR_BATCH_SIZE",
        default_value_t = DEFAULT_BATCH_SIZE
    )]
    pub batch_size: usize,
    /// While a backlog drains (fetches come back full), consecutive batches are merged into
    /// one transaction of at most this many events, waiting up to --fetch-wait for each next
    /// batch (fewer reads and writes of windows they share).
    #[arg(
        long,
        global = true,
        env = "NETQOE_AGGREGATOR_MAX_COMMIT_EVENTS",
        default_value_t = DEFAULT_MAX_COMMIT_EVENTS
    )]
    pub max_commit_events: usize,
    /// Windows whose last write this instance keeps in memory (a few hundred bytes each) so
    /// the next batch touching them skips reading them; a window not in it is written as new
    /// without a read, and read only if it turns out to exist. Every write is checked against
    /// the row's version. 0 turns the cache off (every window is read first).
    #[arg(
        long,
        global = true,
        env = "NETQOE_AGGREGATOR_ROW_CACHE",
        default_value_t = DEFAULT_ROW_CACHE
    )]
    pub row_cache: usize,
    /// Transactions committed side by side, each on its own share of the windows (split by
    /// client and target, so they never wait for each other). Needs as many
    /// --db-connections. More than one helps only when Postgres has cores to spare: on a
    /// host shared with Postgres and nats-server it costs more CPU per event.
    #[arg(
        long,
        global = true,
        env = "NETQOE_AGGREGATOR_COMMIT_PARALLELISM",
        default_value_t = DEFAULT_COMMIT_PARALLELISM
    )]
    pub commit_parallelism: usize,
    /// Longest wait for a batch to fill before processing what arrived.
    #[arg(long, global = true, env = "NETQOE_AGGREGATOR_FETCH_WAIT", default_value_t = DEFAULT_FETCH_WAIT.into())]
    pub fetch_wait: humantime::Duration,
    /// Longest pause between retries while NATS or Postgres is unavailable.
    #[arg(long, global = true, env = "NETQOE_AGGREGATOR_MAX_BACKOFF", default_value_t = DEFAULT_MAX_BACKOFF.into())]
    pub max_backoff: humantime::Duration,
    /// Postgres connections.
    #[arg(
        long,
        global = true,
        env = "NETQOE_AGGREGATOR_DB_CONNECTIONS",
        default_value_t = DEFAULT_DB_CONNECTIONS
    )]
    pub db_connections: u32,
    #[command(flatten)]
    pub provision: ProvisionArgs,
    /// Keep event ids in events_seen this long, plus 10 minutes (a row goes once both its
    /// seen_at and its ts_ms are older). At least the max_age of QOE_EVENTS: a shorter one
    /// refuses to start.
    #[arg(long, global = true, env = "NETQOE_AGGREGATOR_SEEN_RETENTION", default_value_t = DEFAULT_SEEN_RETENTION.into())]
    pub seen_retention: humantime::Duration,
    /// Delete agg_1m windows older than this (default: keep forever).
    #[arg(long, global = true, env = "NETQOE_AGGREGATOR_AGG_RETENTION", value_parser = humantime::parse_duration)]
    pub agg_retention: Option<Duration>,
    /// How often retention runs.
    #[arg(long, global = true, env = "NETQOE_AGGREGATOR_RETENTION_INTERVAL", default_value_t = DEFAULT_RETENTION_INTERVAL.into())]
    pub retention_interval: humantime::Duration,
}

/// Everything `run` needs besides its IO handles: the command line, validated, or
/// [`Settings::new`] with the command line's defaults (tests, embedding).
#[derive(Debug, Clone)]
pub struct Settings {
    pub nats_url: String,
    pub batch_size: usize,
    /// Upper bound of events merged into one transaction when batches have queued up.
    pub max_commit_events: usize,
    /// Transactions committed side by side, each on its own share of the windows.
    pub commit_parallelism: usize,
    /// Windows whose last write is kept in memory to skip reading them again (0: off).
    pub row_cache: usize,
    pub fetch_wait: Duration,
    pub max_backoff: Duration,
    pub provision: bool,
    pub provision_options: netqoe_nats::ProvisionOptions,
    pub seen_retention: Duration,
    pub agg_retention: Option<Duration>,
    pub retention_interval: Duration,
}

impl Settings {
    /// Defaults of the command line for `nats_url`.
    pub fn new(nats_url: &str) -> Settings {
        Settings {
            nats_url: nats_url.to_string(),
            batch_size: DEFAULT_BATCH_SIZE,
            max_commit_events: DEFAULT_MAX_COMMIT_EVENTS,
            row_cache: DEFAULT_ROW_CACHE,
            commit_parallelism: DEFAULT_COMMIT_PARALLELISM,
            fetch_wait: DEFAULT_FETCH_WAIT,
            max_backoff: DEFAULT_MAX_BACKOFF,
            provision: true,
            provision_options: Default::default(),
            seen_retention: DEFAULT_SEEN_RETENTION,
            agg_retention: None,
            retention_interval: DEFAULT_RETENTION_INTERVAL,
        }
    }

    /// Settings from the flags of `run` (counts of zero are taken as 1).
    pub fn from_cli(nats_url: &str, a: &RunArgs) -> Settings {
        Settings {
            batch_size: a.batch_size.max(1),
            max_commit_events: a.max_commit_events.max(1),
            row_cache: a.row_cache,
            commit_parallelism: a.commit_parallelism.max(1),
            fetch_wait: a.fetch_wait.into(),
            max_backoff: a.max_backoff.into(),
            provision: a.provision.provision(),
            provision_options: a.provision.options(),
            seen_retention: a.seen_retention.into(),
            agg_retention: a.agg_retention,
            retention_interval: a.retention_interval.into(),
            ..Settings::new(nats_url)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_work_before_and_after_the_subcommand() {
        let after =
            Cli::try_parse_from(["netqoe-aggregator", "run", "--batch-size", "10"]).unwrap();
        assert_eq!(after.run.batch_size, 10);
        assert!(matches!(after.command, Some(Command::Run)));
        let before =
            Cli::try_parse_from(["netqoe-aggregator", "--batch-size", "10", "run"]).unwrap();
        assert_eq!(before.run.batch_size, 10);
        let dlq = Cli::try_parse_from([
            "netqoe-aggregator",
            "dlq",
            "list",
            "--nats-url",
            "nats://10.0.0.1:4222",
            "--json",
        ])
        .unwrap();
        assert_eq!(dlq.nats.nats_url, "nats://10.0.0.1:4222");
        let migrate = Cli::try_parse_from([
            "netqoe-aggregator",
            "migrate",
            "--database-url",
            "postgres://x@db/netqoe",
        ])
        .unwrap();
        assert_eq!(migrate.db.database_url, "postgres://x@db/netqoe");
    }

    #[test]
    fn the_command_line_defaults_are_the_settings_defaults() {
        let cli = Cli::try_parse_from(["netqoe-aggregator"]).unwrap();
        assert_eq!(
            format!("{:?}", Settings::from_cli(&cli.nats.nats_url, &cli.run)),
            format!("{:?}", Settings::new(&cli.nats.nats_url))
        );
    }

    #[test]
    fn provisioning_flags_read_the_aggregator_variables_around_the_subcommand() {
        for args in [
            ["netqoe-aggregator", "run", "--stream-duplicate-window=10m"],
            ["netqoe-aggregator", "--stream-duplicate-window=10m", "run"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let settings = Settings::from_cli(&cli.nats.nats_url, &cli.run);
            assert_eq!(
                settings.provision_options.duplicate_window,
                Some(Duration::from_secs(600)),
                "{args:?}"
            );
        }
        let cmd = <Cli as clap::CommandFactory>::command();
        for flag in
            "NO_PROVISION STREAM_MAX_BYTES STREAM_REPLICAS STREAM_DUPLICATE_WINDOW".split(' ')
        {
            let name = format!("NETQOE_AGGREGATOR_{flag}");
            let env = Some(std::ffi::OsStr::new(&name));
            assert!(cmd.get_arguments().any(|a| a.get_env() == env), "{name}");
        }
        let zero = Cli::try_parse_from(["netqoe-aggregator", "--stream-duplicate-window=0s"])
            .unwrap_err()
            .to_string();
        assert!(zero.contains("--stream-duplicate-window"), "{zero}");
    }
}

//! Command line of `netqoe-aggregator` (every flag also read from its environment variable).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use netqoe_common::{DbArgs, LogArgs, NatsArgs};

#[derive(Debug, Parser)]
#[command(
    name = "netqoe-aggregator",
    version,
    about = "Consumes QOE_EVENTS and merges events exactly once into one-minute windows in Postgres",
    long_about = "Without a subcommand, runs the consumer (same as `run`). Each fetched batch is \
merged in one Postgres transaction and acknowledged only after it commits; undecodable or \
invalid messages go to QOE_DLQ. Exit codes: 0 ok, 1 failure, 2 usage, 4 dependency unavailable."
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
        default_value_t = 2000
    )]
    pub batch_size: usize,
    /// While a backlog drains (fetches come back full), consecutive batches are merged into
    /// one transaction of at most this many events, waiting up to --fetch-wait for each next
    /// batch (fewer reads and writes of windows they share).
    #[arg(
        long,
        global = true,
        env = "NETQOE_AGGREGATOR_MAX_COMMIT_EVENTS",
        default_value_t = 20_000
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
        default_value_t = 50_000
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
        default_value_t = 1
    )]
    pub commit_parallelism: usize,
    /// Longest wait for a batch to fill before processing what arrived.
    #[arg(long, global = true, env = "NETQOE_AGGREGATOR_FETCH_WAIT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub fetch_wait: Duration,
    /// Longest pause between retries while NATS or Postgres is unavailable.
    #[arg(long, global = true, env = "NETQOE_AGGREGATOR_MAX_BACKOFF", default_value = "5s", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,
    /// Postgres connections.
    #[arg(
        long,
        global = true,
        env = "NETQOE_AGGREGATOR_DB_CONNECTIONS",
        default_value_t = 4
    )]
    pub db_connections: u32,
    /// Do not create or update streams and the consumer at start.
    #[arg(long, global = true, env = "NETQOE_AGGREGATOR_NO_PROVISION")]
    pub no_provision: bool,
    /// max_bytes of QOE_EVENTS when provisioning.
    #[arg(long, global = true, env = "NETQOE_AGGREGATOR_STREAM_MAX_BYTES")]
    pub stream_max_bytes: Option<i64>,
    /// Replicas of both streams when provisioning (3 in a cluster).
    #[arg(long, global = true, env = "NETQOE_AGGREGATOR_STREAM_REPLICAS")]
    pub stream_replicas: Option<usize>,
    /// Keep event ids in events_seen this long, plus 10 minutes (a row goes once both its
    /// seen_at and its ts_ms are older). At least the max_age of QOE_EVENTS: a shorter one
    /// refuses to start.
    #[arg(long, global = true, env = "NETQOE_AGGREGATOR_SEEN_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub seen_retention: Duration,
    /// Delete agg_1m windows older than this (default: keep forever).
    #[arg(long, global = true, env = "NETQOE_AGGREGATOR_AGG_RETENTION", value_parser = humantime::parse_duration)]
    pub agg_retention: Option<Duration>,
    /// How often retention runs.
    #[arg(long, global = true, env = "NETQOE_AGGREGATOR_RETENTION_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub retention_interval: Duration,
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
}

//! The fault suite's harness: a stack whose ingest and aggregators take any flags and any
//! NATS URL (one server or a cluster), a load that knows which events were acknowledged, and
//! the reckoning of acknowledged ids against the aggregator's `events_seen` ledger and
//! `agg_1m`, written as one row of docs/reliability.md.

mod checks;
mod cluster;
mod load;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer};
use netqoe_test_support::{PgServer, Service};

pub use checks::{forget_check, security_table, Check};
pub use cluster::NatsCluster;
pub use load::{Acknowledged, Answer, Batch, Load};

use crate::{loopback, report, TOKEN};

/// PostgreSQL (migrated) and ingest on a NATS URL of the caller's; aggregators on demand.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub pg: PgServer,
    pub pool: sqlx::PgPool,
    pub db_url: String,
    pub nats_url: String,
    /// Given to ingest and every aggregator besides `NATS_URL` and `DATABASE_URL`.
    env: Vec<(String, String)>,
    ingest: Option<Service>,
    pub ingest_addr: SocketAddr,
    pub ingest_metrics: SocketAddr,
    tokens: PathBuf,
}

impl Stack {
    /// Starts PostgreSQL and ingest (with `ingest_args` besides its addresses and a token
    /// without a practical rate limit) and waits until ingest is ready.
    pub async fn start(name: &str, nats_url: &str, ingest_args: &[&str]) -> Result<Stack> {
        let tokens =
            format!("[[tokens]]\ntoken = \"{TOKEN}\"\nclients = [\"*\"]\nrate = 1000000\n");
        Stack::start_with(name, nats_url, &tokens, &[], ingest_args).await
    }

    /// [`Stack::start`] with ingest's tokens file and environment variables for ingest and
    /// every aggregator (`RUST_LOG`, say).
    pub async fn start_with(
        name: &str,
        nats_url: &str,
        tokens_toml: &str,
        env: &[(&str, &str)],
        ingest_args: &[&str],
    ) -> Result<Stack> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("netqoe-faults-{name}-"))
            .tempdir()?;
        let pg = PgServer::start()?;
        let db_url = pg.create_database("netqoe").await?;
        let pool = netqoe_db::connect(&db_url, &Default::default()).await?;
        netqoe_db::migrate(&pool).await.context("migrate")?;
        let tokens = dir.path().join("tokens.toml");
        std::fs::write(&tokens, tokens_toml)?;
        let (ingest_addr, ingest_metrics) = (loopback(), loopback());
        let mut stack = Stack {
            dir,
            pg,
            pool,
            db_url,
            nats_url: nats_url.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ingest: None,
            ingest_addr,
            ingest_metrics,
            tokens,
        };
        stack.respawn_ingest(ingest_args)?;
        Ok(stack)
    }

    /// Stops ingest (SIGTERM) if it runs and starts it on the same addresses with
    /// `ingest_args`, as an operator changing its flags; waits until it is ready.
    pub fn respawn_ingest(&mut self, ingest_args: &[&str]) -> Result<()> {
        let mut args = vec![
            format!("--listen={}", self.ingest_addr),
            format!("--metrics-listen={}", self.ingest_metrics),
            format!("--tokens-file={}", self.tokens.display()),
        ];
        args.extend(ingest_args.iter().map(|a| a.to_string()));
        if let Some(mut old) = self.ingest.take() {
            old.stop(Duration::from_secs(10));
        }
        let log = self.dir.path().join("ingest.log");
        let mut env = vec![("NATS_URL", self.nats_url.as_str())];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut ingest = Service::spawn("netqoe-ingest", args, &env, &log)?;
        ingest.wait_ready(self.ingest_metrics, "/readyz", Duration::from_secs(60))?;
        self.ingest = Some(ingest);
        Ok(())
    }

    /// The log file of ingest (`ingest.log`) or an aggregator (`<name>.log`).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Whether ingest is still the process started last (it has not exited).
    pub fn ingest_running(&mut self) -> bool {
        self.ingest.as_mut().is_some_and(|i| i.exited().is_none())
    }

    /// Starts an aggregator (`run` with `args`) logging to `<name>.log` and waits until it is
    /// ready; returns it with its metrics address.
    pub fn aggregator(&self, name: &str, args: &[&str]) -> Result<(Service, SocketAddr)> {
        let metrics = loopback();
        let mut argv = vec!["run".to_string(), format!("--metrics-listen={metrics}")];
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut env = vec![
            ("NATS_URL", self.nats_url.as_str()),
            ("DATABASE_URL", self.db_url.as_str()),
        ];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let log = self.dir.path().join(format!("{name}.log"));
        let mut service = Service::spawn("netqoe-aggregator", argv, &env, &log)?;
        service.wait_ready(metrics, "/readyz", Duration::from_secs(60))?;
        Ok((service, metrics))
    }

    /// The events endpoint.
    pub fn ingest_url(&self) -> String {
        format!("http://{}/api/v1/events", self.ingest_addr)
    }

    /// A JetStream context on the stack's NATS.
    pub async fn jetstream(&self) -> Result<jetstream::Context> {
        connect(&self.nats_url).await
    }

    /// Waits until the aggregator has merged (or quarantined in `QOE_DLQ`) every acknowledged
    /// event and the consumer has nothing pending or unacknowledged (so nothing more will be
    /// merged), at most `limit`, then counts.
    pub async fn reckon(&self, acked: &HashSet<String>, limit: Duration) -> Result<Tally> {
        let js = self.jetstream().await?;
        let deadline = Instant::now() + limit;
        loop {
            let seen: Vec<String> = sqlx::query_scalar("SELECT event_id::text FROM events_seen")
                .fetch_all(&self.pool)
                .await?;
            let seen: HashSet<String> = seen.into_iter().collect();
            let quarantined = self.quarantined().await?;
            let lost = acked
                .iter()
                .filter(|id| !seen.contains(*id) && !quarantined.contains_key(*id))
                .count();
            // Consumer info only once the ledger holds everything, at most every second: asked
            // often, nats-server 2.9 slows the consumer's deliveries (docs/operations.md).
            let idle = lost == 0 && consumer_idle(&js).await;
            if (lost == 0 && idle) || Instant::now() > deadline {
                let counted: i64 =
                    sqlx::query_scalar("SELECT coalesce(sum(count_total), 0)::bigint FROM agg_1m")
                        .fetch_one(&self.pool)
                        .await?;
                return Ok(Tally {
                    acknowledged: acked.len(),
                    merged: seen.len(),
                    counted,
                    lost,
                    quarantined: quarantined.len(),
                });
            }
            let pause = if lost == 0 { 1000 } else { 250 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

impl Stack {
    /// The events in `QOE_DLQ` by event id, with the reason each was quarantined for.
    pub async fn quarantined(&self) -> Result<HashMap<String, String>> {
        let js = self.jetstream().await?;
        if js.get_stream(netqoe_nats::DLQ_STREAM).await.is_err() {
            return Ok(HashMap::new());
        }
        let mut out = HashMap::new();
        for letter in netqoe_aggregator::dlq::list(&js).await? {
            let v: serde_json::Value = serde_json::from_slice(&letter.payload).unwrap_or_default();
            let events = match v {
                serde_json::Value::Array(events) => events,
                one => vec![one],
            };
            for e in events {
                if let Some(id) = e["event_id"].as_str() {
                    out.insert(id.to_string(), letter.reason.clone());
                }
            }
        }
        Ok(out)
    }
}

/// A JetStream context on `urls`, one server or several comma separated.
pub async fn connect(urls: &str) -> Result<jetstream::Context> {
    let servers: Vec<&str> = urls.split(',').collect();
    let client = async_nats::connect(servers.as_slice()).await?;
    Ok(jetstream::new(client))
}

/// Whether the `aggregator` consumer has no message left to deliver or to be acked.
async fn consumer_idle(js: &jetstream::Context) -> bool {
    let Ok(stream) = js.get_stream(netqoe_nats::EVENTS_STREAM).await else {
        return false;
    };
    let consumer = stream
        .get_consumer::<consumer::pull::Config>(netqoe_nats::AGGREGATOR_CONSUMER)
        .await;
    match consumer {
        Ok(mut c) => c
            .info()
            .await
            .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0),
        Err(_) => false,
    }
}

/// The figures of one fault: acknowledged ids, distinct ids in `events_seen`, the sum of
/// `count_total`, acknowledged ids neither in `events_seen` nor quarantined, and events
/// quarantined in `QOE_DLQ` (with their reason, for an operator to repair and replay).
#[derive(Debug, Clone, Copy)]
pub struct Tally {
    pub acknowledged: usize,
    pub merged: usize,
    pub counted: i64,
    pub lost: usize,
    pub quarantined: usize,
}

/// One row of the reliability table.
#[derive(Debug, Clone)]
pub struct Row {
    pub fault: String,
    pub happened: String,
    pub acknowledged: u64,
    pub counted: i64,
    pub lost: u64,
    /// `sum(count_total)` minus the distinct merged ids.
    pub doubled: i64,
}

impl Row {
    pub fn new(fault: &str, happened: &str, t: Tally) -> Row {
        Row {
            fault: fault.to_string(),
            happened: happened.to_string(),
            acknowledged: t.acknowledged as u64,
            counted: t.counted,
            lost: t.lost as u64,
            doubled: t.counted - t.merged as i64,
        }
    }

    /// Prints the row and writes it to `target/reliability/<key>.json`.
    pub fn record(&self, key: &str) -> Result<()> {
        report(&format!("reliability: {}", self.markdown()));
        let json = serde_json::json!({
            "fault": self.fault, "happened": self.happened, "acknowledged": self.acknowledged,
            "counted": self.counted, "lost": self.lost, "doubled": self.doubled,
        });
        record_json(&reliability_dir()?, key, &json)
    }

    fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} |",
            self.fault, self.happened, self.acknowledged, self.counted, self.lost, self.doubled
        )
    }

    fn from_json(v: &serde_json::Value) -> Option<Row> {
        Some(Row {
            fault: v["fault"].as_str()?.to_string(),
            happened: v["happened"].as_str()?.to_string(),
            acknowledged: v["acknowledged"].as_u64()?,
            counted: v["counted"].as_i64()?,
            lost: v["lost"].as_u64()?,
            doubled: v["doubled"].as_i64()?,
        })
    }
}

/// Removes the row recorded under `key` by an earlier run, so that a run that fails before it
/// records leaves no stale figures behind.
pub fn forget(key: &str) {
    if let Ok(dir) = reliability_dir() {
        let _ = std::fs::remove_file(dir.join(format!("{key}.json")));
    }
}

/// `target/reliability` of the running build (`CARGO_TARGET_DIR` when set).
pub fn reliability_dir() -> Result<PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe()?;
            // target/<profile>/deps/<test> or target/<profile>/examples/<example>
            exe.ancestors()
                .nth(3)
                .context("the executable is not in a cargo target directory")?
                .to_path_buf()
        }
    };
    Ok(target.join("reliability"))
}

/// The markdown table of every recorded row, ordered by key.
pub fn table() -> Result<String> {
    let mut out = String::from(
        "| fault | what happened | acknowledged | counted | lost | doubled |\n|---|---|---:|---:|---:|---:|\n",
    );
    for (f, v) in recorded(&reliability_dir()?, "the fault suite")? {
        let row = Row::from_json(&v).with_context(|| format!("malformed {}", f.display()))?;
        out.push_str(&row.markdown());
        out.push('\n');
    }
    Ok(out)
}

/// Writes `json` to `<dir>/<key>.json`, creating `dir`.
pub(crate) fn record_json(
    dir: &std::path::Path,
    key: &str,
    json: &serde_json::Value,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(format!("{key}.json")), format!("{json}\n"))?;
    Ok(())
}

/// The JSON files of `dir` with their contents, ordered by name (`suite` names the tests
/// that write them, for the error when there are none).
pub(crate) fn recorded(
    dir: &std::path::Path,
    suite: &str,
) -> Result<Vec<(PathBuf, serde_json::Value)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("read {}: run {suite} first", dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let v = serde_json::from_str(&std::fs::read_to_string(&f)?)?;
            Ok((f, v))
        })
        .collect()
}

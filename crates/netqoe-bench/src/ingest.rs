//! Ingest throughput, latency and memory against the same machine's limits.
//!
//! The release `netqoe-ingest` binary runs as a child process (so its peak RSS can be read)
//! against a test-support nats-server; `netqoe-loadgen` drives it in-process. The limit of the
//! single-event figure is a minimal axum handler that parses the event and awaits one
//! JetStream ack, driven the same way in the same run.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::{http::StatusCode, routing::post, Router};
use netqoe_loadgen::{run as load, LoadConfig};
use netqoe_test_support::{free_port, NatsServer};

use crate::harness::{report, sibling, Env};

const SINGLE_CONNECTIONS: usize = 64;
const BATCHED_CONNECTIONS: usize = 8;
/// Peak resident memory budget of ingest under this load.
const RSS_BUDGET_MB: f64 = 256.0;

pub async fn run(env: &Env) -> anyhow::Result<()> {
    let secs = (10.0 * env.scale).clamp(2.0, 30.0);
    let duration = Duration::from_secs_f64(secs);

    let nats = crate::harness::nats_server()?;
    let (limit_rate, limit_p99) = minimal_handler(&nats, duration).await?;
    let ingest = IngestProcess::ready(&nats).await?;

    let single = load(
        LoadConfig {
            connections: SINGLE_CONNECTIONS,
            batch: 1,
            duration: Some(duration),
            ..LoadConfig::new(&ingest.url)
        },
        None,
    )
    .await?;
    check_ok(&single, "single events")?;
    report(
        "ingest_single_events_per_s",
        single.events_per_s,
        "events/s",
        limit_rate,
    );
    report(
        "ingest_single_p99_ms",
        single.latency.p99_ms,
        "ms",
        limit_p99,
    );

    let batched = load(
        LoadConfig {
            connections: BATCHED_CONNECTIONS,
            batch: 100,
            duration: Some(duration),
            ..LoadConfig::new(&ingest.url)
        },
        None,
    )
    .await?;
    check_ok(&batched, "batches")?;
    let rss = ingest.peak_rss_mb()?;
    drop(ingest);
    drop(nats);
    let raw = crate::raw::jetstream_publish_per_s(env.scaled(200_000)).await?;
    report(
        "ingest_batched_events_per_s",
        batched.events_per_s,
        "events/s",
        raw,
    );
    report("ingest_peak_rss_mb", rss, "MB", RSS_BUDGET_MB);
    Ok(())
}

fn check_ok(r: &netqoe_loadgen::Report, what: &str) -> anyhow::Result<()> {
    let bad: u64 = r
        .statuses
        .iter()
        .filter(|(c, _)| !(200..300).contains(*c))
        .map(|(_, n)| n)
        .sum();
    if bad * 100 > r.requests {
        bail!(
            "{what}: {bad} of {} requests failed: {:?}",
            r.requests,
            r.statuses
        );
    }
    Ok(())
}

/// Events/s and p99 (ms) of a handler that only parses and awaits one ack per event.
async fn minimal_handler(nats: &NatsServer, duration: Duration) -> anyhow::Result<(f64, f64)> {
    let client = netqoe_nats::connect(&nats.url(), "netqoe-bench-minimal", true).await?;
    let js = async_nats::jetstream::new(client);
    netqoe_nats::provision(&js, netqoe_nats::Scope::Events, &Default::default()).await?;
    let app = Router::new().route(
        "/api/v1/events",
        post(move |body: axum::body::Bytes| {
            let js = js.clone();
            async move {
                let Ok(event) = serde_json::from_slice::<netqoe_model::Event>(&body) else {
                    return StatusCode::BAD_REQUEST;
                };
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
                let subject = netqoe_nats::event_subject(&event.client_id);
                match js.publish_with_headers(subject, headers, body).await {
                    Ok(ack) => match ack.await {
                        Ok(_) => StatusCode::ACCEPTED,
                        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
                    },
                    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/api/v1/events", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let r = load(
        LoadConfig {
            connections: SINGLE_CONNECTIONS,
            batch: 1,
            duration: Some(duration),
            ..LoadConfig::new(&url)
        },
        None,
    )
    .await?;
    server.abort();
    check_ok(&r, "minimal handler")?;
    Ok((r.events_per_s, r.latency.p99_ms))
}

/// The release ingest binary as a child process.
pub struct IngestProcess {
    child: Child,
    pub url: String,
    ready_url: String,
}

impl IngestProcess {
    /// Starts ingest against `nats` and waits until it is ready.
    pub async fn ready(nats: &NatsServer) -> anyhow::Result<IngestProcess> {
        Self::ready_url(&nats.url()).await
    }

    /// Starts ingest against `nats_url` and waits until it is ready. Its ports are picked
    /// free just before it binds them; when another process took one in between, ingest
    /// exits at once, and it is started again on new ports.
    pub async fn ready_url(nats_url: &str) -> anyhow::Result<IngestProcess> {
        let mut attempt = 1;
        loop {
            let mut ingest = Self::spawn(nats_url)?;
            match ingest.wait_ready().await {
                Ok(()) => return Ok(ingest),
                Err(Exited(status)) if attempt < 3 => {
                    eprintln!("[bench] netqoe-ingest exited with {status} while starting; starting it again on other ports");
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn spawn(nats_url: &str) -> anyhow::Result<IngestProcess> {
        let bin = sibling("netqoe-ingest")?;
        let (api, metrics) = (free_port(), free_port());
        let child = Command::new(&bin)
            .args([
                "--listen",
                &format!("127.0.0.1:{api}"),
                "--metrics-listen",
                &format!("127.0.0.1:{metrics}"),
            ])
            .args([
                "--insecure-no-auth",
                "--rate",
                "1000000000",
                "--burst",
                "1000000000",
            ])
            .env("NATS_URL", nats_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        Ok(IngestProcess {
            child,
            url: format!("http://127.0.0.1:{api}/api/v1/events"),
            ready_url: format!("http://127.0.0.1:{metrics}/readyz"),
        })
    }

    async fn wait_ready(&mut self) -> Result<(), NotReady> {
        let start = Instant::now();
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(&self.ready_url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.try_wait().map_err(anyhow::Error::from)? {
                return Err(Exited(status));
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(anyhow::anyhow!("netqoe-ingest not ready after 20 s").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Peak resident set (VmHWM) in MB.
    pub fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        crate::harness::peak_rss_mb(self.child.id())
    }
}

/// Why ingest did not become ready.
enum NotReady {
    Exited(std::process::ExitStatus),
    Other(anyhow::Error),
}
use NotReady::Exited;

impl From<anyhow::Error> for NotReady {
    fn from(e: anyhow::Error) -> NotReady {
        NotReady::Other(e)
    }
}

impl From<NotReady> for anyhow::Error {
    fn from(e: NotReady) -> anyhow::Error {
        match e {
            Exited(status) => anyhow::anyhow!("netqoe-ingest exited with {status}"),
            NotReady::Other(e) => e,
        }
    }
}

impl Drop for IngestProcess {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

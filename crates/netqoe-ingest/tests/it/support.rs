//! Test fixture: a real nats-server plus ingest running in-process on a free port.

use std::num::NonZeroU32;
use std::time::Duration;

use async_nats::jetstream;
use netqoe_ingest::{AuthSource, Settings};
use netqoe_test_support::NatsServer;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub const TOKENS: &str = r#"
[[tokens]]
name = "fleet-a"
token = "token-a-0123456789"
clients = ["probe-a*"]

[[tokens]]
name = "anyone"
token = "token-any-0123456789"
clients = ["*"]

[[tokens]]
name = "slow"
token = "token-slow-0123456789"
clients = ["*"]
rate = 1
burst = 3
"#;

pub struct Ingest {
    pub nats: NatsServer,
    pub base: String,
    pub http: reqwest::Client,
    pub js: jetstream::Context,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), netqoe_ingest::Failure>>>,
}

impl Ingest {
    pub async fn start() -> Ingest {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Ingest {
        let nats = NatsServer::start().expect("start nats-server");
        let mut settings = Settings::new(&nats.url());
        settings.auth = AuthSource::Inline(TOKENS.into());
        settings.rate = NonZeroU32::new(1_000_000).unwrap();
        settings.burst = NonZeroU32::new(1_000_000).unwrap();
        settings.readiness_interval = Duration::from_millis(200);
        settings.ack_timeout = Duration::from_secs(2);
        tweak(&mut settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(netqoe_ingest::run(
            settings,
            listener,
            None,
            shutdown.clone(),
        ));
        let client = netqoe_nats::connect(&nats.url(), "netqoe-test", true)
            .await
            .unwrap();
        let ingest = Ingest {
            nats,
            base,
            http: reqwest::Client::new(),
            js: jetstream::new(client),
            shutdown,
            task: Some(task),
        };
        ingest.wait_ready(true).await;
        ingest
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Waits until /readyz answers 200 (or 503 when `ready` is false); returns the time taken.
    pub async fn wait_ready(&self, ready: bool) -> Duration {
        let start = std::time::Instant::now();
        loop {
            let status = self
                .http
                .get(self.url("/readyz"))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            if (status == 200) == ready && status != 0 {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "readyz never became {ready}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn post(
        &self,
        token: Option<&str>,
        body: &Value,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.post(self.url("/api/v1/events")).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body, headers)
    }

    /// Messages stored in QOE_EVENTS.
    pub async fn stored(&self) -> u64 {
        self.js
            .get_stream(netqoe_nats::EVENTS_STREAM)
            .await
            .expect("stream")
            .info()
            .await
            .expect("info")
            .state
            .messages
    }

    /// Starts the drain, as SIGTERM does, without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until `run` returned; true when it returned before `within`.
    pub async fn stopped_within(&mut self, within: Duration) -> bool {
        let task = self.task.as_mut().expect("running");
        match tokio::time::timeout(within, task).await {
            Ok(joined) => {
                joined.expect("join").expect("ingest run");
                self.task = None;
                true
            }
            Err(_) => false,
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("ingest run");
        }
    }
}

/// A valid event of `client` measured just now.
pub fn event(client: &str) -> Value {
    json!({
        "schema_version": "1",
        "event_id": uuid::Uuid::new_v4().to_string(),
        "client_id": client,
        "ts_ms": netqoe_model::now_ms() - 1000,
        "target": "https://example.com/health",
        "timings": {"dns_ms": 3.5, "tcp_ms": 10.0, "tls_ms": 20.0, "http_ttfb_ms": 50.0, "total_ms": 90.0},
        "http_status": 200
    })
}

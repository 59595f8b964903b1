//! Start, reload and stop: the SIGTERM drain, and tokens files that cannot be used, at start
//! and on SIGHUP, exercised on the `netqoe-ingest` binary where a signal is involved.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netqoe_test_support::{free_port, NatsServer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{event, Ingest};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn during_the_drain_in_flight_requests_finish_and_new_ones_get_503() {
    let mut ingest = Ingest::start().await;
    let body = event("probe-a1").to_string();
    let (head, tail) = body.split_at(body.len() / 2);

    // a request in flight: headers and half of its body sent before the drain starts
    let addr = ingest.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer token-a-0123456789\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{head}",
        body.len()
    );
    slow.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    ingest.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // a new request during the drain: 503 with Retry-After, not a refused connection
    let fresh = reqwest::Client::new();
    let resp = fresh
        .post(ingest.url("/api/v1/events"))
        .bearer_auth("token-a-0123456789")
        .json(&event("probe-a1"))
        .send()
        .await
        .expect("a new connection during the drain is answered");
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let refused: Value = resp.json().await.unwrap();
    assert_eq!(refused["error"], "unavailable");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{refused}"
    );
    let ready = fresh.get(ingest.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready while draining");
    assert!(
        !ingest.stopped_within(Duration::from_millis(200)).await,
        "the drain waits for the request in flight"
    );

    // the request in flight completes and is stored
    slow.write_all(tail.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the in-flight request got no answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(answer.contains("\"accepted\":1"), "{answer}");

    assert!(
        ingest.stopped_within(Duration::from_secs(5)).await,
        "ingest stops once the drain is done"
    );
    assert_eq!(
        ingest.stored().await,
        1,
        "only the in-flight event is stored"
    );
}

/// The `netqoe-ingest` binary with `args`, its log (stderr) in `log`.
fn spawn_ingest(args: &[&str], nats_url: &str, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_netqoe-ingest"))
        .args(args)
        .env("NATS_URL", nats_url)
        .env("RUST_LOG", "info")
        .env("NETQOE_LOG_FORMAT", "pretty")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn netqoe-ingest")
}

/// Waits for the child to exit (at most 10 s) and returns its exit code.
fn exit_code(child: &mut Child) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("netqoe-ingest did not exit");
}

#[test]
fn the_binary_refuses_an_empty_tokens_file_unadmittable_batches_and_a_bad_nats_url() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    let log = dir.path().join("ingest.log");
    let listen = ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];

    std::fs::write(&tokens, "# every token revoked\n").unwrap();
    let mut child = spawn_ingest(
        &[&listen[..], &["--tokens-file", tokens.to_str().unwrap()]].concat(),
        "nats://127.0.0.1:1",
        &log,
    );
    assert_eq!(exit_code(&mut child), Some(3));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("no [[tokens]] entries"), "{text}");

    std::fs::write(
        &tokens,
        "[[tokens]]\ntoken = \"t-0123456789abcdef\"\nclients = [\"*\"]\n",
    )
    .unwrap();
    let mut child = spawn_ingest(
        &[
            &listen[..],
            &["--tokens-file", tokens.to_str().unwrap(), "--burst", "400"],
        ]
        .concat(),
        "nats://127.0.0.1:1",
        &log,
    );
    assert_eq!(exit_code(&mut child), Some(3));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("--max-batch 1000") && text.contains("--burst 400"),
        "{text}"
    );

    let mut child = spawn_ingest(
        &[&listen[..], &["--tokens-file", tokens.to_str().unwrap()]].concat(),
        "nats://127.0.0.1:notaport",
        &log,
    );
    assert_eq!(exit_code(&mut child), Some(3));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("NATS_URL"), "{text}");
}

async fn post_status(http: &reqwest::Client, url: &str, token: &str) -> u16 {
    http.post(url)
        .bearer_auth(token)
        .json(&event("probe-a1"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn wait_for_log(log: &Path, needle: &str, occurrences: usize) {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= occurrences {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{needle:?} not logged:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sighup_with_an_empty_tokens_file_keeps_the_previous_tokens() {
    let nats = NatsServer::start().expect("start nats-server");
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    let log = dir.path().join("ingest.log");
    std::fs::write(
        &tokens,
        "[[tokens]]\ntoken = \"old-0123456789abcdef\"\nclients = [\"*\"]\n",
    )
    .unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut child = spawn_ingest(
        &[
            "--listen",
            &listen,
            "--metrics-listen",
            &metrics,
            "--tokens-file",
            tokens.to_str().unwrap(),
        ],
        &nats.url(),
        &log,
    );
    let http = reqwest::Client::new();
    let url = format!("http://{listen}/api/v1/events");
    let start = Instant::now();
    while http
        .get(format!("http://{listen}/readyz"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(start.elapsed() < Duration::from_secs(15), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(post_status(&http, &url, "old-0123456789abcdef").await, 202);

    let hup = |pid: u32| {
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP {pid}");
    };
    std::fs::write(&tokens, "").unwrap();
    hup(child.id());
    wait_for_log(&log, "reload failed", 1).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("no [[tokens]] entries"), "{text}");
    assert!(text.contains("ERROR"), "logged as an error: {text}");
    assert_eq!(
        post_status(&http, &url, "old-0123456789abcdef").await,
        202,
        "the previous tokens stay active"
    );

    // a usable file is taken on the next SIGHUP
    std::fs::write(
        &tokens,
        "[[tokens]]\ntoken = \"new-0123456789abcdef\"\nclients = [\"*\"]\n",
    )
    .unwrap();
    hup(child.id());
    wait_for_log(&log, "tokens and limits reloaded", 1).await;
    assert_eq!(post_status(&http, &url, "new-0123456789abcdef").await, 202);
    assert_eq!(post_status(&http, &url, "old-0123456789abcdef").await, 401);

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert_eq!(exit_code(&mut child), Some(0));
}

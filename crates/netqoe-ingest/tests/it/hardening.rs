//! Deadlines and shedding: slow headers and bodies are cut, excess requests and connections
//! and a JetStream that acknowledges too slowly get 503 with Retry-After, refused requests
//! cost rate, and an empty bearer is no token.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{event, Ingest};

/// What the server sent on `conn` before closing it or before `within` passed.
async fn answer(conn: &mut TcpStream, within: Duration) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(within, async {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = conn.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&buf).contains("\r\n\r\n{") && buf.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// A POST whose headers are sent at once and whose 1000-byte body never completes.
async fn stalled_post(ingest: &Ingest) -> TcpStream {
    let addr = ingest.base.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer token-a-0123456789\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n["
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn
}

/// The status of an event posted until it is accepted, for at most a second. A request cut
/// off (a connection refused at the limit while the client was still writing) counts as 0
/// and is tried again.
async fn accepted_soon(ingest: &Ingest) -> u16 {
    let mut status = 0;
    for _ in 0..20 {
        let sent = ingest
            .http
            .post(ingest.url("/api/v1/events"))
            .bearer_auth("token-a-0123456789")
            .json(&event("probe-a1"))
            .send()
            .await;
        status = sent.map_or(0, |r| r.status().as_u16());
        if status == 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_are_cut_and_excess_load_is_shed() {
    let ingest = Ingest::start_with(|s| {
        s.header_timeout = Duration::from_millis(500);
        s.body_timeout = Duration::from_millis(800);
        s.max_in_flight = 2;
        s.max_connections = 6;
    })
    .await;
    let addr = ingest.base.trim_start_matches("http://").to_string();

    // a body trickling one byte every 100 ms: an idle timer would never fire, the deadline does
    let mut slow = stalled_post(&ingest).await;
    let start = Instant::now();
    let (mut read, mut write) = slow.split();
    let trickle = async {
        for _ in 0..40 {
            if write.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let reply = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = read.read(&mut chunk).await {
            buf.extend_from_slice(&chunk[..n]);
            if n == 0 || buf.ends_with(b"}") {
                break;
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    };
    let reply = tokio::select! {
        r = reply => r,
        _ = trickle => String::new(),
    };
    let took = start.elapsed();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    assert!(reply.contains("connection: close"), "{reply}");
    assert!(reply.contains("--body-timeout"), "{reply}");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(2),
        "{took:?}"
    );
    drop(slow);

    // headers trickling one byte every 100 ms: the connection is closed after 500 ms
    let mut loris = TcpStream::connect(&addr).await.unwrap();
    loris
        .write_all(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(3) {
        if loris.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(100), loris.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    let took = start.elapsed();
    assert!(closed, "slow headers were never cut");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    drop(loris);

    // two requests in flight (bodies still arriving): the third is shed at once
    let held = [stalled_post(&ingest).await, stalled_post(&ingest).await];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let (status, body, headers) = ingest
        .post(Some("token-a-0123456789"), &event("probe-a1"))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(start.elapsed() < Duration::from_millis(300));
    assert_eq!(headers["retry-after"], "1");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("--max-in-flight"),
        "{body}"
    );
    drop(held);
    assert_eq!(
        accepted_soon(&ingest).await,
        202,
        "served again once the slow requests are gone"
    );

    // past 6 open connections a new one is answered 503 and closed
    let mut open = Vec::new();
    for _ in 0..10 {
        open.push(TcpStream::connect(&addr).await.unwrap());
    }
    let mut answers = Vec::new();
    for conn in &mut open {
        answers.push(answer(conn, Duration::from_millis(100)).await);
    }
    assert!(answers[0].is_empty(), "{:?}", answers[0]);
    let refused: Vec<&String> = answers.iter().filter(|a| !a.is_empty()).collect();
    assert!(refused.len() >= 4, "{answers:?}");
    let text = refused[0];
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    let refusal: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(refusal["error"], "unavailable");
    drop(open);
    assert_eq!(
        accepted_soon(&ingest).await,
        202,
        "served again once the connections closed"
    );
    ingest.stop().await;
}

/// Sends SIGSTOP to a process and SIGCONT when dropped (also when the test fails).
struct Paused(u32);

impl Paused {
    fn signal(pid: u32, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    fn new(pid: u32) -> Paused {
        Self::signal(pid, "-STOP");
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        Self::signal(self.0, "-CONT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_jetstream_sheds_requests_instead_of_queueing_them() {
    let ingest = Ingest::start_with(|s| {
        s.ack_window = 10;
        s.publish_wait = Duration::from_millis(300);
        s.ack_timeout = Duration::from_secs(3);
    })
    .await;
    let batch: Vec<Value> = (0..10).map(|_| event("probe-a1")).collect();
    let single = event("probe-a1");

    let paused = Paused::new(ingest.nats.pid().expect("nats-server pid"));
    // ten events fill the window of unacknowledged publishes while NATS does not answer
    let http = ingest.http.clone();
    let url = ingest.url("/api/v1/events");
    let first = tokio::spawn(async move {
        http.post(url)
            .bearer_auth("token-a-0123456789")
            .json(&json!(batch))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let (status, body, headers) = ingest.post(Some("token-a-0123456789"), &single).await;
    let took = start.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("slower than events arrive"),
        "{body}"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    drop(paused);

    assert_eq!(
        first.await.unwrap().unwrap(),
        202,
        "the waiting request completes"
    );
    let (status, body, _) = ingest.post(Some("token-a-0123456789"), &single).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(ingest.stored().await, 11);
    ingest.stop().await;
}

#[tokio::test]
async fn refused_requests_cost_rate_and_an_empty_bearer_is_no_token() {
    let ingest = Ingest::start().await;
    // token-slow: rate 1/s, burst 3; every 400 costs one event of the bucket
    let post_raw = |body: &'static str| {
        ingest
            .http
            .post(ingest.url("/api/v1/events"))
            .bearer_auth("token-slow-0123456789")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(
            post_raw("{\"schema_version\": ").await.unwrap().status(),
            400
        );
    }
    let resp = post_raw("{\"schema_version\": ").await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("refused requests count"),
        "{body}"
    );
    // a valid event of that token waits as well: the bucket was spent by the bad requests
    let (status, _, _) = ingest
        .post(Some("token-slow-0123456789"), &event("x1"))
        .await;
    assert_eq!(status, 429);

    for header in ["Bearer ", "Bearer    ", "bearer\t"] {
        let resp = ingest
            .http
            .post(ingest.url("/api/v1/events"))
            .header("authorization", header)
            .json(&event("probe-a1"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{header:?}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("missing bearer token"),
            "{body}"
        );
    }
    ingest.stop().await;
}

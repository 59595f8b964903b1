//! Hostile input against the `netqoe-ingest` binary: every class of bad request gets a clear
//! 4xx (or, for slow headers, a closed connection) while valid batches sent between them are
//! all accepted, and the process's peak resident memory stays under a stated bound.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use netqoe_test_support::{free_port, http_get, metric_sum, NatsServer, Service};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::event;

const TOKEN: &str = "hostile-0123456789abcdef";
/// Peak RSS (VmHWM) the ingest process may reach over the whole run.
const PEAK_RSS_BOUND_MB: f64 = 150.0;
/// Copies of each hostile request sent at once, so memory per request adds up.
const COPIES: usize = 4;

/// One hostile request: body, content type and encoding, extra headers, and the answers
/// that count as a clear refusal.
struct Case {
    body: Vec<u8>,
    content_type: &'static str,
    encoding: Option<&'static str>,
    headers: Vec<(String, String)>,
    auth: Option<String>,
    expect: &'static [u16],
}

fn case(body: impl Into<Vec<u8>>, expect: &'static [u16]) -> Case {
    Case {
        body: body.into(),
        content_type: "application/json",
        encoding: None,
        headers: Vec::new(),
        auth: Some(format!("Bearer {TOKEN}")),
        expect,
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// The event of `event()` with `field` replaced by raw JSON text.
fn with_raw(field: &str, raw: &str) -> Vec<u8> {
    let mut e = event("hostile-1");
    e[field] = json!("@@RAW@@");
    e.to_string().replace("\"@@RAW@@\"", raw).into_bytes()
}

fn with_value(field: &str, value: Value) -> Vec<u8> {
    let mut e = event("hostile-1");
    e[field] = value;
    e.to_string().into_bytes()
}

fn classes() -> Vec<(&'static str, Vec<Case>)> {
    const BAD: &[u16] = &[400];
    const BIG: &[u16] = &[413];
    let batch =
        serde_json::to_vec(&(0..20).map(|_| event("hostile-1")).collect::<Vec<_>>()).unwrap();
    let many_keys = {
        let mut e = event("hostile-1");
        for k in 0..100_000 {
            e[k.to_string()] = json!(0);
        }
        e.to_string().into_bytes()
    };
    let huge = "x".repeat(900 << 10);
    vec![
        (
            "malformed JSON",
            [
                "{\"a\":",
                "[{]",
                "}{",
                "nul",
                "[1,2",
                "{\"schema_version\":\"1\",}",
                "\u{1}\u{2}\u{3}",
            ]
            .into_iter()
            .map(|b| case(b, BAD))
            .collect(),
        ),
        (
            "truncated JSON",
            [batch.len() / 10, batch.len() / 2, batch.len() - 1]
                .into_iter()
                .map(|at| case(&batch[..at], BAD))
                .collect(),
        ),
        (
            "wrong types",
            vec![
                case(with_value("ts_ms", json!("yesterday")), BAD),
                case(with_value("timings", json!("fast")), BAD),
                case(with_value("client_id", json!(42)), BAD),
                case(with_value("event_id", json!([1])), BAD),
                case("[1,2,3]", BAD),
                case("\"an event\"", BAD),
                case("null", BAD),
            ],
        ),
        (
            "NaN and Infinity",
            ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]
                .into_iter()
                .map(|raw| case(with_raw("throughput_kbps", raw), BAD))
                .collect(),
        ),
        (
            "huge numbers and strings",
            vec![
                case(with_raw("ts_ms", "99999999999999999999999999"), BAD),
                case(with_raw("http_status", "1e300"), BAD),
                case(with_value("error_message", json!(huge)), BAD),
                case(with_value("target", json!(huge)), BAD),
                case(with_value("client_id", json!(huge)), BAD),
                case(format!("\"{}\"", "y".repeat(2 << 20)), BIG),
            ],
        ),
        (
            "deep nesting",
            vec![
                case("[".repeat(100_000), BAD),
                case("{\"a\":".repeat(100_000), BAD),
                case(
                    with_raw("extra", &format!("{}1{}", "[".repeat(200), "]".repeat(200))),
                    BAD,
                ),
            ],
        ),
        (
            "invalid UTF-8",
            vec![
                case(
                    [&b"{\"client_id\":\""[..], b"\xff\xfe", b"\"}"].concat(),
                    BAD,
                ),
                case(b"\xc3\x28".to_vec(), BAD),
                case(
                    with_value("target", json!("https://@@.example/"))
                        .into_iter()
                        .map(|b| if b == b'@' { 0xff } else { b })
                        .collect::<Vec<u8>>(),
                    BAD,
                ),
            ],
        ),
        (
            "10 000-element arrays",
            vec![
                case(format!("[0{}]", ",0".repeat(9_999)), BIG),
                case(format!("[{{}}{}]", ",{}".repeat(9_999)), BIG),
                {
                    let events: Vec<Value> = (0..10_000).map(|_| event("hostile-1")).collect();
                    let mut c = case(gzip(&serde_json::to_vec(&events).unwrap()), BIG);
                    c.encoding = Some("gzip");
                    c
                },
            ],
        ),
        (
            "gzip bomb",
            vec![
                {
                    let mut c = case(gzip(&vec![b' '; 16 << 20]), BIG);
                    c.encoding = Some("gzip");
                    c
                },
                {
                    let bomb = gzip(&gzip(&vec![0u8; 16 << 20]));
                    let mut c = case(bomb, BAD);
                    c.encoding = Some("gzip");
                    c
                },
                {
                    let mut c = case(&gzip(&batch)[..100], BAD);
                    c.encoding = Some("gzip");
                    c
                },
            ],
        ),
        (
            "100 000 unknown keys",
            vec![case(many_keys.clone(), &[202]), {
                let mut c = case(gzip(&many_keys), &[202]);
                c.encoding = Some("gzip");
                c
            }],
        ),
        (
            "wrong content types",
            [
                "text/plain",
                "application/xml",
                "multipart/form-data; boundary=x",
                "text/json",
            ]
            .into_iter()
            .map(|ct| {
                let mut c = case(batch.clone(), &[415]);
                c.content_type = ct;
                c
            })
            .chain(["br", "deflate", "gzip, gzip"].into_iter().map(|ce| {
                let mut c = case(batch.clone(), &[415]);
                c.encoding = Some(ce);
                c
            }))
            .collect(),
        ),
        (
            "header abuse",
            vec![
                {
                    // hyper answers 431 and closes at once: a client still sending its 1 MiB
                    // of header may see the connection reset before it reads the answer
                    let mut c = case(batch.clone(), &[431, 0]);
                    c.headers.push(("x-huge".into(), "h".repeat(1 << 20)));
                    c
                },
                {
                    let mut c = case(batch.clone(), &[431]);
                    c.headers = (0..300).map(|i| (format!("x-h{i}"), "v".into())).collect();
                    c
                },
                {
                    let mut c = case(batch.clone(), &[401]);
                    c.auth = Some(format!("Bearer {}", "t".repeat(30 << 10)));
                    c
                },
                {
                    let mut c = case(batch.clone(), &[401]);
                    c.auth = Some("Bearer ".into());
                    c
                },
                {
                    let mut c = case(batch.clone(), &[401]);
                    c.auth = Some(TOKEN.into());
                    c
                },
            ],
        ),
    ]
}

/// Status of one hostile request; 0 when the connection was closed without an answer.
async fn send(http: &reqwest::Client, url: &str, c: &Case) -> (u16, Value) {
    let mut req = http
        .post(url)
        .header("content-type", c.content_type)
        .body(c.body.clone());
    if let Some(auth) = &c.auth {
        req = req.header("authorization", auth);
    }
    if let Some(ce) = c.encoding {
        req = req.header("content-encoding", ce);
    }
    for (k, v) in &c.headers {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Peak resident memory of `pid` so far (VmHWM), in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024.0
}

/// Slow clients: headers trickling (cut: status 0) and a body trickling (408).
async fn slow(addr: SocketAddr) -> Vec<u16> {
    let mut statuses = Vec::new();
    for head_only in [true, false] {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let head = if head_only {
            "POST /api/v1/events HTTP/1.1\r\nHost: x\r\n".to_string()
        } else {
            format!("POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 500\r\n\r\n[")
        };
        conn.write_all(head.as_bytes()).await.unwrap();
        let trickle: &[u8] = if head_only { b"X" } else { b" " };
        let mut answer = Vec::new();
        for _ in 0..50 {
            if conn.write_all(trickle).await.is_err() {
                break;
            }
            let mut buf = [0u8; 4096];
            match tokio::time::timeout(Duration::from_millis(100), conn.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        let text = String::from_utf8_lossy(&answer);
        statuses.push(
            text.split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        );
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_input_gets_clear_refusals_in_bounded_memory_while_valid_batches_pass() {
    let nats = NatsServer::start().expect("start nats-server");
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[tokens]]\ntoken = \"{TOKEN}\"\nclients = [\"*\"]\nrate = 1000000\nburst = 1000\n"
        ),
    )
    .unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (api_s, metrics_s) = (api.to_string(), metrics.to_string());
    let args = [
        "--listen",
        api_s.as_str(),
        "--metrics-listen",
        metrics_s.as_str(),
        "--tokens-file",
        tokens.to_str().unwrap(),
        "--header-timeout",
        "1s",
        "--body-timeout",
        "1s",
    ];
    let mut ingest = Service::spawn(
        "netqoe-ingest",
        args,
        &[("NATS_URL", nats.url()), ("RUST_LOG", "warn".into())],
        &dir.path().join("ingest.log"),
    )
    .expect("start netqoe-ingest");
    ingest
        .wait_ready(metrics, "/readyz", Duration::from_secs(15))
        .expect("ingest ready");
    let pid = ingest.pid().unwrap();
    let url = format!("http://{api}/api/v1/events");
    // a fresh connection per request: a refused request may leave its connection closed
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let mut valid = 0u64;
    let mut accepted_hostile = 0u64;
    let mut rows = Vec::new();
    for (class, cases) in classes() {
        let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
        for c in &cases {
            let sends = (0..COPIES).map(|_| send(&http, &url, c));
            for (status, body) in futures::future::join_all(sends).await {
                *seen.entry(status).or_default() += 1;
                assert!(
                    c.expect.contains(&status),
                    "{class}: got {status}, expected {:?}: {body}; ingest log tail:\n{}",
                    c.expect,
                    ingest.log_tail(3000)
                );
                if status == 202 {
                    accepted_hostile += body["accepted"].as_u64().unwrap();
                    let warnings = body["warnings"].as_array().unwrap();
                    assert_eq!(warnings.len(), 21, "{class}: warnings are capped");
                    assert_eq!(warnings[20], "99980 more warnings not listed");
                } else if status != 431 && status != 0 {
                    // 431 comes from the HTTP layer, before any handler, with an empty body
                    assert!(
                        body["error"].is_string(),
                        "{class}: {status} without a JSON error: {body}"
                    );
                }
            }
            // a valid batch between hostile requests is accepted
            let batch: Vec<Value> = (0..20).map(|_| event("valid-1")).collect();
            let resp = http
                .post(&url)
                .bearer_auth(TOKEN)
                .json(&batch)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202, "valid batch after a {class} case");
            valid += 20;
        }
        rows.push((class, cases.len() * COPIES, seen, peak_rss_mb(pid)));
    }
    let mut seen = BTreeMap::new();
    for status in slow(api).await {
        *seen.entry(status).or_default() += 1;
    }
    assert_eq!(
        seen,
        BTreeMap::from([(0, 1), (408, 1)]),
        "slow headers are cut, a slow body gets 408"
    );
    rows.push(("slow headers / body", 2, seen, peak_rss_mb(pid)));

    let (_, exposition) = http_get(metrics, "/metrics").unwrap();
    let accepted = metric_sum(&exposition, "netqoe_ingest_events_accepted_total", &[]);
    assert_eq!(
        accepted as u64,
        valid + accepted_hostile,
        "every valid event stored"
    );
    for phase in ["header", "body"] {
        let label = format!("phase=\"{phase}\"");
        let n = metric_sum(
            &exposition,
            "netqoe_ingest_request_timeouts_total",
            &[&label],
        );
        assert!(n >= 1.0, "{phase} timeout not counted");
    }

    let peak = peak_rss_mb(pid);
    let mut table = format!(
        "{:<26} {:>5}  {:<24} {:>13}\n",
        "class", "cases", "statuses", "peak RSS (MB)"
    );
    for (class, cases, seen, rss) in &rows {
        let statuses: Vec<String> = seen.iter().map(|(s, n)| format!("{s}x{n}")).collect();
        table += &format!(
            "{class:<26} {cases:>5}  {:<24} {rss:>13.1}\n",
            statuses.join(" ")
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "[ingest-hostile] {valid} valid events accepted between the cases; peak RSS {peak:.1} MB (bound {PEAK_RSS_BOUND_MB} MB)\n{table}"
    );
    assert!(
        peak < PEAK_RSS_BOUND_MB,
        "peak RSS {peak:.1} MB over {PEAK_RSS_BOUND_MB} MB\n{table}"
    );
    ingest.stop(Duration::from_secs(10));
}

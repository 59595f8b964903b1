//! HTTP and HTTPS servers of the lab: routes, control endpoint and the HTTP-level faults.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::faults::{roll, FaultState, Faults};
use crate::metrics as m;

type Body = BoxBody<Bytes, Infallible>;

/// Largest body `/bytes/<n>` serves (1 GiB).
const MAX_BYTES: u64 = 1 << 30;
/// Largest control request body.
const MAX_CONTROL_BODY: usize = 64 * 1024;

/// Error a handler returns to make hyper drop the connection (a reset fault).
#[derive(Debug)]
struct ResetConnection;
impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by fault injection")
    }
}
impl std::error::Error for ResetConnection {}

/// Accepts connections until `shutdown`; with `tls`, each is wrapped after the TLS delay.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    faults: FaultState,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(error) => {
                    debug!(error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let faults = faults.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            debug!(peer = %peer, "accepted connection");
            handle_conn(stream, tls, faults, shutdown).await;
        });
    }
}

async fn handle_conn(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    faults: FaultState,
    shutdown: CancellationToken,
) {
    let f = faults.get();
    let _ = stream.set_nodelay(true);
    if f.reset_rate > 0.0 {
        // With resets enabled, a dropped connection sends RST instead of FIN.
        #[allow(deprecated)]
        let _ = stream.set_linger(Some(Duration::ZERO));
    }
    match tls {
        None => serve_io(stream, faults, shutdown).await,
        Some(acceptor) => {
            if f.tls_delay_ms > 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(f.tls_delay_ms)) => {}
                }
            }
            match acceptor.accept(stream).await {
                Ok(s) => serve_io(s, faults, shutdown).await,
                Err(error) => {
                    metrics::counter!(m::TLS_HANDSHAKE_ERRORS_TOTAL).increment(1);
                    debug!(error = %error, "tls handshake failed");
                }
            }
        }
    }
}

async fn serve_io<S>(io: S, faults: FaultState, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let faults = faults.clone();
        async move { handle(req, faults).await }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(error) = r {
                debug!(error = %error, "connection ended with error");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    resp
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = full(status, body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn handle(
    req: Request<Incoming>,
    faults: FaultState,
) -> Result<Response<Body>, ResetConnection> {
    let path = req.uri().path().to_string();
    // The control endpoint and health check are never subject to faults.
    if path == "/_lab/faults" {
        metrics::counter!(m::REQUESTS_TOTAL, "kind" => "control").increment(1);
        return Ok(control(req, &faults).await);
    }
    if path == "/healthz" {
        return Ok(full(StatusCode::OK, "ok\n"));
    }
    let f = faults.get();
    if roll(f.reset_rate) {
        metrics::counter!(m::RESETS_TOTAL).increment(1);
        return Err(ResetConnection);
    }
    if f.ttfb_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(f.ttfb_delay_ms)).await;
    }
    if roll(f.http_error_rate) {
        metrics::counter!(m::REQUESTS_TOTAL, "kind" => "injected_error").increment(1);
        let status =
            StatusCode::from_u16(f.http_error_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Ok(full(status, "injected error\n"));
    }
    Ok(route(&path, &f))
}

fn route(path: &str, f: &Faults) -> Response<Body> {
    if path == "/" {
        metrics::counter!(m::REQUESTS_TOTAL, "kind" => "ok").increment(1);
        return full(StatusCode::OK, "netqoe-lab\n");
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        return match n.parse::<u64>() {
            Ok(n) if n <= MAX_BYTES => {
                metrics::counter!(m::REQUESTS_TOTAL, "kind" => "ok").increment(1);
                let mut resp = Response::new(paced_body(n, f.throughput_kbps));
                resp.headers_mut()
                    .insert(http::header::CONTENT_LENGTH, n.into());
                resp
            }
            _ => full(
                StatusCode::BAD_REQUEST,
                format!("n must be an integer between 0 and {MAX_BYTES}\n"),
            ),
        };
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return match code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(status) => {
                metrics::counter!(m::REQUESTS_TOTAL, "kind" => "ok").increment(1);
                full(status, format!("status {}\n", status.as_u16()))
            }
            None => full(
                StatusCode::BAD_REQUEST,
                "code must be an http status 100..999\n",
            ),
        };
    }
    metrics::counter!(m::REQUESTS_TOTAL, "kind" => "not_found").increment(1);
    full(StatusCode::NOT_FOUND, "not found\n")
}

/// A body of `n` bytes, paced to `kbps` (kbit/s) in small chunks when set.
fn paced_body(n: u64, kbps: Option<u64>) -> Body {
    let bytes_per_s = kbps.map(|k| k as f64 * 1000.0 / 8.0);
    // About 10 ms of data per chunk when paced, between 256 B and 64 KiB.
    let chunk = match bytes_per_s {
        Some(b) => ((b / 100.0) as usize).clamp(256, 64 * 1024),
        None => 64 * 1024,
    };
    let block = Bytes::from(vec![b'x'; chunk]);
    let start = tokio::time::Instant::now();
    let stream = futures::stream::unfold(0u64, move |sent| {
        let block = block.clone();
        async move {
            if sent >= n {
                return None;
            }
            if let Some(b) = bytes_per_s {
                // Chunk k leaves no earlier than (bytes before it) / rate after the start.
                let due = start + Duration::from_secs_f64(sent as f64 / b);
                tokio::time::sleep_until(due).await;
            }
            let len = (n - sent).min(block.len() as u64);
            let data = block.slice(..len as usize);
            Some((Ok::<_, Infallible>(Frame::data(data)), sent + len))
        }
    });
    StreamBody::new(stream).boxed()
}

async fn control(req: Request<Incoming>, faults: &FaultState) -> Response<Body> {
    match *req.method() {
        Method::GET => json(StatusCode::OK, to_json(&faults.get())),
        Method::PUT | Method::POST => {
            let limited = http_body_util::Limited::new(req.into_body(), MAX_CONTROL_BODY);
            let bytes = match limited.collect().await {
                Ok(b) => b.to_bytes(),
                Err(error) => {
                    return full(
                        StatusCode::BAD_REQUEST,
                        format!("failed to read body: {error}\n"),
                    )
                }
            };
            let new: Faults = match serde_json::from_slice(&bytes) {
                Ok(f) => f,
                Err(error) => {
                    return full(
                        StatusCode::BAD_REQUEST,
                        format!("invalid faults json: {error}\n"),
                    )
                }
            };
            if let Err(problem) = new.validate() {
                return full(StatusCode::BAD_REQUEST, format!("{problem}\n"));
            }
            info!(faults = %to_json(&new), "faults changed through the control endpoint");
            faults.set(new.clone());
            json(StatusCode::OK, to_json(&new))
        }
        _ => {
            let mut r = full(StatusCode::METHOD_NOT_ALLOWED, "use GET or PUT\n");
            r.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, PUT"),
            );
            r
        }
    }
}

fn to_json(f: &Faults) -> String {
    serde_json::to_string(f).unwrap_or_default()
}

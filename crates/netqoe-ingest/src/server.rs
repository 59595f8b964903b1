//! HTTP/1.1 serving with a header-read deadline, a cap on open connections, and graceful
//! drain (hyper-util underneath axum).
//!
//! The header deadline is hyper's: a client has `header_timeout` in total to send its request
//! line and headers, or the connection is closed (slow-loris headers are counted; an idle
//! keep-alive connection closed the same way is not); a request line and headers larger than
//! [`MAX_HEAD_BYTES`] get 431. Past `max_connections` open connections
//! a new one is answered a canned 503 with `Retry-After` and closed.
//!
//! On shutdown the connections already open are drained: their in-flight requests finish and
//! the connections close. Until they have, the listener stays open and every new connection is
//! served without keep-alive, so a request arriving during the drain gets the handler's 503
//! with `Retry-After` (the app checks the shutdown token) instead of a refused connection.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::metrics as m;

/// Largest request line and headers (hyper answers 431 past it); also the read buffer of a
/// connection, so that slow headers on every open connection hold little memory.
pub const MAX_HEAD_BYTES: usize = 64 << 10;

/// What the server enforces below the router.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total time to send a request's line and headers.
    pub header_timeout: Duration,
    /// Open connections beyond which new ones are refused with 503.
    pub max_connections: usize,
    /// Longest wait for open requests after shutdown.
    pub drain: Duration,
}

/// The answer to a connection over the limit (written before closing it).
fn over_capacity() -> Vec<u8> {
    let body = r#"{"error":"unavailable","message":"ingest is at its connection limit; retry shortly","details":[]}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `shutdown`, then waits up to `limits.drain` for open requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    loop {
        let stream = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = shutdown.cancelled() => break,
        };
        let Some(permit) = admit(&open, &stream) else {
            refuse(stream);
            continue;
        };
        let started = Arc::new(AtomicBool::new(false));
        let conn = connection(stream, started.clone(), &app, limits.header_timeout, true);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            finished(conn.await, &started);
            drop(permit);
        });
    }
    tracing::info!("draining: in-flight requests finish, new ones get 503");
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    let deadline = tokio::time::sleep(limits.drain);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut drained => {
                tracing::info!("all connections drained");
                break;
            }
            _ = &mut deadline => {
                tracing::warn!(drain = ?limits.drain, "drain timed out; closing remaining connections");
                break;
            }
            stream = accept(&listener) => {
                let Some(permit) = admit(&open, &stream) else {
                    refuse(stream);
                    continue;
                };
                let started = Arc::new(AtomicBool::new(false));
                let conn = connection(stream, started.clone(), &app, limits.header_timeout, false);
                tokio::spawn(async move {
                    finished(conn.await, &started);
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
}

/// A permit for one more open connection, or `None` (counted) when at the limit.
fn admit(open: &Arc<Semaphore>, stream: &TcpStream) -> Option<OwnedSemaphorePermit> {
    match open.clone().try_acquire_owned() {
        Ok(permit) => Some(permit),
        Err(_) => {
            metrics::counter!(m::SHED, "limit" => "connections").increment(1);
            let peer = stream.peer_addr().ok();
            tracing::debug!(?peer, "connection limit reached; refusing a connection");
            None
        }
    }
}

/// Answers 503 on a connection over the limit and closes it, giving up after a second.
fn refuse(mut stream: TcpStream) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(&over_capacity()).await?;
            stream.shutdown().await?;
            // read what the client sends until it closes, so that closing does not reset
            // the connection before it has read the answer
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            std::io::Result::Ok(())
        })
        .await;
    });
}

/// Logs how a connection ended; counts a request whose headers did not arrive in time.
fn finished(result: Result<(), hyper::Error>, started: &AtomicBool) {
    let Err(error) = result else { return };
    if error.is_timeout() && started.load(Ordering::Relaxed) {
        metrics::counter!(m::TIMEOUTS, "phase" => "header").increment(1);
        tracing::debug!(%error, "request headers did not arrive in time; connection closed");
    } else {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// The next accepted connection; accept errors (out of file descriptors) are logged and retried.
async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                return stream;
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one connection; `started` tells whether a request has begun arriving on it.
fn connection(
    stream: TcpStream,
    started: Arc<AtomicBool>,
    app: &Router,
    header_timeout: Duration,
    keep_alive: bool,
) -> hyper::server::conn::http1::Connection<
    TokioIo<Tracked>,
    impl hyper::service::Service<
            hyper::Request<Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future = impl Send,
        > + Send,
> {
    let app = app.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let io = Tracked {
        inner: stream,
        started,
    };
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(keep_alive)
        .serve_connection(TokioIo::new(io), service)
}

/// A connection's stream that notes whether a request has begun arriving since the last
/// response was written, to tell a slow request from an idle keep-alive connection.
struct Tracked {
    inner: TcpStream,
    started: Arc<AtomicBool>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.started.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.started.store(false, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.started.store(false, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

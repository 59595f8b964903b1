//! HTTP/1.1 serving with a header-read timeout and graceful drain (hyper-util underneath axum).
//!
//! On shutdown the connections already open are drained: their in-flight requests finish and
//! the connections close. Until they have, the listener stays open and every new connection is
//! served without keep-alive, so a request arriving during the drain gets the handler's 503
//! with `Retry-After` (the app checks the shutdown token) instead of a refused connection.

use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Serves `app` on `listener` until `shutdown`, then waits up to `drain` for open requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = shutdown.cancelled() => break,
        };
        let conn = connection(stream, &app, header_timeout, true);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    tracing::info!("draining: in-flight requests finish, new ones get 503");
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    let deadline = tokio::time::sleep(drain);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut drained => {
                tracing::info!("all connections drained");
                break;
            }
            _ = &mut deadline => {
                tracing::warn!(?drain, "drain timed out; closing remaining connections");
                break;
            }
            stream = accept(&listener) => {
                let conn = connection(stream, &app, header_timeout, false);
                tokio::spawn(async move {
                    if let Err(error) = conn.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
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

fn connection(
    stream: TcpStream,
    app: &Router,
    header_timeout: Duration,
    keep_alive: bool,
) -> hyper::server::conn::http1::Connection<
    TokioIo<TcpStream>,
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
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(keep_alive)
        .serve_connection(TokioIo::new(stream), service)
}

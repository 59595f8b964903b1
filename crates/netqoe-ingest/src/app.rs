//! The HTTP router: events endpoint, health, readiness, and per-request metrics.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;

use crate::auth::Token;
use crate::body::{format_of, gunzip_limited, parse, read_limited, EventLimit};
use crate::error::{insert_budget, ApiError, Detail};
use crate::limit::Denied;
use crate::metrics as m;
use crate::publish::{Outgoing, PublishError};
use crate::state::{AppState, Auth};
use crate::validate::validate_all;

/// The 202 body.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub accepted: usize,
    pub duplicates: usize,
    pub warnings: Vec<String>,
}

/// The API router (events, health, readiness) with its layers.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/events", post(post_events))
        .route("/events", post(post_events))
        .route_layer(middleware::from_fn_with_state(state.clone(), shed))
        .merge(health_routes())
        .layer(middleware::from_fn(track))
        .with_state(state)
}

/// Serves at most `--max-in-flight` events requests at once; one more is answered 503 with
/// `Retry-After` at once instead of queueing.
async fn shed(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        metrics::counter!(m::SHED, "limit" => "requests").increment(1);
        let err = ApiError::unavailable(
            format!(
                "ingest is serving its limit of {} requests (--max-in-flight); retry shortly",
                state.settings.max_in_flight
            ),
            Duration::from_secs(1),
        );
        return reject(err, "overloaded", 0).into_response();
    };
    next.run(req).await
}

/// `/healthz` and `/readyz`, also served beside `/metrics`.
pub fn health_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: NATS disconnected or stream QOE_EVENTS missing\n",
        )
            .into_response()
    }
}

/// Counts requests by route and status class, times them, tracks the in-flight gauge.
async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| match p.as_str() {
            "/api/v1/events" => "/api/v1/events",
            "/events" => "/events",
            "/healthz" => "/healthz",
            "/readyz" => "/readyz",
            _ => "other",
        });
    let start = Instant::now();
    let in_flight = metrics::gauge!(m::REQUESTS_IN_FLIGHT);
    in_flight.increment(1.0);
    let resp = next.run(req).await;
    in_flight.decrement(1.0);
    let class = match resp.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!(m::REQUESTS, "route" => route, "status" => class).increment(1);
    metrics::histogram!(m::REQUEST_DURATION, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The `reason` label of a refusal while reading or decoding a body.
fn body_reason(err: &ApiError) -> &'static str {
    match err.status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::REQUEST_TIMEOUT => "body_timeout",
        _ => "invalid",
    }
}

/// A request refused with 400 or 403 still costs its events (at least one) from the token's
/// bucket, so a client repeating a bad request is slowed down as any other; when the bucket
/// cannot pay, the answer is 429 with `Retry-After` instead.
fn charge(
    auth: &Auth,
    token: Option<&Token>,
    err: ApiError,
    reason: &'static str,
    n: usize,
) -> ApiError {
    match auth.limiter.check(token, n.max(1)) {
        Ok(_) | Err(Denied::OverBurst { .. }) => reject(err, reason, n),
        Err(Denied::Wait { wait, budget }) => {
            metrics::counter!(m::EVENTS_RATE_LIMITED).increment(n as u64);
            let message = format!(
                "rate limit exceeded: refused requests count against this token's rate too ({}: {})",
                err.status.as_u16(),
                err.message
            );
            reject(
                ApiError::rate_limited(message, wait, budget),
                "rate_limited",
                n,
            )
        }
    }
}

/// Counts `n` events as not published for `reason` and logs the rejection once.
fn reject(err: ApiError, reason: &'static str, n: usize) -> ApiError {
    metrics::counter!(m::EVENTS_REJECTED, "reason" => reason).increment(n as u64);
    if err.status == StatusCode::TOO_MANY_REQUESTS || err.status == StatusCode::SERVICE_UNAVAILABLE
    {
        tracing::debug!(status = err.status.as_u16(), reason, events = n, message = %err.message, "request refused");
    } else {
        tracing::info!(status = err.status.as_u16(), reason, events = n, message = %err.message, "request rejected");
    }
    err
}

async fn post_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let settings = &state.settings;
    if state.shutdown.is_cancelled() {
        return Err(reject(
            ApiError::unavailable(
                "ingest is shutting down; retry on another instance",
                Duration::from_secs(1),
            ),
            "draining",
            0,
        ));
    }
    let auth = state.auth();
    let token = auth
        .authenticate(bearer(&headers))
        .map_err(|msg| reject(ApiError::unauthorized(msg), "unauthorized", 0))?;
    let (format, gzip) = format_of(&headers).map_err(|e| reject(e, "unsupported", 0))?;
    let read = read_limited(
        &headers,
        body,
        settings.max_body_bytes,
        settings.body_timeout,
    );
    let raw = match tokio::time::timeout(settings.body_timeout, read).await {
        Ok(read) => read.map_err(|e| {
            let reason = body_reason(&e);
            reject(e, reason, 0)
        })?,
        Err(_) => {
            metrics::counter!(m::TIMEOUTS, "phase" => "body").increment(1);
            let err = ApiError::timeout(format!(
                "the request body did not arrive within {:?} (--body-timeout)",
                settings.body_timeout
            ));
            return Err(reject(err, "body_timeout", 0));
        }
    };
    let token_ref = token.as_deref();
    let refused = |e: ApiError, n: usize| {
        let reason = body_reason(&e);
        if e.status == StatusCode::BAD_REQUEST {
            charge(&auth, token_ref, e, reason, n)
        } else {
            reject(e, reason, n)
        }
    };
    // Decoding waits for a CPU rather than inflating many bodies at once.
    let decoding = state.decoders.acquire().await.expect("never closed");
    let text: Bytes = if gzip {
        gunzip_limited(&raw, settings.max_body_bytes)
            .map_err(|e| refused(e, 0))?
            .into()
    } else {
        raw
    };
    let limit = EventLimit {
        max_batch: settings.max_batch,
        burst: auth.limiter.burst_of(token_ref) as usize,
    };
    let values = parse(&text, format, limit).map_err(|e| refused(e, 0))?;
    drop(text);
    let n = values.len();
    let (events, warnings) =
        validate_all(&values, netqoe_model::now_ms()).map_err(|e| refused(e, n))?;
    drop(values);
    drop(decoding);

    if let Some(token) = &token {
        let forbidden: Vec<Detail> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| !token.allows(&e.client_id))
            .map(|(index, e)| Detail {
                index,
                field: "client_id".into(),
                problem: format!(
                    "token {:?} may not submit events for client_id {:?}",
                    token.name, e.client_id
                ),
            })
            .collect();
        if !forbidden.is_empty() {
            return Err(charge(
                &auth,
                token_ref,
                ApiError::forbidden(
                    format!(
                        "{} of {n} events have a client_id this token is not allowed to submit for",
                        forbidden.len()
                    ),
                    forbidden,
                ),
                "forbidden",
                n,
            ));
        }
    }

    let budget = match auth.limiter.check(token_ref, n) {
        Ok(budget) => budget,
        Err(denied) => {
            let err = match denied {
                Denied::Wait { wait, budget } => {
                    metrics::counter!(m::EVENTS_RATE_LIMITED).increment(n as u64);
                    let err = ApiError::rate_limited(
                        format!(
                            "rate limit exceeded: {n} events over this token's rate; {} fit now",
                            budget.remaining
                        ),
                        wait,
                        budget,
                    );
                    reject(err, "rate_limited", n)
                }
                // The event limit above already refused this; kept for a limiter that disagrees.
                Denied::OverBurst { burst } => reject(
                    EventLimit {
                        max_batch: settings.max_batch,
                        burst: burst as usize,
                    }
                    .refuse(n),
                    "too_large",
                    n,
                ),
            };
            return Err(err);
        }
    };

    let outgoing: Vec<Outgoing> = events
        .into_iter()
        .map(|e| Outgoing {
            subject: netqoe_nats::event_subject(&e.client_id),
            msg_id: e.event_id.to_string(),
            payload: serde_json::to_vec(&e).expect("events serialise").into(),
        })
        .collect();
    let start = Instant::now();
    let result = state.publisher.publish(outgoing).await;
    metrics::histogram!(m::PUBLISH_DURATION).record(start.elapsed().as_secs_f64());
    match result {
        Ok(outcome) => {
            metrics::counter!(m::EVENTS_ACCEPTED).increment(outcome.accepted as u64);
            metrics::counter!(m::EVENTS_DUPLICATE).increment(outcome.duplicates as u64);
            let mut resp = (
                StatusCode::ACCEPTED,
                Json(Accepted {
                    accepted: outcome.accepted,
                    duplicates: outcome.duplicates,
                    warnings,
                }),
            )
                .into_response();
            insert_budget(resp.headers_mut(), &budget);
            Ok(resp)
        }
        Err(e) => {
            let retry = if let PublishError::Busy(_) = e {
                metrics::counter!(m::SHED, "limit" => "publish").increment(1);
                Duration::from_secs(1)
            } else {
                Duration::from_secs(2)
            };
            let err = ApiError::unavailable(format!("events not stored: {e}; retry later"), retry);
            Err(reject(err, e.reason(), n))
        }
    }
}

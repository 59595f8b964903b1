//! The API's one error type: status, machine-readable code, message, per-event details,
//! and the `Retry-After` and `RateLimit-*` headers that go with it.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::limit::Budget;

/// One problem of one event of the request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Detail {
    pub index: usize,
    pub field: String,
    pub problem: String,
}

/// An error answered to the client as `{"error", "message", "details"}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Detail>,
    pub retry_after: Option<Duration>,
    /// For a 413 on the number of events: the most events a request of this token may hold.
    pub max_events: Option<u32>,
    /// The token's bucket, sent as `RateLimit-*` headers (429).
    pub budget: Option<Budget>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
    details: &'a [Detail],
    #[serde(skip_serializing_if = "Option::is_none")]
    max_events: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
            max_events: None,
            budget: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>, details: Vec<Detail>) -> ApiError {
        ApiError {
            details,
            ..Self::new(StatusCode::FORBIDDEN, "forbidden", message)
        }
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 413 for a request of `n` events when at most `max_events` fit in one.
    pub fn too_many_events(message: impl Into<String>, max_events: usize) -> ApiError {
        ApiError {
            max_events: Some(u32::try_from(max_events).unwrap_or(u32::MAX)),
            ..Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_events", message)
        }
    }

    pub fn unsupported(message: impl Into<String>) -> ApiError {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    pub fn invalid_json(message: impl Into<String>, details: Vec<Detail>) -> ApiError {
        ApiError {
            details,
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_json", message)
        }
    }

    pub fn invalid_events(message: impl Into<String>, details: Vec<Detail>) -> ApiError {
        ApiError {
            details,
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_events", message)
        }
    }

    pub fn rate_limited(
        message: impl Into<String>,
        retry_after: Duration,
        budget: Budget,
    ) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            budget: Some(budget),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    pub fn unavailable(message: impl Into<String>, retry_after: Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    pub fn timeout(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message)
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (whole seconds, rounded up)
/// for the token's bucket.
pub fn insert_budget(headers: &mut HeaderMap, budget: &Budget) {
    let reset = budget.reset.as_secs() + u64::from(budget.reset.subsec_nanos() > 0);
    for (name, value) in [
        ("ratelimit-limit", u64::from(budget.limit)),
        ("ratelimit-remaining", u64::from(budget.remaining)),
        ("ratelimit-reset", reset),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            error: self.code,
            message: &self.message,
            details: &self.details,
            max_events: self.max_events,
        })
        .unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(wait) = self.retry_after {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(wait)),
            );
        }
        if let Some(budget) = &self.budget {
            insert_budget(headers, budget);
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // the rest of the body may still be on its way: do not read it as a next request
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(7)), 7);
    }
}

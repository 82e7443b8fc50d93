//! The outermost middleware: gives each request an id (the client's `X-Request-Id`
//! when it is sane, a new UUID otherwise), runs it inside a tracing span that carries
//! the id and, once known, the aggregate's id (`order_id`, `sku`: the field an
//! `HttpAggregate` names it by), command, attempts and outcome, echoes the id,
//! logs and measures the request, and turns any error response that is not yet
//! problem+json (the framework's 404/405, say) into one.

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::field::Empty;
use tracing::Instrument;

use crate::error::{problem_response, PROBLEM_JSON};

/// The request id header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest client-chosen request id kept.
const MAX_REQUEST_ID: usize = 128;

/// The request's id, in its extensions for handlers that record it.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// A client's id is kept if it is 1 to 128 characters of letters, digits and `-_.:@/+=`
/// (safe in logs and headers); otherwise the request gets a fresh one.
fn accept(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let sane = !text.is_empty()
        && text.len() <= MAX_REQUEST_ID
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@/+=".contains(&b));
    sane.then(|| text.to_owned())
}

pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = request.headers().get(&X_REQUEST_ID).and_then(accept).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = request.extensions().get::<MatchedPath>().map_or("-", |p| p.as_str()).to_owned();
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = %route,
        order_id = Empty,
        sku = Empty,
        command = Empty,
        attempts = Empty,
        outcome = Empty,
    );
    request.extensions_mut().insert(RequestId(id.clone()));
    let started = Instant::now();
    let _in_flight = InFlight::enter();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    if (status.is_client_error() || status.is_server_error()) && !is_problem(&response) {
        response = as_problem(response);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(status = status.as_u16(), latency_ms = elapsed.as_secs_f64() * 1e3, "request done");
    });
    let labels = [("method", method.to_string()), ("route", route), ("status", status.as_u16().to_string())];
    metrics::histogram!("ordo_http_request_duration_seconds", &labels).record(elapsed);
    response
}

/// Counts a request in `ordo_http_requests_in_flight` while it lives (also when its
/// future is dropped).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!("ordo_http_requests_in_flight").increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("ordo_http_requests_in_flight").decrement(1.0);
    }
}

fn is_problem(response: &Response) -> bool {
    response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
}

/// The same status and headers (`Allow`, `Retry-After`…) with a problem+json body.
fn as_problem(response: Response) -> Response {
    let (parts, _) = response.into_parts();
    let status = parts.status;
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "the route does not allow this method".to_owned()),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large".to_owned()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "unsupported content type".to_owned()),
        s if s.is_server_error() => ("internal_error", "the server failed to handle the request".to_owned()),
        s => ("bad_request", s.canonical_reason().unwrap_or("bad request").to_owned()),
    };
    let mut problem = problem_response(status, code, detail, None);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().append(name.clone(), value.clone());
        }
    }
    problem
}

//! `ApiError`: every way a request can fail, and the one place that maps each to its
//! HTTP status, stable `code`, headers and RFC 9457 problem+json body.
//!
//! A problem body depends only on the error, never on the request (no request id, no
//! timestamp), so that a recorded rejection replays byte for byte.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::dto::{FieldError, Problem};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Marks a response that replays an earlier request with the same idempotency key.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Why a request failed. Handlers return `Result<_, ApiError>`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than the server accepts (64 KiB unless configured otherwise)")]
    PayloadTooLarge,
    #[error("{0}")]
    BadBody(String),
    #[error("invalid order id {0:?}: an order id is a UUID")]
    InvalidOrderId(String),
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("invalid {name} header: {detail}")]
    InvalidHeader { name: &'static str, detail: String },
    #[error("invalid Idempotency-Key header: {0}")]
    InvalidIdempotencyKey(String),
    /// Input the store refused (a value it cannot hold, say).
    #[error("invalid request: {0}")]
    InvalidInput(String),
    /// Request values outside their bounds, field by field (possibly replayed).
    #[error("{}", describe(errors))]
    Validation { errors: Vec<FieldError>, replayed: bool },
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("the order does not exist")]
    OrderNotFound { replayed: bool },
    #[error("no stock item for SKU {0:?}: it was never restocked")]
    StockItemNotFound(String),
    #[error("no projection named {0:?}")]
    ProjectionNotFound(String),
    /// The aggregate refused the command (a domain outcome, possibly replayed).
    #[error("{detail}")]
    Rejected { kind: RejectionClass, code: &'static str, detail: String, replayed: bool },
    /// A pinned version (`If-Match`/`If-None-Match`) did not hold.
    #[error("{detail}")]
    PreconditionFailed { detail: String, current: u64, replayed: bool },
    #[error("gave up after {0} attempts lost to concurrent writers; retry")]
    ConcurrencyConflict(u32),
    #[error("the idempotency key was first used for a different request")]
    IdempotencyKeyReused,
    #[error("a request with this idempotency key is still being processed; retry")]
    IdempotencyKeyInFlight,
    #[error("{0} is already being rebuilt")]
    RebuildInProgress(String),
    /// `what`: the order, the stock item.
    #[error("the read model has not reached version {min_version} of the {what} yet; retry")]
    ProjectionLagging { what: &'static str, min_version: u64 },
    #[error("this route needs Authorization: Bearer <admin token>")]
    Unauthorized,
    #[error("admin routes are disabled: no admin token is configured")]
    AdminDisabled,
    #[error("too many requests from this client; retry after {0} s")]
    RateLimited(u64),
    #[error("the server is at its concurrency limit; retry")]
    Overloaded,
    #[error("the request took longer than the server's time limit")]
    Timeout,
    #[error("the database is unavailable; retry")]
    Unavailable,
    #[error("the server is not ready: {0}")]
    NotReady(String),
    /// A fault of ours; the detail is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The broad class of a domain rejection, which decides its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionClass {
    NotFound,
    AlreadyExists,
    RuleViolation,
    Invalid,
}

impl ApiError {
    /// Refused fields, not (yet) recorded under an idempotency key.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        ApiError::Validation { errors, replayed: false }
    }
}

fn describe(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
}

/// Seconds a client should wait before retrying after a transient refusal.
const RETRY_SOON: u64 = 1;

impl ApiError {
    /// The status and stable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            MalformedJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            BadBody(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            InvalidOrderId(_) => (StatusCode::BAD_REQUEST, "invalid_order_id"),
            InvalidPath(_) => (StatusCode::BAD_REQUEST, "invalid_path"),
            InvalidQuery(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            InvalidHeader { .. } => (StatusCode::BAD_REQUEST, "invalid_header"),
            InvalidIdempotencyKey(_) | InvalidInput(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            Validation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            RouteNotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            OrderNotFound { .. } => (StatusCode::NOT_FOUND, "order_not_found"),
            StockItemNotFound(_) => (StatusCode::NOT_FOUND, "stock_item_not_found"),
            ProjectionNotFound(_) => (StatusCode::NOT_FOUND, "projection_not_found"),
            Rejected { kind, code, .. } => {
                let status = match kind {
                    RejectionClass::NotFound => StatusCode::NOT_FOUND,
                    RejectionClass::AlreadyExists | RejectionClass::RuleViolation => StatusCode::CONFLICT,
                    RejectionClass::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                };
                (status, code)
            }
            PreconditionFailed { .. } => (StatusCode::PRECONDITION_FAILED, "wrong_expected_version"),
            ConcurrencyConflict(_) => (StatusCode::CONFLICT, "concurrency_conflict"),
            IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            IdempotencyKeyInFlight => (StatusCode::CONFLICT, "idempotency_key_in_flight"),
            RebuildInProgress(_) => (StatusCode::CONFLICT, "rebuild_in_progress"),
            ProjectionLagging { .. } => (StatusCode::SERVICE_UNAVAILABLE, "projection_lagging"),
            Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminDisabled => (StatusCode::FORBIDDEN, "admin_disabled"),
            RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    /// `Retry-After` seconds, for errors that a later retry may cure.
    fn retry_after(&self) -> Option<u64> {
        use ApiError::*;
        match self {
            RateLimited(seconds) => Some((*seconds).max(1)),
            ConcurrencyConflict(_)
            | IdempotencyKeyInFlight
            | ProjectionLagging { .. }
            | Overloaded
            | Timeout
            | Unavailable
            | NotReady(_) => Some(RETRY_SOON),
            _ => None,
        }
    }

    fn replayed(&self) -> bool {
        match self {
            ApiError::OrderNotFound { replayed }
            | ApiError::Validation { replayed, .. }
            | ApiError::Rejected { replayed, .. }
            | ApiError::PreconditionFailed { replayed, .. } => *replayed,
            _ => false,
        }
    }

    fn field_errors(&self) -> Option<Vec<FieldError>> {
        match self {
            ApiError::Validation { errors, .. } => Some(errors.clone()),
            _ => None,
        }
    }
}

/// A problem+json response for `status` with `code` and `detail`.
pub fn problem_response(status: StatusCode, code: &str, detail: String, errors: Option<Vec<FieldError>>) -> Response {
    let problem = Problem {
        r#type: format!("urn:ordo:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        code: code.to_owned(),
        errors,
    };
    let body = serialize(&problem);
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))], body).into_response()
}

fn serialize<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain structs of strings and numbers cannot fail; an empty body would
    // still carry the right status.
    serde_json::to_vec(value).unwrap_or_default()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let detail = match &self {
            ApiError::Internal(reason) => {
                tracing::error!(error = %reason, "internal error");
                "the server failed to handle the request".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = problem_response(status, code, detail, self.field_errors());
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let ApiError::PreconditionFailed { current, .. } = &self {
            if let Ok(etag) = HeaderValue::from_str(&format!("\"{current}\"")) {
                headers.insert(header::ETAG, etag);
            }
        }
        if matches!(self, ApiError::Unauthorized) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.replayed() {
            headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}

//! Library errors as API errors: a rejection keeps its class and code, a failed
//! precondition its versions, an outage becomes a 503, and everything else is an
//! internal error. Also the record of an input refusal under an idempotency key.

use ordo_core::{Aggregate, CommandError};
use ordo_orders::{Order, OrderRejection};
use ordo_projection::ProjectionError;
use ordo_store::{ExpectedVersion, StoreError};

use crate::dto::FieldError;
use crate::error::{ApiError, RejectionClass};

/// A refusal as recorded: the shape the command handler records a rejection in
/// (`{"outcome": "rejected", "rejection": …}`, so that it decodes as an order's
/// `ValidationFailed`), plus the refused fields for a byte-identical replay.
pub(super) fn refusal_outcome(errors: &[FieldError]) -> serde_json::Value {
    let reason = ApiError::invalid(errors.to_vec()).to_string();
    let rejection = serde_json::to_value(OrderRejection::ValidationFailed { reason }).unwrap_or_default();
    serde_json::json!({ "outcome": "rejected", "rejection": rejection, "errors": errors })
}

pub(super) fn replayed_refusal(outcome: &serde_json::Value) -> ApiError {
    match serde_json::from_value::<Vec<FieldError>>(outcome["errors"].clone()) {
        Ok(errors) if !errors.is_empty() => ApiError::Validation { errors, replayed: true },
        // The handler's own record of a request that validation now refuses (the
        // bounds changed since): its reason is all there is.
        _ => match outcome["rejection"]["reason"].as_str() {
            Some(reason) => ApiError::Validation {
                errors: vec![FieldError { field: "body".into(), message: reason.to_owned() }],
                replayed: true,
            },
            None => ApiError::Internal(format!("an idempotency record that is not a refusal: {outcome}")),
        },
    }
}

/// A failed command as the API answers it. `creates`: the command creates the order
/// (a version check on a missing order is then a failed precondition, not a 404).
pub(super) fn command_error(error: CommandError<OrderRejection>, creates: bool) -> ApiError {
    match error {
        CommandError::Rejected { rejection, replayed } => {
            let kind = match Order::rejection_kind(&rejection) {
                ordo_core::RejectionKind::NotFound => RejectionClass::NotFound,
                ordo_core::RejectionKind::AlreadyExists => RejectionClass::AlreadyExists,
                ordo_core::RejectionKind::RuleViolation => RejectionClass::RuleViolation,
                ordo_core::RejectionKind::Invalid => RejectionClass::Invalid,
            };
            ApiError::Rejected { kind, code: rejection.code(), detail: rejection.to_string(), replayed }
        }
        // RFC 9110 §13.2.1: a precondition is ignored when the request would fail
        // without it; a command on a missing order is a 404 whatever If-Match says.
        CommandError::WrongExpectedVersion { actual: 0, replayed, .. } if !creates => {
            ApiError::OrderNotFound { replayed }
        }
        CommandError::WrongExpectedVersion { expected, actual, replayed } => {
            let detail = match expected {
                ExpectedVersion::Exact(v) => {
                    format!("If-Match \"{v}\" does not hold: the order is at version {actual}")
                }
                ExpectedVersion::NoStream => {
                    format!("If-None-Match: * does not hold: the order exists (version {actual})")
                }
                ExpectedVersion::StreamExists => "If-Match: * does not hold: the order does not exist".to_owned(),
                other => format!("expected {other} but the order is at version {actual}"),
            };
            ApiError::PreconditionFailed { detail, current: actual, replayed }
        }
        CommandError::Conflict { attempts } => ApiError::ConcurrencyConflict(attempts),
        CommandError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
        CommandError::IdempotencyKeyInFlight => ApiError::IdempotencyKeyInFlight,
        CommandError::Store(e) => store_error(&e),
        other => ApiError::Internal(other.to_string()),
    }
}

/// An outage (connection refused or lost, a busy database, a commit whose outcome is
/// unknown) is a 503 the client may retry; input the store refuses is the client's;
/// anything else is our fault.
pub(super) fn store_error(error: &StoreError) -> ApiError {
    if error.is_transient() {
        tracing::warn!(error = %error, "database unavailable");
        ApiError::Unavailable
    } else if error.is_invalid_input() {
        ApiError::InvalidInput(error.to_string())
    } else {
        ApiError::Internal(error.to_string())
    }
}

pub(super) fn projection_error(error: ProjectionError) -> ApiError {
    match error {
        e if e.is_transient() => {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::Unavailable
        }
        ProjectionError::Store(e) => store_error(&e),
        ProjectionError::UnknownProjector(name) => ApiError::ProjectionNotFound(name),
        ProjectionError::AlreadyRebuilding(name) => ApiError::RebuildInProgress(name),
        other => ApiError::Internal(other.to_string()),
    }
}

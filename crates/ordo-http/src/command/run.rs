//! Running a checked command through the aggregate's `CommandHandler`, or refusing
//! its input through the same handler (which records the refusal under the key), and
//! the one mapping of a command's outcome to an [`ApiError`], for every aggregate.

use ordo_core::{
    Aggregate, CommandError, CommandHandler, CommandRequest, Expectation, FieldError, IdempotencyKey, Outcome,
    RejectionKind,
};
use ordo_store::{EventMetadata, ExpectedVersion};

use super::{FieldErrors, HttpAggregate};
use crate::domain::store_error;
use crate::error::{ApiError, RejectionClass};
use crate::extract::Precondition;

/// What every idempotency key is unique within: one scope for all routes, so a key
/// reused on another route is caught as a different request.
const IDEMPOTENCY_SCOPE: &str = "http";

/// A checked command and how to run it.
pub(super) struct Call<A: Aggregate> {
    pub aggregate_id: String,
    pub command: A::Command,
    pub precondition: Precondition,
    /// The `Idempotency-Key` and the request's fingerprint.
    pub idempotency: Option<(String, String)>,
    pub request_id: Option<String>,
}

/// A committed command, or the replay of one.
pub(super) struct Done {
    pub aggregate_id: String,
    pub version: u64,
    pub position: u64,
    pub replayed: bool,
}

/// Runs `call`; `Ok` means its events are committed (or it replays a committed one).
pub(super) async fn execute<A: HttpAggregate>(handler: &CommandHandler<A>, call: Call<A>) -> Result<Done, ApiError> {
    let expectation = match call.precondition {
        Precondition::None => Expectation::Latest,
        Precondition::Exists => Expectation::Pinned(ExpectedVersion::StreamExists),
        Precondition::Version(v) => Expectation::Pinned(ExpectedVersion::Exact(v)),
        Precondition::Absent => Expectation::Pinned(ExpectedVersion::NoStream),
    };
    // RFC 9110 §13.2.1: a precondition is ignored when the request would fail without
    // it. A pinned command on an aggregate that does not exist yet answers what the
    // aggregate says to the command when it does not exist (a 404, say).
    let when_missing = match expectation {
        Expectation::Pinned(_) => A::default().decide(&call.command).err(),
        Expectation::Latest => None,
    };
    let mut metadata = EventMetadata::default();
    if let Some(id) = call.request_id {
        metadata.extra.insert("request_id".into(), id.into());
    }
    let mut request =
        CommandRequest::new(call.aggregate_id, call.command).expecting(expectation).with_metadata(metadata);
    if let Some(key) = idempotency_key(call.idempotency)? {
        request = request.with_idempotency(key);
    }
    // The handler records `command`, `attempts` and `outcome` on the request's span.
    answer::<A>(handler.handle(request).await, when_missing)
}

/// Refuses input that did not make a command (422). Under an idempotency key the
/// handler records the refusal, so that a retry gets it replayed and another request
/// with the key is `idempotency_key_reused`.
pub(super) async fn refuse<A: HttpAggregate>(
    handler: &CommandHandler<A>,
    idempotency: Option<(String, String)>,
    errors: FieldErrors,
) -> Result<Done, ApiError> {
    let errors = errors.into_vec();
    let key = idempotency_key(idempotency)?;
    let refused = errors.iter().map(|e| FieldError { field: e.field.clone(), message: e.message.clone() }).collect();
    match handler.refuse_input(key.as_ref(), refused).await {
        // Deterministic, so answered all the same: a retry is refused again.
        Err(CommandError::Store(e)) => {
            tracing::warn!(error = %e, "could not record a refusal under its idempotency key");
            Err(ApiError::invalid(errors))
        }
        outcome => answer::<A>(outcome, None),
    }
}

fn idempotency_key(idempotency: Option<(String, String)>) -> Result<Option<IdempotencyKey>, ApiError> {
    idempotency
        .map(|(key, fingerprint)| IdempotencyKey::new(IDEMPOTENCY_SCOPE, key, fingerprint))
        .transpose()
        .map_err(|e| ApiError::InvalidIdempotencyKey(e.reason))
}

/// A command's outcome as the API answers it. `when_missing`: the rejection the
/// command meets on an aggregate that does not exist, which a failed precondition on
/// a missing aggregate answers with instead.
fn answer<A: HttpAggregate>(outcome: Outcome<A>, when_missing: Option<A::Rejection>) -> Result<Done, ApiError> {
    let error = match outcome {
        Ok(c) => {
            return Ok(Done {
                aggregate_id: c.aggregate_id,
                version: c.version,
                position: c.position,
                replayed: c.replayed,
            })
        }
        Err(error) => error,
    };
    Err(match (error, when_missing) {
        (CommandError::WrongExpectedVersion { actual: 0, replayed, .. }, Some(rejection)) => {
            rejected::<A>(&rejection, replayed)
        }
        (CommandError::Rejected { rejection, replayed }, _) => rejected::<A>(&rejection, replayed),
        (CommandError::WrongExpectedVersion { expected, actual, replayed }, _) => {
            let name = A::NAME;
            let detail = match expected {
                ExpectedVersion::Exact(v) => {
                    format!("If-Match \"{v}\" does not hold: the {name} is at version {actual}")
                }
                ExpectedVersion::NoStream => {
                    format!("If-None-Match: * does not hold: the {name} exists (version {actual})")
                }
                ExpectedVersion::StreamExists => format!("If-Match: * does not hold: the {name} does not exist"),
                other => format!("expected {other} but the {name} is at version {actual}"),
            };
            ApiError::PreconditionFailed { detail, current: actual, replayed }
        }
        (CommandError::InvalidInput { errors, replayed }, _) => ApiError::Validation {
            errors: errors.into_iter().map(|e| crate::dto::FieldError { field: e.field, message: e.message }).collect(),
            replayed,
        },
        (CommandError::Conflict { attempts }, _) => ApiError::ConcurrencyConflict(attempts),
        (CommandError::IdempotencyKeyReused, _) => ApiError::IdempotencyKeyReused,
        (CommandError::IdempotencyKeyInFlight, _) => ApiError::IdempotencyKeyInFlight,
        (CommandError::InvalidId { reason }, _) => ApiError::InvalidInput(reason),
        (CommandError::Store(e), _) => store_error(&e),
        (other, _) => ApiError::Internal(other.to_string()),
    })
}

/// A rejection keeps its class (hence its status), its stable code and its message.
fn rejected<A: Aggregate>(rejection: &A::Rejection, replayed: bool) -> ApiError {
    let kind = match A::rejection_kind(rejection) {
        RejectionKind::NotFound => RejectionClass::NotFound,
        RejectionKind::AlreadyExists => RejectionClass::AlreadyExists,
        RejectionKind::RuleViolation => RejectionClass::RuleViolation,
        RejectionKind::Invalid => RejectionClass::Invalid,
    };
    ApiError::Rejected { kind, code: A::rejection_code(rejection), detail: rejection.to_string(), replayed }
}

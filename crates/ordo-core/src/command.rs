//! What goes into the command handler and what comes out: the request (a command for
//! one aggregate, with what the caller believes about its version and an optional
//! idempotency key), the committed result, and why a command did not commit.

use ordo_store::{EventMetadata, ExpectedVersion, Position, StoreError, StreamId, Version};
use serde::{Deserialize, Serialize};

use crate::{Aggregate, CodecError, IdempotencyKey};

/// What the caller believes about the aggregate's version.
///
/// ```
/// use ordo_core::{CommandRequest, Expectation};
/// use ordo_store::ExpectedVersion;
/// // "Place it, but only if it is still at version 3, as I saw it" (HTTP's If-Match):
/// let place = CommandRequest::new("42", "place").expecting(Expectation::Pinned(ExpectedVersion::Exact(3)));
/// // "Create it, unless it exists":
/// let create = CommandRequest::new("43", "create").expecting(Expectation::Pinned(ExpectedVersion::NoStream));
/// assert_eq!(CommandRequest::new("44", "add").expectation, Expectation::Latest);
/// # let _ = (place, create);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Expectation {
    /// Decide against the latest state; on a conflict, reload and decide again.
    #[default]
    Latest,
    /// The stream must satisfy this before the command is decided. A pinned
    /// `Exact(n)` is never retried: a conflict is the caller's answer.
    Pinned(ExpectedVersion),
}

/// A command addressed to one aggregate, with how to run it.
#[derive(Clone, Debug)]
#[must_use]
pub struct CommandRequest<C> {
    /// The aggregate's id: its stream is `{CATEGORY}-{aggregate_id}`, so it must be
    /// non-empty (and the stream id at most 256 characters, without NUL).
    pub aggregate_id: String,
    /// What to do.
    pub command: C,
    /// What the caller believes about the aggregate's version.
    pub expectation: Expectation,
    /// Makes the command take effect at most once: a retry with the same key gets
    /// the first outcome back.
    pub idempotency: Option<IdempotencyKey>,
    /// Copied onto every event; `command_id` is filled in if empty.
    pub metadata: EventMetadata,
}

impl<C> CommandRequest<C> {
    /// `command` for aggregate `aggregate_id`, against its latest state, without a
    /// key or metadata.
    pub fn new(aggregate_id: impl Into<String>, command: C) -> Self {
        Self {
            aggregate_id: aggregate_id.into(),
            command,
            expectation: Expectation::Latest,
            idempotency: None,
            metadata: EventMetadata::default(),
        }
    }

    /// The same request with this expectation.
    pub fn expecting(mut self, expectation: Expectation) -> Self {
        self.expectation = expectation;
        self
    }

    /// The same request with this idempotency key.
    pub fn with_idempotency(mut self, key: IdempotencyKey) -> Self {
        self.idempotency = Some(key);
        self
    }

    /// The same request with this metadata.
    pub fn with_metadata(mut self, metadata: EventMetadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A committed command (or the replay of one).
#[derive(Clone, Debug, PartialEq)]
pub struct Committed<E> {
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The aggregate's stream.
    pub stream_id: StreamId,
    /// The stream's version after the command.
    pub version: Version,
    /// The global position of the last event the command appended (0 if it appended
    /// none).
    pub position: Position,
    /// The events the command appended (none if it changed nothing).
    pub events: Vec<E>,
    /// True when this is the recorded outcome of an earlier request with the same
    /// idempotency key.
    pub replayed: bool,
}

/// Why a command did not commit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<R> {
    /// The aggregate refused it (a domain outcome).
    #[error("command rejected: {rejection}")]
    Rejected {
        /// Why.
        rejection: R,
        /// True when this is the recorded answer to an earlier request with the same
        /// idempotency key.
        replayed: bool,
    },
    /// A pinned expected version did not match; nothing was appended.
    #[error("expected {expected} but the aggregate is at version {actual}")]
    WrongExpectedVersion {
        /// What the request pinned.
        expected: ExpectedVersion,
        /// The aggregate's version when the command was refused.
        actual: Version,
        /// True when this is the recorded answer to an earlier request with the same
        /// idempotency key.
        replayed: bool,
    },
    /// The caller refused the command's input before it became a command
    /// ([`CommandHandler::refuse_input`](crate::CommandHandler::refuse_input)).
    #[error("invalid input: {}", describe(errors))]
    InvalidInput {
        /// Each refused field.
        errors: Vec<FieldError>,
        /// True when this is the recorded answer to an earlier request with the same
        /// idempotency key.
        replayed: bool,
    },
    /// Other writers kept winning until the retry policy ran out; nothing was
    /// appended, and sending the command again may succeed.
    #[error("gave up after {attempts} attempts lost to concurrent writers")]
    Conflict {
        /// How many attempts were made.
        attempts: u32,
    },
    /// The key was first used for a different request.
    #[error("the idempotency key was used for a different request")]
    IdempotencyKeyReused,
    /// Another request with the key is still being processed.
    #[error("a request with this idempotency key is in flight")]
    IdempotencyKeyInFlight,
    /// The aggregate id cannot name a stream.
    #[error("invalid aggregate id: {reason}")]
    InvalidId {
        /// What is wrong with it.
        reason: String,
    },
    /// An event that does not encode, or a stored one that does not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The event store failed (see [`StoreError::is_transient`]).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<R> CommandError<R> {
    /// Whether the database connection is gone: the command may succeed later (with
    /// its idempotency key, safely).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, CommandError::Store(e) if e.is_connection_lost())
    }

    /// Whether the same command may succeed if sent again later, unchanged.
    pub fn is_transient(&self) -> bool {
        match self {
            CommandError::Store(e) => e.is_transient(),
            CommandError::Conflict { .. } | CommandError::IdempotencyKeyInFlight => true,
            _ => false,
        }
    }
}

/// One refused field of a command's input: which, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The field, as the caller's input names it (`quantity`).
    pub field: String,
    /// What is wrong with its value.
    pub message: String,
}

fn describe(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
}

/// What the handler answers.
pub type Outcome<A> = Result<Committed<<A as Aggregate>::Event>, CommandError<<A as Aggregate>::Rejection>>;

//! What goes into the command handler and what comes out: the request (a command for
//! one aggregate, with what the caller believes about its version and an optional
//! idempotency key), the committed result, and why a command did not commit.

use ordo_store::{EventMetadata, ExpectedVersion, Position, StoreError, StreamId, Version};
use serde::{Deserialize, Serialize};

use crate::{Aggregate, CodecError, IdempotencyKey};

/// What the caller believes about the aggregate's version.
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
    pub aggregate_id: String,
    pub command: C,
    pub expectation: Expectation,
    pub idempotency: Option<IdempotencyKey>,
    /// Copied onto every event; `command_id` is filled in if empty.
    pub metadata: EventMetadata,
}

impl<C> CommandRequest<C> {
    pub fn new(aggregate_id: impl Into<String>, command: C) -> Self {
        Self {
            aggregate_id: aggregate_id.into(),
            command,
            expectation: Expectation::Latest,
            idempotency: None,
            metadata: EventMetadata::default(),
        }
    }

    pub fn expecting(mut self, expectation: Expectation) -> Self {
        self.expectation = expectation;
        self
    }

    pub fn with_idempotency(mut self, key: IdempotencyKey) -> Self {
        self.idempotency = Some(key);
        self
    }

    pub fn with_metadata(mut self, metadata: EventMetadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A committed command (or the replay of one).
#[derive(Clone, Debug, PartialEq)]
pub struct Committed<E> {
    pub aggregate_id: String,
    pub stream_id: StreamId,
    /// The stream's version after the command.
    pub version: Version,
    /// The global position of the last event the command appended (0 if it appended
    /// none).
    pub position: Position,
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
    Rejected { rejection: R, replayed: bool },
    /// A pinned expected version did not match.
    #[error("expected {expected} but the aggregate is at version {actual}")]
    WrongExpectedVersion { expected: ExpectedVersion, actual: Version, replayed: bool },
    /// The caller refused the command's input before it became a command
    /// ([`CommandHandler::refuse_input`](crate::CommandHandler::refuse_input)).
    #[error("invalid input: {}", describe(errors))]
    InvalidInput { errors: Vec<FieldError>, replayed: bool },
    /// Other writers kept winning until the retry policy ran out.
    #[error("gave up after {attempts} attempts lost to concurrent writers")]
    Conflict { attempts: u32 },
    /// The key was first used for a different request.
    #[error("the idempotency key was used for a different request")]
    IdempotencyKeyReused,
    /// Another request with the key is still being processed.
    #[error("a request with this idempotency key is in flight")]
    IdempotencyKeyInFlight,
    /// The aggregate id cannot name a stream.
    #[error("invalid aggregate id: {reason}")]
    InvalidId { reason: String },
    #[error(transparent)]
    Codec(#[from] CodecError),
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

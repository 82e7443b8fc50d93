//! What can go wrong in a projection, each cause its own variant: an event a
//! projector cannot apply, a fenced runner, a read-model statement that failed, the
//! event store failing, corrupt stored state, and requests the runtime refuses.

use ordo_store::{Position, ReadModelError, StoreError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The projector cannot apply this event (a bug, or data it does not expect).
    #[error("cannot apply {event_type} at position {position}: {message}")]
    Apply { position: Position, event_type: String, message: String },
    /// Another runner (or a rebuild) moved the checkpoint: this runner is stale and
    /// its batch was rolled back.
    #[error("checkpoint of {projector} moved under this runner; its batch was rolled back")]
    Fenced { projector: String },
    #[error("no projector named {0:?}")]
    UnknownProjector(String),
    #[error("{0} is already being rebuilt")]
    AlreadyRebuilding(String),
    /// A one-stream rebuild of a projector whose rows are not keyed by stream.
    #[error("{projector} cannot rebuild a single stream: its read model is not keyed by stream")]
    NotKeyedByStream { projector: String },
    /// A read-model statement (a projector's, a checkpoint's, a table's) failed.
    #[error("read model: {0}")]
    ReadModel(#[from] ReadModelError),
    /// Reading events from the event store failed.
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    /// Stored projection state (a read-model row, a checkpoint) does not decode.
    #[error("corrupt stored state of {projector}: {reason}")]
    Corrupt { projector: String, reason: String },
    /// A task the runtime depends on (a rebuild's event reader) stopped unexpectedly.
    #[error("{task} stopped: {reason}")]
    TaskStopped { task: &'static str, reason: String },
}

impl ProjectionError {
    /// An error for `event` with `message`.
    pub fn apply(event: &ordo_store::RecordedEvent, message: impl std::fmt::Display) -> Self {
        ProjectionError::Apply {
            position: event.position,
            event_type: event.event_type.clone(),
            message: message.to_string(),
        }
    }

    /// Stored state of `projector` that does not decode.
    pub fn corrupt(projector: &str, reason: impl std::fmt::Display) -> Self {
        ProjectionError::Corrupt { projector: projector.to_owned(), reason: reason.to_string() }
    }

    /// Whether the database connection is gone: the work may succeed on a new one.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            ProjectionError::ReadModel(e) => e.is_connection_lost(),
            ProjectionError::Store(e) => e.is_connection_lost(),
            _ => false,
        }
    }

    /// Whether the same work may succeed later (a lost connection, a busy database).
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectionError::ReadModel(e) => e.is_transient(),
            ProjectionError::Store(e) => e.is_transient(),
            _ => false,
        }
    }
}

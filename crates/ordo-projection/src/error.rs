//! What can go wrong in a projection, each cause its own variant: an event a
//! projector cannot apply, a reaction that failed, a fenced runner, a read-model
//! statement that failed, the event store failing, corrupt stored state, and requests
//! the runtime refuses.

use ordo_store::{Position, ReadModelError, StoreError};

use crate::ReactionError;

/// Why a projection, a reactor, or a request to the runtime failed. Ask
/// [`ProjectionError::is_transient`] whether trying again may help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The projector cannot apply this event (a bug, or data it does not expect).
    /// Build it with [`ProjectionError::apply`].
    #[error("cannot apply {event_type} at position {position}: {message}")]
    Apply {
        /// The event's position.
        position: Position,
        /// The event's stored type name.
        event_type: String,
        /// What went wrong.
        message: String,
    },
    /// A reactor's reaction to an event failed.
    #[error("{reactor} could not react to {event_type} at position {position}: {error}")]
    Reaction {
        /// The reactor's name.
        reactor: String,
        /// The event's position.
        position: Position,
        /// The event's stored type name.
        event_type: String,
        /// What the reaction answered.
        #[source]
        error: ReactionError,
    },
    /// Another runner (or a rebuild) moved the checkpoint: this runner is stale and
    /// its batch was rolled back.
    #[error("checkpoint of {projector} moved under this runner; its batch was rolled back")]
    Fenced {
        /// The projector's (or reactor's) name.
        projector: String,
    },
    /// No projector or reactor of this name is registered with the runtime.
    #[error("no projector named {0:?}")]
    UnknownProjector(String),
    /// A read-model operation (a rebuild) asked of a reactor, which keeps no read
    /// model; replaying its events would act on them again.
    #[error("{0} is a reactor, not a projector: it has no read model to rebuild")]
    NotAProjector(String),
    /// Two projectors or reactors of one runtime share a name (which keys their
    /// checkpoints).
    #[error("two projectors or reactors are named {0:?}")]
    DuplicateName(String),
    /// A rebuild of this projector is already running (in this process or another).
    #[error("{0} is already being rebuilt")]
    AlreadyRebuilding(String),
    /// A one-stream rebuild of a projector whose rows are not keyed by stream.
    #[error("{projector} cannot rebuild a single stream: its read model is not keyed by stream")]
    NotKeyedByStream {
        /// The projector's name.
        projector: String,
    },
    /// A read-model statement (a projector's, a checkpoint's, a table's) failed.
    #[error("read model: {0}")]
    ReadModel(#[from] ReadModelError),
    /// Reading events from the event store failed.
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    /// Stored projection state (a read-model row, a checkpoint) does not decode.
    #[error("corrupt stored state of {projector}: {reason}")]
    Corrupt {
        /// Whose state.
        projector: String,
        /// What does not decode.
        reason: String,
    },
    /// A task the runtime depends on (a rebuild's event reader) stopped unexpectedly.
    #[error("{task} stopped: {reason}")]
    TaskStopped {
        /// Which task.
        task: &'static str,
        /// Why it stopped (its panic or error).
        reason: String,
    },
}

impl ProjectionError {
    /// The error a projector returns for an `event` it cannot apply: the runner
    /// retries the event, then stops the projector as `failed` at it.
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

    /// Whether the same work may succeed later (a lost connection, a busy database,
    /// a reaction's transient failure).
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectionError::ReadModel(e) => e.is_transient(),
            ProjectionError::Store(e) => e.is_transient(),
            ProjectionError::Reaction { error, .. } => matches!(error, ReactionError::Transient { .. }),
            _ => false,
        }
    }

    /// A reaction's transient failure: retried until it succeeds (what it waits for,
    /// a conflict to clear or a connection to come back, is out of its hands).
    pub(crate) fn retries_without_limit(&self) -> bool {
        matches!(self, ProjectionError::Reaction { error: ReactionError::Transient { .. }, .. })
    }

    /// A reaction's persistent failure: trying again will not help.
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, ProjectionError::Reaction { error: ReactionError::Failed { .. }, .. })
    }
}

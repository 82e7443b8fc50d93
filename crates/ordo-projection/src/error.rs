//! What can go wrong in a projection.

use ordo_store::{Position, StoreError};

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
    #[error("{projector} cannot rebuild a single stream: {reason}")]
    Unsupported { projector: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
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
}

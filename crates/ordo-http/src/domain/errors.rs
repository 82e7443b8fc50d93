//! Library errors as API errors: an outage becomes a 503, input the store refuses is
//! the client's, a projection error keeps its meaning, and everything else is an
//! internal error. (A command's outcome is mapped in `crate::command`.)

use ordo_projection::ProjectionError;
use ordo_store::StoreError;

use crate::error::ApiError;

/// An outage (connection refused or lost, a busy database, a commit whose outcome is
/// unknown) is a 503 the client may retry; input the store refuses is the client's;
/// anything else is our fault.
pub(crate) fn store_error(error: &StoreError) -> ApiError {
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

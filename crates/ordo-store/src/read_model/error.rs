//! What can go wrong with a read model's SQL: its own type, so that a failed
//! projector statement is never mistaken for a failure of the event store.

use crate::error::Failure;
use crate::StoreError;

/// A failure of read-model SQL (a projector's writes, a query, a lease, a checkpoint).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadModelError {
    /// The database could not be reached or the connection broke; whatever the
    /// transaction wrote is rolled back.
    #[error("the read-model database connection was lost: {0}")]
    ConnectionLost(#[source] sqlx::Error),
    /// Another process held the SQLite write lock past the busy timeout.
    #[error("the database is locked by another writer: {0}")]
    Locked(String),
    /// The SQLite file cannot be written.
    #[error("the database is read-only: {0}")]
    ReadOnly(String),
    /// The database refused a statement (bad SQL, a constraint, a type mismatch).
    #[error("a read-model statement failed: {0}")]
    Statement(#[source] sqlx::Error),
    /// A row does not decode into the type asked for.
    #[error("a read-model row does not decode: {0}")]
    Decode(String),
    /// The caller asked for something that cannot be done (upsert columns of different
    /// lengths): a bug in the read model's code, not in the database.
    #[error("invalid read-model request: {0}")]
    InvalidArgument(String),
    /// The transaction did not commit; nothing it wrote is kept.
    #[error("the read-model transaction could not commit: {0}")]
    CommitFailed(String),
}

impl ReadModelError {
    /// Whether the connection is gone: retry on a new one.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, ReadModelError::ConnectionLost(_))
    }

    /// Whether the same work may succeed if tried again later.
    pub fn is_transient(&self) -> bool {
        matches!(self, ReadModelError::ConnectionLost(_) | ReadModelError::Locked(_) | ReadModelError::CommitFailed(_))
    }
}

impl From<sqlx::Error> for ReadModelError {
    fn from(e: sqlx::Error) -> Self {
        match Failure::of(&e) {
            Failure::ConnectionLost => ReadModelError::ConnectionLost(e),
            Failure::Decode => ReadModelError::Decode(e.to_string()),
            Failure::Locked(message) => ReadModelError::Locked(message),
            Failure::ReadOnly(message) => ReadModelError::ReadOnly(message),
            Failure::Refused => ReadModelError::Statement(e),
        }
    }
}

/// The SQLite writer reports in store errors; a read-model transaction on it reports
/// the same failures in its own terms.
impl From<StoreError> for ReadModelError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(e) => ReadModelError::ConnectionLost(e),
            StoreError::Database(e) => ReadModelError::Statement(e),
            StoreError::Locked(m) => ReadModelError::Locked(m),
            StoreError::ReadOnly(m) => ReadModelError::ReadOnly(m),
            StoreError::Corrupt(m) => ReadModelError::Decode(m),
            other => ReadModelError::CommitFailed(other.to_string()),
        }
    }
}

/// Schema work (component migrations) reports in store errors, as the store's own
/// migrations do.
impl From<ReadModelError> for StoreError {
    fn from(e: ReadModelError) -> Self {
        match e {
            ReadModelError::ConnectionLost(e) => StoreError::Unavailable(e),
            ReadModelError::Statement(e) => StoreError::Database(e),
            ReadModelError::Locked(m) => StoreError::Locked(m),
            ReadModelError::ReadOnly(m) => StoreError::ReadOnly(m),
            ReadModelError::Decode(m) => StoreError::Corrupt(m),
            ReadModelError::CommitFailed(m) => StoreError::CommitFailed(m),
            ReadModelError::InvalidArgument(m) => StoreError::InvalidAppend { reason: m },
        }
    }
}

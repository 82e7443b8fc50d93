//! The store's one error type. Variants are what a caller matches on: a version
//! conflict is a domain outcome to retry or report, the rest are faults.

use sqlx::error::DatabaseError;

use crate::{ExpectedVersion, Version};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was not at the version the writer expected; nothing was appended.
    #[error("stream {stream:?} expected {expected} but is at version {actual}")]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedVersion,
        /// The stream's version when the append was refused (0: no stream).
        actual: Version,
    },

    /// An idempotency record with this scope and key already exists; nothing was written.
    #[error("idempotency key {key:?} in scope {scope:?} is already recorded")]
    IdempotencyKeyExists { scope: String, key: String },

    #[error("invalid stream id: {reason}")]
    InvalidStreamId { reason: String },

    #[error("invalid append: {reason}")]
    InvalidAppend { reason: String },

    #[error("invalid database URL {url:?}: {reason}")]
    InvalidDatabaseUrl { url: String, reason: String },

    /// The database could not be reached or refused the connection.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),

    /// The SQLite file (or its directory) cannot be written.
    #[error("database is read-only: {0}")]
    ReadOnly(String),

    /// Another process held the SQLite write lock for longer than the busy timeout.
    #[error("database is locked by another writer: {0}")]
    Locked(String),

    /// The database was migrated by a newer Ordo than this binary.
    #[error("the database schema is newer than this binary (migration {version} is unknown to it); upgrade ordo")]
    SchemaTooNew { version: i64 },

    #[error("migration failed: {0}")]
    Migration(#[source] sqlx::migrate::MigrateError),

    /// A stored value that does not decode (a corrupt row or a foreign writer).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),

    /// The transaction could not commit; nothing it held was written.
    #[error("the write could not be committed: {0}")]
    CommitFailed(String),

    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// Whether retrying the same call later may succeed (connection trouble, a busy
    /// database), as opposed to a conflict or a bad request.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Locked(_))
            || matches!(self, StoreError::Database(e) if is_connection_error(e))
    }
}

fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed)
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_connection_error(&e) {
            return StoreError::Unavailable(e);
        }
        // SQLite result codes: 5 = SQLITE_BUSY, 6 = SQLITE_LOCKED, 8 = SQLITE_READONLY,
        // 14 = SQLITE_CANTOPEN; extended codes keep the primary code in the low byte.
        if let Some(db) = sqlite_error(&e) {
            if let Some(code) = db.code().and_then(|c| c.parse::<i64>().ok()) {
                match code & 0xff {
                    5 | 6 => return StoreError::Locked(db.message().to_owned()),
                    8 => return StoreError::ReadOnly(db.message().to_owned()),
                    14 => return StoreError::Unavailable(e),
                    _ => {}
                }
            }
        }
        StoreError::Database(e)
    }
}

/// The error if SQLite reported it (its codes mean nothing on PostgreSQL, whose
/// SQLSTATEs would parse as numbers too).
fn sqlite_error(e: &sqlx::Error) -> Option<&sqlx::sqlite::SqliteError> {
    match e {
        sqlx::Error::Database(db) => db.try_downcast_ref::<sqlx::sqlite::SqliteError>(),
        _ => None,
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::VersionMissing(version) => StoreError::SchemaTooNew { version },
            sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
            other => StoreError::Migration(other),
        }
    }
}

/// Whether `e` is a unique-constraint violation of `constraint` (matched by SQLSTATE
/// 23505 on PostgreSQL, extended code 2067/1555 on SQLite, and the constraint or
/// index name the database reports — never by parsing the message).
pub(crate) fn is_unique_violation(e: &sqlx::Error, constraint: &str) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if !matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation) {
        return false;
    }
    match db.constraint() {
        Some(name) => name == constraint,
        // SQLite does not name constraints; its writer checks under the write lock instead.
        None => false,
    }
}

//! The store's error types. Variants are what a caller matches on: a version
//! conflict is a domain outcome to retry or report, bad input is the caller's to fix,
//! a lost connection is worth retrying, and corrupt data is a fault to look into.
//! Whether a database error means "the connection is gone" is decided here, once,
//! for the event store and the read models alike.

use sqlx::error::DatabaseError;

use crate::{ExpectedVersion, RecordedEvent, Version};

/// Everything that can go wrong in the event store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was not at the version the writer expected; nothing was appended.
    #[error("stream {stream:?} expected {expected} but is at version {actual}")]
    WrongExpectedVersion {
        /// The stream's id.
        stream: String,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was refused (0: no stream).
        actual: Version,
        /// The events after the version the append expected, oldest first, as far as
        /// the store could read them in the same round trip (at most
        /// [`MISSED_EVENTS_MAX`](crate::MISSED_EVENTS_MAX), or none): a writer that
        /// decided on the expected version can catch up from them without reading the
        /// stream. Empty where the append expected no version in particular.
        missed: Vec<RecordedEvent>,
    },

    /// An idempotency record with this scope and key already exists; nothing was written.
    #[error("idempotency key {key:?} in scope {scope:?} is already recorded")]
    IdempotencyKeyExists {
        /// The record's scope.
        scope: String,
        /// The key.
        key: String,
    },

    /// A stream id that is empty, too long or contains NUL.
    #[error("invalid stream id: {reason}")]
    InvalidStreamId {
        /// What is wrong with it.
        reason: String,
    },

    /// A stream category that would make category filters lie (empty, or with a `-`).
    #[error("invalid stream category {category:?}: {reason}")]
    InvalidCategory {
        /// The category.
        category: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An idempotency key that is empty, too long or contains NUL (or a scope or
    /// fingerprint with NUL).
    #[error("invalid idempotency key: {reason}")]
    InvalidIdempotencyKey {
        /// What is wrong with it.
        reason: String,
    },

    /// An append with no events, too many, or an event with an empty type.
    #[error("invalid append: {reason}")]
    InvalidAppend {
        /// What is wrong with it.
        reason: String,
    },

    /// A version, position or count that the database cannot hold.
    #[error("{what} {value} is out of range")]
    OutOfRange {
        /// Which kind of value.
        what: &'static str,
        /// The value.
        value: u64,
    },

    /// A database URL of an unknown scheme, or one its backend cannot parse.
    #[error("invalid database URL {url:?}: {reason}")]
    InvalidDatabaseUrl {
        /// The URL, or the part of it the message shows (PostgreSQL's with its
        /// password masked).
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The database could not be reached, or the connection to it was lost.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),

    /// The SQLite file (or its directory) cannot be written.
    #[error("database is read-only: {0}")]
    ReadOnly(String),

    /// Another process held the SQLite write lock for longer than the busy timeout.
    #[error("database is locked by another writer: {0}")]
    Locked(String),

    /// The database is set up so that an acknowledged write could be lost.
    #[error("refusing to write: the database runs with {setting}: {reason}")]
    UnsafeDurability {
        /// The setting and its value (`synchronous_commit=off`).
        setting: String,
        /// Why it is refused, and how to fix it.
        reason: String,
    },

    /// The database was migrated by a newer Ordo than this binary.
    #[error("the database schema is newer than this binary (migration {version} of {component} is unknown to it); upgrade ordo")]
    SchemaTooNew {
        /// Whose schema: `ordo-store`, or a component such as `ordo-projection`.
        component: String,
        /// The newest migration the database records.
        version: i64,
    },

    /// A migration could not be applied.
    #[error("migration failed: {0}")]
    Migration(String),

    /// A stored value that does not decode (a corrupt row or a foreign writer).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),

    /// The write's outcome is unknown or it was not committed: the connection broke
    /// around the commit, or the group it went out in failed. Retrying is safe with an
    /// idempotency key, and may append twice without one.
    #[error("the write could not be committed: {0}")]
    CommitFailed(String),

    /// Any other database error (a statement the database refused).
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// Whether the database connection is gone (it could not be reached, or it broke):
    /// the call may succeed on a new connection later.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// Whether retrying the same call later may succeed (a lost connection, a busy
    /// database, a commit whose outcome is unknown), as opposed to a conflict or bad
    /// input.
    pub fn is_transient(&self) -> bool {
        self.is_connection_lost() || matches!(self, StoreError::Locked(_) | StoreError::CommitFailed(_))
    }

    /// Whether the caller's input was refused (a bad id, key, append or URL).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            StoreError::InvalidStreamId { .. }
                | StoreError::InvalidCategory { .. }
                | StoreError::InvalidIdempotencyKey { .. }
                | StoreError::InvalidAppend { .. }
                | StoreError::OutOfRange { .. }
                | StoreError::InvalidDatabaseUrl { .. }
        )
    }
}

/// Whether `e` means the connection is gone (never made, or broken): I/O and TLS
/// failures, a closed or exhausted pool, a protocol error (sqlx drops such a
/// connection), and the server's own "connection exception" and "operator
/// intervention" SQLSTATEs (class 08, 57P01..57P03: a terminated backend, a server
/// shutting down or starting up).
pub(crate) fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(sqlite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                // SQLITE_CANTOPEN: the file is gone or cannot be opened.
                return sqlite_primary_code(sqlite) == Some(14);
            }
            db.code().is_some_and(|state| state.starts_with("08") || matches!(&*state, "57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

/// Whether `e` says a value read from the database does not decode.
fn is_decode_failure(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::TypeNotFound { .. }
    )
}

/// SQLite's primary result code (extended codes keep it in the low byte).
fn sqlite_primary_code(e: &sqlx::sqlite::SqliteError) -> Option<i64> {
    e.code().and_then(|c| c.parse::<i64>().ok()).map(|code| code & 0xff)
}

/// The error if SQLite reported it (its codes mean nothing on PostgreSQL, whose
/// SQLSTATEs would parse as numbers too).
fn sqlite_error(e: &sqlx::Error) -> Option<&sqlx::sqlite::SqliteError> {
    match e {
        sqlx::Error::Database(db) => db.try_downcast_ref::<sqlx::sqlite::SqliteError>(),
        _ => None,
    }
}

/// What a database error means, decided once for the event store and read models.
pub(crate) enum Failure {
    ConnectionLost,
    Decode,
    /// SQLite's write lock was held past the busy timeout.
    Locked(String),
    /// The SQLite file cannot be written.
    ReadOnly(String),
    /// A statement the database refused.
    Refused,
}

impl Failure {
    pub(crate) fn of(e: &sqlx::Error) -> Self {
        if is_connection_lost(e) {
            return Failure::ConnectionLost;
        }
        if is_decode_failure(e) {
            return Failure::Decode;
        }
        // SQLite result codes: 5 = SQLITE_BUSY, 6 = SQLITE_LOCKED, 8 = SQLITE_READONLY.
        if let Some(db) = sqlite_error(e) {
            match sqlite_primary_code(db) {
                Some(5 | 6) => return Failure::Locked(db.message().to_owned()),
                Some(8) => return Failure::ReadOnly(db.message().to_owned()),
                _ => {}
            }
        }
        Failure::Refused
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match Failure::of(&e) {
            Failure::ConnectionLost => StoreError::Unavailable(e),
            Failure::Decode => StoreError::Corrupt(e.to_string()),
            Failure::Locked(message) => StoreError::Locked(message),
            Failure::ReadOnly(message) => StoreError::ReadOnly(message),
            Failure::Refused => StoreError::Database(e),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::VersionMissing(version) => {
                StoreError::SchemaTooNew { component: "ordo-store".into(), version }
            }
            sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
            other => StoreError::Migration(other.to_string()),
        }
    }
}

/// Whether `e` is a unique-constraint violation of `constraint` (matched by SQLSTATE
/// 23505 on PostgreSQL and the constraint name the database reports — never by
/// parsing the message).
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

//! Idempotency keys: what a keyed command carries, and how its outcome is recorded so
//! that a retry gets the same answer.

use ordo_store::{EventStore, ExpectedVersion, Version};

use crate::FieldError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A caller's idempotency key, with what it is unique within and a fingerprint of the
/// request it was first used for. It cannot be built invalid (an empty or too long
/// key), so the store never sees one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    scope: String,
    key: String,
    fingerprint: String,
}

/// A key the store would refuse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid idempotency key: {reason}")]
pub struct InvalidIdempotencyKey {
    /// What is wrong with it.
    pub reason: String,
}

impl IdempotencyKey {
    /// `key` (1 to 255 characters, no NUL) within `scope`, first used for the request
    /// with `fingerprint`. The fingerprint is whatever identifies the request (a hash
    /// of its body, say): the same key with another fingerprint is refused with
    /// [`CommandError::IdempotencyKeyReused`](crate::CommandError::IdempotencyKeyReused)
    /// instead of replaying an answer to a different request. Scope and fingerprint
    /// may be empty but not contain NUL.
    ///
    /// ```
    /// use ordo_core::IdempotencyKey;
    /// assert!(IdempotencyKey::new("http", "k-1", "f").is_ok());
    /// assert!(IdempotencyKey::new("http", "", "f").is_err());
    /// assert!(IdempotencyKey::new("http", "k".repeat(256), "f").is_err());
    /// ```
    pub fn new(
        scope: impl Into<String>,
        key: impl Into<String>,
        fingerprint: impl Into<String>,
    ) -> Result<Self, InvalidIdempotencyKey> {
        let (scope, key, fingerprint) = (scope.into(), key.into(), fingerprint.into());
        ordo_store::check_idempotency_key(&key).map_err(|e| InvalidIdempotencyKey { reason: e.to_string() })?;
        if scope.contains('\0') || fingerprint.contains('\0') {
            return Err(InvalidIdempotencyKey { reason: "scope and fingerprint cannot contain NUL".into() });
        }
        Ok(Self { scope, key, fingerprint })
    }

    /// What the key is unique within.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The caller's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The fingerprint of the request.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// The recorded outcome, as stored in the record's `outcome` column.
#[derive(Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum RecordedOutcome<R> {
    /// The command committed; the record's appended range says what it wrote.
    Committed,
    /// The aggregate refused the command.
    Rejected { rejection: R },
    /// A pinned expected version did not match.
    WrongExpectedVersion { expected: ExpectedVersion, actual: Version },
    /// The input was refused before it became a command.
    InvalidInput { errors: Vec<FieldError> },
    /// The command changed nothing: the aggregate was at `version` (no events appended).
    Unchanged { aggregate_id: String, stream_id: ordo_store::StreamId, version: Version },
}

/// Deletes expired idempotency records every `every` (the first time at once), until
/// the returned task is aborted. A failed purge is logged and tried again next time.
/// Must be called inside a tokio runtime; panics if `every` is zero.
pub fn spawn_idempotency_purge(store: Arc<dyn EventStore>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match store.purge_idempotency(chrono::Utc::now()).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "purged expired idempotency records"),
                Err(e) => tracing::warn!(error = %e, "could not purge expired idempotency records"),
            }
        }
    })
}

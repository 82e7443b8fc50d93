//! The backend-neutral `EventStore` trait and the requests it takes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    AppendResult, EventFilter, EventSignal, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError, StreamId,
    Version, MAX_IDEMPOTENCY_KEY_CHARS,
};

/// How many events whole-stream reads (loading an aggregate, repairing a stream's
/// read model) ask for per page.
pub const READ_PAGE: usize = 1_000;

/// A query that fails unless the database answers and holds the `events` table.
pub(crate) const PING: &str = "SELECT 1 FROM events LIMIT 1";

/// Migration 2 created the projection runtime's checkpoint table; the runtime owns
/// that schema now (its own migrations create the table if missing), so a database
/// that recorded the old step must not be taken for one migrated by a newer Ordo.
pub(crate) const FORGET_MOVED_MIGRATION: &str =
    "DELETE FROM _sqlx_migrations WHERE version = 2 AND description = 'projections'";

/// Which database a store runs on (configuration: which URL scheme was given).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// One append: events for one stream, the version check that guards them, and
/// optionally the idempotency record that must commit with them.
#[derive(Clone, Debug)]
#[must_use]
pub struct AppendRequest {
    pub stream_id: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub idempotency: Option<IdempotencyRecord>,
}

impl AppendRequest {
    pub fn new(stream_id: StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        Self { stream_id, expected, events, idempotency: None }
    }

    /// Commits `record` in the same transaction as the events.
    pub fn with_idempotency(mut self, record: IdempotencyRecord) -> Self {
        self.idempotency = Some(record);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.events.is_empty() {
            return Err(StoreError::InvalidAppend { reason: "an append needs at least one event".into() });
        }
        if self.events.len() > crate::MAX_EVENTS_PER_APPEND {
            return Err(StoreError::InvalidAppend {
                reason: format!(
                    "an append carries at most {} events, this one has {}",
                    crate::MAX_EVENTS_PER_APPEND,
                    self.events.len()
                ),
            });
        }
        if let Some(e) = self.events.iter().find(|e| e.event_type.is_empty()) {
            return Err(StoreError::InvalidAppend { reason: format!("event {} has an empty type", e.event_id) });
        }
        if let Some(record) = &self.idempotency {
            record.validate()?;
        }
        Ok(())
    }
}

/// The record that makes a keyed command take effect at most once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// What the key is unique within (a route, a tenant, an API client).
    pub scope: String,
    /// The caller's key.
    pub key: String,
    /// A digest of the request, so that a key reused for another request is caught.
    pub fingerprint: String,
    /// The application's account of the outcome, replayed verbatim on a retry.
    pub outcome: serde_json::Value,
    pub expires_at: DateTime<Utc>,
}

impl IdempotencyRecord {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_idempotency_key(&self.key)?;
        if self.scope.contains('\0') || self.fingerprint.contains('\0') {
            return Err(StoreError::InvalidIdempotencyKey {
                reason: "idempotency scope and fingerprint cannot contain NUL".into(),
            });
        }
        Ok(())
    }
}

/// Checks a caller's idempotency key: 1 to [`MAX_IDEMPOTENCY_KEY_CHARS`] characters,
/// no NUL.
pub fn check_idempotency_key(key: &str) -> Result<(), StoreError> {
    crate::event::check_text("an idempotency key", key, MAX_IDEMPOTENCY_KEY_CHARS)
        .map_err(|reason| StoreError::InvalidIdempotencyKey { reason })
}

/// An idempotency record as stored, with what its append wrote (if it appended).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredIdempotency {
    pub record: IdempotencyRecord,
    /// The append committed with the record; `None` for a recorded rejection.
    pub appended: Option<AppendedRange>,
    pub created_at: DateTime<Utc>,
}

/// The stream range and last position an idempotent append wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendedRange {
    pub stream_id: StreamId,
    pub first_version: Version,
    pub last_version: Version,
    pub last_position: Position,
}

/// An aggregate's state at a stream version, saved so that loads can skip the events
/// before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub stream_id: StreamId,
    pub version: Version,
    /// The version of the state's shape; a snapshot of another shape is ignored.
    pub state_schema: u32,
    pub state: serde_json::Value,
}

/// An append-only event store with per-stream optimistic concurrency and a global
/// order that readers can follow without ever skipping an event.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Checks that the database answers and holds the store's schema (for readiness
    /// probes).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Appends `request.events` to the stream if it satisfies `request.expected`, all
    /// or nothing, together with the idempotency record if there is one.
    async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError>;

    /// Up to `max` events of a stream from `from_version` on, oldest first. Sees every
    /// committed event of the stream at once, including the caller's own last append.
    async fn read_stream(
        &self,
        stream_id: &StreamId,
        from_version: Version,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The stream's current version (0: no stream).
    async fn stream_version(&self, stream_id: &StreamId) -> Result<Version, StoreError>;

    /// Up to `max` events after `after` (0: from the start) in global order, that pass
    /// `filter`. Never returns an event while an event before it may still commit.
    async fn read_all(
        &self,
        after: Position,
        max: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The position of the last event `read_all` can return now (0: none).
    async fn head_position(&self) -> Result<Position, StoreError>;

    /// How many events `read_all` would return after `after`, ignoring `max`.
    async fn count_after(&self, after: Position, filter: &EventFilter) -> Result<u64, StoreError>;

    /// Wake-ups when new events may be readable (local appends at once, other
    /// processes' appends through the database's notification where it has one).
    fn subscribe(&self) -> EventSignal;

    /// Records a command's outcome under an idempotency key without appending events
    /// (a deterministic rejection). Fails with `IdempotencyKeyExists` if the key is taken.
    async fn record_outcome(&self, record: IdempotencyRecord) -> Result<(), StoreError>;

    /// The live (unexpired) record for a key, if any.
    async fn find_idempotency(&self, scope: &str, key: &str) -> Result<Option<StoredIdempotency>, StoreError>;

    /// Deletes records that expired before `now`; returns how many.
    async fn purge_idempotency(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Saves a snapshot unless a newer one is already stored.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// The newest snapshot of a stream, if any.
    async fn load_snapshot(&self, stream_id: &StreamId) -> Result<Option<Snapshot>, StoreError>;
}

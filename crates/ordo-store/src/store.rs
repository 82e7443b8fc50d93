//! The backend-neutral `EventStore` trait and the requests it takes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    AppendResult, EventFilter, EventSignal, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError, StreamId,
    Version, MAX_IDEMPOTENCY_KEY_CHARS,
};

/// The most events a refused append hands back as what the writer missed (see
/// [`StoreError::WrongExpectedVersion`]).
pub const MISSED_EVENTS_MAX: usize = 64;

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
    /// SQLite: an embedded file (`sqlite://…`).
    Sqlite,
    /// PostgreSQL: a server (`postgres://…`).
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
    /// The stream to append to.
    pub stream_id: StreamId,
    /// What the stream must be at for the append to happen.
    pub expected: ExpectedVersion,
    /// The events, in order: 1 to [`MAX_EVENTS_PER_APPEND`](crate::MAX_EVENTS_PER_APPEND),
    /// each with a non-empty type.
    pub events: Vec<NewEvent>,
    /// A record to commit with the events, if the command was keyed.
    pub idempotency: Option<IdempotencyRecord>,
}

impl AppendRequest {
    /// An append of `events` to `stream_id`, guarded by `expected`, without an
    /// idempotency record. It is checked when appended, not here.
    pub fn new(stream_id: StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        Self { stream_id, expected, events, idempotency: None }
    }

    /// Commits `record` in the same transaction as the events; the append then fails
    /// with [`StoreError::IdempotencyKeyExists`] (appending nothing) if the record's
    /// scope and key are taken.
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
    /// When the record may be purged ([`EventStore::purge_idempotency`]). Until it is
    /// purged it is found and holds its key, expired or not.
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
    /// The record as written.
    pub record: IdempotencyRecord,
    /// The append committed with the record; `None` for a recorded rejection.
    pub appended: Option<AppendedRange>,
    /// When the record was written.
    pub created_at: DateTime<Utc>,
}

/// The stream range and last position an idempotent append wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendedRange {
    /// The stream appended to.
    pub stream_id: StreamId,
    /// The version of the first event appended.
    pub first_version: Version,
    /// The version of the last event appended.
    pub last_version: Version,
    /// The global position of the last event appended.
    pub last_position: Position,
}

/// An aggregate's state at a stream version, saved so that loads can skip the events
/// before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The stream whose state this is.
    pub stream_id: StreamId,
    /// The stream version the state includes (events up to and including it).
    pub version: Version,
    /// The version of the state's shape; a snapshot of another shape is ignored.
    pub state_schema: u32,
    /// The state, serialized.
    pub state: serde_json::Value,
}

/// An append-only event store with per-stream optimistic concurrency and a global
/// order that readers can follow without ever skipping an event. [`connect`] and
/// [`open`] return one for a database URL; [`SqliteStore`] and [`PostgresStore`]
/// are the implementations.
///
/// Errors are [`StoreError`]s: match on [`StoreError::WrongExpectedVersion`] for a
/// lost race, and ask [`StoreError::is_transient`] whether a retry may help.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ordo_store::StoreError> {
/// # let dir = std::env::temp_dir().join(format!("ordo-doc-store-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # let url = format!("sqlite://{}", dir.join("ordo.db").display());
/// use ordo_store::{AppendRequest, EventFilter, ExpectedVersion, NewEvent, StoreError, StreamId};
///
/// let store = ordo_store::connect(&url).await?;
/// let stream = StreamId::new("order-7")?;
/// let first = vec![NewEvent::new("OrderCreated", serde_json::json!({"customer_id": "c-1"}))];
/// let written = store.append(AppendRequest::new(stream.clone(), ExpectedVersion::NoStream, first)).await?;
/// assert_eq!((written.first_version, written.last_version), (1, 1));
///
/// // Two writers that both read version 1: the second one loses, and appends nothing.
/// let item = || vec![NewEvent::new("ItemAdded", serde_json::json!({"sku": "A"}))];
/// store.append(AppendRequest::new(stream.clone(), ExpectedVersion::Exact(1), item())).await?;
/// let lost = store.append(AppendRequest::new(stream.clone(), ExpectedVersion::Exact(1), item())).await;
/// assert!(matches!(lost, Err(StoreError::WrongExpectedVersion { actual: 2, .. })));
///
/// assert_eq!(store.stream_version(&stream).await?, 2);
/// let all = store.read_all(0, 100, &EventFilter::All).await?;
/// assert_eq!(all.len(), 2);
/// assert!(all[0].position < all[1].position);
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok(()) }
/// ```
///
/// [`connect`]: crate::connect
/// [`open`]: crate::open
/// [`SqliteStore`]: crate::sqlite::SqliteStore
/// [`PostgresStore`]: crate::postgres::PostgresStore
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Which database this store runs on.
    fn backend(&self) -> Backend;

    /// Checks that the database answers and holds the store's schema (for readiness
    /// probes).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Appends `request.events` to the stream if it satisfies `request.expected`, all
    /// or nothing, together with the idempotency record if there is one. Returns once
    /// the append is durable.
    ///
    /// Fails with [`StoreError::WrongExpectedVersion`] if the stream is elsewhere,
    /// [`StoreError::IdempotencyKeyExists`] if the record's key is taken (nothing is
    /// written in either case), [`StoreError::InvalidAppend`] for no events, too many,
    /// or one with an empty type, [`StoreError::InvalidIdempotencyKey`] for a bad
    /// record, and [`StoreError::CommitFailed`] when the outcome is unknown.
    async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError>;

    /// Up to `max` events of a stream from `from_version` on, oldest first (none for a
    /// stream that does not exist). Sees every committed event of the stream at once,
    /// including the caller's own last append.
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

    /// The record for a key, if any: until it is purged, expired or not (the key is
    /// taken until then, too).
    async fn find_idempotency(&self, scope: &str, key: &str) -> Result<Option<StoredIdempotency>, StoreError>;

    /// Deletes records that expired before `now`; returns how many.
    async fn purge_idempotency(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Saves a snapshot unless a newer one is already stored.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// The newest snapshot of a stream, if any.
    async fn load_snapshot(&self, stream_id: &StreamId) -> Result<Option<Snapshot>, StoreError>;

    /// Holds `stream_id` for one writer until it appends or lets go (drops the hold):
    /// meanwhile appends to the stream from elsewhere wait, so what the holder reads
    /// stays current and its append cannot lose a race. For a writer that keeps
    /// losing races to writers with fresher caches (fairness, not correctness: every
    /// append still checks its expected version, held or not).
    ///
    /// PostgreSQL holds the stream with a transaction-level advisory lock that every
    /// append also takes, shared. The default (SQLite, whose single writer already
    /// serializes appends) holds nothing: reads and the append go to the store.
    async fn hold_stream<'a>(&'a self, stream_id: &StreamId) -> Result<Box<dyn HeldStream + 'a>, StoreError> {
        Ok(Box::new(Unheld { store: self, stream_id: stream_id.clone() }))
    }
}

/// A stream held for one writer ([`EventStore::hold_stream`]).
#[async_trait]
pub trait HeldStream: Send {
    /// Up to `max` events of the held stream from `from_version` on, oldest first.
    async fn read(&mut self, from_version: Version, max: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Appends to the held stream (as [`EventStore::append`] does) and lets it go.
    async fn append(self: Box<Self>, request: AppendRequest) -> Result<AppendResult, StoreError>;
}

/// The hold of a store that needs none: reads and appends go to the store.
struct Unheld<'a, S: ?Sized> {
    store: &'a S,
    stream_id: StreamId,
}

#[async_trait]
impl<S: EventStore + ?Sized> HeldStream for Unheld<'_, S> {
    async fn read(&mut self, from_version: Version, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.store.read_stream(&self.stream_id, from_version, max).await
    }

    async fn append(self: Box<Self>, request: AppendRequest) -> Result<AppendResult, StoreError> {
        check_held(&self.stream_id, &request)?;
        self.store.append(request).await
    }
}

/// Refuses an append under a hold to another stream than the held one.
pub(crate) fn check_held(held: &StreamId, request: &AppendRequest) -> Result<(), StoreError> {
    if &request.stream_id != held {
        return Err(StoreError::InvalidAppend {
            reason: format!("the hold is on {held}, not on {}", request.stream_id),
        });
    }
    Ok(())
}

//! The vocabulary of the store: stream ids, events going in and coming out, and the
//! expected-version check that guards every append.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

use crate::StoreError;

/// The longest stream id the store accepts, in characters.
pub const MAX_STREAM_ID_CHARS: usize = 256;

/// The most events one append may carry (PostgreSQL positions reserve 16 bits per
/// transaction for the index of an event within its append; see `ARCHITECTURE.md`).
pub const MAX_EVENTS_PER_APPEND: usize = 65_535;

/// The longest idempotency key the store accepts, in characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// A stream's version: 1 for its first event, contiguous after that; 0 means "no stream".
pub type Version = u64;

/// A global position in `$all`. Strictly increasing in the order readers see events,
/// but not dense: there are gaps between appends (on PostgreSQL, large ones).
pub type Position = u64;

/// The id of a stream: 1 to [`MAX_STREAM_ID_CHARS`] characters, any Unicode except NUL.
///
/// Its *category* is the part before the first `-` (`order-42` → `order`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StreamId(String);

impl StreamId {
    /// Checks and wraps a stream id; [`StoreError::InvalidStreamId`] if it is empty,
    /// too long or contains NUL.
    ///
    /// ```
    /// use ordo_store::StreamId;
    /// assert_eq!(StreamId::new("order-42").unwrap().category(), "order");
    /// assert!(StreamId::new("").is_err());
    /// ```
    pub fn new(id: impl Into<String>) -> Result<Self, StoreError> {
        let id = id.into();
        check_text("a stream id", &id, MAX_STREAM_ID_CHARS).map_err(|reason| StoreError::InvalidStreamId { reason })?;
        Ok(Self(id))
    }

    /// The stream `{category}-{id}` of an entity in `category`. The category must be
    /// non-empty and free of `-`: the category of a stream is the part before its
    /// first `-`, so a `-` in it would make category filters miss the stream.
    ///
    /// ```
    /// use ordo_store::StreamId;
    /// assert_eq!(StreamId::in_category("order", "42-a").unwrap().as_str(), "order-42-a");
    /// assert!(StreamId::in_category("sales-order", "42").is_err());
    /// ```
    pub fn in_category(category: &str, id: &str) -> Result<Self, StoreError> {
        check_category(category)?;
        if id.is_empty() {
            return Err(StoreError::InvalidStreamId { reason: "an entity id cannot be empty".into() });
        }
        Self::new(format!("{category}-{id}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `-`, or the whole id when it has none.
    pub fn category(&self) -> &str {
        category_of(&self.0)
    }
}

/// Checks that `value` (`what`, for the message) has 1 to `max` characters and no NUL;
/// the reason if not.
pub(crate) fn check_text(what: &str, value: &str, max: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if chars == 0 || chars > max {
        return Err(format!("{what} has 1 to {max} characters, this one has {chars}"));
    }
    if value.contains('\0') {
        return Err(format!("{what} cannot contain NUL"));
    }
    Ok(())
}

/// Whether `category` can name a stream category: non-empty, no `-`, no NUL. A
/// `const fn`, so that a category fixed at compile time can be checked there.
pub const fn is_valid_category(category: &str) -> bool {
    let bytes = category.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let mut i = 0;
    // Byte by byte: `-` and NUL are ASCII, and never part of a multi-byte character.
    while i < bytes.len() {
        if bytes[i] == b'-' || bytes[i] == 0 {
            return false;
        }
        i += 1;
    }
    true
}

/// Checks that `category` can name a stream category: non-empty, no `-`, no NUL.
pub fn check_category(category: &str) -> Result<(), StoreError> {
    let reason = if category.is_empty() {
        "a category cannot be empty"
    } else if category.contains('-') {
        "a category cannot contain '-': a stream's category is the part before its first '-'"
    } else if category.contains('\0') {
        "a category cannot contain NUL"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidCategory { category: category.to_owned(), reason: reason.into() })
}

/// The category of a stream id: the part before its first `-`.
pub(crate) fn category_of(stream_id: &str) -> &str {
    stream_id.split('-').next().unwrap_or(stream_id)
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({:?})", self.0)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StreamId::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What the writer believes about the stream it appends to. A wrong belief fails the
/// whole append with [`StoreError::WrongExpectedVersion`].
///
/// ```
/// use ordo_store::ExpectedVersion;
/// // A stream at version 3:
/// assert!(ExpectedVersion::Exact(3).accepts(3));
/// assert!(!ExpectedVersion::Exact(2).accepts(3)); // someone else appended since
/// assert!(ExpectedVersion::StreamExists.accepts(3));
/// assert!(!ExpectedVersion::NoStream.accepts(3));
/// // No stream yet:
/// assert!(ExpectedVersion::NoStream.accepts(0) && ExpectedVersion::Exact(0).accepts(0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check: append after whatever is there.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream must be at exactly this version (0 is the same as `NoStream`).
    Exact(Version),
}

impl ExpectedVersion {
    /// The version this expectation names, if it names one (`NoStream` is 0).
    pub fn version(self) -> Option<Version> {
        match self {
            ExpectedVersion::Exact(v) => Some(v),
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
        }
    }

    /// Whether a stream at `current` (0 = no stream) satisfies this expectation.
    pub fn accepts(self, current: Version) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::StreamExists => current > 0,
            ExpectedVersion::Exact(v) => current == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Who caused an event and why: carried with every event, never interpreted by the store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Ties together everything one user request caused, across streams and services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The message (command or event) that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The command whose decision produced this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<Uuid>,
    /// Anything else the application wants to keep beside the event.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An event to append.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// Unique across the store; a v7 uuid by default, so that ids index well.
    pub event_id: Uuid,
    /// The stable name the event is stored under (`OrderPlaced`), never a Rust path.
    pub event_type: String,
    /// The version of the payload's shape, for upcasting old events.
    pub schema_version: u32,
    /// The payload.
    pub data: serde_json::Value,
    /// Correlation, causation and the like.
    pub metadata: EventMetadata,
}

impl NewEvent {
    /// An event with a fresh id, schema version 1 and empty metadata.
    pub fn new(event_type: impl Into<String>, data: serde_json::Value) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            data,
            metadata: EventMetadata::default(),
        }
    }

    /// The same event with this schema version.
    #[must_use]
    pub fn with_schema_version(mut self, schema_version: u32) -> Self {
        self.schema_version = schema_version;
        self
    }

    /// The same event with this metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: EventMetadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Its place in `$all`.
    pub position: Position,
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its version within the stream (from 1).
    pub version: Version,
    /// The id it was appended with.
    pub event_id: Uuid,
    /// The name it was stored under.
    pub event_type: String,
    /// The schema version of `data` as written; upcast before decoding if it is old.
    pub schema_version: u32,
    /// The payload, as written.
    pub data: serde_json::Value,
    /// Correlation, causation and the like, as written.
    pub metadata: EventMetadata,
    /// When it was appended: by the appending process's clock on SQLite, the database
    /// server's on PostgreSQL.
    pub recorded_at: DateTime<Utc>,
}

/// What a successful append wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// The stream appended to.
    pub stream_id: StreamId,
    /// The version of the first appended event.
    pub first_version: Version,
    /// The stream's version after the append.
    pub last_version: Version,
    /// The global position of each appended event, in order.
    pub positions: Vec<Position>,
}

impl AppendResult {
    /// The global position of the last event appended.
    pub fn last_position(&self) -> Position {
        self.positions.last().copied().unwrap_or_default()
    }
}

/// Which events a `$all` reader wants. Narrowing never changes the order or the
/// no-skip guarantee; it only leaves events out.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ordo_store::StoreError> {
/// # let dir = std::env::temp_dir().join(format!("ordo-doc-filter-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # let store = ordo_store::connect(&format!("sqlite://{}", dir.join("ordo.db").display())).await?;
/// use ordo_store::{AppendRequest, EventFilter, ExpectedVersion, NewEvent, StreamId};
///
/// for (stream, event_type) in [("order-1", "OrderCreated"), ("stock-A", "Restocked"), ("order-1", "OrderPlaced")] {
///     let event = NewEvent::new(event_type, serde_json::json!({}));
///     store.append(AppendRequest::new(StreamId::new(stream)?, ExpectedVersion::Any, vec![event])).await?;
/// }
/// let orders = store.read_all(0, 100, &EventFilter::Categories(vec!["order".into()])).await?;
/// assert_eq!(orders.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["OrderCreated", "OrderPlaced"]);
/// let placed = EventFilter::EventTypes(vec!["OrderPlaced".into()]);
/// assert_eq!(store.count_after(0, &placed).await?, 1);
/// assert!(placed.matches(&orders[1]) && !placed.matches(&orders[0]));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EventFilter {
    /// Every event.
    #[default]
    All,
    /// Events of streams in these categories (`order` for `order-42`).
    Categories(Vec<String>),
    /// Events of these types.
    EventTypes(Vec<String>),
}

impl EventFilter {
    /// Whether `event` passes the filter (what `read_all` applies in SQL).
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Categories(c) => c.iter().any(|c| c == event.stream_id.category()),
            EventFilter::EventTypes(t) => t.contains(&event.event_type),
        }
    }
}

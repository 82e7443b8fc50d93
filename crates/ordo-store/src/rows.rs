//! Row shapes shared by both backends: sqlx decodes the same structs from SQLite and
//! PostgreSQL, so the mapping to domain types lives here once.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use crate::{
    AppendedRange, EventMetadata, IdempotencyRecord, RecordedEvent, Snapshot, StoreError, StoredIdempotency, StreamId,
};

/// The columns every event query selects, in this order.
pub(crate) const EVENT_COLUMNS: &str =
    "position, stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at";

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    position: i64,
    stream_id: String,
    version: i64,
    event_id: Uuid,
    event_type: String,
    schema_version: i32,
    data: Json<serde_json::Value>,
    metadata: Json<EventMetadata>,
    recorded_at: DateTime<Utc>,
}

impl TryFrom<EventRow> for RecordedEvent {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Self, StoreError> {
        Ok(RecordedEvent {
            position: from_db(row.position)?,
            stream_id: StreamId::new(row.stream_id)?,
            version: from_db(row.version)?,
            event_id: row.event_id,
            event_type: row.event_type,
            schema_version: u32::try_from(row.schema_version)
                .map_err(|_| StoreError::Corrupt(format!("negative schema version {}", row.schema_version)))?,
            data: row.data.0,
            metadata: row.metadata.0,
            recorded_at: row.recorded_at,
        })
    }
}

/// The columns, in order, of the JSON arrays a refused PostgreSQL append hands back
/// as the events its writer missed.
pub(crate) const MISSED_JSON: &str = "jsonb_build_array(position, version, event_id, event_type, schema_version, \
     data, metadata, recorded_at)";

/// A refused append's missed events of `stream`, from a JSON array of [`MISSED_JSON`]
/// arrays (`NULL`: none).
pub(crate) fn missed_from_json(
    stream: &StreamId,
    rows: Option<serde_json::Value>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    type Row = (i64, i64, Uuid, String, i64, serde_json::Value, EventMetadata, DateTime<Utc>);
    let Some(rows) = rows else { return Ok(Vec::new()) };
    let rows: Vec<Row> =
        serde_json::from_value(rows).map_err(|e| StoreError::Corrupt(format!("missed events of {stream}: {e}")))?;
    rows.into_iter()
        .map(|(position, version, event_id, event_type, schema_version, data, metadata, recorded_at)| {
            Ok(RecordedEvent {
                position: from_db(position)?,
                stream_id: stream.clone(),
                version: from_db(version)?,
                event_id,
                event_type,
                schema_version: u32::try_from(schema_version)
                    .map_err(|_| StoreError::Corrupt(format!("schema version {schema_version} of a missed event")))?,
                data,
                metadata,
                recorded_at,
            })
        })
        .collect()
}

pub(crate) fn into_events(rows: Vec<EventRow>) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.into_iter().map(RecordedEvent::try_from).collect()
}

/// The columns every idempotency query selects, in this order.
pub(crate) const IDEMPOTENCY_COLUMNS: &str =
    "scope, key, fingerprint, outcome, stream_id, first_version, last_version, last_position, created_at, expires_at";

#[derive(sqlx::FromRow)]
pub(crate) struct IdempotencyRow {
    scope: String,
    key: String,
    fingerprint: String,
    outcome: Json<serde_json::Value>,
    stream_id: Option<String>,
    first_version: Option<i64>,
    last_version: Option<i64>,
    last_position: Option<i64>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl TryFrom<IdempotencyRow> for StoredIdempotency {
    type Error = StoreError;

    fn try_from(row: IdempotencyRow) -> Result<Self, StoreError> {
        let appended = match (row.stream_id, row.first_version, row.last_version, row.last_position) {
            (Some(stream), Some(first), Some(last), Some(position)) => Some(AppendedRange {
                stream_id: StreamId::new(stream)?,
                first_version: from_db(first)?,
                last_version: from_db(last)?,
                last_position: from_db(position)?,
            }),
            _ => None,
        };
        Ok(StoredIdempotency {
            record: IdempotencyRecord {
                scope: row.scope,
                key: row.key,
                fingerprint: row.fingerprint,
                outcome: row.outcome.0,
                expires_at: row.expires_at,
            },
            appended,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SnapshotRow {
    stream_id: String,
    version: i64,
    state_schema: i32,
    state: Json<serde_json::Value>,
}

impl TryFrom<SnapshotRow> for Snapshot {
    type Error = StoreError;

    fn try_from(row: SnapshotRow) -> Result<Self, StoreError> {
        Ok(Snapshot {
            stream_id: StreamId::new(row.stream_id)?,
            version: from_db(row.version)?,
            state_schema: u32::try_from(row.state_schema)
                .map_err(|_| StoreError::Corrupt(format!("negative state schema {}", row.state_schema)))?,
            state: row.state.0,
        })
    }
}

/// A database integer as a version or position.
pub(crate) fn from_db(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative version or position {value}")))
}

/// A version, position or count as a database integer.
pub(crate) fn to_db(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what: "version or position", value })
}

/// A batch size as a SQL `LIMIT`.
pub(crate) fn limit(max: usize) -> i64 {
    i64::try_from(max).unwrap_or(i64::MAX)
}

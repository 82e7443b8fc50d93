//! The queries whose SQL is the same on every backend, written once: generic over the
//! sqlx database, on the backend's pool ([`Shared`]) or, for the stream's version, on
//! any executor. What differs — appends, the `$all` watermark, locking — stays in the
//! backends.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use crate::rows::{
    self, from_db, limit, to_db, EventRow, IdempotencyRow, SnapshotRow, EVENT_COLUMNS, IDEMPOTENCY_COLUMNS,
};
use crate::store::PING;
use crate::{RecordedEvent, Snapshot, StoreError, StoredIdempotency, StreamId, Version};

/// The shared queries on a backend's pool.
pub(crate) struct Shared<'p, DB: Database>(pub(crate) &'p Pool<DB>);

impl<DB> Shared<'_, DB>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    EventRow: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
    IdempotencyRow: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
    SnapshotRow: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q serde_json::Value>: Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    i32: for<'q> Encode<'q, DB> + Type<DB>,
    DateTime<Utc>: for<'q> Encode<'q, DB> + Type<DB>,
{
    /// Fails unless the database answers and holds the `events` table.
    pub(crate) async fn ping(self) -> Result<(), StoreError> {
        sqlx::query(PING).fetch_optional(self.0).await?;
        Ok(())
    }

    /// Up to `max` events of a stream from `from_version` on, oldest first.
    pub(crate) async fn read_stream(
        self,
        stream_id: &StreamId,
        from_version: Version,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        read_stream(self.0, stream_id, from_version, max).await
    }

    /// The record stored under `key` in `scope`, if any.
    pub(crate) async fn find_idempotency(
        self,
        scope: &str,
        key: &str,
    ) -> Result<Option<StoredIdempotency>, StoreError> {
        let sql = format!("SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys WHERE scope = $1 AND key = $2");
        let row: Option<IdempotencyRow> = sqlx::query_as(&sql).bind(scope).bind(key).fetch_optional(self.0).await?;
        row.map(StoredIdempotency::try_from).transpose()
    }

    /// The newest snapshot of a stream, if any.
    pub(crate) async fn load_snapshot(self, stream_id: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<SnapshotRow> =
            sqlx::query_as("SELECT stream_id, version, state_schema, state FROM snapshots WHERE stream_id = $1")
                .bind(stream_id.as_str())
                .fetch_optional(self.0)
                .await?;
        row.map(Snapshot::try_from).transpose()
    }
}

/// Up to `max` events of a stream from `from_version` on, oldest first, on any
/// executor (the backends also read inside their append transactions).
pub(crate) async fn read_stream<'e, DB, X>(
    executor: X,
    stream_id: &StreamId,
    from_version: Version,
    max: usize,
) -> Result<Vec<RecordedEvent>, StoreError>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    X: Executor<'e, Database = DB>,
    EventRow: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let sql =
        format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3");
    let rows: Vec<EventRow> = sqlx::query_as(&sql)
        .bind(stream_id.as_str())
        .bind(to_db(from_version)?)
        .bind(limit(max))
        .fetch_all(executor)
        .await?;
    rows::into_events(rows)
}

/// Saves `snapshot` unless a newer one of its stream is stored.
pub(crate) async fn save_snapshot<'e, DB, X>(executor: X, snapshot: &Snapshot) -> Result<(), StoreError>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    X: Executor<'e, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q serde_json::Value>: Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    i32: for<'q> Encode<'q, DB> + Type<DB>,
    DateTime<Utc>: for<'q> Encode<'q, DB> + Type<DB>,
{
    let state_schema = i32::try_from(snapshot.state_schema)
        .map_err(|_| StoreError::OutOfRange { what: "state schema", value: u64::from(snapshot.state_schema) })?;
    sqlx::query(
        "INSERT INTO snapshots (stream_id, version, state_schema, state, saved_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, state_schema = excluded.state_schema, \
         state = excluded.state, saved_at = excluded.saved_at WHERE excluded.version > snapshots.version",
    )
    .bind(snapshot.stream_id.as_str())
    .bind(to_db(snapshot.version)?)
    .bind(state_schema)
    .bind(Json(&snapshot.state))
    .bind(Utc::now())
    .execute(executor)
    .await?;
    Ok(())
}

/// The stream's current version (0: no stream), on any executor: the backends also
/// read it inside their append transactions.
pub(crate) async fn stream_version<'e, DB, X>(executor: X, stream_id: &str) -> Result<Version, StoreError>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    X: Executor<'e, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    i64: for<'r> Decode<'r, DB> + Type<DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    let (v,): (i64,) = sqlx::query_as("SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1")
        .bind(stream_id)
        .fetch_one(executor)
        .await?;
    from_db(v)
}

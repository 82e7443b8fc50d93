//! Raw-database baselines for benchmarks (feature `baseline`): what the database does
//! with no event-store logic, measured on the same database, connections and
//! durability as the store. [`RawEvents`] is a twin of the `events` table — the same
//! columns, constraints and indexes, without the triggers — written by plain
//! `INSERT`s: one row per commit, or many rows per statement and commit.

use serde_json::Value;
use uuid::Uuid;

use crate::read_model::ReadDb;
use crate::{Database, StoreError};

/// The twin table's name.
pub const RAW_EVENTS: &str = "bench_raw_events";

/// One row for the twin table.
#[derive(Clone, Debug, PartialEq)]
pub struct RawEvent {
    /// The stream id (not checked: a baseline writes what it is given).
    pub stream_id: String,
    /// The version within the stream; `(stream_id, version)` is unique, as in `events`.
    pub version: i64,
    /// The event id; unique, as in `events`.
    pub event_id: Uuid,
    /// The event type.
    pub event_type: String,
    /// The payload.
    pub data: Value,
    /// The metadata.
    pub metadata: Value,
}

impl RawEvent {
    /// The category of the row's stream (as the store derives it).
    pub(crate) fn category(&self) -> &str {
        crate::event::category_of(&self.stream_id)
    }
}

/// The twin of `events`, created empty (dropped first if it was left behind).
pub struct RawEvents {
    inner: Raw,
}

enum Raw {
    Sqlite(crate::sqlite::baseline::RawTable),
    Postgres(crate::postgres::baseline::RawTable),
}

impl RawEvents {
    /// Creates the twin table on `db`. On SQLite the baseline writes on a connection
    /// of its own, opened as the store's are (WAL, `synchronous=FULL`): SQLite has
    /// one writer, so one connection that writers take turns on is its best. On
    /// PostgreSQL it shares the store's pool.
    pub async fn create(db: &Database) -> Result<Self, StoreError> {
        let inner = match db.read_db.backend_pool() {
            crate::read_model::BackendPool::Sqlite(store) => {
                Raw::Sqlite(crate::sqlite::baseline::RawTable::create(store).await?)
            }
            crate::read_model::BackendPool::Postgres(pool) => {
                Raw::Postgres(crate::postgres::baseline::RawTable::create(pool.clone()).await?)
            }
        };
        Ok(Self { inner })
    }

    /// One row, in a transaction of its own. A duplicate `(stream_id, version)` or
    /// `event_id` fails with the database's error.
    pub async fn insert_one(&self, row: &RawEvent) -> Result<(), StoreError> {
        match &self.inner {
            Raw::Sqlite(t) => t.insert_one(row).await,
            Raw::Postgres(t) => t.insert_one(row).await,
        }
    }

    /// Many rows in one transaction (multi-row statements): the most rows per second
    /// the database can durably take.
    pub async fn insert_many(&self, rows: &[RawEvent]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        match &self.inner {
            Raw::Sqlite(t) => t.insert_many(rows).await,
            Raw::Postgres(t) => t.insert_many(rows).await,
        }
    }

    /// Drops the twin table.
    pub async fn drop_table(self) -> Result<(), StoreError> {
        match self.inner {
            Raw::Sqlite(t) => t.drop_table().await,
            Raw::Postgres(t) => t.drop_table().await,
        }
    }
}

/// Refreshes the planner's statistics of `events` (as autovacuum soon would after a
/// bulk load).
pub async fn analyze_events(db: &ReadDb) -> Result<(), StoreError> {
    db.transaction(|mut tx| {
        Box::pin(async move {
            tx.execute("ANALYZE events", &[]).await?;
            Ok::<_, StoreError>(())
        })
    })
    .await
}

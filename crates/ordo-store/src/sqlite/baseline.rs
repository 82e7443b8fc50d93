//! The raw baseline on SQLite: the `events` table's own DDL, renamed, on a connection
//! of its own opened like the store's.

use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::types::Json;

use crate::baseline::{RawEvent, RAW_EVENTS};
use crate::sqlite::SqliteStore;
use crate::StoreError;

/// Rows per multi-row statement (9 parameters each).
const ROWS_PER_STATEMENT: usize = 100;
const COLUMNS: &str = "stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at, category";

pub(crate) struct RawTable {
    pool: SqlitePool,
}

impl RawTable {
    pub(crate) async fn create(store: &SqliteStore) -> Result<Self, StoreError> {
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(store.options().clone()).await?;
        sqlx::query(&format!("DROP TABLE IF EXISTS {RAW_EVENTS}")).execute(&pool).await?;
        // The table and its indexes exactly as the migration made them (no triggers).
        let ddl: Vec<String> = sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND type IN ('table', 'index') \
             AND sql IS NOT NULL ORDER BY type DESC",
        )
        .fetch_all(&pool)
        .await?;
        for statement in ddl {
            let twin = statement
                .replace("CREATE TABLE events", &format!("CREATE TABLE {RAW_EVENTS}"))
                .replace("INDEX events_", &format!("INDEX {RAW_EVENTS}_"))
                .replace(" ON events ", &format!(" ON {RAW_EVENTS} "));
            sqlx::query(&twin).execute(&pool).await?;
        }
        Ok(Self { pool })
    }

    pub(crate) async fn insert_one(&self, row: &RawEvent) -> Result<(), StoreError> {
        self.insert(&self.pool, std::slice::from_ref(row)).await
    }

    pub(crate) async fn insert_many(&self, rows: &[RawEvent]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            self.insert(&mut *tx, chunk).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert<'e>(&self, executor: impl sqlx::SqliteExecutor<'e>, rows: &[RawEvent]) -> Result<(), StoreError> {
        let values: Vec<String> = (0..rows.len())
            .map(|r| {
                let p: Vec<String> = (1..=9).map(|c| format!("${}", r * 9 + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!("INSERT INTO {RAW_EVENTS} ({COLUMNS}) VALUES {}", values.join(", "));
        let now = chrono::Utc::now();
        let mut query = sqlx::query(&sql);
        for row in rows {
            query = query
                .bind(&row.stream_id)
                .bind(row.version)
                .bind(row.event_id)
                .bind(&row.event_type)
                .bind(1i64)
                .bind(Json(&row.data))
                .bind(Json(&row.metadata))
                .bind(now)
                .bind(row.category());
        }
        query.execute(executor).await?;
        Ok(())
    }

    pub(crate) async fn drop_table(self) -> Result<(), StoreError> {
        sqlx::query(&format!("DROP TABLE {RAW_EVENTS}")).execute(&self.pool).await?;
        self.pool.close().await;
        Ok(())
    }
}

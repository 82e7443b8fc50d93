//! The raw baseline: single-row INSERT transactions (autocommit) into a plain table
//! with the same columns as `events`, through sqlx, with the same durability settings
//! as the store. It is what the database itself can do, with no event-store logic.

use ordo_store::{Backend, DatabaseUrl};
use sqlx::types::Json;
use std::str::FromStr;
use std::time::Duration;

use crate::phase::{self, Outcome, Tally};

const PG_TABLE: &str = "CREATE TABLE bench_raw_events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, stream_id text NOT NULL,
    version bigint NOT NULL, event_id uuid NOT NULL, event_type text NOT NULL,
    schema_version integer NOT NULL, data jsonb NOT NULL, metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(), category text NOT NULL)";
const SQLITE_TABLE: &str = "CREATE TABLE bench_raw_events (
    position INTEGER PRIMARY KEY, stream_id TEXT NOT NULL, version INTEGER NOT NULL,
    event_id BLOB NOT NULL, event_type TEXT NOT NULL, schema_version INTEGER NOT NULL,
    data TEXT NOT NULL, metadata TEXT NOT NULL, recorded_at TEXT NOT NULL, category TEXT NOT NULL)";
const INSERT: &str = "INSERT INTO bench_raw_events (stream_id, version, event_id, event_type, schema_version, \
    data, metadata, recorded_at, category) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// A connection pool on the benchmark database with a fresh baseline table.
pub enum RawPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl RawPool {
    /// On PostgreSQL the baseline shares `pg_pool` (the store's pool, so that both
    /// sides have the same connections and the server's connection limit holds).
    pub async fn open(url: &DatabaseUrl, pg_pool: Option<sqlx::PgPool>) -> anyhow::Result<Self> {
        Ok(match url.backend() {
            Backend::Sqlite => {
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url.as_str())?
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(30));
                // SQLite has one writer: more connections only add busy-waiting, so the
                // baseline's best is one connection that the writers take turns on.
                let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
                sqlx::query("DROP TABLE IF EXISTS bench_raw_events").execute(&pool).await?;
                sqlx::query(SQLITE_TABLE).execute(&pool).await?;
                RawPool::Sqlite(pool)
            }
            Backend::Postgres => {
                let pool = pg_pool.ok_or_else(|| anyhow::anyhow!("the PostgreSQL baseline needs the store's pool"))?;
                sqlx::query("DROP TABLE IF EXISTS bench_raw_events").execute(&pool).await?;
                sqlx::query(PG_TABLE).execute(&pool).await?;
                RawPool::Postgres(pool)
            }
        })
    }

    async fn insert(&self, stream: &str, version: i64) -> anyhow::Result<()> {
        let data = Json(serde_json::json!({"sku": "SKU-1", "quantity": 1, "unit_price_cents": 1000}));
        let metadata = Json(serde_json::json!({"correlation_id": uuid::Uuid::now_v7()}));
        let now = chrono::Utc::now();
        let category = stream.split('-').next().unwrap_or(stream);
        macro_rules! bind_all {
            ($q:expr) => {
                $q.bind(stream)
                    .bind(version)
                    .bind(uuid::Uuid::now_v7())
                    .bind("ItemAdded")
                    .bind(1i32)
                    .bind(&data)
                    .bind(&metadata)
                    .bind(now)
                    .bind(category)
            };
        }
        match self {
            RawPool::Sqlite(pool) => {
                bind_all!(sqlx::query(INSERT)).execute(pool).await?;
            }
            RawPool::Postgres(pool) => {
                bind_all!(sqlx::query(INSERT)).execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Runs one statement without parameters.
    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        match self {
            RawPool::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop)?,
            RawPool::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop)?,
        }
        Ok(())
    }

    pub async fn drop_table(&self) -> anyhow::Result<()> {
        self.execute("DROP TABLE bench_raw_events").await
    }
}

/// Raw single-row inserts/s with `writers` concurrent writers.
pub async fn measure(pool: &std::sync::Arc<RawPool>, writers: usize, duration: Duration) -> anyhow::Result<Tally> {
    let pool = std::sync::Arc::clone(pool);
    phase::run(writers, duration, move |worker, i| {
        let pool = std::sync::Arc::clone(&pool);
        async move {
            pool.insert(&format!("raw-{worker}"), i as i64 + 1).await?;
            Ok(Outcome::Success)
        }
    })
    .await
}

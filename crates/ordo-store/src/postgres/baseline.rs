//! The raw baseline on PostgreSQL: `LIKE events INCLUDING ALL` (columns, defaults,
//! constraints and indexes; triggers are not copied), with an identity column for
//! positions, on the store's own pool.

use sqlx::types::Json;
use sqlx::PgPool;

use crate::baseline::{RawEvent, RAW_EVENTS};
use crate::StoreError;

pub(crate) struct RawTable {
    pool: PgPool,
}

impl RawTable {
    pub(crate) async fn create(pool: PgPool) -> Result<Self, StoreError> {
        for statement in [
            format!("DROP TABLE IF EXISTS {RAW_EVENTS}"),
            format!("CREATE TABLE {RAW_EVENTS} (LIKE events INCLUDING ALL)"),
            format!("ALTER TABLE {RAW_EVENTS} ALTER COLUMN position ADD GENERATED ALWAYS AS IDENTITY"),
        ] {
            sqlx::query(&statement).execute(&pool).await?;
        }
        Ok(Self { pool })
    }

    pub(crate) async fn insert_one(&self, row: &RawEvent) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO {RAW_EVENTS} (stream_id, version, event_id, event_type, schema_version, data, metadata, \
             category) VALUES ($1, $2, $3, $4, 1, $5, $6, $7)"
        ))
        .bind(&row.stream_id)
        .bind(row.version)
        .bind(row.event_id)
        .bind(&row.event_type)
        .bind(Json(&row.data))
        .bind(Json(&row.metadata))
        .bind(row.category())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One statement (so one commit) for all rows: `unnest` of one array per column.
    pub(crate) async fn insert_many(&self, rows: &[RawEvent]) -> Result<(), StoreError> {
        let streams: Vec<&str> = rows.iter().map(|r| r.stream_id.as_str()).collect();
        let versions: Vec<i64> = rows.iter().map(|r| r.version).collect();
        let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.event_id).collect();
        let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
        let data: Vec<Json<&serde_json::Value>> = rows.iter().map(|r| Json(&r.data)).collect();
        let metadata: Vec<Json<&serde_json::Value>> = rows.iter().map(|r| Json(&r.metadata)).collect();
        let categories: Vec<&str> = rows.iter().map(RawEvent::category).collect();
        sqlx::query(&format!(
            "INSERT INTO {RAW_EVENTS} (stream_id, version, event_id, event_type, schema_version, data, metadata, \
             category) SELECT s, v, i, t, 1, d, m, c FROM unnest($1::text[], $2::int8[], $3::uuid[], $4::text[], \
             $5::jsonb[], $6::jsonb[], $7::text[]) AS r(s, v, i, t, d, m, c)"
        ))
        .bind(&streams)
        .bind(&versions)
        .bind(&ids)
        .bind(&types)
        .bind(&data)
        .bind(&metadata)
        .bind(&categories)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn drop_table(self) -> Result<(), StoreError> {
        sqlx::query(&format!("DROP TABLE {RAW_EVENTS}")).execute(&self.pool).await?;
        Ok(())
    }
}

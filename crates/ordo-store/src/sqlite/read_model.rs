//! Read models on SQLite: transactions run on the store's single writer (SQLite
//! admits one writer, so read-model writes queue with appends rather than fight them
//! for the lock), queries on its read pool, and SQLite's dialect where it differs.

use std::sync::{Arc, Mutex};

use crate::read_model::{Column, ReadModelError, ReadModelTx, SqlValue, TransactionWork};
use crate::sqlite::SqliteStore;
use crate::StoreError;

/// Rows per upsert statement (well under SQLite's parameter limit for any table
/// a projector would have).
const UPSERT_ROWS: usize = 500;

/// SQLite's single writer runs transactions one after another: no row locks needed.
pub(crate) const FOR_UPDATE: &str = "";

/// SQLite takes a list as JSON text, read back with `json_each`.
pub(crate) fn any_of(placeholder: &str) -> String {
    format!("IN (SELECT value FROM json_each({placeholder}))")
}

pub(crate) fn json_list(v: &[String]) -> String {
    // A list of strings always serializes.
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// Runs `work` in a transaction on the single writer and commits it if `work`
/// succeeds.
pub(crate) async fn transaction<T, E>(store: &SqliteStore, work: impl TransactionWork<T, E>) -> Result<T, E>
where
    T: Send + 'static,
    E: From<ReadModelError> + Send + 'static,
{
    // The writer speaks store errors: a failure of `work` is parked here, and the
    // writer is told to roll its savepoint back.
    let failure = Arc::new(Mutex::new(None));
    let parked = Arc::clone(&failure);
    let written = store
        .write(move |conn| {
            Box::pin(async move {
                match work(ReadModelTx::sqlite(conn)).await {
                    Ok(value) => Ok(value),
                    Err(e) => {
                        *parked.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        Err(StoreError::CommitFailed("the read-model work failed; rolled back".into()))
                    }
                }
            })
        })
        .await;
    let parked = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (written, parked) {
        (_, Some(e)) => Err(e),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(E::from(e.into())),
    }
}

/// Multi-row `INSERT … VALUES` statements of up to [`UPSERT_ROWS`] rows.
pub(crate) async fn upsert(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
    columns: &[Column],
    tail: &str,
) -> Result<(), ReadModelError> {
    let rows = columns.first().map_or(0, Column::len);
    let names: Vec<&str> = columns.iter().map(Column::name).collect();
    let width = columns.len();
    for start in (0..rows).step_by(UPSERT_ROWS) {
        let end = (start + UPSERT_ROWS).min(rows);
        let values: Vec<String> = (start..end)
            .map(|r| {
                let base = (r - start) * width;
                let p: Vec<String> = (1..=width).map(|c| format!("${}", base + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!("INSERT INTO {table} ({}) VALUES {} {tail}", names.join(", "), values.join(", "));
        let params: Vec<SqlValue> = (start..end).flat_map(|r| columns.iter().map(move |c| c.value(r))).collect();
        crate::read_model::execute(&mut *conn, &sql, &params, json_list).await?;
    }
    Ok(())
}

pub(crate) async fn table_exists(conn: &mut sqlx::SqliteConnection, table: &str) -> Result<bool, ReadModelError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1")
        .bind(table)
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}

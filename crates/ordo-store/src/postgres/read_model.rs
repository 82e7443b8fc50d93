//! Read models on PostgreSQL: transactions on a pool connection (or a lease's own
//! connection), columnar upserts with `unnest`, and PostgreSQL's dialect where it
//! differs.

use sqlx::{Connection, PgConnection};

use crate::read_model::{Column, ReadModelError, ReadModelTx, TransactionWork};

/// Rows a transaction reads and then rewrites are locked, so that a concurrent
/// writer of the same rows (a one-stream repair, say) waits for it or it for them.
pub(crate) const FOR_UPDATE: &str = " FOR UPDATE";

pub(crate) fn any_of(placeholder: &str) -> String {
    format!("= ANY({placeholder})")
}

/// PostgreSQL takes a list as a `text[]`.
pub(crate) fn text_array(v: &[String]) -> Vec<String> {
    v.to_vec()
}

/// Runs `work` in a transaction on `conn` and commits it if `work` succeeds.
pub(crate) async fn transaction<T, E>(conn: &mut PgConnection, work: impl TransactionWork<T, E>) -> Result<T, E>
where
    T: Send + 'static,
    E: From<ReadModelError> + Send + 'static,
{
    let fail = |e: sqlx::Error| E::from(ReadModelError::from(e));
    let mut tx = conn.begin().await.map_err(fail)?;
    match work(ReadModelTx::postgres(&mut tx)).await {
        Ok(value) => {
            tx.commit().await.map_err(|e| match ReadModelError::from(e) {
                // The commit's answer never came: it may or may not have committed.
                ReadModelError::ConnectionLost(e) => E::from(ReadModelError::CommitFailed(e.to_string())),
                other => E::from(other),
            })?;
            Ok(value)
        }
        Err(e) => {
            // Now, not lazily: a lease's connection lives outside the pool, and an open
            // failed transaction would hold its locks (and xid) through a retry's backoff.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// One statement for all rows: `INSERT … SELECT * FROM unnest(one array per column)`.
pub(crate) async fn upsert(
    conn: &mut PgConnection,
    table: &str,
    columns: &[Column],
    tail: &str,
) -> Result<(), ReadModelError> {
    let names: Vec<&str> = columns.iter().map(Column::name).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| match c {
            Column::Text(..) => format!("${}::text[]", i + 1),
            Column::Int(..) => format!("${}::int8[]", i + 1),
        })
        .collect();
    let sql = format!("INSERT INTO {table} ({}) SELECT * FROM unnest({}) {tail}", names.join(", "), arrays.join(", "));
    let mut query = sqlx::query(&sql);
    for column in columns {
        query = match column {
            Column::Text(_, v) => query.bind(v.as_slice()),
            Column::Int(_, v) => query.bind(v.as_slice()),
        };
    }
    query.execute(conn).await?;
    Ok(())
}

pub(crate) async fn table_exists(conn: &mut PgConnection, table: &str) -> Result<bool, ReadModelError> {
    let found: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table).fetch_one(conn).await?;
    Ok(found)
}

pub(crate) async fn lock_exclusively(conn: &mut PgConnection, tables: &[&str]) -> Result<(), ReadModelError> {
    if tables.is_empty() {
        return Ok(());
    }
    let sql = format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", tables.join(", "));
    sqlx::query(&sql).execute(conn).await?;
    Ok(())
}

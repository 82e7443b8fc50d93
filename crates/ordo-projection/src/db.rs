//! The read-model database, on either backend, as projectors see it: a transaction to
//! write in, values to bind, and the few places where the two SQL dialects differ.
//! Read models live in the same database as the events, so that a projector's writes
//! and its checkpoint commit together.

use futures::future::BoxFuture;
use ordo_store::postgres::PostgresStore;
use ordo_store::sqlite::SqliteStore;
use ordo_store::{Backend, EventStore, StoreError};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Connection, FromRow, PgConnection, PgPool, SqliteConnection};
use std::sync::{Arc, Mutex};

use crate::ProjectionError;

/// A value bound to a read-model statement.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    Int(Option<i64>),
    Text(Option<String>),
    /// A list for [`ReadModelTx::any_of`].
    TextList(Vec<String>),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(Some(v))
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(Some(v.to_owned()))
    }
}

impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(Some(v))
    }
}

/// One column of rows to upsert: its name and its values, one per row.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    Text(&'static str, Vec<String>),
    Int(&'static str, Vec<i64>),
}

impl Column {
    fn name(&self) -> &'static str {
        match self {
            Column::Text(name, _) | Column::Int(name, _) => name,
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Text(_, v) => v.len(),
            Column::Int(_, v) => v.len(),
        }
    }

    fn value(&self, row: usize) -> SqlValue {
        match self {
            Column::Text(_, v) => SqlValue::Text(v.get(row).cloned()),
            Column::Int(_, v) => SqlValue::Int(v.get(row).copied()),
        }
    }
}

/// Where read models are: the event store's own database.
#[derive(Clone)]
pub enum ReadDb {
    Sqlite(SqliteStore),
    Postgres(PgPool),
}

impl ReadDb {
    /// Opens the database at `url` (applying migrations): the event store, and the
    /// same database as a read-model database. They share connections — on SQLite,
    /// one writer for events and read models alike, as SQLite wants.
    pub async fn open(url: &str) -> Result<(Arc<dyn EventStore>, Self), StoreError> {
        let url = ordo_store::DatabaseUrl::parse(url)?;
        Ok(match url.backend() {
            Backend::Sqlite => {
                let store = SqliteStore::connect(url.as_str()).await?;
                (Arc::new(store.clone()), ReadDb::Sqlite(store))
            }
            Backend::Postgres => {
                let store = PostgresStore::connect(url.as_str()).await?;
                let pool = store.pool().clone();
                (Arc::new(store), ReadDb::Postgres(pool))
            }
        })
    }

    pub fn backend(&self) -> Backend {
        match self {
            ReadDb::Sqlite(_) => Backend::Sqlite,
            ReadDb::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs `work` in one transaction on a connection of its own and commits it.
    pub async fn transaction<T, F>(&self, work: F) -> Result<T, ProjectionError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(ReadModelTx<'c>) -> BoxFuture<'c, Result<T, ProjectionError>> + Send + 'static,
    {
        match self {
            ReadDb::Sqlite(store) => sqlite_transaction(store, work).await,
            ReadDb::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(StoreError::from)?;
                postgres_transaction(&mut conn, work).await
            }
        }
    }

    /// Runs a read-only query outside of any projector transaction.
    pub async fn fetch_all<T>(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<T>, ProjectionError>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        Ok(match self {
            ReadDb::Sqlite(store) => {
                bind_all!(sqlx::query_as(sql), params, json_list).fetch_all(store.read_pool()).await
            }
            ReadDb::Postgres(pool) => bind_all!(sqlx::query_as(sql), params, pg_list).fetch_all(pool).await,
        }
        .map_err(StoreError::from)?)
    }

    /// `IN`-list syntax for this backend; see [`ReadModelTx::any_of`].
    pub fn any_of(&self, placeholder: &str) -> String {
        any_of(self.backend(), placeholder)
    }
}

/// Runs `work` in a transaction on SQLite's single writer.
pub(crate) async fn sqlite_transaction<T, F>(store: &SqliteStore, work: F) -> Result<T, ProjectionError>
where
    T: Send + 'static,
    F: for<'c> FnOnce(ReadModelTx<'c>) -> BoxFuture<'c, Result<T, ProjectionError>> + Send + 'static,
{
    // The writer speaks only store errors: a failure of `work` is parked here, and
    // the writer is told to roll the savepoint back.
    let failure = Arc::new(Mutex::new(None));
    let parked = Arc::clone(&failure);
    let written = store
        .write(move |conn| {
            Box::pin(async move {
                match work(ReadModelTx { conn: Conn::Sqlite(conn) }).await {
                    Ok(value) => Ok(value),
                    Err(e) => {
                        *parked.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        Err(StoreError::CommitFailed("the projector failed; rolled back".into()))
                    }
                }
            })
        })
        .await;
    let parked = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (written, parked) {
        (_, Some(e)) => Err(e),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(e.into()),
    }
}

/// Runs `work` in a transaction on `conn` and commits it if `work` succeeds.
pub(crate) async fn postgres_transaction<T, F>(conn: &mut PgConnection, work: F) -> Result<T, ProjectionError>
where
    T: Send + 'static,
    F: for<'c> FnOnce(ReadModelTx<'c>) -> BoxFuture<'c, Result<T, ProjectionError>> + Send + 'static,
{
    let mut tx = conn.begin().await.map_err(StoreError::from)?;
    match work(ReadModelTx { conn: Conn::Postgres(&mut tx) }).await {
        Ok(value) => {
            tx.commit().await.map_err(StoreError::from)?;
            Ok(value)
        }
        Err(e) => {
            // Now, not lazily: a runner's connection lives outside the pool, and an
            // open failed transaction would hold its locks (and xid) through the
            // retry backoff.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

/// A read-model transaction, handed to projectors. Write with [`execute`], read with
/// [`fetch_all`]; everything commits or rolls back with the checkpoint.
///
/// [`execute`]: ReadModelTx::execute
/// [`fetch_all`]: ReadModelTx::fetch_all
pub struct ReadModelTx<'c> {
    conn: Conn<'c>,
}

impl ReadModelTx<'_> {
    pub fn backend(&self) -> Backend {
        match self.conn {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs one statement (`$1`, `$2`… placeholders on both backends); returns the
    /// number of rows it touched.
    pub async fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, ProjectionError> {
        let done = match &mut self.conn {
            Conn::Sqlite(c) => {
                bind_all!(sqlx::query(sql), params, json_list).execute(&mut **c).await.map(|r| r.rows_affected())
            }
            Conn::Postgres(c) => {
                bind_all!(sqlx::query(sql), params, pg_list).execute(&mut **c).await.map(|r| r.rows_affected())
            }
        };
        Ok(done.map_err(StoreError::from)?)
    }

    /// Runs a query and decodes its rows.
    pub async fn fetch_all<T>(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<T>, ProjectionError>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        let rows = match &mut self.conn {
            Conn::Sqlite(c) => bind_all!(sqlx::query_as(sql), params, json_list).fetch_all(&mut **c).await,
            Conn::Postgres(c) => bind_all!(sqlx::query_as(sql), params, pg_list).fetch_all(&mut **c).await,
        };
        Ok(rows.map_err(StoreError::from)?)
    }

    /// Inserts rows, or updates the row with the same `key` — only where the new
    /// row's `newer_by` column is greater, if given, so that a row never moves
    /// backwards. One statement on PostgreSQL (`unnest` of one array per column);
    /// statements of up to 500 rows on SQLite.
    pub async fn upsert(
        &mut self,
        table: &str,
        key: &str,
        columns: &[Column],
        newer_by: Option<&str>,
    ) -> Result<(), ProjectionError> {
        let rows = columns.first().map_or(0, Column::len);
        if rows == 0 {
            return Ok(());
        }
        let names: Vec<&str> = columns.iter().map(Column::name).collect();
        let updates: Vec<String> = names.iter().filter(|n| **n != key).map(|n| format!("{n} = excluded.{n}")).collect();
        let condition = newer_by.map(|c| format!(" WHERE excluded.{c} > {table}.{c}")).unwrap_or_default();
        let tail = format!("ON CONFLICT ({key}) DO UPDATE SET {}{condition}", updates.join(", "));
        match self.backend() {
            Backend::Postgres => {
                let arrays: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| match c {
                        Column::Text(..) => format!("${}::text[]", i + 1),
                        Column::Int(..) => format!("${}::int8[]", i + 1),
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO {table} ({}) SELECT * FROM unnest({}) {tail}",
                    names.join(", "),
                    arrays.join(", ")
                );
                let Conn::Postgres(conn) = &mut self.conn else { unreachable!("checked the backend") };
                let mut query = sqlx::query(&sql);
                for column in columns {
                    query = match column {
                        Column::Text(_, v) => query.bind(v.as_slice()),
                        Column::Int(_, v) => query.bind(v.as_slice()),
                    };
                }
                query.execute(&mut **conn).await.map_err(StoreError::from)?;
            }
            Backend::Sqlite => {
                for start in (0..rows).step_by(500) {
                    let end = (start + 500).min(rows);
                    let width = columns.len();
                    let values: Vec<String> = (start..end)
                        .map(|r| {
                            let base = (r - start) * width;
                            let p: Vec<String> = (1..=width).map(|c| format!("${}", base + c)).collect();
                            format!("({})", p.join(", "))
                        })
                        .collect();
                    let sql = format!("INSERT INTO {table} ({}) VALUES {} {tail}", names.join(", "), values.join(", "));
                    let params: Vec<SqlValue> =
                        (start..end).flat_map(|r| columns.iter().map(move |c| c.value(r))).collect();
                    self.execute(&sql, &params).await?;
                }
            }
        }
        Ok(())
    }

    /// ` FOR UPDATE` on PostgreSQL (rows a batch reads and then rewrites, so that a
    /// concurrent repair of the same rows waits for the batch or the batch for it);
    /// nothing on SQLite, whose single writer already runs them one after another.
    pub fn for_update(&self) -> &'static str {
        match self.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// Whether a table of this name exists.
    pub async fn table_exists(&mut self, table: &str) -> Result<bool, ProjectionError> {
        let sql = match self.backend() {
            Backend::Postgres => "SELECT 1::bigint AS found WHERE to_regclass($1) IS NOT NULL",
            Backend::Sqlite => "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = $1",
        };
        let found: Vec<(i64,)> = self.fetch_all(sql, &[table.into()]).await?;
        Ok(!found.is_empty())
    }

    /// `IN`-list syntax for this backend: `x {any_of("$1")}` with `$1` bound to a
    /// [`SqlValue::TextList`] is `x = ANY($1)` on PostgreSQL and
    /// `x IN (SELECT value FROM json_each($1))` on SQLite.
    pub fn any_of(&self, placeholder: &str) -> String {
        any_of(self.backend(), placeholder)
    }
}

fn any_of(backend: Backend, placeholder: &str) -> String {
    match backend {
        Backend::Postgres => format!("= ANY({placeholder})"),
        Backend::Sqlite => format!("IN (SELECT value FROM json_each({placeholder}))"),
    }
}

/// Binds `params` to a query in order. A macro rather than a function: the four
/// query types it serves (query / query_as, on either backend) share no trait that
/// has `bind`. `$list` turns a list into what the backend binds.
macro_rules! bind_all {
    ($query:expr, $params:expr, $list:expr) => {{
        let mut query = $query;
        for p in $params {
            query = match p {
                SqlValue::Int(v) => query.bind(*v),
                SqlValue::Text(v) => query.bind(v.as_deref()),
                SqlValue::TextList(v) => query.bind($list(v)),
            };
        }
        query
    }};
}
use bind_all;

/// SQLite takes a list as JSON text (read back with `json_each`).
fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// PostgreSQL takes a list as a `text[]`.
fn pg_list(v: &[String]) -> &[String] {
    v
}

//! The read-model database, as projectors and queries see it, on every backend: a
//! transaction to write in, values to bind, leases that keep one runner per
//! projector, component schemas, and the few places where the SQL dialects differ.
//! Read models live in the same database as the events, so that a projector's writes
//! and its checkpoint commit together.
//!
//! This module is the seam: the types here say nothing about the backend, and each
//! method hands over to the backend's own module (`sqlite::read_model`,
//! `postgres::read_model`, `postgres::lease`).

mod error;
mod schema;
mod values;

pub use error::ReadModelError;
pub use schema::Migration;
pub(crate) use values::{execute, fetch_all, upsert_tail};
pub use values::{Column, ReadRow, SqlValue};

use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool, SqliteConnection};

use crate::postgres::{lease as pg_lease, read_model as pg};
use crate::sqlite::{read_model as lite, SqliteStore};

/// The work of one read-model transaction: it gets the transaction and returns a
/// value, or an error that rolls everything back.
pub trait TransactionWork<T, E>:
    for<'c> FnOnce(ReadModelTx<'c>) -> BoxFuture<'c, Result<T, E>> + Send + 'static
{
}

impl<T, E, F> TransactionWork<T, E> for F where
    F: for<'c> FnOnce(ReadModelTx<'c>) -> BoxFuture<'c, Result<T, E>> + Send + 'static
{
}

/// Where read models are: the event store's own database, sharing its connections
/// (on SQLite, its single writer). Get one from [`open`](crate::open). Projectors
/// get a [`ReadModelTx`] from the projection runtime instead; this is for queries,
/// schemas and work of one's own. Statements use `$1`, `$2`… on every backend.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("ordo-doc-readdb-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # let url = format!("sqlite://{}", dir.join("ordo.db").display());
/// use ordo_store::{Column, ReadModelError};
///
/// #[derive(sqlx::FromRow)]
/// struct Visits {
///     page: String,
///     count: i64,
/// }
///
/// let db = ordo_store::open(&url).await?.read_db;
/// db.transaction(|mut tx| {
///     Box::pin(async move {
///         tx.execute("CREATE TABLE IF NOT EXISTS visits (page TEXT PRIMARY KEY, count BIGINT NOT NULL)", &[]).await?;
///         tx.execute("INSERT INTO visits (page, count) VALUES ($1, $2)", &["/".into(), 1_i64.into()]).await?;
///         // Insert or update by key; `newer_by` keeps a row from moving backwards.
///         let columns = [Column::Text("page", vec!["/".into()]), Column::Int("count", vec![2])];
///         tx.upsert("visits", "page", &columns, Some("count")).await?;
///         Ok::<_, ReadModelError>(())
///     })
/// })
/// .await?;
/// let rows: Vec<Visits> = db.fetch_all("SELECT page, count FROM visits WHERE page = $1", &["/".into()]).await?;
/// assert_eq!((rows[0].page.as_str(), rows[0].count), ("/", 2));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ReadDb {
    inner: Db,
}

#[derive(Clone)]
enum Db {
    Sqlite(SqliteStore),
    Postgres(PgPool),
}

impl ReadDb {
    pub(crate) fn sqlite(store: SqliteStore) -> Self {
        Self { inner: Db::Sqlite(store) }
    }

    pub(crate) fn postgres(pool: PgPool) -> Self {
        Self { inner: Db::Postgres(pool) }
    }

    /// The backend underneath, for the store's own per-backend code.
    #[cfg_attr(not(feature = "baseline"), allow(dead_code))]
    pub(crate) fn backend_pool(&self) -> BackendPool<'_> {
        match &self.inner {
            Db::Sqlite(store) => BackendPool::Sqlite(store),
            Db::Postgres(pool) => BackendPool::Postgres(pool),
        }
    }

    /// Runs `work` in one transaction and commits it if `work` succeeds; an error
    /// from `work` rolls everything back and is returned as it is. On SQLite the
    /// transaction runs on the single writer, so keep it short and never append
    /// events from inside it (the append would wait for the writer it holds).
    pub async fn transaction<T, E>(&self, work: impl TransactionWork<T, E>) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<ReadModelError> + Send + 'static,
    {
        match &self.inner {
            Db::Sqlite(store) => lite::transaction(store, work).await,
            Db::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(|e| E::from(ReadModelError::from(e)))?;
                pg::transaction(&mut conn, work).await
            }
        }
    }

    /// Runs a read-only query outside of any projector transaction.
    pub async fn fetch_all<T: ReadRow>(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<T>, ReadModelError> {
        match &self.inner {
            Db::Sqlite(store) => fetch_all(store.read_pool(), sql, params, lite::json_list).await,
            Db::Postgres(pool) => fetch_all(pool, sql, params, pg::text_array).await,
        }
    }

    /// `IN`-list syntax; see [`ReadModelTx::any_of`].
    pub fn any_of(&self, placeholder: &str) -> String {
        match &self.inner {
            Db::Sqlite(_) => lite::any_of(placeholder),
            Db::Postgres(_) => pg::any_of(placeholder),
        }
    }

    /// A candidate for the lease of `name`: whoever holds it is the one runner of
    /// that name across every process on this database.
    pub fn lease_candidate(&self, name: &str) -> LeaseCandidate {
        let inner = match &self.inner {
            Db::Sqlite(store) => Candidate::Sqlite(store.clone()),
            Db::Postgres(pool) => Candidate::Postgres(pg_lease::Candidate::new(pool.clone(), name)),
        };
        LeaseCandidate { inner }
    }
}

/// What a [`ReadDb`] runs on.
#[cfg_attr(not(feature = "baseline"), allow(dead_code))]
pub(crate) enum BackendPool<'a> {
    Sqlite(&'a SqliteStore),
    Postgres(&'a PgPool),
}

/// Which connection a transaction runs on.
enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

/// A read-model transaction, handed to projectors. Write with [`execute`] or
/// [`upsert`], read with [`fetch_all`]; everything commits or rolls back with the
/// checkpoint. Statements use `$1`, `$2`… placeholders on every backend.
///
/// [`execute`]: ReadModelTx::execute
/// [`upsert`]: ReadModelTx::upsert
/// [`fetch_all`]: ReadModelTx::fetch_all
pub struct ReadModelTx<'c> {
    conn: Conn<'c>,
}

impl<'c> ReadModelTx<'c> {
    pub(crate) fn sqlite(conn: &'c mut SqliteConnection) -> Self {
        Self { conn: Conn::Sqlite(conn) }
    }

    pub(crate) fn postgres(conn: &'c mut PgConnection) -> Self {
        Self { conn: Conn::Postgres(conn) }
    }
}

impl ReadModelTx<'_> {
    /// Runs one statement; returns the number of rows it touched.
    pub async fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, ReadModelError> {
        match &mut self.conn {
            Conn::Sqlite(c) => execute(&mut **c, sql, params, lite::json_list).await,
            Conn::Postgres(c) => execute(&mut **c, sql, params, pg::text_array).await,
        }
    }

    /// Runs a query and decodes its rows.
    pub async fn fetch_all<T: ReadRow>(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<T>, ReadModelError> {
        match &mut self.conn {
            Conn::Sqlite(c) => fetch_all(&mut **c, sql, params, lite::json_list).await,
            Conn::Postgres(c) => fetch_all(&mut **c, sql, params, pg::text_array).await,
        }
    }

    /// Inserts rows, or updates the row with the same `key` — only where the new
    /// row's `newer_by` column is greater, if given, so that a row never moves
    /// backwards. Every column must have one value per row. `table`, `key`,
    /// `newer_by` and the column names go into the SQL as they are: pass
    /// identifiers of your own, never input. `key` must be the table's primary key
    /// or carry a unique index.
    pub async fn upsert(
        &mut self,
        table: &str,
        key: &str,
        columns: &[Column],
        newer_by: Option<&str>,
    ) -> Result<(), ReadModelError> {
        let rows = columns.first().map_or(0, Column::len);
        if let Some(short) = columns.iter().find(|c| c.len() != rows) {
            return Err(ReadModelError::InvalidArgument(format!(
                "upsert into {table}: column {} has {} values, the first has {rows}",
                short.name(),
                short.len()
            )));
        }
        if rows == 0 {
            return Ok(());
        }
        let tail = upsert_tail(table, key, columns, newer_by);
        match &mut self.conn {
            Conn::Sqlite(c) => lite::upsert(c, table, columns, &tail).await,
            Conn::Postgres(c) => pg::upsert(c, table, columns, &tail).await,
        }
    }

    /// Appended to a `SELECT` of rows the transaction reads and then rewrites, so that
    /// a concurrent writer of the same rows waits for it (or it for them).
    pub fn for_update(&self) -> &'static str {
        match self.conn {
            Conn::Sqlite(_) => lite::FOR_UPDATE,
            Conn::Postgres(_) => pg::FOR_UPDATE,
        }
    }

    /// `IN`-list syntax: `x {any_of("$1")}` with `$1` bound to a
    /// [`SqlValue::TextList`] matches `x` against every value of the list.
    pub fn any_of(&self, placeholder: &str) -> String {
        match self.conn {
            Conn::Sqlite(_) => lite::any_of(placeholder),
            Conn::Postgres(_) => pg::any_of(placeholder),
        }
    }

    /// Whether a table of this name exists.
    pub async fn table_exists(&mut self, table: &str) -> Result<bool, ReadModelError> {
        match &mut self.conn {
            Conn::Sqlite(c) => lite::table_exists(c, table).await,
            Conn::Postgres(c) => pg::table_exists(c, table).await,
        }
    }

    /// Locks `tables` against every other reader and writer until the transaction
    /// ends (a no-op where the transaction excludes everyone anyway, as SQLite's
    /// single writer does).
    pub async fn lock_exclusively(&mut self, tables: &[&str]) -> Result<(), ReadModelError> {
        match &mut self.conn {
            Conn::Sqlite(_) => Ok(()),
            Conn::Postgres(c) => pg::lock_exclusively(c, tables).await,
        }
    }

    /// Waits until no other transaction holds `key` (the same key in another process
    /// included), then holds it until this transaction ends.
    pub async fn serialize_on(&mut self, key: &str) -> Result<(), ReadModelError> {
        match &mut self.conn {
            // One writer at a time already.
            Conn::Sqlite(_) => Ok(()),
            Conn::Postgres(c) => pg_lease::lock_for_transaction(c, key).await,
        }
    }
}

/// Who may try for a lease: see [`ReadDb::lease_candidate`].
pub struct LeaseCandidate {
    inner: Candidate,
}

enum Candidate {
    Sqlite(SqliteStore),
    Postgres(pg_lease::Candidate),
}

impl LeaseCandidate {
    /// Takes the lease if no one holds it; `None` if another session does.
    ///
    /// On PostgreSQL the lease is a session-level advisory lock held by a connection
    /// of its own, which carries every transaction of the lease: when the connection
    /// (or the process) dies, the lease is free, and a holder that lost it cannot
    /// write. SQLite has no cross-process lock to hold: the lease is granted at once,
    /// and two processes on one file are kept apart by the checkpoint's
    /// compare-and-set alone.
    pub async fn try_acquire(&mut self) -> Result<Option<Lease>, ReadModelError> {
        match &mut self.inner {
            Candidate::Sqlite(store) => Ok(Some(Lease { inner: Held::Sqlite(store.clone()) })),
            Candidate::Postgres(candidate) => {
                Ok(candidate.try_acquire().await?.map(|conn| Lease { inner: Held::Postgres(conn) }))
            }
        }
    }
}

/// A held lease. Dropping it gives it up.
pub struct Lease {
    inner: Held,
}

enum Held {
    Sqlite(SqliteStore),
    Postgres(PgConnection),
}

impl Lease {
    /// Runs `work` in one transaction under the lease and commits it if `work`
    /// succeeds. Fails with a lost connection once the lease is gone.
    pub async fn transaction<T, E>(&mut self, work: impl TransactionWork<T, E>) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<ReadModelError> + Send + 'static,
    {
        match &mut self.inner {
            Held::Sqlite(store) => lite::transaction(store, work).await,
            Held::Postgres(conn) => pg::transaction(conn, work).await,
        }
    }
}

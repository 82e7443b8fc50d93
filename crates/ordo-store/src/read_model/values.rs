//! Values that cross the read-model seam: parameters to bind, columns of rows to
//! upsert, and the bound a row type needs to be read on every backend.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use super::ReadModelError;

/// A value bound to a read-model statement.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SqlValue {
    /// A `BIGINT`, or `NULL`.
    Int(Option<i64>),
    /// A `TEXT`, or `NULL`.
    Text(Option<String>),
    /// A list, for [`ReadModelTx::any_of`](crate::ReadModelTx::any_of).
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

impl From<Option<String>> for SqlValue {
    fn from(v: Option<String>) -> Self {
        SqlValue::Text(v)
    }
}

/// One column of rows to upsert: its name and its values, one per row (see
/// [`ReadModelTx::upsert`](crate::ReadModelTx::upsert)).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Column {
    /// A `TEXT` column: its name, and a value per row.
    Text(&'static str, Vec<String>),
    /// A `BIGINT` column: its name, and a value per row.
    Int(&'static str, Vec<i64>),
}

impl Column {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Column::Text(name, _) | Column::Int(name, _) => name,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Column::Text(_, v) => v.len(),
            Column::Int(_, v) => v.len(),
        }
    }

    pub(crate) fn value(&self, row: usize) -> SqlValue {
        match self {
            Column::Text(_, v) => SqlValue::Text(v.get(row).cloned()),
            Column::Int(_, v) => SqlValue::Int(v.get(row).copied()),
        }
    }
}

/// A row type a read-model query can return on every backend: derive
/// `sqlx::FromRow` on a struct of plain columns (`i64`, `String`, `Option` of them).
pub trait ReadRow: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin {}

impl<T> ReadRow for T where T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin {}

/// The number of rows a statement touched, on every backend.
pub(crate) trait RowsAffected {
    fn rows(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// Binds `params` to a query in order; `$list` turns a list into what the backend
/// binds. A macro rather than a function: `query` and `query_as` share no trait that
/// has `bind`.
macro_rules! bind_params {
    ($query:expr, $params:expr, $list:expr) => {{
        let mut query = $query;
        for p in $params {
            query = match p {
                $crate::SqlValue::Int(v) => query.bind(*v),
                $crate::SqlValue::Text(v) => query.bind(v.as_deref()),
                $crate::SqlValue::TextList(v) => query.bind($list(v)),
            };
        }
        query
    }};
}

/// Runs one statement with `params` on either backend; `list` turns a list parameter
/// into what the backend binds. Returns the number of rows it touched.
pub(crate) async fn execute<'e, DB, X, L>(
    executor: X,
    sql: &str,
    params: &[SqlValue],
    list: fn(&[String]) -> L,
) -> Result<u64, ReadModelError>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    DB::QueryResult: RowsAffected,
    X: Executor<'e, Database = DB>,
    Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    L: for<'q> Encode<'q, DB> + Type<DB> + Send,
{
    let done = bind_params!(sqlx::query(sql), params, list).execute(executor).await?;
    Ok(done.rows())
}

/// Runs a query with `params` on either backend and decodes its rows.
pub(crate) async fn fetch_all<'e, DB, X, L, T>(
    executor: X,
    sql: &str,
    params: &[SqlValue],
    list: fn(&[String]) -> L,
) -> Result<Vec<T>, ReadModelError>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    X: Executor<'e, Database = DB>,
    T: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
    Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    L: for<'q> Encode<'q, DB> + Type<DB> + Send,
{
    Ok(bind_params!(sqlx::query_as(sql), params, list).fetch_all(executor).await?)
}

/// The `ON CONFLICT` tail of an upsert, the same on both backends: update every
/// column but the key, and only where `newer_by` grows, if given.
pub(crate) fn upsert_tail(table: &str, key: &str, columns: &[Column], newer_by: Option<&str>) -> String {
    let updates: Vec<String> =
        columns.iter().map(Column::name).filter(|n| *n != key).map(|n| format!("{n} = excluded.{n}")).collect();
    let condition = newer_by.map(|c| format!(" WHERE excluded.{c} > {table}.{c}")).unwrap_or_default();
    format!("ON CONFLICT ({key}) DO UPDATE SET {}{condition}", updates.join(", "))
}

//! Choosing a backend from a database URL.

use std::sync::Arc;

use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use crate::{Backend, EventStore, StoreError};

/// Where the embedded default keeps its database.
pub fn default_database_url() -> String {
    "sqlite://data/ordo.db".to_owned()
}

/// A database URL, checked for a scheme Ordo knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    backend: Backend,
}

impl DatabaseUrl {
    /// `sqlite:…` selects SQLite, `postgres://…`/`postgresql://…` PostgreSQL.
    ///
    /// ```
    /// use ordo_store::{Backend, DatabaseUrl};
    /// assert_eq!(DatabaseUrl::parse("sqlite://data/ordo.db").unwrap().backend(), Backend::Sqlite);
    /// assert!(DatabaseUrl::parse("mysql://localhost/x").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::InvalidDatabaseUrl {
                url: url.split(['@', '?']).next_back().unwrap_or_default().to_owned(),
                reason: "expected sqlite://PATH or postgres://USER@HOST/DATABASE".into(),
            });
        };
        Ok(Self { url: url.to_owned(), backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }
}

/// Connects to the store at `url`, applying migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    let url = DatabaseUrl::parse(url)?;
    Ok(match url.backend() {
        Backend::Sqlite => Arc::new(SqliteStore::connect(url.as_str()).await?),
        Backend::Postgres => Arc::new(PostgresStore::connect(url.as_str()).await?),
    })
}

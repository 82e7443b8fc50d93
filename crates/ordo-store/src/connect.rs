//! Choosing a backend from a database URL, and opening it: the event store and the
//! read-model database on the same connections.

use std::sync::Arc;

use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use crate::{Backend, EventStore, ReadDb, StoreError};

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
    /// `sqlite:…` selects SQLite, `postgres://…`/`postgresql://…` PostgreSQL. Only the
    /// scheme is checked here; the rest of the URL is checked when it is opened. An
    /// unknown scheme is [`StoreError::InvalidDatabaseUrl`].
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
            // Only the scheme is repeated: the rest may hold a password, in the user
            // part or in a query parameter.
            let scheme = url.split_once(':').map_or("(none)", |(scheme, _)| scheme);
            return Err(StoreError::InvalidDatabaseUrl {
                url: format!("{scheme}:…"),
                reason: "expected sqlite://PATH or postgres://USER@HOST/DATABASE".into(),
            });
        };
        Ok(Self { url: url.to_owned(), backend })
    }

    /// The backend the scheme selects.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL as given (trimmed), password included: do not log it.
    pub fn as_str(&self) -> &str {
        &self.url
    }
}

/// Connects to the event store at `url`, applying its migrations: [`open`] for
/// callers that need no read models.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ordo_store::StoreError> {
/// # let dir = std::env::temp_dir().join(format!("ordo-doc-connect-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # let url = format!("sqlite://{}", dir.join("ordo.db").display());
/// let store = ordo_store::connect(&url).await?; // say, "sqlite://data/ordo.db"
/// assert_eq!(store.head_position().await?, 0);
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    Ok(open(url).await?.store)
}

/// An open database: the event store, and the same database for read models. They
/// share connections (on SQLite, one writer for events and read models alike, as
/// SQLite wants), so a projector's writes can commit with its checkpoint.
#[derive(Clone)]
pub struct Database {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The same database, for read models and components' schemas.
    pub read_db: ReadDb,
}

/// Opens the database at `url`, applying the event store's migrations. Components
/// with schemas of their own (the projection runtime) apply theirs after this.
///
/// `sqlite://PATH` creates the file (and its directory) if missing and opens it in
/// WAL mode with `synchronous=FULL`; `postgres://…` connects a pool (see
/// [`OpenOptions`]). Fails with [`StoreError::InvalidDatabaseUrl`] for a URL it
/// cannot use, [`StoreError::Unavailable`] or [`StoreError::ReadOnly`] when the
/// database cannot be reached or written, [`StoreError::SchemaTooNew`] when a newer
/// Ordo migrated it, and [`StoreError::UnsafeDurability`] when PostgreSQL runs with
/// settings that could lose acknowledged writes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("ordo-doc-open-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # let url = format!("sqlite://{}", dir.join("ordo.db").display());
/// use ordo_store::{AppendRequest, ExpectedVersion, NewEvent, StreamId};
///
/// let db = ordo_store::open(&url).await?; // say, "sqlite://data/ordo.db"
/// let stream = StreamId::new("order-1")?;
/// let event = NewEvent::new("OrderCreated", serde_json::json!({"customer_id": "c-1"}));
/// let written = db.store.append(AppendRequest::new(stream, ExpectedVersion::NoStream, vec![event])).await?;
/// assert_eq!(db.store.head_position().await?, written.last_position());
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok(()) }
/// ```
pub async fn open(url: &str) -> Result<Database, StoreError> {
    open_with(url, OpenOptions::default()).await
}

/// How to open a database; the defaults suit a server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenOptions {
    /// The most connections to a database server (PostgreSQL; SQLite has one writer
    /// and a small read pool of its own).
    pub max_connections: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self { max_connections: crate::postgres::PostgresOptions::default().max_connections }
    }
}

impl OpenOptions {
    /// The same options with at most `n` connections.
    #[must_use]
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }
}

/// [`open`] with `options` (which only PostgreSQL uses).
pub async fn open_with(url: &str, options: OpenOptions) -> Result<Database, StoreError> {
    let url = DatabaseUrl::parse(url)?;
    Ok(match url.backend() {
        Backend::Sqlite => {
            let store = SqliteStore::connect(url.as_str()).await?;
            Database { read_db: store.read_db(), store: Arc::new(store) }
        }
        Backend::Postgres => {
            let pg =
                crate::postgres::PostgresOptions { max_connections: options.max_connections, ..Default::default() };
            let store = PostgresStore::connect_with(url.as_str(), pg).await?;
            Database { read_db: store.read_db(), store: Arc::new(store) }
        }
    })
}

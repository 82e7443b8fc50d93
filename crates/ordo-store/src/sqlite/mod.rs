//! The SQLite backend: the embedded default. One writer task owns the write
//! connection (the private `writer` module); reads use a pool of their own, which
//! WAL lets run beside the writer. Rowid order is commit order, because SQLite has
//! one writer.

#[cfg(feature = "baseline")]
pub(crate) mod baseline;
pub(crate) mod read_model;
mod writer;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::types::Json;
use sqlx::{ConnectOptions, SqliteConnection};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::queries::Shared;
use crate::rows::{self, from_db, limit, to_db, EventRow, EVENT_COLUMNS};
use crate::signal::SignalSender;
use crate::{
    AppendRequest, AppendResult, Backend, EventFilter, EventSignal, EventStore, IdempotencyRecord, Position,
    RecordedEvent, Snapshot, StoreError, StoredIdempotency, StreamId, Version,
};
use writer::Writer;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/store/sqlite");

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite event store. Clones share the writer task and the read pool. Another
/// store on the same file (in this process or another) takes turns at SQLite's
/// write lock, and a write that waits for it longer than 5 s fails with
/// [`StoreError::Locked`].
#[derive(Clone)]
pub struct SqliteStore {
    /// How every connection to the file is opened (for baselines with the same durability).
    #[cfg_attr(not(feature = "baseline"), allow(dead_code))]
    options: Arc<SqliteConnectOptions>,
    reads: SqlitePool,
    writer: Writer,
    signal: Arc<SignalSender>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path/to/file.db`),
    /// applies migrations and starts the writer.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidDatabaseUrl { url: url.to_owned(), reason: e.to_string() })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged append survives power loss, not just a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        create_parent_dir(&options)?;
        let mut write_conn = options.connect().await.map_err(open_error)?;
        migrate(&mut write_conn).await?;
        let reads = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            // A file's connection has no server to lose; sqlx checks each one as it
            // comes back, so checking it again on the way out is a wasted hop.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(open_error)?;
        let signal = Arc::new(SignalSender::new());
        let writer = Writer::spawn(write_conn, Arc::clone(&signal));
        Ok(Self { options: Arc::new(options), reads, writer, signal })
    }

    /// How connections to the file are opened.
    #[cfg(feature = "baseline")]
    pub(crate) fn options(&self) -> &SqliteConnectOptions {
        &self.options
    }

    /// The same database for read models: its queries use the read pool, its
    /// transactions the single writer, as SQLite wants.
    pub(crate) fn read_db(&self) -> crate::ReadDb {
        crate::ReadDb::sqlite(self.clone())
    }

    /// The read pool, for read models that live in the same file.
    pub(crate) fn read_pool(&self) -> &SqlitePool {
        &self.reads
    }

    /// Runs `write` in the writer's transaction (grouped with other writes, committed
    /// before this returns). Read models use this to commit beside their checkpoint.
    pub(crate) async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> futures::future::BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.writer.write(write).await
    }

    /// `PRAGMA synchronous` (2: FULL) and `PRAGMA journal_mode` as the writer's own
    /// connection reports them: the settings every acknowledged write went through.
    #[cfg(feature = "testing")]
    pub async fn writer_pragmas(&self) -> Result<(i64, String), StoreError> {
        self.write(|conn| {
            Box::pin(async move {
                let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await?;
                let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await?;
                Ok((synchronous, journal_mode))
            })
        })
        .await
    }
}

fn create_parent_dir(options: &SqliteConnectOptions) -> Result<(), StoreError> {
    let path = options.get_filename();
    if path.as_os_str().is_empty() || path.to_str() == Some(":memory:") {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::ReadOnly(format!("cannot create the directory {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Names the file in open errors: "unable to open database file" alone helps no one.
fn open_error(e: sqlx::Error) -> StoreError {
    match StoreError::from(e) {
        StoreError::Unavailable(inner) => StoreError::ReadOnly(format!(
            "cannot open the SQLite database ({inner}); check that the file and its directory exist and are writable"
        )),
        other => other,
    }
}

async fn migrate(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let recorded: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
            .fetch_optional(&mut *conn)
            .await?;
    if recorded.is_some() {
        sqlx::query(crate::store::FORGET_MOVED_MIGRATION).execute(&mut *conn).await?;
    }
    MIGRATOR.run(conn).await.map_err(StoreError::from)
}

/// A `$all` query: `$1` is the position to read after, `$2` the filter's values (a
/// JSON array) when it has any; `tail` may use `$next`, the placeholder after those.
fn read_all_sql(filter: &EventFilter, select: &str, tail: &str) -> String {
    let (narrowing, next) = match filter {
        EventFilter::All => ("", "$2"),
        EventFilter::Categories(_) => (" AND category IN (SELECT value FROM json_each($2))", "$3"),
        EventFilter::EventTypes(_) => (" AND event_type IN (SELECT value FROM json_each($2))", "$3"),
    };
    let tail = tail.replace("$next", next);
    format!("SELECT {select} FROM events WHERE position > $1{narrowing}{tail}")
}

/// Binds the filter's values, if it has any, to the query's `$2`.
fn bind_filter<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments<'q>>,
    filter: &'q EventFilter,
) -> sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments<'q>> {
    match filter {
        EventFilter::All => query,
        EventFilter::Categories(values) | EventFilter::EventTypes(values) => query.bind(Json(values)),
    }
}

async fn idempotency_exists(conn: &mut SqliteConnection, record: &IdempotencyRecord) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM idempotency_keys WHERE scope = $1 AND key = $2")
        .bind(&record.scope)
        .bind(&record.key)
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}

async fn insert_idempotency(
    conn: &mut SqliteConnection,
    record: &IdempotencyRecord,
    appended: Option<&AppendResult>,
) -> Result<(), StoreError> {
    if idempotency_exists(conn, record).await? {
        return Err(StoreError::IdempotencyKeyExists { scope: record.scope.clone(), key: record.key.clone() });
    }
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, outcome, stream_id, first_version, last_version, \
         last_position, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&record.scope)
    .bind(&record.key)
    .bind(&record.fingerprint)
    .bind(Json(&record.outcome))
    .bind(appended.map(|a| a.stream_id.as_str()))
    .bind(appended.map(|a| to_db(a.first_version)).transpose()?)
    .bind(appended.map(|a| to_db(a.last_version)).transpose()?)
    .bind(appended.map(|a| to_db(a.last_position())).transpose()?)
    .bind(Utc::now())
    .bind(record.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Events inserted per statement (9 parameters each, well under SQLite's limit).
const INSERT_CHUNK: usize = 100;

/// `INSERT … VALUES (…), (…) RETURNING position` for `rows` events.
fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=9).map(|c| format!("${}", r * 9 + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO events (stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at, \
         category) VALUES {} RETURNING position",
        values.join(", ")
    )
}

/// One append, inside the writer's transaction. The version check reads the stream's
/// version under `BEGIN IMMEDIATE`, which holds SQLite's only write lock until
/// commit, so nothing can slip in between the check and the insert; the
/// `UNIQUE (stream_id, version)` constraint backs it.
pub(crate) async fn append_in(conn: &mut SqliteConnection, request: AppendRequest) -> Result<AppendResult, StoreError> {
    let stream = request.stream_id.as_str();
    let current = crate::queries::stream_version(&mut *conn, stream).await?;
    if !request.expected.accepts(current) {
        // What the writer missed, read on the writer's own connection: no round trip.
        // Only a stream past the expected version has anything to hand back (and the
        // expected version, the caller's, may be any number).
        let missed = match request.expected.version() {
            Some(expected) if current > expected => {
                crate::queries::read_stream(&mut *conn, &request.stream_id, expected + 1, crate::MISSED_EVENTS_MAX)
                    .await?
            }
            _ => Vec::new(),
        };
        return Err(StoreError::WrongExpectedVersion {
            stream: stream.to_owned(),
            expected: request.expected,
            actual: current,
            missed,
        });
    }
    let recorded_at = Utc::now();
    let category = request.stream_id.category();
    let mut positions = Vec::with_capacity(request.events.len());
    let mut next_version = current + 1;
    for chunk in request.events.chunks(INSERT_CHUNK) {
        let sql = insert_sql(chunk.len());
        let mut query = sqlx::query_as::<_, (i64,)>(&sql);
        for event in chunk {
            query = query
                .bind(stream)
                .bind(to_db(next_version)?)
                .bind(event.event_id)
                .bind(&event.event_type)
                .bind(i64::from(event.schema_version))
                .bind(Json(&event.data))
                .bind(Json(&event.metadata))
                .bind(recorded_at)
                .bind(category);
            next_version += 1;
        }
        let mut inserted = query.fetch_all(&mut *conn).await?;
        // RETURNING gives no order guarantee; positions rise with the rows inserted.
        inserted.sort_unstable();
        for (position,) in inserted {
            positions.push(from_db(position)?);
        }
    }
    let result = AppendResult {
        stream_id: request.stream_id.clone(),
        first_version: current + 1,
        last_version: current + request.events.len() as u64,
        positions,
    };
    if let Some(record) = &request.idempotency {
        insert_idempotency(conn, record, Some(&result)).await?;
    }
    Ok(result)
}

#[async_trait]
impl EventStore for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Shared(&self.reads).ping().await
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        request.validate()?;
        self.writer.write(move |conn| append_in(conn, request).boxed()).await
    }

    async fn read_stream(
        &self,
        stream_id: &StreamId,
        from_version: Version,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // No watermark: a stream's versions are contiguous and committed atomically
        // per append, so its readers can never skip anything.
        Shared(&self.reads).read_stream(stream_id, from_version, max).await
    }

    async fn stream_version(&self, stream_id: &StreamId) -> Result<Version, StoreError> {
        crate::queries::stream_version(&self.reads, stream_id.as_str()).await
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = read_all_sql(filter, EVENT_COLUMNS, " ORDER BY position LIMIT $next");
        let rows: Vec<EventRow> = bind_filter(sqlx::query_as(&sql).bind(to_db(after)?), filter)
            .bind(limit(max))
            .fetch_all(&self.reads)
            .await?;
        rows::into_events(rows)
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        let head: i64 =
            sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events").fetch_one(&self.reads).await?;
        from_db(head)
    }

    async fn count_after(&self, after: Position, filter: &EventFilter) -> Result<u64, StoreError> {
        let sql = read_all_sql(filter, "count(*)", "");
        let (count,): (i64,) =
            bind_filter(sqlx::query_as(&sql).bind(to_db(after)?), filter).fetch_one(&self.reads).await?;
        from_db(count)
    }

    fn subscribe(&self) -> EventSignal {
        self.signal.subscribe()
    }

    async fn record_outcome(&self, record: IdempotencyRecord) -> Result<(), StoreError> {
        record.validate()?;
        self.writer.write(move |conn| async move { insert_idempotency(conn, &record, None).await }.boxed()).await
    }

    async fn find_idempotency(&self, scope: &str, key: &str) -> Result<Option<StoredIdempotency>, StoreError> {
        Shared(&self.reads).find_idempotency(scope, key).await
    }

    async fn purge_idempotency(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.writer
            .write(move |conn| {
                async move {
                    let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at < $1")
                        .bind(now)
                        .execute(conn)
                        .await?;
                    Ok(done.rows_affected())
                }
                .boxed()
            })
            .await
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let snapshot = snapshot.clone();
        self.writer.write(move |conn| async move { crate::queries::save_snapshot(conn, &snapshot).await }.boxed()).await
    }

    async fn load_snapshot(&self, stream_id: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        Shared(&self.reads).load_snapshot(stream_id).await
    }
}

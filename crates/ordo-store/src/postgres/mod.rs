//! The PostgreSQL backend: production, and the way to scale out (many `ordo serve`
//! nodes on one database). Appends are one statement (one round trip); readers of
//! `$all` follow the transaction-id watermark described in the migration and in
//! `ARCHITECTURE.md`; new events are announced by a coalesced `NOTIFY`.

mod append;
#[cfg(feature = "baseline")]
pub(crate) mod baseline;
mod group;
mod hold;
pub(crate) mod lease;
mod notify;
mod positions;
pub(crate) mod read_model;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Json;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::queries::Shared;
use crate::rows::{self, from_db, limit, to_db, EventRow, EVENT_COLUMNS};
use crate::signal::SignalSender;
use crate::{
    AppendRequest, AppendResult, Backend, EventFilter, EventSignal, EventStore, HeldStream, IdempotencyRecord,
    Position, RecordedEvent, Snapshot, StoreError, StoredIdempotency, StreamId, Version,
};
#[cfg(feature = "testing")]
pub use append::OpenAppend;
use group::{GroupCommit, Sink};
use notify::Notifier;
use positions::WATERMARK;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/store/postgres");

/// Tunables of the PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// The most connections the pool keeps open (default 32).
    pub max_connections: u32,
    /// How long a call waits for a free connection before failing with
    /// [`StoreError::Unavailable`] (default 10 s).
    pub acquire_timeout: Duration,
    /// How many append groups may be in flight at once (default 4): appends that
    /// arrive together are committed together, in groups.
    pub append_concurrency: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self { max_connections: 32, acquire_timeout: Duration::from_secs(10), append_concurrency: 4 }
    }
}

/// How long a pooled connection may sit idle before it is checked again on the way
/// out (a server restart takes longer than this).
const RECHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The PostgreSQL event store. Clones share the pool, the append groups and the
/// notification listener.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    signal: Arc<SignalSender>,
    appends: GroupCommit,
}

impl PostgresStore {
    /// Connects with default options, applies migrations and starts listening for
    /// other nodes' appends.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects with `options`, applies migrations, checks that commits are durable
    /// (refusing `synchronous_commit=off` with [`StoreError::UnsafeDurability`]) and
    /// starts listening for other nodes' appends. A server that refuses the
    /// connection (a bad password, an unknown database) is [`StoreError::Unavailable`].
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidDatabaseUrl { url: redact(url), reason: e.to_string() })?
            // Our statements take their rows as arrays (unnest), whose length a generic
            // plan cannot know: PostgreSQL then estimates the generic plan dearer than
            // one planned for the values at hand and plans the append statement anew
            // at every execution (about a third of the append rate at 8 writers).
            // These are point statements: one plan serves every execution.
            .options([("plan_cache_mode", "force_generic_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // sqlx checks every connection as it comes back (a round trip); checking
            // it again as it goes out costs a second one per statement. A connection
            // just put back is as good as checked, so only those that sat idle long
            // enough for the server to have gone away in between are checked again.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= RECHECK_IDLE_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect)
            .await
            .map_err(|e| match StoreError::from(e) {
                // Refused at the door (a bad password, an unknown database): unreachable.
                StoreError::Database(inner) => StoreError::Unavailable(inner),
                other => other,
            })?;
        migrate(&pool).await?;
        positions::check_durability(&pool).await?;
        if positions::behind(&pool).await? {
            positions::rebase(&pool).await?;
        }
        let signal = Arc::new(SignalSender::new());
        let notifier = Notifier::start(pool.clone(), Arc::clone(&signal)).await?;
        let sink = Sink { pool: pool.clone(), signal: Arc::clone(&signal), notifier };
        let appends = GroupCommit::start(sink, options.append_concurrency);
        Ok(Self { pool, signal, appends })
    }

    /// The connection pool, for read models that live in the same database.
    pub(crate) fn read_db(&self) -> crate::ReadDb {
        crate::ReadDb::postgres(self.pool.clone())
    }

    /// The connection pool, for tests that look under the store.
    #[cfg(feature = "testing")]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let recorded: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if recorded {
        sqlx::query(crate::store::FORGET_MOVED_MIGRATION).execute(pool).await?;
    }
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            // A password may also come as a query parameter (`?password=…`).
            let query: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("password") { "***".into() } else { v.into_owned() };
                    (k.into_owned(), v)
                })
                .collect();
            if !query.is_empty() {
                parsed.query_pairs_mut().clear().extend_pairs(query);
            }
            parsed.to_string()
        }
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

/// A `$all` query: `$1` is the position to read after, `$2` the filter's values when
/// it has any; `tail` may use the next placeholder, which [`next_param`] names.
fn read_all_sql(filter: &EventFilter, select: &str, tail: &str) -> String {
    let narrowing = match filter {
        EventFilter::All => "",
        EventFilter::Categories(_) => " AND category = ANY($2)",
        EventFilter::EventTypes(_) => " AND event_type = ANY($2)",
    };
    let tail = tail.replace("$next", next_param(filter));
    format!("SELECT {select} FROM events WHERE position > $1 AND position < {WATERMARK}{narrowing}{tail}")
}

fn next_param(filter: &EventFilter) -> &'static str {
    match filter {
        EventFilter::All => "$2",
        _ => "$3",
    }
}

/// Binds the filter's values, if it has any, to the query's `$2`.
fn bind_filter<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    filter: &'q EventFilter,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    match filter {
        EventFilter::All => query,
        EventFilter::Categories(values) | EventFilter::EventTypes(values) => query.bind(values),
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Shared(&self.pool).ping().await
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        request.validate()?;
        self.appends.append(request).await
    }

    async fn read_stream(
        &self,
        stream_id: &StreamId,
        from_version: Version,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // No watermark: a stream's versions are contiguous and committed atomically
        // per append, so its readers can never skip anything.
        Shared(&self.pool).read_stream(stream_id, from_version, max).await
    }

    async fn stream_version(&self, stream_id: &StreamId) -> Result<Version, StoreError> {
        crate::queries::stream_version(&self.pool, stream_id.as_str()).await
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
            .fetch_all(&self.pool)
            .await?;
        rows::into_events(rows)
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        let sql = format!("SELECT coalesce(max(position), 0) FROM events WHERE position < {WATERMARK}");
        let head: i64 = sqlx::query_scalar(&sql).fetch_one(&self.pool).await?;
        from_db(head)
    }

    async fn count_after(&self, after: Position, filter: &EventFilter) -> Result<u64, StoreError> {
        let sql = read_all_sql(filter, "count(*)", "");
        let (count,): (i64,) =
            bind_filter(sqlx::query_as(&sql).bind(to_db(after)?), filter).fetch_one(&self.pool).await?;
        from_db(count)
    }

    fn subscribe(&self) -> EventSignal {
        self.signal.subscribe()
    }

    async fn record_outcome(&self, record: IdempotencyRecord) -> Result<(), StoreError> {
        record.validate()?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, outcome, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&record.scope)
        .bind(&record.key)
        .bind(&record.fingerprint)
        .bind(Json(&record.outcome))
        .bind(record.expires_at)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if crate::error::is_unique_violation(&e, append::IDEMPOTENCY_PKEY) => {
                Err(StoreError::IdempotencyKeyExists { scope: record.scope, key: record.key })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn find_idempotency(&self, scope: &str, key: &str) -> Result<Option<StoredIdempotency>, StoreError> {
        Shared(&self.pool).find_idempotency(scope, key).await
    }

    async fn purge_idempotency(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM idempotency_keys WHERE expires_at < $1").bind(now).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        crate::queries::save_snapshot(&self.pool, snapshot).await
    }

    async fn load_snapshot(&self, stream_id: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        Shared(&self.pool).load_snapshot(stream_id).await
    }

    async fn hold_stream<'a>(&'a self, stream_id: &StreamId) -> Result<Box<dyn HeldStream + 'a>, StoreError> {
        Ok(Box::new(hold::hold(self.appends.sink(), stream_id).await?))
    }
}

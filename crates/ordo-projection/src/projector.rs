//! What a projector is: a name, the events it wants, the tables it owns, and how it
//! applies a batch of events inside a read-model transaction ([`ProjectorTx`]).

use async_trait::async_trait;
use ordo_store::{EventFilter, RecordedEvent, StreamId};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};

use crate::{ProjectionError, ReadModelTx};

/// A table a projector owns. `{table}` in the SQL stands for its physical name, which
/// is the logical name for the live table and another one for a rebuild's shadow
/// table; index names should be built from `{table}` too. The SQL must run on both
/// backends (`BIGINT`, `TEXT`, `IF NOT EXISTS`).
#[derive(Clone, Debug)]
pub struct TableDef {
    /// The logical name: the live table's, and what `tx.table(..)` looks up.
    pub name: &'static str,
    /// `CREATE TABLE IF NOT EXISTS {table} (…)`.
    pub create: &'static str,
    /// `CREATE INDEX IF NOT EXISTS {table}_by_x ON {table} (…)` statements. Created
    /// with a missing live table, and after a rebuild's bulk load, before the swap.
    pub indexes: &'static [&'static str],
}

impl TableDef {
    pub(crate) fn create_sql(&self, physical: &str) -> String {
        self.create.replace("{table}", physical)
    }

    pub(crate) fn index_sql(&self, physical: &str) -> Vec<String> {
        self.indexes.iter().map(|i| i.replace("{table}", physical)).collect()
    }
}

/// Logical table names to the physical tables a batch writes to.
#[derive(Clone, Debug, Default)]
pub struct Tables(HashMap<&'static str, String>);

impl Tables {
    /// The live tables: each under its own name.
    pub fn live(defs: &[TableDef]) -> Self {
        Self(defs.iter().map(|d| (d.name, d.name.to_owned())).collect())
    }

    /// Shadow tables for a rebuild: `{name}__{suffix}`.
    pub(crate) fn shadow(defs: &[TableDef], suffix: &str) -> Self {
        Self(defs.iter().map(|d| (d.name, format!("{}__{suffix}", d.name))).collect())
    }

    /// The physical name of a logical table (the logical name if it is not mapped).
    pub fn get<'a>(&'a self, logical: &'a str) -> &'a str {
        self.0.get(logical).map_or(logical, String::as_str)
    }
}

/// A projector's batch: the read-model transaction its writes commit in (with the
/// checkpoint), and where its tables are — the live ones, or a rebuild's shadow tables.
/// It derefs to the [`ReadModelTx`], so `tx.execute(..)`, `tx.upsert(..)` and the
/// dialect helpers work on it directly.
pub struct ProjectorTx<'t, 'c> {
    tx: &'t mut ReadModelTx<'c>,
    tables: &'t Tables,
}

impl<'t, 'c> ProjectorTx<'t, 'c> {
    pub(crate) fn new(tx: &'t mut ReadModelTx<'c>, tables: &'t Tables) -> Self {
        Self { tx, tables }
    }

    /// The physical name of the projector's table `logical` in this batch.
    pub fn table(&self, logical: &'static str) -> &'t str {
        self.tables.get(logical)
    }
}

impl<'c> Deref for ProjectorTx<'_, 'c> {
    type Target = ReadModelTx<'c>;

    fn deref(&self) -> &Self::Target {
        self.tx
    }
}

impl DerefMut for ProjectorTx<'_, '_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.tx
    }
}

/// Turns events into a read model. Implementations write only through the
/// transaction they are given, so that their writes commit with the checkpoint:
/// a batch takes effect exactly once, even when it is delivered again after a crash.
/// A [`ProjectionRuntime`](crate::ProjectionRuntime) runs it.
///
/// ```
/// use async_trait::async_trait;
/// use ordo_projection::{ProjectionError, ProjectionRuntime, Projector, ProjectorTx, RunnerConfig, TableDef};
/// use ordo_store::{AppendRequest, EventFilter, ExpectedVersion, NewEvent, RecordedEvent, StreamId};
/// use std::{sync::Arc, time::Duration};
///
/// /// How many events of each type there are, in `event_counts`.
/// struct EventCounts;
///
/// #[async_trait]
/// impl Projector for EventCounts {
///     fn name(&self) -> &'static str {
///         "event_counts"
///     }
///     fn filter(&self) -> EventFilter {
///         EventFilter::All
///     }
///     fn tables(&self) -> Vec<TableDef> {
///         let create = "CREATE TABLE IF NOT EXISTS {table} (event_type TEXT PRIMARY KEY, count BIGINT NOT NULL)";
///         vec![TableDef { name: "event_counts", create, indexes: &[] }]
///     }
///     async fn apply(&self, tx: &mut ProjectorTx<'_, '_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
///         let table = tx.table("event_counts"); // a rebuild's shadow table while rebuilding
///         let sql = format!(
///             "INSERT INTO {table} (event_type, count) VALUES ($1, 1) \
///              ON CONFLICT (event_type) DO UPDATE SET count = {table}.count + 1"
///         );
///         for event in events {
///             tx.execute(&sql, &[event.event_type.as_str().into()]).await?;
///         }
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("ordo-doc-projector-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # let url = format!("sqlite://{}", dir.join("ordo.db").display());
/// let db = ordo_store::open(&url).await?; // say, "sqlite://data/ordo.db"
/// let store = Arc::clone(&db.store);
/// let runtime = ProjectionRuntime::open(db, vec![Arc::new(EventCounts)], RunnerConfig::default()).await?;
/// runtime.start().await?;
///
/// let events = ["OrderCreated", "ItemAdded", "ItemAdded"].map(|t| NewEvent::new(t, serde_json::json!({})));
/// let stream = StreamId::new("order-1")?;
/// let written = store.append(AppendRequest::new(stream, ExpectedVersion::NoStream, events.into())).await?;
///
/// // Read your writes: wait until the projector has applied the append.
/// assert!(runtime.wait_for_position("event_counts", written.last_position(), Duration::from_secs(5)).await?);
/// #[derive(sqlx::FromRow)]
/// struct Count {
///     count: i64,
/// }
/// let sql = "SELECT count FROM event_counts WHERE event_type = $1";
/// let rows: Vec<Count> = runtime.db().fetch_all(sql, &["ItemAdded".into()]).await?;
/// assert_eq!(rows[0].count, 2);
/// runtime.shutdown().await;
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Projector: Send + Sync + 'static {
    /// Stable and unique: it keys the checkpoint.
    fn name(&self) -> &'static str;

    /// The events it wants; the runner reads only those.
    fn filter(&self) -> EventFilter;

    /// The tables it owns.
    fn tables(&self) -> Vec<TableDef>;

    /// The version of the read model — its tables' shape and what its rows mean —
    /// this projector writes (default 1). Bump it whenever the tables change shape or
    /// the same events would now give other rows: [`ProjectionRuntime::start`] then
    /// rebuilds the read model from the first event before it runs the projector
    /// (`ordo projections rebuild` does the same by hand), and a runtime that only
    /// knows an older version refuses to write into it.
    ///
    /// [`ProjectionRuntime::start`]: crate::ProjectionRuntime::start
    fn version(&self) -> u32 {
        1
    }

    /// Applies `events` (in global order, never empty) to its tables (`tx.table(..)`).
    /// An error rolls the whole batch back; the runner then retries event by event
    /// with backoff, and stops the projector as `failed` at an event that keeps
    /// failing ([`ProjectionError::apply`] names it).
    async fn apply(&self, tx: &mut ProjectorTx<'_, '_>, events: &[RecordedEvent]) -> Result<(), ProjectionError>;

    /// Whether each stream's rows depend only on that stream's events, so that a
    /// rebuild may apply different streams side by side (default: no).
    fn partitioned_by_stream(&self) -> bool {
        false
    }

    /// Deletes what the read model holds for `stream`, for a one-stream rebuild.
    /// Returns `false` if the read model is not keyed by stream (the default).
    async fn forget_stream(&self, tx: &mut ProjectorTx<'_, '_>, stream: &StreamId) -> Result<bool, ProjectionError> {
        let _ = (tx, stream);
        Ok(false)
    }
}

//! Rebuilding a read model from scratch while the system keeps serving. The events
//! are replayed into shadow tables; once they have caught up, one transaction drops
//! the live tables, renames the shadow ones into their place and moves the checkpoint
//! to what they hold. Readers see the old read model until that commit and the new
//! one after it, never an empty or half-built one. The live runner's next batch is
//! fenced by the moved checkpoint and it carries on from there. A marker row with a
//! heartbeat makes sure one rebuild runs at a time, across processes.

use ordo_store::{EventFilter, Position, ReadDb, RecordedEvent, StreamId, READ_PAGE};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::checkpoint;
use crate::subscriber::prepare_projector;
use crate::{ProjectionError, ProjectionRuntime, Projector, ProjectorTx, TableDef, Tables};

/// How far a rebuild has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildProgress {
    /// Events replayed so far.
    pub done: u64,
    /// Events to replay in all: counted when the rebuild started, and raised to
    /// `done` when events appended meanwhile take the replay past it.
    pub total: u64,
}

impl ProjectionRuntime {
    /// Rebuilds `name` from the first event; returns how many events it replayed.
    /// The new tables hold the projector's current [`Projector::version`].
    /// `progress` is told after every batch. Refused with `AlreadyRebuilding` while
    /// another rebuild of it runs (in any process), and with `NotAProjector` for a
    /// reactor.
    pub async fn rebuild(
        &self,
        name: &str,
        progress: impl Fn(RebuildProgress) + Send + Sync,
    ) -> Result<u64, ProjectionError> {
        let projector = self.projector(name)?;
        let name = projector.name();
        let db = self.inner.db.clone();
        prepare_projector(&db, &projector).await?;
        let owner = format!("r{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        if let Some(stale) = checkpoint::claim_rebuild(&db, name, owner.clone()).await? {
            // A rebuild that died left its shadow tables behind.
            drop_tables(&db, &projector.tables(), &Tables::shadow(&projector.tables(), &stale)).await?;
        }
        let outcome = self.rebuild_claimed(&projector, &owner, &progress).await;
        if outcome.is_err() {
            let _ = drop_tables(&db, &projector.tables(), &Tables::shadow(&projector.tables(), &owner)).await;
            let _ = checkpoint::release_rebuild(&db, name, owner).await;
        }
        outcome
    }

    async fn rebuild_claimed(
        &self,
        projector: &Arc<dyn Projector>,
        owner: &str,
        progress: &(impl Fn(RebuildProgress) + Send + Sync),
    ) -> Result<u64, ProjectionError> {
        let db = &self.inner.db;
        let defs = projector.tables();
        let shadow = Tables::shadow(&defs, owner);
        let create: Vec<String> = defs.iter().map(|d| d.create_sql(shadow.get(d.name))).collect();
        run_ddl(db, create).await?;
        let total = self.inner.store.count_after(0, &projector.filter()).await?;
        let replay = Replay { projector, shadow: &shadow, owner, total, progress };
        let (position, done) = self.replay_into_shadow(&replay, 0, 0).await?;
        // Indexes now, on the full tables: cheaper than maintaining them per row.
        // A fresh heartbeat first, so that a long index build is not taken for death.
        heartbeat(db, projector, owner, done, total.max(done)).await?;
        let indexes: Vec<String> = defs.iter().flat_map(|d| d.index_sql(shadow.get(d.name))).collect();
        run_ddl(db, indexes).await?;
        // Whatever arrived meanwhile; the rest goes with the swap itself.
        let (position, mut done) = self.replay_into_shadow(&replay, position, done).await?;
        let batch = self.inner.config.rebuild_batch_size;
        let swapped = Swap { projector: Arc::clone(projector), shadow, owner: owner.to_owned(), position, batch };
        done += swap(db, Arc::clone(&self.inner.store), swapped).await?;
        Ok(done)
    }

    /// Applies events after `position` to the shadow tables while batches come full
    /// (reading the next batch while one is applied; side by side by stream where the
    /// projector allows), recording progress with each batch. Returns the new
    /// position and events done.
    async fn replay_into_shadow(
        &self,
        replay: &Replay<'_, impl Fn(RebuildProgress) + Send + Sync>,
        mut position: Position,
        mut done: u64,
    ) -> Result<(Position, u64), ProjectionError> {
        let Replay { projector, shadow, owner, total, progress } = replay;
        let (db, filter) = (&self.inner.db, projector.filter());
        let batch = self.inner.config.rebuild_batch_size;
        let lanes = if projector.partitioned_by_stream() { self.inner.config.rebuild_lanes.max(1) } else { 1 };
        let read = |after: Position| {
            let (store, filter) = (Arc::clone(&self.inner.store), filter.clone());
            tokio::spawn(async move { store.read_all(after, batch, &filter).await })
        };
        let mut next = read(position);
        loop {
            let events = next.await.map_err(|e| ProjectionError::TaskStopped {
                task: "the rebuild's event reader",
                reason: e.to_string(),
            })??;
            let Some(last) = events.last() else { break };
            position = last.position;
            let full = events.len() == batch;
            // Read the next batch while this one is applied.
            next = read(position);
            done += events.len() as u64;
            let total = (*total).max(done);
            let applied = split_by_stream(events, lanes).into_iter().enumerate().map(|(lane, events)| {
                let (projector, shadow, owner) = (Arc::clone(projector), (*shadow).clone(), (*owner).to_owned());
                db.transaction(move |mut tx| {
                    Box::pin(async move {
                        if !events.is_empty() {
                            projector.apply(&mut ProjectorTx::new(&mut tx, &shadow), &events).await?;
                        }
                        if lane == 0 {
                            checkpoint::rebuild_progress(&mut tx, projector.name(), &owner, done, total).await?;
                        }
                        Ok::<_, ProjectionError>(())
                    })
                })
            });
            futures::future::try_join_all(applied).await?;
            progress(RebuildProgress { done, total });
            if !full {
                break;
            }
        }
        Ok((position, done))
    }

    /// Rebuilds one stream's rows of a stream-keyed read model in place: deletes them
    /// and reapplies the stream's events up to the projector's checkpoint, in one
    /// transaction that holds the checkpoint still. Returns how many events it applied.
    pub async fn rebuild_stream(&self, name: &str, stream: &StreamId) -> Result<usize, ProjectionError> {
        let projector = self.projector(name)?;
        prepare_projector(&self.inner.db, &projector).await?;
        let store = Arc::clone(&self.inner.store);
        let stream = stream.clone();
        self.inner
            .db
            .transaction(move |mut tx| {
                Box::pin(async move {
                    let name = projector.name();
                    let tables = Tables::live(&projector.tables());
                    // Rows, then the checkpoint: the runner's lock order.
                    if !projector.forget_stream(&mut ProjectorTx::new(&mut tx, &tables), &stream).await? {
                        return Err(ProjectionError::NotKeyedByStream { projector: name.to_owned() });
                    }
                    let up_to = checkpoint::load_in(&mut tx, name).await?.position;
                    let events = stream_events(&*store, &stream, &projector.filter(), up_to).await?;
                    if !events.is_empty() {
                        projector.apply(&mut ProjectorTx::new(&mut tx, &tables), &events).await?;
                    }
                    Ok(events.len())
                })
            })
            .await
    }
}

/// Splits a batch into `lanes` parts by stream, each in global order: a stream's
/// events all land in one part, so the parts can be applied side by side.
fn split_by_stream(events: Vec<RecordedEvent>, lanes: usize) -> Vec<Vec<RecordedEvent>> {
    if lanes == 1 {
        return vec![events];
    }
    let mut parts: Vec<Vec<RecordedEvent>> = (0..lanes).map(|_| Vec::new()).collect();
    for event in events {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(event.stream_id.as_str(), &mut hasher);
        let lane = (std::hash::Hasher::finish(&hasher) % lanes as u64) as usize;
        parts[lane].push(event);
    }
    parts
}

/// The events of `stream` that `filter` passes, up to `up_to`.
async fn stream_events(
    store: &dyn ordo_store::EventStore,
    stream: &StreamId,
    filter: &EventFilter,
    up_to: Position,
) -> Result<Vec<RecordedEvent>, ProjectionError> {
    let mut events = Vec::new();
    let mut from = 1;
    loop {
        let page = store.read_stream(stream, from, READ_PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.version + 1;
        let full = page.len() == READ_PAGE;
        events.extend(page.into_iter().filter(|e| e.position <= up_to && filter.matches(e)));
        if !full {
            break;
        }
    }
    Ok(events)
}

async fn run_ddl(db: &ReadDb, statements: Vec<String>) -> Result<(), ProjectionError> {
    db.transaction(move |mut tx| {
        Box::pin(async move {
            for statement in &statements {
                tx.execute(statement, &[]).await?;
            }
            Ok(())
        })
    })
    .await
}

async fn drop_tables(db: &ReadDb, defs: &[TableDef], tables: &Tables) -> Result<(), ProjectionError> {
    let statements = defs.iter().map(|d| format!("DROP TABLE IF EXISTS {}", tables.get(d.name))).collect();
    run_ddl(db, statements).await
}

/// What a rebuild's replay into shadow tables needs.
struct Replay<'a, P> {
    projector: &'a Arc<dyn Projector>,
    shadow: &'a Tables,
    owner: &'a str,
    /// Events expected in all, for progress.
    total: u64,
    progress: &'a P,
}

/// What a swap needs.
struct Swap {
    projector: Arc<dyn Projector>,
    shadow: Tables,
    owner: String,
    position: Position,
    batch: usize,
}

/// Replaces the live tables by the shadow ones and moves the checkpoint, atomically.
/// Inside the same transaction, with the live tables locked (PostgreSQL) or the
/// single writer held (SQLite), it first applies to the shadow tables every event the
/// live runner may already have applied, so the read model never moves backwards.
/// Returns how many events it applied.
async fn swap(db: &ReadDb, store: Arc<dyn ordo_store::EventStore>, swap: Swap) -> Result<u64, ProjectionError> {
    let defs = swap.projector.tables();
    let live: Vec<&'static str> = defs.iter().map(|d| d.name).collect();
    let mut renames = Vec::new();
    for d in &defs {
        renames.push(format!("DROP TABLE IF EXISTS {}", d.name));
        renames.push(format!("ALTER TABLE {} RENAME TO {}", swap.shadow.get(d.name), d.name));
    }
    db.transaction(move |mut tx| {
        Box::pin(async move {
            // Live tables first (the runner's lock order: tables, then checkpoint): an
            // in-flight runner batch finishes before the swap, not in a deadlock.
            tx.lock_exclusively(&live).await?;
            // The live runner is held off now; everything it can have applied is
            // readable, so the tail up to a partial batch covers it.
            let (mut position, mut applied) = (swap.position, 0u64);
            let filter = swap.projector.filter();
            loop {
                let events = store.read_all(position, swap.batch, &filter).await?;
                let Some(last) = events.last() else { break };
                position = last.position;
                applied += events.len() as u64;
                swap.projector.apply(&mut ProjectorTx::new(&mut tx, &swap.shadow), &events).await?;
                if events.len() < swap.batch {
                    break;
                }
            }
            for statement in &renames {
                tx.execute(statement, &[]).await?;
            }
            let version = swap.projector.version();
            checkpoint::finish_rebuild(&mut tx, swap.projector.name(), &swap.owner, position, version).await?;
            Ok(applied)
        })
    })
    .await
}

/// Refreshes a rebuild's heartbeat outside of a batch.
async fn heartbeat(
    db: &ReadDb,
    projector: &Arc<dyn Projector>,
    owner: &str,
    done: u64,
    total: u64,
) -> Result<(), ProjectionError> {
    let (name, owner) = (projector.name(), owner.to_owned());
    db.transaction(move |mut tx| {
        Box::pin(async move { checkpoint::rebuild_progress(&mut tx, name, &owner, done, total).await })
    })
    .await
}

//! What a runner runs: a projector (writes a read model and moves its checkpoint in
//! one transaction) or a reactor (acts outside any transaction, then moves its
//! checkpoint). Everything else — leases, catching up, following, retries, the
//! `failed` stop — is the same for both and lives in the runner.

use ordo_store::{EventFilter, EventStore, Lease, Position, ReadDb, RecordedEvent};
use std::sync::Arc;

use crate::reactor::react_batch;
use crate::{checkpoint, ProjectionError, Projector, ProjectorTx, Reactor, StartFrom, TableDef, Tables};

/// A projector or a reactor, as the runtime holds it.
#[derive(Clone)]
pub(crate) enum Subscriber {
    Projector(Arc<dyn Projector>),
    Reactor(Arc<dyn Reactor>),
}

impl Subscriber {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Subscriber::Projector(p) => p.name(),
            Subscriber::Reactor(r) => r.name(),
        }
    }

    pub(crate) fn filter(&self) -> EventFilter {
        match self {
            Subscriber::Projector(p) => p.filter(),
            Subscriber::Reactor(r) => r.filter(),
        }
    }

    /// The tables it owns (a reactor owns none).
    pub(crate) fn tables(&self) -> Vec<TableDef> {
        match self {
            Subscriber::Projector(p) => p.tables(),
            Subscriber::Reactor(_) => Vec::new(),
        }
    }

    /// Handles `events` after `from` and moves the checkpoint past them; returns the
    /// new position.
    pub(crate) async fn handle(
        &self,
        tables: &Tables,
        lease: &mut Lease,
        from: Position,
        events: Arc<Vec<RecordedEvent>>,
    ) -> Result<Position, ProjectionError> {
        match self {
            Subscriber::Projector(p) => apply_batch(p, tables, lease, from, events).await,
            Subscriber::Reactor(r) => react_batch(r, lease, from, events).await,
        }
    }

    /// Creates what is missing: a projector's tables and checkpoint, a reactor's
    /// checkpoint where [`Reactor::start_from`] says.
    pub(crate) async fn prepare(&self, db: &ReadDb, store: &dyn EventStore) -> Result<(), ProjectionError> {
        match self {
            Subscriber::Projector(p) => prepare_projector(db, p).await,
            Subscriber::Reactor(r) => {
                let start = match r.start_from() {
                    StartFrom::Beginning => 0,
                    StartFrom::Now => store.head_position().await?,
                };
                let name = r.name();
                db.transaction(move |mut tx| Box::pin(async move { checkpoint::ensure_at(&mut tx, name, start).await }))
                    .await
            }
        }
    }
}

/// Applies one batch and moves the checkpoint past it, in one transaction.
async fn apply_batch(
    projector: &Arc<dyn Projector>,
    tables: &Tables,
    lease: &mut Lease,
    from: Position,
    events: Arc<Vec<RecordedEvent>>,
) -> Result<Position, ProjectionError> {
    let to = events.last().map_or(from, |e| e.position);
    let (projector, tables) = (Arc::clone(projector), tables.clone());
    lease
        .transaction(move |mut tx| {
            Box::pin(async move {
                // Writes first, then the checkpoint: the same lock order as a rebuild's swap.
                projector.apply(&mut ProjectorTx::new(&mut tx, &tables), &events).await?;
                checkpoint::advance(&mut tx, projector.name(), from, to).await?;
                Ok(to)
            })
        })
        .await
}

/// Creates the projector's live tables (with their indexes) and checkpoint row if
/// they are missing. A table that exists is left alone: after a rebuild its indexes
/// carry the names they were built under. Tables created here have the shape of the
/// projector's current [`Projector::version`], which is recorded with them. One
/// process at a time: two nodes starting together on a fresh database would both find
/// a table missing and both create it.
pub(crate) async fn prepare_projector(db: &ReadDb, projector: &Arc<dyn Projector>) -> Result<(), ProjectionError> {
    let name = projector.name();
    let tables = projector.tables();
    let version = projector.version();
    db.transaction(move |mut tx| {
        Box::pin(async move {
            tx.serialize_on("ordo-schema").await?;
            let mut created = 0;
            for table in &tables {
                if tx.table_exists(table.name).await? {
                    continue;
                }
                tx.execute(&table.create_sql(table.name), &[]).await?;
                for index in table.index_sql(table.name) {
                    tx.execute(&index, &[]).await?;
                }
                created += 1;
            }
            checkpoint::ensure(&mut tx, name).await?;
            if created > 0 && created == tables.len() {
                checkpoint::set_read_model_version(&mut tx, name, version).await?;
            }
            Ok(())
        })
    })
    .await
}

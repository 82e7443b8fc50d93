//! The projection runtime: one task per projector that catches up from its
//! checkpoint in bounded batches and then follows live events (woken by the store's
//! signal, polling as a fallback). A runner first takes its projector's lease (see
//! `ordo_store::LeaseCandidate`) and writes every batch under it, so a runner that
//! lost its lease cannot write another batch; the checkpoint's compare-and-set fences
//! any runner that is stale all the same.

use ordo_store::{Database, EventStore, Lease, Position, ReadDb, RecordedEvent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

use crate::checkpoint;
use crate::status::{ErrorInfo, ProjectorState};
use crate::{ProjectionError, Projector, Tables};

/// How runners behave; the defaults suit a server.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Events per live batch.
    pub batch_size: usize,
    /// Events per batch while rebuilding.
    pub rebuild_batch_size: usize,
    /// Transactions a rebuild runs side by side for projectors partitioned by stream.
    pub rebuild_lanes: usize,
    /// How long a runner waits for a wake-up before it looks anyway.
    pub poll_interval: Duration,
    /// Attempts at an event before the projector stops as `failed`.
    pub max_attempts: u32,
    /// The first retry delay; it doubles per attempt.
    pub retry_base: Duration,
    /// How often a standby node tries for a projector's lease.
    pub lease_retry: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            rebuild_batch_size: 5_000,
            rebuild_lanes: 4,
            poll_interval: Duration::from_millis(500),
            max_attempts: 5,
            retry_base: Duration::from_millis(100),
            lease_retry: Duration::from_secs(1),
        }
    }
}

/// One projector as the runtime holds it.
pub(crate) struct Registered {
    pub(crate) projector: Arc<dyn Projector>,
    pub(crate) position: watch::Sender<Position>,
    pub(crate) live: Mutex<Live>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What this process knows of a runner it runs.
#[derive(Clone, Debug)]
pub(crate) struct Live {
    pub(crate) state: ProjectorState,
    pub(crate) error: Option<ErrorInfo>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) db: ReadDb,
    pub(crate) config: RunnerConfig,
    pub(crate) projectors: HashMap<&'static str, Registered>,
    shutdown: watch::Sender<bool>,
}

/// Runs projectors, reports on them, and rebuilds them.
#[derive(Clone)]
pub struct ProjectionRuntime {
    pub(crate) inner: Arc<Inner>,
}

/// Why a runner stopped following.
enum Stop {
    Shutdown,
    /// The connection (and with it the lease) is gone: take the lease again.
    Disconnected(ProjectionError),
    Failed(ErrorInfo),
}

impl Stop {
    /// How a runner stops on `error` outside of a batch: connection trouble is worth
    /// another go, anything else stops the projector until it is resumed.
    fn on(error: ProjectionError) -> Self {
        if error.is_transient() {
            Stop::Disconnected(error)
        } else {
            Stop::Failed(ErrorInfo::without_event(&error))
        }
    }
}

impl ProjectionRuntime {
    /// A runtime for `projectors` on `database`, after applying the runtime's own
    /// schema (the event store's is in place once the database is open). Nothing runs
    /// until [`ProjectionRuntime::start`].
    pub async fn open(
        database: Database,
        projectors: Vec<Arc<dyn Projector>>,
        config: RunnerConfig,
    ) -> Result<Self, ProjectionError> {
        database.read_db.migrate(checkpoint::COMPONENT, checkpoint::MIGRATIONS).await?;
        let Database { store, read_db: db } = database;
        let projectors = projectors
            .into_iter()
            .map(|projector| {
                let registered = Registered {
                    projector: Arc::clone(&projector),
                    position: watch::channel(0).0,
                    live: Mutex::new(Live { state: ProjectorState::Stopped, error: None }),
                    task: Mutex::new(None),
                };
                (projector.name(), registered)
            })
            .collect();
        let shutdown = watch::channel(false).0;
        Ok(Self { inner: Arc::new(Inner { store, db, config, projectors, shutdown }) })
    }

    /// The event store the runtime reads.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }

    /// The database the read models live in.
    pub fn db(&self) -> &ReadDb {
        &self.inner.db
    }

    /// The names of the registered projectors.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.inner.projectors.keys().copied().collect();
        names.sort_unstable();
        names
    }

    pub(crate) fn registered(&self, name: &str) -> Result<&Registered, ProjectionError> {
        self.inner.projectors.get(name).ok_or_else(|| ProjectionError::UnknownProjector(name.to_owned()))
    }

    /// Creates every projector's tables and checkpoint, if missing.
    pub async fn prepare(&self) -> Result<(), ProjectionError> {
        for registered in self.inner.projectors.values() {
            prepare(&self.inner.db, &registered.projector).await?;
        }
        Ok(())
    }

    /// Creates what is missing (tables, checkpoints), then starts a runner per
    /// projector (one that is already running is left alone). Read models can be
    /// queried as soon as this returns.
    pub async fn start(&self) -> Result<(), ProjectionError> {
        self.prepare().await?;
        for name in self.names() {
            self.resume(name).await?;
        }
        Ok(())
    }

    /// Starts the runner of `name` again, after it failed or was stopped; a runner
    /// that is running is left alone.
    pub async fn resume(&self, name: &str) -> Result<(), ProjectionError> {
        let registered = self.registered(name)?;
        let previous = lock(&registered.task).take();
        if let Some(task) = previous {
            let failed = lock(&registered.live).state == ProjectorState::Failed;
            if !task.is_finished() && !failed {
                *lock(&registered.task) = Some(task);
                return Ok(());
            }
            // A failed runner may still be on its way out: let it finish first.
            let _ = task.await;
        }
        let runtime = self.clone();
        let name = registered.projector.name();
        *lock(&registered.task) = Some(tokio::spawn(async move { runtime.run(name).await }));
        Ok(())
    }

    /// Asks every runner to stop at its next batch boundary and waits for them.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        for registered in self.inner.projectors.values() {
            let task = lock(&registered.task).take();
            if let Some(task) = task {
                let _ = task.await;
            }
        }
    }

    /// Waits until `name` has applied everything up to `position`, or `timeout`
    /// passes. Works whichever node runs the projector.
    pub async fn wait_for_position(
        &self,
        name: &str,
        position: Position,
        timeout: Duration,
    ) -> Result<bool, ProjectionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut local = self.registered(name)?.position.subscribe();
        loop {
            if *local.borrow_and_update() >= position
                || checkpoint::load(&self.inner.db, name).await?.position >= position
            {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            // The local runner says when it moves; another node's runner is polled.
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_millis(50)), local.changed()).await;
        }
    }

    /// Waits (at most `timeout`) until `name`'s runner in this process applies a batch.
    pub async fn changed(&self, name: &str, timeout: Duration) -> Result<(), ProjectionError> {
        let mut local = self.registered(name)?.position.subscribe();
        local.borrow_and_update();
        let _ = tokio::time::timeout(timeout, local.changed()).await;
        Ok(())
    }

    fn set_live(&self, name: &str, state: ProjectorState, error: Option<ErrorInfo>) {
        if let Ok(registered) = self.registered(name) {
            *lock(&registered.live) = Live { state, error };
        }
    }

    async fn run(self, name: &'static str) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut candidate = self.inner.db.lease_candidate(name);
        loop {
            let Some(lease) = self.acquire_lease(name, &mut candidate, &mut shutdown).await else { break };
            match self.follow(name, lease).await {
                Stop::Shutdown => break,
                Stop::Disconnected(e) => {
                    tracing::warn!(projector = name, error = %e, "lost the projector's lease; trying to take it again");
                    self.set_live(name, ProjectorState::Stopped, None);
                    tokio::time::sleep(self.inner.config.lease_retry).await;
                }
                Stop::Failed(error) => {
                    tracing::error!(projector = name, position = ?error.position, event_type = ?error.event_type,
                        message = %error.message, "projector failed; it stays stopped until resumed");
                    self.set_live(name, ProjectorState::Failed, Some(error.clone()));
                    let detail = serde_json::to_string(&error).ok();
                    if let Err(e) = checkpoint::set_status(&self.inner.db, name, ProjectorState::Failed, detail).await {
                        tracing::warn!(projector = name, error = %e, "could not record the failure");
                    }
                    return;
                }
            }
        }
        self.set_live(name, ProjectorState::Stopped, None);
        let _ = checkpoint::set_status(&self.inner.db, name, ProjectorState::Stopped, None).await;
    }

    /// Waits for the projector's lease; `None` on shutdown.
    async fn acquire_lease(
        &self,
        name: &'static str,
        candidate: &mut ordo_store::LeaseCandidate,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Lease> {
        loop {
            if *shutdown.borrow() {
                return None;
            }
            match candidate.try_acquire().await {
                Ok(Some(lease)) => return Some(lease),
                // Another node runs it.
                Ok(None) => self.set_live(name, ProjectorState::Stopped, None),
                Err(e) => tracing::warn!(projector = name, error = %e, "could not try for the projector's lease"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.config.lease_retry) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Catches up and follows until shutdown, a lost lease, or a failure.
    async fn follow(&self, name: &'static str, mut lease: Lease) -> Stop {
        let registered = match self.registered(name) {
            Ok(r) => r,
            Err(e) => return Stop::on(e),
        };
        let projector = Arc::clone(&registered.projector);
        if let Err(e) = prepare(&self.inner.db, &projector).await {
            return Stop::on(e);
        }
        if let Err(e) = checkpoint::set_status(&self.inner.db, name, ProjectorState::Running, None).await {
            return Stop::on(e);
        }
        let mut position = match checkpoint::load(&self.inner.db, name).await {
            Ok(c) => c.position,
            Err(e) => return Stop::on(e),
        };
        registered.position.send_replace(position);
        let filter = projector.filter();
        let tables = Tables::live(&projector.tables());
        let mut signal = self.inner.store.subscribe();
        let mut shutdown = self.inner.shutdown.subscribe();
        let batch_size = self.inner.config.batch_size;
        loop {
            if *shutdown.borrow() {
                return Stop::Shutdown;
            }
            let events = match self.inner.store.read_all(position, batch_size, &filter).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(projector = name, error = %e, "could not read events; retrying");
                    tokio::time::sleep(self.inner.config.retry_base).await;
                    continue;
                }
            };
            if events.is_empty() {
                self.set_live(name, ProjectorState::Running, None);
                tokio::select! {
                    _ = signal.wait(self.inner.config.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let state = if events.len() == batch_size { ProjectorState::CatchingUp } else { ProjectorState::Running };
            self.set_live(name, state, None);
            match self.apply_with_retries(&projector, &tables, &mut lease, position, events).await {
                Ok(to) => position = to,
                Err(Settle::Fenced) => {
                    // A rebuild swapped the tables or another runner moved on: start
                    // again from what the database says.
                    match checkpoint::load(&self.inner.db, name).await {
                        Ok(c) => position = c.position,
                        Err(e) => return Stop::on(e),
                    }
                }
                Err(Settle::Disconnected(e)) => return Stop::Disconnected(e),
                Err(Settle::Failed(error)) => return Stop::Failed(error),
            }
            registered.position.send_replace(position);
            metrics::gauge!("ordo_projection_position", "projection" => name).set(position as f64);
        }
    }

    /// Applies `events` from `from`; on failure pinpoints the event that fails and
    /// retries it with backoff before giving up. Returns the new position.
    async fn apply_with_retries(
        &self,
        projector: &Arc<dyn Projector>,
        tables: &Tables,
        lease: &mut Lease,
        from: Position,
        events: Vec<RecordedEvent>,
    ) -> Result<Position, Settle> {
        let events = Arc::new(events);
        match apply_batch(projector, tables, lease, from, Arc::clone(&events)).await {
            Ok(to) => return Ok(to),
            Err(e) => settle_or(e)?,
        };
        // One event at a time: those before the culprit commit, the culprit is
        // retried alone with backoff and named if it keeps failing.
        let mut position = from;
        for event in events.iter() {
            position = self.apply_one(projector, tables, lease, position, event.clone()).await?;
        }
        Ok(position)
    }

    async fn apply_one(
        &self,
        projector: &Arc<dyn Projector>,
        tables: &Tables,
        lease: &mut Lease,
        from: Position,
        event: RecordedEvent,
    ) -> Result<Position, Settle> {
        let events = Arc::new(vec![event]);
        let mut delay = self.inner.config.retry_base;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match apply_batch(projector, tables, lease, from, Arc::clone(&events)).await {
                Ok(to) => return Ok(to),
                Err(e) => settle_or(e)?,
            };
            if attempt >= self.inner.config.max_attempts {
                return Err(Settle::Failed(ErrorInfo::at(&events[0], &error)));
            }
            tracing::warn!(projector = projector.name(), attempt, error = %error, "retrying an event");
            let jittered = delay.mul_f64(0.5 + rand::random::<f64>() / 2.0);
            tokio::time::sleep(jittered).await;
            delay = delay.saturating_mul(2);
        }
    }
}

/// How a batch attempt that did not commit is settled.
enum Settle {
    Fenced,
    Disconnected(ProjectionError),
    Failed(ErrorInfo),
}

/// Fenced and connection errors end the attempt at once; other errors are returned
/// to be retried.
fn settle_or(e: ProjectionError) -> Result<ProjectionError, Settle> {
    match e {
        ProjectionError::Fenced { .. } => Err(Settle::Fenced),
        e if e.is_connection_lost() => Err(Settle::Disconnected(e)),
        other => Ok(other),
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
                projector.apply(&mut tx, &tables, &events).await?;
                checkpoint::advance(&mut tx, projector.name(), from, to).await?;
                Ok(to)
            })
        })
        .await
}

/// Creates the projector's live tables (with their indexes) and checkpoint row if
/// they are missing. A table that exists is left alone: after a rebuild its indexes
/// carry the names they were built under. One process at a time: two nodes starting
/// together on a fresh database would both find a table missing and both create it.
pub(crate) async fn prepare(db: &ReadDb, projector: &Arc<dyn Projector>) -> Result<(), ProjectionError> {
    let name = projector.name();
    let tables = projector.tables();
    db.transaction(move |mut tx| {
        Box::pin(async move {
            tx.serialize_on("ordo-schema").await?;
            for table in &tables {
                if tx.table_exists(table.name).await? {
                    continue;
                }
                tx.execute(&table.create_sql(table.name), &[]).await?;
                for index in table.index_sql(table.name) {
                    tx.execute(&index, &[]).await?;
                }
            }
            checkpoint::ensure(&mut tx, name).await
        })
    })
    .await
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

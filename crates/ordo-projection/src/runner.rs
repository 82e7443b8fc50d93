//! The projection runtime: one task per projector (or reactor) that catches up from
//! its checkpoint in bounded batches and then follows live events (woken by the
//! store's signal, polling as a fallback). A runner first takes its subscriber's
//! lease (see `ordo_store::LeaseCandidate`) and handles every batch under it, so a
//! runner that lost its lease cannot move the checkpoint again; the checkpoint's
//! compare-and-set fences any runner that is stale all the same.

use ordo_store::{Database, EventStore, Lease, Position, ReadDb, RecordedEvent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

use crate::checkpoint;
use crate::status::{ErrorInfo, ProjectorState};
use crate::subscriber::Subscriber;
use crate::{ProjectionError, Projector, Reactor, Tables};

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
    /// Attempts at an event before the projector stops as `failed` (a reactor's
    /// transient failures are retried without limit).
    pub max_attempts: u32,
    /// The first retry delay; it doubles per attempt, up to `retry_base` ×
    /// 2^`max_attempts`.
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

/// One projector or reactor as the runtime holds it.
pub(crate) struct Registered {
    pub(crate) subscriber: Subscriber,
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
    pub(crate) subscribers: HashMap<&'static str, Registered>,
    shutdown: watch::Sender<bool>,
}

/// Runs projectors and reactors, reports on them, and rebuilds read models. Clones
/// share the runners. See [`Projector`] for a runtime at work.
///
/// Many processes may open a runtime on one database: each projector runs in one of
/// them at a time (under its lease), and the others stand by.
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
        Self::open_with(database, projectors, Vec::new(), config).await
    }

    /// A runtime for `projectors` and `reactors` (see [`Reactor`]); their names must
    /// be unique among them all.
    pub async fn open_with(
        database: Database,
        projectors: Vec<Arc<dyn Projector>>,
        reactors: Vec<Arc<dyn Reactor>>,
        config: RunnerConfig,
    ) -> Result<Self, ProjectionError> {
        database.read_db.migrate(checkpoint::COMPONENT, checkpoint::MIGRATIONS).await?;
        let Database { store, read_db: db } = database;
        let all =
            projectors.into_iter().map(Subscriber::Projector).chain(reactors.into_iter().map(Subscriber::Reactor));
        let mut subscribers = HashMap::new();
        for subscriber in all {
            let name = subscriber.name();
            let registered = Registered {
                subscriber,
                position: watch::channel(0).0,
                live: Mutex::new(Live { state: ProjectorState::Stopped, error: None }),
                task: Mutex::new(None),
            };
            if subscribers.insert(name, registered).is_some() {
                return Err(ProjectionError::DuplicateName(name.to_owned()));
            }
        }
        let shutdown = watch::channel(false).0;
        Ok(Self { inner: Arc::new(Inner { store, db, config, subscribers, shutdown }) })
    }

    /// The event store the runtime reads.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }

    /// The database the read models live in.
    pub fn db(&self) -> &ReadDb {
        &self.inner.db
    }

    /// The names of the registered projectors and reactors.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.inner.subscribers.keys().copied().collect();
        names.sort_unstable();
        names
    }

    pub(crate) fn registered(&self, name: &str) -> Result<&Registered, ProjectionError> {
        self.inner.subscribers.get(name).ok_or_else(|| ProjectionError::UnknownProjector(name.to_owned()))
    }

    /// The projector named `name` (`NotAProjector` for a reactor).
    pub(crate) fn projector(&self, name: &str) -> Result<Arc<dyn Projector>, ProjectionError> {
        match &self.registered(name)?.subscriber {
            Subscriber::Projector(projector) => Ok(Arc::clone(projector)),
            Subscriber::Reactor(_) => Err(ProjectionError::NotAProjector(name.to_owned())),
        }
    }

    /// Creates every projector's tables and checkpoint, and every reactor's
    /// checkpoint, if missing.
    pub async fn prepare(&self) -> Result<(), ProjectionError> {
        for registered in self.inner.subscribers.values() {
            registered.subscriber.prepare(&self.inner.db, &*self.inner.store).await?;
        }
        Ok(())
    }

    /// Creates what is missing (tables, checkpoints), rebuilds every read model whose
    /// tables hold an older [`Projector::version`] than its projector's, then starts
    /// a runner per projector and reactor (one that is already running is left
    /// alone). Read models can be queried as soon as this returns.
    pub async fn start(&self) -> Result<(), ProjectionError> {
        self.prepare().await?;
        self.upgrade().await?;
        for name in self.names() {
            self.resume(name).await?;
        }
        Ok(())
    }

    /// Rebuilds each read model whose tables hold an older version than its
    /// projector writes, or waits while another process does.
    async fn upgrade(&self) -> Result<(), ProjectionError> {
        for name in self.names() {
            let Ok(projector) = self.projector(name) else { continue };
            loop {
                let held = checkpoint::load(&self.inner.db, name).await?;
                if held.read_model_version >= projector.version() {
                    break;
                }
                if held.live_rebuild().is_none() {
                    tracing::info!(
                        projector = name,
                        held = held.read_model_version,
                        wanted = projector.version(),
                        "rebuilding a read model of an older version before running its projector"
                    );
                    match self.rebuild(name, |_| {}).await {
                        Ok(_) | Err(ProjectionError::AlreadyRebuilding(_)) => continue,
                        Err(e) => return Err(e),
                    }
                }
                // Another process rebuilds it (a dead one's marker goes stale in time).
                tokio::time::sleep(self.inner.config.lease_retry).await;
            }
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
        let name = registered.subscriber.name();
        *lock(&registered.task) = Some(tokio::spawn(async move { runtime.run(name).await }));
        Ok(())
    }

    /// Asks every runner to stop at its next batch boundary and waits for them.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        for registered in self.inner.subscribers.values() {
            let task = lock(&registered.task).take();
            if let Some(task) = task {
                let _ = task.await;
            }
        }
    }

    /// Waits until `name` has applied everything up to `position` (`Ok(true)`), or
    /// `timeout` passes (`Ok(false)`). Works whichever node runs the projector (it
    /// polls the checkpoint for another node's runner). Fails with
    /// [`ProjectionError::UnknownProjector`] for a name the runtime does not hold.
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

    /// Waits (at most `timeout`) until `name`'s runner in this process applies a batch;
    /// returns `Ok` either way ([`ProjectionError::UnknownProjector`] for a name the
    /// runtime does not hold).
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
        let subscriber = registered.subscriber.clone();
        if let Err(e) = subscriber.prepare(&self.inner.db, &*self.inner.store).await {
            return Stop::on(e);
        }
        let mut position = match checkpoint::load(&self.inner.db, name).await {
            Ok(c) => match version_mismatch(&subscriber, c.read_model_version) {
                Some(error) => return Stop::Failed(error),
                None => c.position,
            },
            Err(e) => return Stop::on(e),
        };
        if let Err(e) = checkpoint::set_status(&self.inner.db, name, ProjectorState::Running, None).await {
            return Stop::on(e);
        }
        registered.position.send_replace(position);
        let filter = subscriber.filter();
        let tables = Tables::live(&subscriber.tables());
        let mut signal = self.inner.store.subscribe();
        let mut shutdown = self.inner.shutdown.subscribe();
        let batch_size = self.inner.config.batch_size;
        let mut recheck = Recheck::default();
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
                let poll_interval = self.inner.config.poll_interval;
                tokio::select! {
                    woke = signal.wait(recheck.wait(poll_interval)) => recheck.after_wait(woke, poll_interval),
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            recheck = Recheck::default();
            let state = if events.len() == batch_size { ProjectorState::CatchingUp } else { ProjectorState::Running };
            self.set_live(name, state, None);
            match self.apply_with_retries(&subscriber, &tables, &mut lease, position, events).await {
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
                Err(Settle::Shutdown) => return Stop::Shutdown,
            }
            registered.position.send_replace(position);
            metrics::gauge!("ordo_projection_position", "projection" => name).set(position as f64);
        }
    }

    /// Applies `events` from `from`; on failure pinpoints the event that fails and
    /// retries it with backoff before giving up. Returns the new position.
    async fn apply_with_retries(
        &self,
        subscriber: &Subscriber,
        tables: &Tables,
        lease: &mut Lease,
        from: Position,
        events: Vec<RecordedEvent>,
    ) -> Result<Position, Settle> {
        let events = Arc::new(events);
        match subscriber.handle(tables, lease, from, Arc::clone(&events)).await {
            Ok(to) => return Ok(to),
            Err(e) => settle_or(e)?,
        };
        // One event at a time: those before the culprit commit, the culprit is
        // retried alone with backoff and named if it keeps failing.
        let mut position = from;
        for event in events.iter() {
            position = self.apply_one(subscriber, tables, lease, position, event.clone()).await?;
        }
        Ok(position)
    }

    /// Handles one event, retrying it with backoff: up to `max_attempts` times, or
    /// for as long as it takes if it is a reactor's transient failure (until
    /// shutdown); a reactor's persistent failure stops at once.
    async fn apply_one(
        &self,
        subscriber: &Subscriber,
        tables: &Tables,
        lease: &mut Lease,
        from: Position,
        event: RecordedEvent,
    ) -> Result<Position, Settle> {
        let events = Arc::new(vec![event]);
        let config = &self.inner.config;
        let longest = config.retry_base.saturating_mul(1 << config.max_attempts.min(16));
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut delay = config.retry_base;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match subscriber.handle(tables, lease, from, Arc::clone(&events)).await {
                Ok(to) => return Ok(to),
                Err(e) => settle_or(e)?,
            };
            let gives_up = attempt >= config.max_attempts && !error.retries_without_limit();
            if gives_up || error.is_permanent() {
                return Err(Settle::Failed(ErrorInfo::at(&events[0], &error)));
            }
            tracing::warn!(subscriber = subscriber.name(), attempt, error = %error, "retrying an event");
            let jittered = delay.mul_f64(0.5 + rand::random::<f64>() / 2.0);
            tokio::select! {
                _ = tokio::time::sleep(jittered) => {}
                _ = shutdown.wait_for(|stop| *stop) => return Err(Settle::Shutdown),
            }
            delay = delay.saturating_mul(2).min(longest);
        }
    }
}

/// Why a subscriber's checkpoint row says it must not run: a projector whose tables
/// hold another version of its read model than it writes.
fn version_mismatch(subscriber: &Subscriber, held: u32) -> Option<ErrorInfo> {
    let Subscriber::Projector(projector) = subscriber else { return None };
    let (name, wanted) = (projector.name(), projector.version());
    let message = match held.cmp(&wanted) {
        std::cmp::Ordering::Equal => return None,
        std::cmp::Ordering::Less => format!(
            "its tables hold version {held} of the read model, the projector writes version {wanted}: \
             rebuild it (`ordo projections rebuild {name}`, or restart the runtime)"
        ),
        std::cmp::Ordering::Greater => {
            format!("its tables hold version {held} of the read model, newer than the {wanted} this binary knows")
        }
    };
    Some(ErrorInfo { position: None, event_type: None, message })
}

/// How a batch attempt that did not commit is settled.
enum Settle {
    Fenced,
    Disconnected(ProjectionError),
    Failed(ErrorInfo),
    Shutdown,
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Looking again soon after a wake-up that found nothing to read. A wake-up means
/// events were appended; finding none means they are not readable yet (on
/// PostgreSQL, an older transaction anywhere in the cluster is still open and holds
/// the readable bound back) or not for this projector. No wake-up will come when
/// the bound moves, so rather than wait for the poll interval the runner looks
/// again after a short pause, doubling up to [`RECHECK_MAX`], for at most one poll
/// interval after the wake-up.
#[derive(Default)]
struct Recheck {
    /// The pause before the next look, and when to stop looking early.
    pending: Option<(Duration, tokio::time::Instant)>,
}

/// The first pause after a wake-up that found nothing.
const RECHECK_FIRST: Duration = Duration::from_millis(5);
/// The longest pause between early looks.
const RECHECK_MAX: Duration = Duration::from_millis(160);

impl Recheck {
    /// How long to wait for a wake-up before reading again.
    fn wait(&self, poll_interval: Duration) -> Duration {
        match self.pending {
            Some((pause, until)) => pause.min(until.saturating_duration_since(tokio::time::Instant::now())),
            None => poll_interval,
        }
    }

    /// After waiting: `woke` if a wake-up came, else the wait timed out.
    fn after_wait(&mut self, woke: bool, poll_interval: Duration) {
        let now = tokio::time::Instant::now();
        self.pending = match self.pending {
            _ if woke => Some((RECHECK_FIRST, now + poll_interval)),
            Some((pause, until)) if now < until => Some(((pause * 2).min(RECHECK_MAX), until)),
            _ => None,
        };
    }
}

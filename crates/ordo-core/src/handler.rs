//! The command handler. [`CommandHandler::handle`] reads top to bottom: look up the
//! idempotency key (a recorded outcome is the answer), load the aggregate, decide,
//! then append the events — or record the refusal — and retry with backoff when
//! another writer got there first.

use chrono::Utc;
use metrics::{counter, histogram};
use ordo_store::{
    AppendRequest, AppendedRange, EventMetadata, EventStore, ExpectedVersion, HeldStream, IdempotencyRecord, Snapshot,
    StoreError, StreamId, Version, READ_PAGE,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::AggregateCache;
use crate::codec::{decode_event, encode_event, CodecError};
use crate::command::Outcome;
use crate::idempotency::RecordedOutcome;
use crate::locks::StripedLocks;
use crate::{Aggregate, CommandError, CommandRequest, Committed, Expectation, FieldError, IdempotencyKey, RetryPolicy};

/// How the handler behaves; every field has a sensible default.
#[derive(Clone, Debug)]
pub struct HandlerConfig {
    /// How commands that lose a race to another writer are retried.
    pub retry: RetryPolicy,
    /// Save a snapshot each time a stream passes a multiple of this many events, and
    /// when a load of a stream at least this long had to replay more than a tenth of
    /// this many events past its snapshot (`None`: never). Streams shorter than this load from their
    /// events alone.
    pub snapshot_every: Option<u64>,
    /// How many aggregates the in-memory cache keeps (0: no cache).
    pub cache_capacity: usize,
    /// How many lock stripes serialize commands per aggregate within the process.
    pub lock_stripes: usize,
    /// How long an idempotency record is kept at least: it expires then, and goes at
    /// the next purge ([`spawn_idempotency_purge`](crate::spawn_idempotency_purge)).
    pub idempotency_retention: Duration,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            snapshot_every: Some(100),
            cache_capacity: 10_000,
            lock_stripes: 1_024,
            idempotency_retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// Counts of what a handler did since it was created (also exported as metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerStats {
    /// Commands handled, whatever their outcome.
    pub commands: u64,
    /// Appends that lost to a concurrent writer (each is retried or surfaced).
    pub conflicts: u64,
    /// Attempts made again after a conflict.
    pub retries: u64,
}

#[derive(Default)]
struct Counters {
    commands: AtomicU64,
    conflicts: AtomicU64,
    retries: AtomicU64,
}

/// An aggregate as loaded for one command.
struct Loaded<A> {
    version: Version,
    state: A,
    /// Whether it was not read from the store for this attempt (the cache, or what a
    /// conflict left behind), and so may be behind another node's writes.
    cached: bool,
}

/// What a decision comes to.
enum Decision<A: Aggregate> {
    /// Events to append at the loaded version.
    Append(Vec<A::Event>),
    /// The command changes nothing.
    Nothing,
    /// A deterministic refusal, recorded under the key and replayed.
    Refuse(Refusal<A::Rejection>),
}

/// The state a conflict left behind.
struct Behind<A> {
    version: Version,
    state: A,
    /// Whether the events the append missed brought it to the version the conflict
    /// reported: then it needs no read before the next decision.
    caught_up: bool,
}

/// A command refused without appending anything.
enum Refusal<R> {
    Rejected(R),
    WrongExpectedVersion {
        expected: ExpectedVersion,
        actual: Version,
    },
    /// Input the caller refused before it became a command.
    InvalidInput(Vec<FieldError>),
}

impl<R: Clone> Refusal<R> {
    fn recorded(&self) -> RecordedOutcome<R> {
        match self {
            Refusal::Rejected(rejection) => RecordedOutcome::Rejected { rejection: rejection.clone() },
            &Refusal::WrongExpectedVersion { expected, actual } => {
                RecordedOutcome::WrongExpectedVersion { expected, actual }
            }
            Refusal::InvalidInput(errors) => RecordedOutcome::InvalidInput { errors: errors.clone() },
        }
    }

    fn into_error(self, replayed: bool) -> CommandError<R> {
        match self {
            Refusal::Rejected(rejection) => CommandError::Rejected { rejection, replayed },
            Refusal::WrongExpectedVersion { expected, actual } => {
                CommandError::WrongExpectedVersion { expected, actual, replayed }
            }
            Refusal::InvalidInput(errors) => CommandError::InvalidInput { errors, replayed },
        }
    }
}

/// What one attempt came to, once its state is back in the cache (or, after a
/// conflict, with the caller).
enum Attempt<A: Aggregate> {
    Done(Committed<A::Event>),
    Refused(Refusal<A::Rejection>),
    /// Another writer appended first; the stream is at `actual`. The state the
    /// decision saw comes back with what the store said it missed applied, to be
    /// caught up (if it still lags) rather than loaded again.
    Conflict {
        actual: Version,
        behind: Behind<A>,
    },
    /// A duplicate with the same key committed first.
    KeyTaken,
}

/// Runs commands against aggregates of type `A` on an event store.
///
/// Make one per aggregate type and share it (`Arc`) between tasks: commands on one
/// aggregate take turns within a handler, and its cache of recently used aggregates
/// serves them. More handlers on one database, in this process or others, stay
/// correct through the optimistic append, only with more conflicts to retry.
///
/// ```
/// # use ordo_core::{Aggregate, DomainEvent, RejectionKind};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Default, Serialize, Deserialize)]
/// # struct Counter { value: u32 }
/// # enum CounterCommand { Add(u32) }
/// # #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// # #[serde(tag = "type", content = "data")]
/// # enum CounterEvent { Added { by: u32 } }
/// # impl DomainEvent for CounterEvent {}
/// # #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
/// # enum CounterRejection { #[error("the counter would pass 10")] TooHigh }
/// # impl Aggregate for Counter {
/// #     const CATEGORY: &'static str = "counter";
/// #     type Command = CounterCommand;
/// #     type Event = CounterEvent;
/// #     type Rejection = CounterRejection;
/// #     fn decide(&self, command: &CounterCommand) -> Result<Vec<CounterEvent>, CounterRejection> {
/// #         let CounterCommand::Add(by) = command;
/// #         if self.value.saturating_add(*by) > 10 { return Err(CounterRejection::TooHigh) }
/// #         Ok(vec![CounterEvent::Added { by: *by }])
/// #     }
/// #     fn apply(&mut self, event: &CounterEvent) { let CounterEvent::Added { by } = event; self.value += by; }
/// #     fn rejection_kind(_: &CounterRejection) -> RejectionKind { RejectionKind::RuleViolation }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("ordo-doc-handler-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # let url = format!("sqlite://{}", dir.join("ordo.db").display());
/// use ordo_core::{CommandError, CommandHandler, CommandRequest, HandlerConfig, IdempotencyKey};
///
/// let store = ordo_store::connect(&url).await?; // say, "sqlite://data/ordo.db"
/// let counters = CommandHandler::<Counter>::new(store, HandlerConfig::default());
///
/// let done = counters.handle(CommandRequest::new("c1", CounterCommand::Add(4))).await?;
/// assert_eq!((done.stream_id.as_str(), done.version), ("counter-c1", 1));
///
/// // A keyed command takes effect once: its retry gets the recorded outcome back.
/// let key = IdempotencyKey::new("counter-api", "add-5-once", "add 5")?;
/// let add = || CommandRequest::new("c1", CounterCommand::Add(5)).with_idempotency(key.clone());
/// assert!(!counters.handle(add()).await?.replayed);
/// assert!(counters.handle(add()).await?.replayed);
///
/// // A refusal is a domain outcome, not a fault.
/// match counters.handle(CommandRequest::new("c1", CounterCommand::Add(2))).await {
///     Err(CommandError::Rejected { rejection, .. }) => assert_eq!(rejection, CounterRejection::TooHigh),
///     other => panic!("expected a rejection, got {other:?}"),
/// }
/// let (version, counter) = counters.load(&CommandHandler::<Counter>::stream_id("c1")?).await?;
/// assert_eq!((version, counter.value), (2, 9));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok(()) }
/// ```
///
/// `A::CATEGORY` must be non-empty and free of `-` (a stream's category is the part
/// before its first `-`); a handler for an aggregate that breaks this does not
/// compile:
///
/// ```compile_fail
/// # use std::sync::Arc;
/// # use ordo_core::{Aggregate, CommandHandler, HandlerConfig, RejectionKind};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)] struct Bad;
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] enum Ev {}
/// # impl ordo_core::DomainEvent for Ev {}
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct No;
/// # impl std::fmt::Display for No { fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result { f.write_str("no") } }
/// # impl std::error::Error for No {}
/// impl Aggregate for Bad {
///     const CATEGORY: &'static str = "sales-order"; // the `-` is refused
///     # type Command = (); type Event = Ev; type Rejection = No;
///     # fn decide(&self, _: &()) -> Result<Vec<Ev>, No> { Ok(vec![]) }
///     # fn apply(&mut self, _: &Ev) {}
///     # fn rejection_kind(_: &No) -> RejectionKind { RejectionKind::Invalid }
/// }
/// fn handler(store: Arc<dyn ordo_store::EventStore>) -> CommandHandler<Bad> {
///     CommandHandler::new(store, HandlerConfig::default())
/// }
/// # let _ = handler as fn(_) -> _;
/// ```
pub struct CommandHandler<A: Aggregate> {
    store: Arc<dyn EventStore>,
    config: HandlerConfig,
    locks: StripedLocks,
    cache: AggregateCache<A>,
    counters: Counters,
}

impl<A: Aggregate> CommandHandler<A> {
    /// Checked when a handler for `A` is compiled.
    const VALID_CATEGORY: () =
        assert!(ordo_store::is_valid_category(A::CATEGORY), "Aggregate::CATEGORY must be non-empty and contain no '-'");

    /// A handler for `A` on `store`. Building one needs no runtime; its commands run
    /// inside a tokio runtime (it spawns the saving of snapshots).
    pub fn new(store: Arc<dyn EventStore>, config: HandlerConfig) -> Self {
        #[allow(clippy::let_unit_value)] // evaluates the compile-time check
        let () = Self::VALID_CATEGORY;
        Self {
            locks: StripedLocks::new(config.lock_stripes),
            cache: AggregateCache::new(config.cache_capacity),
            counters: Counters::default(),
            store,
            config,
        }
    }

    /// What the handler did since it was created.
    pub fn stats(&self) -> HandlerStats {
        HandlerStats {
            commands: self.counters.commands.load(Ordering::Relaxed),
            conflicts: self.counters.conflicts.load(Ordering::Relaxed),
            retries: self.counters.retries.load(Ordering::Relaxed),
        }
    }

    /// The event store it appends to.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The stream of aggregate `id`: `{A::CATEGORY}-{id}`.
    pub fn stream_id(id: &str) -> Result<StreamId, StoreError> {
        StreamId::in_category(A::CATEGORY, id)
    }

    /// Handles one command. An `Ok` means the events are committed (or that the
    /// command changed nothing). Records `command`, `attempts` and `outcome` on the
    /// current tracing span, for callers that declared those fields.
    ///
    /// With a key, a recorded outcome is the answer (`replayed`): a commit, a
    /// rejection or a wrong version, each recorded with the decision. A keyed command
    /// that changes nothing is recorded too: its retry gets the version it saw.
    /// Conflicts with other writers are retried
    /// under [`HandlerConfig::retry`] (a decision against the latest state), except
    /// under a pinned [`ExpectedVersion::Exact`], whose conflict is the answer
    /// ([`CommandError::WrongExpectedVersion`]). See [`CommandError`] for the rest.
    pub async fn handle(&self, request: CommandRequest<A::Command>) -> Outcome<A> {
        let started = Instant::now();
        let mut attempts = 0;
        let outcome = self.run(request, &mut attempts).await;
        self.count(&outcome, started, attempts);
        outcome
    }

    /// Refuses a command whose input the caller found invalid before it could become
    /// a command (a quantity out of bounds, say): the answer is
    /// [`CommandError::InvalidInput`] with `errors`. Under `key` the refusal is
    /// recorded like any rejection, so a retry gets it replayed and another request
    /// with the key is [`CommandError::IdempotencyKeyReused`]; an outcome already
    /// recorded under the key is the answer instead. Only this crate knows the
    /// record's format.
    pub async fn refuse_input(&self, key: Option<&IdempotencyKey>, errors: Vec<FieldError>) -> Outcome<A> {
        let started = Instant::now();
        let outcome = match self.recorded(key).await {
            Some(recorded) => recorded,
            None => self.refuse(key, Refusal::InvalidInput(errors)).await,
        };
        self.count(&outcome, started, 0);
        outcome
    }

    /// Records what became of a command on the current span and in the metrics.
    fn count(&self, outcome: &Outcome<A>, started: Instant, attempts: u32) {
        let label = match outcome {
            Ok(c) if c.replayed => "replayed",
            Ok(_) => "committed",
            Err(
                CommandError::Rejected { replayed: true, .. }
                | CommandError::WrongExpectedVersion { replayed: true, .. }
                | CommandError::InvalidInput { replayed: true, .. },
            ) => "replayed",
            Err(
                CommandError::Rejected { .. }
                | CommandError::WrongExpectedVersion { .. }
                | CommandError::InvalidInput { .. },
            ) => "rejected",
            Err(CommandError::Conflict { .. }) => "conflict",
            Err(_) => "error",
        };
        let span = tracing::Span::current();
        span.record("attempts", attempts);
        span.record("outcome", label);
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        counter!("ordo_commands_total", "aggregate" => A::CATEGORY, "outcome" => label).increment(1);
        histogram!("ordo_command_duration_seconds", "aggregate" => A::CATEGORY).record(started.elapsed());
    }

    async fn run(&self, request: CommandRequest<A::Command>, attempts: &mut u32) -> Outcome<A> {
        tracing::Span::current().record("command", A::command_name(&request.command));
        let stream =
            Self::stream_id(&request.aggregate_id).map_err(|e| CommandError::InvalidId { reason: e.to_string() })?;
        let key = request.idempotency.as_ref();
        // Commands on one aggregate take turns in this process; a duplicate that was
        // ahead of us has committed its record by the time we look.
        let _turn = self.locks.lock(stream.as_str()).await;
        if let Some(recorded) = self.recorded(key).await {
            return recorded;
        }
        let mut metadata = request.metadata.clone();
        metadata.command_id.get_or_insert_with(uuid::Uuid::now_v7);
        // The retry budget runs from the first attempt: time spent waiting for our
        // turn behind other commands on this aggregate is not time spent retrying.
        let first_attempt = Instant::now();
        let mut behind = None;
        loop {
            *attempts += 1;
            // A command that keeps losing races holds the stream for its next attempt.
            let hold = *attempts > self.config.retry.hold_after;
            match self.attempt(&stream, &request, &metadata, behind.take(), hold).await? {
                Attempt::Done(committed) if committed.events.is_empty() => return self.unchanged(key, committed).await,
                Attempt::Done(committed) => return Ok(committed),
                Attempt::Refused(refusal) => return self.refuse(key, refusal).await,
                Attempt::KeyTaken => {
                    return self.recorded(key).await.unwrap_or(Err(CommandError::IdempotencyKeyInFlight));
                }
                Attempt::Conflict { actual, behind: stale } => {
                    behind = Some(stale);
                    self.counters.conflicts.fetch_add(1, Ordering::Relaxed);
                    counter!("ordo_command_conflicts_total", "aggregate" => A::CATEGORY).increment(1);
                    if let Expectation::Pinned(expected @ ExpectedVersion::Exact(_)) = request.expectation {
                        return self.refuse(key, Refusal::WrongExpectedVersion { expected, actual }).await;
                    }
                    if !self.config.retry.allows_another(*attempts, first_attempt.elapsed()) {
                        return Err(CommandError::Conflict { attempts: *attempts });
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    counter!("ordo_command_retries_total", "aggregate" => A::CATEGORY).increment(1);
                    let delay = self.config.retry.delay(*attempts, &mut rand::thread_rng());
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Loads, decides and appends once; with `hold`, all three under a hold on the
    /// stream ([`EventStore::hold_stream`]), so that the append cannot lose a race. The
    /// state goes back into the cache here and only here: after a decision that
    /// appends nothing, or with the events applied after a successful append. After a
    /// conflict it goes back to the caller, which hands it to the next attempt to
    /// catch up.
    async fn attempt(
        &self,
        stream: &StreamId,
        request: &CommandRequest<A::Command>,
        metadata: &EventMetadata,
        behind: Option<Behind<A>>,
        hold: bool,
    ) -> Result<Attempt<A>, CommandError<A::Rejection>> {
        let mut held = if hold { Some(self.store.hold_stream(stream).await?) } else { None };
        let (loaded, decision) = self.load_and_decide(stream, request, behind, held.as_deref_mut()).await?;
        let Loaded { version, mut state, .. } = loaded;
        let (attempt, kept) = match decision {
            Decision::Refuse(refusal) => (Attempt::Refused(refusal), Some(version)),
            Decision::Nothing => {
                (Attempt::Done(self.committed(request, stream, version, 0, Vec::new())), Some(version))
            }
            Decision::Append(events) => {
                let append = self.append(stream, version, &events, request, metadata)?;
                let appended = match held {
                    Some(held) => held.append(append).await,
                    None => self.store.append(append).await,
                };
                match appended {
                    Ok(result) => {
                        events.iter().for_each(|e| state.apply(e));
                        let done = self.committed(request, stream, result.last_version, result.last_position(), events);
                        (Attempt::Done(done), Some(result.last_version))
                    }
                    Err(StoreError::WrongExpectedVersion { actual, missed, .. }) => {
                        let behind = apply_missed(version, state, &missed, actual)?;
                        return Ok(Attempt::Conflict { actual, behind });
                    }
                    Err(StoreError::IdempotencyKeyExists { .. }) => (Attempt::KeyTaken, None),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if let Some(now) = kept {
            self.remember(stream, version, now, state);
        }
        Ok(attempt)
    }

    /// The aggregate and the decision on it. The aggregate is the state a conflict
    /// left `behind` (caught up with the stream, unless what the append missed already
    /// did); or the cached one (taken out: the caller holds its turn); or a fresh load.
    /// Under a hold it is always caught up through the hold, hence current. A decision
    /// that appends nothing is checked by no expected version, so when it rests on
    /// state that another node may have moved past since — cached, or caught up by a
    /// conflict — the state is caught up once, and decided again if the stream had
    /// moved.
    async fn load_and_decide(
        &self,
        stream: &StreamId,
        request: &CommandRequest<A::Command>,
        behind: Option<Behind<A>>,
        held: Option<&mut (dyn HeldStream + '_)>,
    ) -> Result<(Loaded<A>, Decision<A>), CommandError<A::Rejection>> {
        let start = match behind {
            Some(Behind { version, state, caught_up }) => Some((version, state, caught_up)),
            None => self.cache.take(stream.as_str()).map(|(version, state)| (version, state, true)),
        };
        let loaded = match (start, held) {
            (Some((version, state, true)), None) => Loaded { version, state, cached: true },
            // Not caught up, or held: read what came after it (through the hold, if any).
            (Some((version, state, _)), held) => self.caught_up(stream, version, state, held).await?,
            (None, held) => {
                let (version, state) = self.load_through(stream, held).await?;
                Loaded { version, state, cached: false }
            }
        };
        let decision = decide(&loaded, request);
        if !loaded.cached || matches!(decision, Decision::Append(_)) {
            return Ok((loaded, decision));
        }
        let before = loaded.version;
        let fresh = self.caught_up(stream, loaded.version, loaded.state, None).await?;
        let decision = if fresh.version == before { decision } else { decide(&fresh, request) };
        Ok((fresh, decision))
    }

    /// `state` at `version`, with the events after it applied (read through `held`
    /// if the stream is held).
    async fn caught_up(
        &self,
        stream: &StreamId,
        version: Version,
        state: A,
        held: Option<&mut (dyn HeldStream + '_)>,
    ) -> Result<Loaded<A>, CommandError<A::Rejection>> {
        let (version, state) = self.catch_up(stream, version, state, held).await?;
        Ok(Loaded { version, state, cached: false })
    }

    /// The append of `events` at exactly the version the decision saw — anything else
    /// could lose an update — with the key's record in the same transaction.
    fn append(
        &self,
        stream: &StreamId,
        version: Version,
        events: &[A::Event],
        request: &CommandRequest<A::Command>,
        metadata: &EventMetadata,
    ) -> Result<AppendRequest, CodecError> {
        let encoded = events
            .iter()
            .map(|e| encode_event(e).map(|n| n.with_metadata(metadata.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut append = AppendRequest::new(stream.clone(), ExpectedVersion::Exact(version), encoded);
        if let Some(key) = &request.idempotency {
            append = append.with_idempotency(self.record(key, &RecordedOutcome::<A::Rejection>::Committed)?);
        }
        Ok(append)
    }

    fn committed(
        &self,
        request: &CommandRequest<A::Command>,
        stream: &StreamId,
        version: Version,
        position: ordo_store::Position,
        events: Vec<A::Event>,
    ) -> Committed<A::Event> {
        Committed {
            aggregate_id: request.aggregate_id.clone(),
            stream_id: stream.clone(),
            version,
            position,
            events,
            replayed: false,
        }
    }

    /// The aggregate's current version and state, rebuilt from the newest usable
    /// snapshot and the events after it (the cache is neither read nor filled).
    pub async fn load(&self, stream: &StreamId) -> Result<(Version, A), CommandError<A::Rejection>> {
        self.load_through(stream, None).await
    }

    /// [`load`](Self::load), the events after the snapshot read through `held` if the
    /// stream is held.
    async fn load_through(
        &self,
        stream: &StreamId,
        held: Option<&mut (dyn HeldStream + '_)>,
    ) -> Result<(Version, A), CommandError<A::Rejection>> {
        let (from, state) = self.load_snapshot(stream).await?;
        let (version, state) = self.catch_up(stream, from, state, held).await?;
        // A long stream's loads stay cheap only if its snapshot stays close to its head,
        // also where no cache holds it (a new process, many nodes).
        let replayed = version.saturating_sub(from);
        let every = self.config.snapshot_every.filter(|every| *every > 0);
        if every.is_some_and(|every| version >= every && replayed > (every / 10).max(1)) {
            self.save_snapshot(stream, version, &state);
        }
        Ok((version, state))
    }

    /// `state` at `version`, brought to the end of the stream by the events after it
    /// (read through `held` if the stream is held).
    async fn catch_up(
        &self,
        stream: &StreamId,
        mut version: Version,
        mut state: A,
        mut held: Option<&mut (dyn HeldStream + '_)>,
    ) -> Result<(Version, A), CommandError<A::Rejection>> {
        loop {
            let page = match held.as_deref_mut() {
                Some(held) => held.read(version + 1, READ_PAGE).await?,
                None => self.store.read_stream(stream, version + 1, READ_PAGE).await?,
            };
            for stored in &page {
                state.apply(&decode_event::<A::Event>(stored)?);
                version = stored.version;
            }
            if page.len() < READ_PAGE {
                return Ok((version, state));
            }
        }
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<(Version, A), CommandError<A::Rejection>> {
        if self.config.snapshot_every.is_none() {
            return Ok((0, A::default()));
        }
        let Some(snapshot) = self.store.load_snapshot(stream).await? else { return Ok((0, A::default())) };
        if snapshot.state_schema != A::STATE_SCHEMA {
            return Ok((0, A::default()));
        }
        match serde_json::from_value(snapshot.state) {
            Ok(state) => Ok((snapshot.version, state)),
            Err(e) => {
                tracing::warn!(stream = %stream, error = %e, "ignoring a snapshot that does not decode");
                Ok((0, A::default()))
            }
        }
    }

    /// Puts the state back into the cache at version `now`, and snapshots it when the
    /// stream crossed a multiple of `snapshot_every` since `then`.
    fn remember(&self, stream: &StreamId, then: Version, now: Version, state: A) {
        if let Some(every) = self.config.snapshot_every.filter(|e| *e > 0) {
            if now / every > then / every {
                self.save_snapshot(stream, now, &state);
            }
        }
        self.cache.put(stream.as_str(), now, state);
    }

    /// Saves a snapshot in the background: a lost snapshot only costs a longer load.
    fn save_snapshot(&self, stream: &StreamId, version: Version, state: &A) {
        let Ok(state) = serde_json::to_value(state) else { return };
        let snapshot = Snapshot { stream_id: stream.clone(), version, state_schema: A::STATE_SCHEMA, state };
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            if let Err(e) = store.save_snapshot(&snapshot).await {
                tracing::warn!(stream = %snapshot.stream_id, error = %e, "could not save a snapshot");
            }
        });
    }

    fn record(
        &self,
        key: &IdempotencyKey,
        outcome: &RecordedOutcome<A::Rejection>,
    ) -> Result<IdempotencyRecord, CodecError> {
        let retention = chrono::Duration::from_std(self.config.idempotency_retention).unwrap_or(chrono::Duration::MAX);
        Ok(IdempotencyRecord {
            scope: key.scope().to_owned(),
            key: key.key().to_owned(),
            fingerprint: key.fingerprint().to_owned(),
            outcome: serde_json::to_value(outcome).map_err(|e| CodecError::Shape(e.to_string()))?,
            expires_at: Utc::now().checked_add_signed(retention).unwrap_or(chrono::DateTime::<Utc>::MAX_UTC),
        })
    }

    /// Answers with a deterministic refusal, recording it under the key first so that
    /// a retry gets the same answer.
    async fn refuse(&self, key: Option<&IdempotencyKey>, refusal: Refusal<A::Rejection>) -> Outcome<A> {
        if let Some(key) = key {
            if let Some(answer) = self.record_first(key, &refusal.recorded()).await {
                return answer;
            }
        }
        Err(refusal.into_error(false))
    }

    /// Records `outcome` under `key`. `None` once recorded; otherwise the answer this
    /// request gets instead: a duplicate with the same key answered first (its answer
    /// is ours), or the record could not be written.
    async fn record_first(&self, key: &IdempotencyKey, outcome: &RecordedOutcome<A::Rejection>) -> Option<Outcome<A>> {
        let record = match self.record(key, outcome) {
            Ok(record) => record,
            Err(e) => return Some(Err(e.into())),
        };
        match self.store.record_outcome(record).await {
            Ok(()) => None,
            Err(StoreError::IdempotencyKeyExists { .. }) => {
                Some(self.recorded(Some(key)).await.unwrap_or(Err(CommandError::IdempotencyKeyInFlight)))
            }
            Err(e) => Some(Err(e.into())),
        }
    }

    /// Answers that the command changed nothing, recording it under the key first: a
    /// retry after the aggregate moved must get this answer, not a new decision.
    async fn unchanged(&self, key: Option<&IdempotencyKey>, committed: Committed<A::Event>) -> Outcome<A> {
        if let Some(key) = key {
            let outcome = RecordedOutcome::Unchanged {
                aggregate_id: committed.aggregate_id.clone(),
                stream_id: committed.stream_id.clone(),
                version: committed.version,
            };
            if let Some(answer) = self.record_first(key, &outcome).await {
                return answer;
            }
        }
        Ok(committed)
    }

    /// The outcome recorded under `key`, as this request's answer, if it has one.
    async fn recorded(&self, key: Option<&IdempotencyKey>) -> Option<Outcome<A>> {
        let key = key?;
        let stored = match self.store.find_idempotency(key.scope(), key.key()).await {
            Ok(stored) => stored?,
            Err(e) => return Some(Err(e.into())),
        };
        if stored.record.fingerprint != key.fingerprint() {
            return Some(Err(CommandError::IdempotencyKeyReused));
        }
        let outcome: RecordedOutcome<A::Rejection> = match serde_json::from_value(stored.record.outcome) {
            Ok(outcome) => outcome,
            Err(e) => return Some(Err(StoreError::Corrupt(format!("idempotency record: {e}")).into())),
        };
        Some(match (outcome, stored.appended) {
            (RecordedOutcome::Committed, Some(range)) => self.replay_committed(range).await,
            (RecordedOutcome::Committed, None) => {
                Err(StoreError::Corrupt("a committed idempotency record without its events".into()).into())
            }
            (RecordedOutcome::Rejected { rejection }, _) => Err(Refusal::Rejected(rejection).into_error(true)),
            (RecordedOutcome::WrongExpectedVersion { expected, actual }, _) => {
                Err(Refusal::WrongExpectedVersion { expected, actual }.into_error(true))
            }
            (RecordedOutcome::InvalidInput { errors }, _) => Err(Refusal::InvalidInput(errors).into_error(true)),
            (RecordedOutcome::Unchanged { aggregate_id, stream_id, version }, _) => {
                if !stream_id.as_str().starts_with(&format!("{}-", A::CATEGORY)) {
                    // A record of another aggregate's stream: the key was used for another request.
                    return Some(Err(CommandError::IdempotencyKeyReused));
                }
                Ok(Committed { aggregate_id, stream_id, version, position: 0, events: Vec::new(), replayed: true })
            }
        })
    }

    /// The committed result of an earlier request, rebuilt from the events it
    /// appended.
    async fn replay_committed(&self, range: AppendedRange) -> Outcome<A> {
        let corrupt = || StoreError::Corrupt(format!("idempotency record with versions {range:?}"));
        let count = range
            .last_version
            .checked_sub(range.first_version)
            .and_then(|d| d.checked_add(1))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(corrupt)?;
        let prefix = format!("{}-", A::CATEGORY);
        // A record of another aggregate's stream: the key was used for another request.
        let Some(aggregate_id) = range.stream_id.as_str().strip_prefix(&prefix).map(str::to_owned) else {
            return Err(CommandError::IdempotencyKeyReused);
        };
        let stored = self.store.read_stream(&range.stream_id, range.first_version, count).await?;
        let events = stored.iter().map(decode_event::<A::Event>).collect::<Result<Vec<_>, CodecError>>()?;
        Ok(Committed {
            aggregate_id,
            stream_id: range.stream_id,
            version: range.last_version,
            position: range.last_position,
            events,
            replayed: true,
        })
    }
}

/// `state` at `version` with the events a refused append `missed` applied, as far as
/// they follow on from it; caught up if that reaches `actual`, the version the
/// refusal reported.
fn apply_missed<A: Aggregate>(
    mut version: Version,
    mut state: A,
    missed: &[ordo_store::RecordedEvent],
    actual: Version,
) -> Result<Behind<A>, CodecError> {
    let from = version;
    for stored in missed.iter().skip_while(|e| e.version <= from) {
        if stored.version != version + 1 {
            break;
        }
        state.apply(&decode_event::<A::Event>(stored)?);
        version = stored.version;
    }
    Ok(Behind { version, state, caught_up: version == actual })
}

/// The decision on `loaded` for `request`: a pinned expectation first, then the
/// aggregate's own rules.
fn decide<A: Aggregate>(loaded: &Loaded<A>, request: &CommandRequest<A::Command>) -> Decision<A> {
    if let Expectation::Pinned(expected) = request.expectation {
        if !expected.accepts(loaded.version) {
            return Decision::Refuse(Refusal::WrongExpectedVersion { expected, actual: loaded.version });
        }
    }
    match loaded.state.decide(&request.command) {
        Ok(events) if events.is_empty() => Decision::Nothing,
        Ok(events) => Decision::Append(events),
        Err(rejection) => Decision::Refuse(Refusal::Rejected(rejection)),
    }
}

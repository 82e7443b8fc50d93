//! The command handler: load, decide, append, and retry on conflict — plus the
//! idempotency that turns a retried or duplicated command into a replay.

use chrono::Utc;
use metrics::{counter, histogram};
use ordo_store::{
    AppendRequest, EventMetadata, EventStore, ExpectedVersion, IdempotencyRecord, Position, Snapshot, StoreError,
    StreamId, Version,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::AggregateCache;
use crate::codec::{decode_event, encode_event, CodecError};
use crate::idempotency::RecordedOutcome;
use crate::locks::StripedLocks;
use crate::{Aggregate, IdempotencyKey, RetryPolicy};

/// Events read per page when rebuilding an aggregate.
const PAGE: usize = 1_000;

/// How the handler behaves; every field has a sensible default.
#[derive(Clone, Debug)]
pub struct HandlerConfig {
    pub retry: RetryPolicy,
    /// Save a snapshot each time a stream passes a multiple of this many events
    /// (`None`: never).
    pub snapshot_every: Option<u64>,
    /// How many aggregates the in-memory cache keeps (0: no cache).
    pub cache_capacity: usize,
    /// How many lock stripes serialize commands per aggregate within the process.
    pub lock_stripes: usize,
    /// How long an idempotency record is kept.
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

/// What the caller believes about the aggregate's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Expectation {
    /// Decide against the latest state; on a conflict, reload and decide again.
    #[default]
    Latest,
    /// The stream must satisfy this before the command is decided. A pinned
    /// `Exact(n)` is never retried: a conflict is the caller's answer.
    Pinned(ExpectedVersion),
}

/// A command addressed to one aggregate, with how to run it.
#[derive(Clone, Debug)]
#[must_use]
pub struct CommandRequest<C> {
    pub aggregate_id: String,
    pub command: C,
    pub expectation: Expectation,
    pub idempotency: Option<IdempotencyKey>,
    /// Copied onto every event; `command_id` is filled in if empty.
    pub metadata: EventMetadata,
}

impl<C> CommandRequest<C> {
    pub fn new(aggregate_id: impl Into<String>, command: C) -> Self {
        Self {
            aggregate_id: aggregate_id.into(),
            command,
            expectation: Expectation::Latest,
            idempotency: None,
            metadata: EventMetadata::default(),
        }
    }

    pub fn expecting(mut self, expectation: Expectation) -> Self {
        self.expectation = expectation;
        self
    }

    pub fn with_idempotency(mut self, key: IdempotencyKey) -> Self {
        self.idempotency = Some(key);
        self
    }

    pub fn with_metadata(mut self, metadata: EventMetadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A committed command (or the replay of one).
#[derive(Clone, Debug, PartialEq)]
pub struct Committed<E> {
    pub aggregate_id: String,
    pub stream_id: StreamId,
    /// The stream's version after the command.
    pub version: Version,
    /// The global position of the last event the command appended (0 if it appended
    /// none).
    pub position: Position,
    pub events: Vec<E>,
    /// True when this is the recorded outcome of an earlier request with the same
    /// idempotency key.
    pub replayed: bool,
}

/// Why a command did not commit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<R> {
    /// The aggregate refused it (a domain outcome).
    #[error("command rejected: {rejection}")]
    Rejected { rejection: R, replayed: bool },
    /// A pinned expected version did not match.
    #[error("expected {expected} but the aggregate is at version {actual}")]
    WrongExpectedVersion { expected: ExpectedVersion, actual: Version, replayed: bool },
    /// Other writers kept winning until the retry policy ran out.
    #[error("gave up after {attempts} attempts lost to concurrent writers")]
    Conflict { attempts: u32 },
    /// The key was first used for a different request.
    #[error("the idempotency key was used for a different request")]
    IdempotencyKeyReused,
    /// Another request with the key is still being processed.
    #[error("a request with this idempotency key is in flight")]
    IdempotencyKeyInFlight,
    #[error("invalid aggregate id: {0}")]
    InvalidId(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Outcome<A> = Result<Committed<<A as Aggregate>::Event>, CommandError<<A as Aggregate>::Rejection>>;

/// Counts of what a handler did since it was created (also exported as metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerStats {
    pub commands: u64,
    /// Appends that lost to a concurrent writer (each is retried or surfaced).
    pub conflicts: u64,
    pub retries: u64,
}

#[derive(Default)]
struct Counters {
    commands: AtomicU64,
    conflicts: AtomicU64,
    retries: AtomicU64,
}

/// Runs commands against aggregates of type `A` on an event store.
pub struct CommandHandler<A: Aggregate> {
    store: Arc<dyn EventStore>,
    config: HandlerConfig,
    locks: StripedLocks,
    cache: AggregateCache<A>,
    counters: Counters,
}

impl<A: Aggregate> CommandHandler<A> {
    pub fn new(store: Arc<dyn EventStore>, config: HandlerConfig) -> Self {
        Self {
            locks: StripedLocks::new(config.lock_stripes),
            cache: AggregateCache::new(config.cache_capacity),
            counters: Counters::default(),
            store,
            config,
        }
    }

    pub fn stats(&self) -> HandlerStats {
        HandlerStats {
            commands: self.counters.commands.load(Ordering::Relaxed),
            conflicts: self.counters.conflicts.load(Ordering::Relaxed),
            retries: self.counters.retries.load(Ordering::Relaxed),
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The stream of aggregate `id`.
    pub fn stream_id(id: &str) -> Result<StreamId, StoreError> {
        StreamId::new(format!("{}-{id}", A::CATEGORY))
    }

    /// Handles one command. A `2xx`-worthy `Ok` means the events are committed.
    pub async fn handle(&self, request: CommandRequest<A::Command>) -> Outcome<A> {
        let started = Instant::now();
        let outcome = self.handle_inner(request, started).await;
        let label = match &outcome {
            Ok(c) if c.replayed => "replayed",
            Ok(_) => "committed",
            Err(CommandError::Rejected { .. } | CommandError::WrongExpectedVersion { .. }) => "rejected",
            Err(CommandError::Conflict { .. }) => "conflict",
            Err(_) => "error",
        };
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        counter!("ordo_commands_total", "aggregate" => A::CATEGORY, "outcome" => label).increment(1);
        histogram!("ordo_command_duration_seconds", "aggregate" => A::CATEGORY).record(started.elapsed());
        outcome
    }

    async fn handle_inner(&self, request: CommandRequest<A::Command>, started: Instant) -> Outcome<A> {
        let stream = Self::stream_id(&request.aggregate_id).map_err(|e| CommandError::InvalidId(e.to_string()))?;
        let key = request.idempotency.as_ref();
        // Commands on one aggregate take turns in this process; a duplicate that was
        // ahead of us has committed its record by the time we look.
        let _turn = self.locks.lock(stream.as_str()).await;
        if let Some(replay) = self.replay(key).await {
            return replay;
        }
        let mut metadata = request.metadata.clone();
        metadata.command_id.get_or_insert_with(uuid::Uuid::now_v7);
        let mut attempts = 0;
        let mut fresh = false;
        loop {
            attempts += 1;
            let (version, state, cached) = self.take_or_load(&stream, fresh).await?;
            if let Expectation::Pinned(expected) = request.expectation {
                if !expected.accepts(version) {
                    if self.is_stale(&stream, cached, version).await? {
                        fresh = true;
                        continue;
                    }
                    self.cache.put(stream.as_str(), version, state);
                    let outcome = RecordedOutcome::WrongExpectedVersion { expected, actual: version };
                    return self.refuse(key, outcome).await;
                }
            }
            let events = match state.decide(&request.command) {
                Ok(events) => events,
                Err(rejection) => {
                    if self.is_stale(&stream, cached, version).await? {
                        fresh = true;
                        continue;
                    }
                    self.cache.put(stream.as_str(), version, state);
                    return self.refuse(key, RecordedOutcome::Rejected { rejection }).await;
                }
            };
            if events.is_empty() {
                if self.is_stale(&stream, cached, version).await? {
                    fresh = true;
                    continue;
                }
                self.cache.put(stream.as_str(), version, state);
                let aggregate_id = request.aggregate_id.clone();
                return Ok(Committed {
                    aggregate_id,
                    stream_id: stream,
                    version,
                    position: 0,
                    events,
                    replayed: false,
                });
            }
            let new_events = events
                .iter()
                .map(|e| encode_event(e).map(|n| n.with_metadata(metadata.clone())))
                .collect::<Result<Vec<_>, _>>()?;
            // Always the version the decision saw: anything else could lose an update.
            let mut append = AppendRequest::new(stream.clone(), ExpectedVersion::Exact(version), new_events);
            if let Some(key) = key {
                append = append.with_idempotency(self.record(key, &RecordedOutcome::<A::Rejection>::Committed)?);
            }
            match self.store.append(append).await {
                Ok(result) => {
                    let mut state = state;
                    events.iter().for_each(|e| state.apply(e));
                    self.remember(&stream, version, result.last_version, state);
                    return Ok(Committed {
                        aggregate_id: request.aggregate_id,
                        stream_id: stream,
                        version: result.last_version,
                        position: result.last_position(),
                        events,
                        replayed: false,
                    });
                }
                // The state we took from the cache is stale: it is dropped here.
                Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                    self.counters.conflicts.fetch_add(1, Ordering::Relaxed);
                    counter!("ordo_command_conflicts_total", "aggregate" => A::CATEGORY).increment(1);
                    if let Expectation::Pinned(expected @ ExpectedVersion::Exact(_)) = request.expectation {
                        return self.refuse(key, RecordedOutcome::WrongExpectedVersion { expected, actual }).await;
                    }
                    if !self.config.retry.allows_another(attempts, started.elapsed()) {
                        return Err(CommandError::Conflict { attempts });
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    counter!("ordo_command_retries_total", "aggregate" => A::CATEGORY).increment(1);
                    let delay = self.config.retry.delay(attempts, &mut rand::thread_rng());
                    tokio::time::sleep(delay).await;
                }
                // A duplicate with the same key committed first, here or on another node.
                Err(StoreError::IdempotencyKeyExists { .. }) => {
                    return self.replay(key).await.unwrap_or(Err(CommandError::IdempotencyKeyInFlight));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The aggregate's current version and state, rebuilt from the newest usable
    /// snapshot and the events after it (the cache is neither read nor filled).
    pub async fn load(&self, stream: &StreamId) -> Result<(Version, A), CommandError<A::Rejection>> {
        let (mut version, mut state) = self.load_snapshot(stream).await?;
        let from = version;
        loop {
            let page = self.store.read_stream(stream, version + 1, PAGE).await?;
            for stored in &page {
                state.apply(&decode_event::<A::Event>(stored)?);
                version = stored.version;
            }
            if page.len() < PAGE {
                break;
            }
        }
        if self.config.snapshot_every.is_some_and(|every| version - from >= every) {
            self.save_snapshot(stream, version, &state);
        }
        Ok((version, state))
    }

    /// The cached aggregate, taken out of the cache for the command (the caller holds
    /// its turn and puts it back), or a fresh load.
    /// Whether `cached` state at `version` is behind the stream. An answer that
    /// appends nothing (a refusal, an empty decision) is never checked by an expected
    /// version, so it must not rest on state another node has moved past.
    async fn is_stale(
        &self,
        stream: &StreamId,
        cached: bool,
        version: Version,
    ) -> Result<bool, CommandError<A::Rejection>> {
        Ok(cached && self.store.stream_version(stream).await? != version)
    }

    /// The cached aggregate (taken out of the cache for the command: the caller holds
    /// its turn and puts it back) unless `fresh` is asked for, or a fresh load; the
    /// flag says whether it came from the cache.
    async fn take_or_load(
        &self,
        stream: &StreamId,
        fresh: bool,
    ) -> Result<(Version, A, bool), CommandError<A::Rejection>> {
        match self.cache.take(stream.as_str()) {
            Some((version, state)) if !fresh => Ok((version, state, true)),
            _ => self.load(stream).await.map(|(version, state)| (version, state, false)),
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

    /// Caches the new state and snapshots it when the stream crossed a multiple of
    /// `snapshot_every`.
    fn remember(&self, stream: &StreamId, old: Version, new: Version, state: A) {
        if let Some(every) = self.config.snapshot_every.filter(|e| *e > 0) {
            if new / every > old / every {
                self.save_snapshot(stream, new, &state);
            }
        }
        self.cache.put(stream.as_str(), new, state);
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
    ) -> Result<IdempotencyRecord, CommandError<A::Rejection>> {
        let retention = chrono::Duration::from_std(self.config.idempotency_retention).unwrap_or(chrono::Duration::MAX);
        Ok(IdempotencyRecord {
            scope: key.scope.clone(),
            key: key.key.clone(),
            fingerprint: key.fingerprint.clone(),
            outcome: serde_json::to_value(outcome).map_err(|e| CodecError::Shape(e.to_string()))?,
            expires_at: Utc::now().checked_add_signed(retention).unwrap_or(chrono::DateTime::<Utc>::MAX_UTC),
        })
    }

    /// Answers with a deterministic refusal, recording it under the key first so that
    /// a retry gets the same answer.
    async fn refuse(&self, key: Option<&IdempotencyKey>, outcome: RecordedOutcome<A::Rejection>) -> Outcome<A> {
        if let Some(key) = key {
            match self.store.record_outcome(self.record(key, &outcome)?).await {
                Ok(()) => {}
                Err(StoreError::IdempotencyKeyExists { .. }) => {
                    return self.replay(Some(key)).await.unwrap_or(Err(CommandError::IdempotencyKeyInFlight));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(match outcome {
            RecordedOutcome::Rejected { rejection } => CommandError::Rejected { rejection, replayed: false },
            RecordedOutcome::WrongExpectedVersion { expected, actual } => {
                CommandError::WrongExpectedVersion { expected, actual, replayed: false }
            }
            RecordedOutcome::Committed => CommandError::IdempotencyKeyInFlight,
        })
    }

    /// The recorded outcome for `key`, if it has one.
    async fn replay(&self, key: Option<&IdempotencyKey>) -> Option<Outcome<A>> {
        let key = key?;
        let stored = match self.store.find_idempotency(&key.scope, &key.key).await {
            Ok(stored) => stored?,
            Err(e) => return Some(Err(e.into())),
        };
        if stored.record.fingerprint != key.fingerprint {
            return Some(Err(CommandError::IdempotencyKeyReused));
        }
        let outcome: RecordedOutcome<A::Rejection> = match serde_json::from_value(stored.record.outcome) {
            Ok(outcome) => outcome,
            Err(e) => return Some(Err(StoreError::Corrupt(format!("idempotency record: {e}")).into())),
        };
        Some(match (outcome, stored.appended) {
            (RecordedOutcome::Committed, Some(range)) => self.replay_committed(range).await,
            (RecordedOutcome::Committed, None) => {
                Err(StoreError::Corrupt("committed record without events".into()).into())
            }
            (RecordedOutcome::Rejected { rejection }, _) => Err(CommandError::Rejected { rejection, replayed: true }),
            (RecordedOutcome::WrongExpectedVersion { expected, actual }, _) => {
                Err(CommandError::WrongExpectedVersion { expected, actual, replayed: true })
            }
        })
    }

    async fn replay_committed(&self, range: ordo_store::AppendedRange) -> Outcome<A> {
        let count = usize::try_from(range.last_version - range.first_version + 1).unwrap_or(usize::MAX);
        let stored = self.store.read_stream(&range.stream_id, range.first_version, count).await?;
        let events = stored.iter().map(decode_event::<A::Event>).collect::<Result<Vec<_>, _>>()?;
        let prefix = format!("{}-", A::CATEGORY);
        let aggregate_id =
            range.stream_id.as_str().strip_prefix(&prefix).unwrap_or(range.stream_id.as_str()).to_owned();
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

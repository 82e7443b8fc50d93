//! Group commit for PostgreSQL appends. Concurrent appends queue here; up to
//! `concurrency` groups are in flight at once, each group one statement and one
//! commit for many appends to distinct streams. Under load the queue fills while
//! groups are in flight, so groups grow exactly when per-commit overhead matters; an
//! append that arrives alone goes out alone at once, in a task of its own (so that a
//! caller that gives up cannot leave a group half done). There is no dispatcher task:
//! whoever queues an append, or finishes a group, launches the groups that can go.
//!
//! Within a process a stream is never in two groups at once (its second append waits
//! for the next group), and each group locks its streams in `stream_id` order, so two
//! nodes' groups cannot deadlock. If a group fails as a whole (a race with another
//! node), each of its appends is retried alone, so one append's conflict never
//! becomes another's.

use futures::future::join_all;
use sqlx::postgres::PgPool;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

use super::append::{append_alone, append_group, wrong_version, Verdict};
use super::notify::Notifier;
use crate::signal::SignalSender;
use crate::{AppendRequest, AppendResult, ExpectedVersion, StoreError, StreamId, Version};

/// The most appends and events one group carries.
const MAX_GROUP_APPENDS: usize = 256;
const MAX_GROUP_EVENTS: usize = 4096;

/// What an append comes to.
type Outcome = Result<AppendResult, StoreError>;

struct Pending {
    request: AppendRequest,
    reply: oneshot::Sender<Outcome>,
}

/// Where appends are submitted.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    inner: Arc<Inner>,
}

struct Inner {
    sink: Sink,
    state: Mutex<State>,
}

/// What is queued and what is in flight.
struct State {
    queue: VecDeque<Pending>,
    /// Streams in a group in flight: their next append waits for a later group.
    in_flight: HashSet<StreamId>,
    /// Groups that may still go out.
    free: usize,
}

/// What a group needs to talk to the database and announce new events.
#[derive(Clone)]
pub(crate) struct Sink {
    pub(crate) pool: PgPool,
    pub(crate) signal: Arc<SignalSender>,
    pub(crate) notifier: Notifier,
}

impl Sink {
    /// Tells this process's readers at once, and other nodes through a coalesced
    /// `NOTIFY`, that new events were committed.
    pub(crate) fn announce(&self) {
        self.signal.notify();
        self.notifier.poke();
    }
}

impl GroupCommit {
    pub(crate) fn start(sink: Sink, concurrency: usize) -> Self {
        let state = State { queue: VecDeque::new(), in_flight: HashSet::new(), free: concurrency.max(1) };
        Self { inner: Arc::new(Inner { sink, state: Mutex::new(state) }) }
    }

    /// Where appends go and whom they wake.
    pub(crate) fn sink(&self) -> &Sink {
        &self.inner.sink
    }

    /// Appends `request` in the next group and waits for its commit.
    pub(crate) async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        let groups = {
            let mut state = self.inner.lock();
            state.queue.push_back(Pending { request, reply });
            state.launchable()
        };
        self.inner.launch(groups);
        answer.await.map_err(|_| StoreError::CommitFailed("the append's group was dropped".into()))?
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still holds a sound state.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends each group out in a task of its own, which then releases its slot,
    /// answers its callers and launches whatever can go next. The slot and streams are
    /// released before the answers go out, so a caller that appends again at once
    /// finds its stream free rather than queued behind a group already done.
    fn launch(self: &Arc<Self>, groups: Vec<Vec<Pending>>) {
        for group in groups {
            let inner = Arc::clone(self);
            tokio::spawn(async move {
                let answered = flush(&inner.sink, group).await;
                let next = {
                    let mut state = inner.lock();
                    state.free += 1;
                    for (pending, outcome) in &answered {
                        let stream = &pending.request.stream_id;
                        state.in_flight.remove(stream);
                        if let Some(version) = known_version(outcome) {
                            fail_doomed(&mut state.queue, stream, version);
                        }
                    }
                    state.launchable()
                };
                for (pending, outcome) in answered {
                    let _ = pending.reply.send(outcome);
                }
                inner.launch(next);
            });
        }
    }
}

/// The version an append's outcome shows its stream to have reached, if any.
fn known_version(outcome: &Outcome) -> Option<Version> {
    match outcome {
        Ok(result) => Some(result.last_version),
        Err(StoreError::WrongExpectedVersion { actual, .. }) => Some(*actual),
        Err(_) => None,
    }
}

impl State {
    /// Takes the groups that can go out now, marking their streams and slots taken.
    fn launchable(&mut self) -> Vec<Vec<Pending>> {
        let mut groups = Vec::new();
        while self.free > 0 {
            let group = take_group(&mut self.queue, &self.in_flight);
            if group.is_empty() {
                break;
            }
            self.free -= 1;
            self.in_flight.extend(group.iter().map(|p| p.request.stream_id.clone()));
            groups.push(group);
        }
        groups
    }
}

/// Takes the next group from the queue: appends in arrival order, skipping (and
/// leaving queued) those whose stream is in flight or already in the group.
fn take_group(queue: &mut VecDeque<Pending>, in_flight: &HashSet<StreamId>) -> Vec<Pending> {
    let mut group = Vec::new();
    let mut streams = HashSet::new();
    let mut events = 0;
    let mut left = VecDeque::with_capacity(queue.len());
    while let Some(pending) = queue.pop_front() {
        let stream = &pending.request.stream_id;
        let size = pending.request.events.len();
        let fits = group.len() < MAX_GROUP_APPENDS && (group.is_empty() || events + size <= MAX_GROUP_EVENTS);
        if fits && !in_flight.contains(stream) && !streams.contains(stream) {
            streams.insert(stream.clone());
            events += size;
            group.push(pending);
        } else {
            left.push_back(pending);
        }
    }
    *queue = left;
    group
}

/// Answers the queued appends to `stream` that cannot succeed now that it is known to
/// be at `version` (versions only grow), without a round trip each. This is what
/// keeps a hot stream's losers from queueing up behind each other.
fn fail_doomed(queue: &mut VecDeque<Pending>, stream: &StreamId, version: Version) {
    let doomed = |p: &Pending| {
        &p.request.stream_id == stream
            && match p.request.expected {
                ExpectedVersion::NoStream => version > 0,
                ExpectedVersion::Exact(v) => v < version,
                ExpectedVersion::Any | ExpectedVersion::StreamExists => false,
            }
    };
    if !queue.iter().any(doomed) {
        return;
    }
    let (fail, keep): (VecDeque<Pending>, VecDeque<Pending>) = queue.drain(..).partition(doomed);
    *queue = keep;
    for pending in fail {
        let request = &pending.request;
        // Answered without a round trip: nothing read, so nothing missed to hand back.
        let error = wrong_version(request, version, Vec::new());
        let _ = pending.reply.send(Err(error));
    }
}

/// Appends a group; returns each append with its outcome, for the caller to answer.
async fn flush(sink: &Sink, mut group: Vec<Pending>) -> Vec<(Pending, Outcome)> {
    // One lock order for every group, on every node.
    group.sort_by(|a, b| a.request.stream_id.cmp(&b.request.stream_id));
    let outcomes = if group.len() == 1 {
        vec![append_alone(&sink.pool, &group[0].request).await]
    } else {
        match append_together(&sink.pool, &group).await {
            Ok(verdicts) => settle(sink, &group, verdicts).await,
            // The server refused the group (a race with another node), or a request
            // could not be sent: nothing was written, so each append is settled on
            // its own.
            Err(e) if nothing_written(&e) => join_all(group.iter().map(|p| append_alone(&sink.pool, &p.request))).await,
            // Anything else (a connection lost mid-statement) leaves the outcome
            // unknown: retrying could write twice, so every caller hears so.
            Err(e) => group
                .iter()
                .map(|_| Err(StoreError::CommitFailed(format!("outcome unknown, the append may have committed: {e}"))))
                .collect(),
        }
    };
    if outcomes.iter().any(Result::is_ok) {
        sink.announce();
    }
    group.into_iter().zip(outcomes).collect()
}

/// Whether a failed group statement certainly wrote nothing: the database refused it
/// (its transaction rolled back), or it was never sent. A lost connection leaves the
/// outcome unknown.
fn nothing_written(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(sqlx::Error::Database(_))) || e.is_invalid_input()
}

/// The group's verdicts, from one statement on one connection.
async fn append_together(pool: &PgPool, group: &[Pending]) -> Result<Vec<Verdict>, StoreError> {
    // An acquire that fails sent nothing: `Unavailable`, not an unknown outcome.
    let mut conn = pool.acquire().await?;
    let requests: Vec<&AppendRequest> = group.iter().map(|p| &p.request).collect();
    append_group(&mut conn, &requests).await
}

/// Each append's answer from its verdict. Appends whose positions were found behind
/// the stored ones (the statement then wrote nothing) go again alone, which raises
/// the shift first.
async fn settle(sink: &Sink, group: &[Pending], verdicts: Vec<Verdict>) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(group.len());
    for (pending, verdict) in group.iter().zip(verdicts) {
        let request = &pending.request;
        outcomes.push(match verdict {
            Verdict::Appended(result) => Ok(result),
            Verdict::WrongVersion { actual, missed } => Err(wrong_version(request, actual, missed)),
            Verdict::Behind => append_alone(&sink.pool, request).await,
        });
    }
    outcomes
}

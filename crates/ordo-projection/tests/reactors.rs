//! Reactors in the projection runtime, on both backends, driven by a small recording
//! reactor: reactions run outside any read-model transaction (one that appends events
//! does not wait for itself on SQLite's single writer); a transient failure is retried
//! past `max_attempts` until it passes; a persistent one stops the reactor as `failed`
//! at its event, which is never skipped, until it is resumed; `StartFrom` decides
//! where a new reactor starts; a reactor has no read model to rebuild.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use async_trait::async_trait;
use ordo_projection::{
    ProjectionError, ProjectionRuntime, ProjectorState, ReactionError, Reactor, RunnerConfig, StartFrom,
};
use ordo_store::testing::{backend_test, eventually, settle, TestDatabase};
use ordo_store::{
    AppendRequest, EventFilter, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId,
};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn config() -> RunnerConfig {
    RunnerConfig {
        poll_interval: Duration::from_millis(20),
        max_attempts: 3,
        retry_base: Duration::from_millis(5),
        lease_retry: Duration::from_millis(50),
        ..RunnerConfig::default()
    }
}

/// Records the positions it reacted to. It can echo each event into another stream
/// (an append from inside a reaction), fail transiently a number of times, or fail
/// for good on `Poison`.
struct Recorder {
    name: &'static str,
    start: StartFrom,
    store: Option<Arc<dyn EventStore>>,
    reacted: Mutex<Vec<Position>>,
    transient_failures: AtomicUsize,
    attempts: AtomicUsize,
    poisoned: AtomicBool,
}

impl Recorder {
    fn new(name: &'static str, start: StartFrom) -> Self {
        Self {
            name,
            start,
            store: None,
            reacted: Mutex::new(Vec::new()),
            transient_failures: AtomicUsize::new(0),
            attempts: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    fn reacted(&self) -> Vec<Position> {
        self.reacted.lock().unwrap().clone()
    }
}

#[async_trait]
impl Reactor for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }
    fn filter(&self) -> EventFilter {
        EventFilter::Categories(vec!["tick".into()])
    }
    fn start_from(&self) -> StartFrom {
        self.start
    }
    async fn react(&self, event: &RecordedEvent) -> Result<(), ReactionError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.transient_failures.load(Ordering::SeqCst) > 0 {
            self.transient_failures.fetch_sub(1, Ordering::SeqCst);
            return Err(ReactionError::transient("the network is down"));
        }
        if event.event_type == "Poison" && self.poisoned.load(Ordering::SeqCst) {
            return Err(ReactionError::failed("cannot digest this"));
        }
        if let Some(store) = &self.store {
            let echo = StreamId::new(format!("echo-{}", event.position)).unwrap();
            let request = AppendRequest::new(echo, ExpectedVersion::Any, vec![NewEvent::new("Echo", json!({}))]);
            store.append(request).await.map_err(ReactionError::transient)?;
        }
        self.reacted.lock().unwrap().push(event.position);
        Ok(())
    }
}

async fn tick(store: &dyn EventStore, event_type: &str) -> Position {
    let request = AppendRequest::new(
        StreamId::new("tick-1").unwrap(),
        ExpectedVersion::Any,
        vec![NewEvent::new(event_type, json!({}))],
    );
    store.append(request).await.unwrap().last_position()
}

async fn ticks(store: &dyn EventStore, n: usize) -> Vec<Position> {
    let mut positions = Vec::new();
    for _ in 0..n {
        positions.push(tick(store, "Tick").await);
    }
    positions
}

async fn runtime(db: &TestDatabase, reactors: Vec<Arc<dyn Reactor>>) -> ProjectionRuntime {
    ProjectionRuntime::open_with(db.open().await, vec![], reactors, config()).await.unwrap()
}

async fn status(rt: &ProjectionRuntime, name: &str) -> ordo_projection::ProjectorStatus {
    rt.statuses().await.unwrap().into_iter().find(|s| s.name == name).unwrap()
}

#[backend_test]
async fn a_reaction_that_appends_events_does_not_wait_for_itself(db: TestDatabase) {
    let store = db.store().await;
    let mut echo = Recorder::new("echo", StartFrom::Beginning);
    echo.store = Some(Arc::clone(&store));
    let echo = Arc::new(echo);
    let rt = runtime(&db, vec![echo.clone()]).await;
    rt.start().await.unwrap();
    let positions = ticks(&*store, 20).await;
    let last = *positions.last().unwrap();
    assert!(rt.wait_for_position("echo", last, Duration::from_secs(20)).await.unwrap(), "the reactor got stuck");
    rt.shutdown().await;
    assert_eq!(echo.reacted(), positions, "each event reacted to once, in order");
    for position in positions {
        let echoed = store.read_stream(&StreamId::new(format!("echo-{position}")).unwrap(), 1, 10).await.unwrap();
        assert_eq!(echoed.len(), 1, "its echo is there");
    }
}

#[backend_test]
async fn a_transient_failure_is_retried_past_max_attempts_until_it_passes(db: TestDatabase) {
    let recorder = Arc::new(Recorder::new("flaky", StartFrom::Beginning));
    recorder.transient_failures.store(8, Ordering::SeqCst); // max_attempts is 3
    let rt = runtime(&db, vec![recorder.clone()]).await;
    let positions = ticks(&**rt.store(), 3).await;
    let last = *positions.last().unwrap();
    settle(&**rt.store(), last).await;
    rt.start().await.unwrap();
    assert!(rt.wait_for_position("flaky", last, Duration::from_secs(20)).await.unwrap(), "it gave up");
    let status = status(&rt, "flaky").await;
    rt.shutdown().await;
    assert_ne!(status.status, ProjectorState::Failed, "{:?}", status.error);
    assert_eq!(recorder.reacted(), positions, "each event once, none skipped");
    assert_eq!(recorder.attempts.load(Ordering::SeqCst), 8 + 3, "eight failures, then one success per event");
}

#[backend_test]
async fn a_persistent_failure_stops_the_reactor_at_its_event_until_resumed(db: TestDatabase) {
    let recorder = Arc::new(Recorder::new("picky", StartFrom::Beginning));
    recorder.poisoned.store(true, Ordering::SeqCst);
    let rt = runtime(&db, vec![recorder.clone()]).await;
    let store = Arc::clone(rt.store());
    let before = ticks(&*store, 2).await;
    let poison = tick(&*store, "Poison").await;
    let after = ticks(&*store, 2).await;
    settle(&*store, *after.last().unwrap()).await;
    rt.start().await.unwrap();
    eventually(Duration::from_secs(20), "the reactor stops as failed", || async {
        status(&rt, "picky").await.status == ProjectorState::Failed
    })
    .await;
    let failed = status(&rt, "picky").await;
    let error = failed.error.expect("with its error");
    assert_eq!((error.position, error.event_type.as_deref()), (Some(poison), Some("Poison")));
    assert!(error.message.contains("cannot digest this"), "{}", error.message);
    assert!(failed.position < poison, "the checkpoint did not pass the event");
    assert_eq!(failed.lag, 3, "the event and the two after it wait");
    let reacted = recorder.reacted();
    assert!(!reacted.contains(&poison) && reacted.iter().all(|p| before.contains(p)), "{reacted:?}");

    recorder.poisoned.store(false, Ordering::SeqCst);
    rt.resume("picky").await.unwrap();
    let last = *after.last().unwrap();
    assert!(rt.wait_for_position("picky", last, Duration::from_secs(20)).await.unwrap());
    rt.shutdown().await;
    let reacted = recorder.reacted();
    assert!(reacted.ends_with(&[poison, after[0], after[1]]), "it went on from the event: {reacted:?}");
}

#[backend_test]
async fn a_new_reactor_starts_where_it_says(db: TestDatabase) {
    let (now, beginning) =
        (Arc::new(Recorder::new("now", StartFrom::Now)), Arc::new(Recorder::new("beginning", StartFrom::Beginning)));
    let store = db.store().await;
    let history = ticks(&*store, 3).await;
    settle(&*store, *history.last().unwrap()).await;
    let rt = runtime(&db, vec![now.clone(), beginning.clone()]).await;
    rt.start().await.unwrap();
    let later = ticks(&*store, 2).await;
    let last = *later.last().unwrap();
    for name in ["now", "beginning"] {
        assert!(rt.wait_for_position(name, last, Duration::from_secs(20)).await.unwrap());
    }
    rt.shutdown().await;
    assert_eq!(now.reacted(), later, "Now: only what happened after it was switched on");
    assert_eq!(beginning.reacted(), [history, later].concat(), "Beginning: the whole history");
}

#[backend_test]
async fn a_reactor_has_no_read_model_to_rebuild_and_names_are_unique(db: TestDatabase) {
    let rt = runtime(&db, vec![Arc::new(Recorder::new("r", StartFrom::Now))]).await;
    assert!(matches!(rt.rebuild("r", |_| {}).await, Err(ProjectionError::NotAProjector(name)) if name == "r"));
    let twice: Vec<Arc<dyn Reactor>> =
        vec![Arc::new(Recorder::new("r", StartFrom::Now)), Arc::new(Recorder::new("r", StartFrom::Now))];
    let refused = ProjectionRuntime::open_with(db.open().await, vec![], twice, config()).await;
    assert!(matches!(refused, Err(ProjectionError::DuplicateName(name)) if name == "r"));
}

//! What the runtime tests share: `Counter`, a projector of their own (not the order
//! read model) whose writes are not idempotent, so that an event applied twice or
//! skipped shows in its table; helpers to append events for it and to know what it
//! should hold; and a gate that holds a rebuild in the middle.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use async_trait::async_trait;
use ordo_projection::{
    ProjectionError, ProjectionRuntime, Projector, ProjectorTx, ReadDb, RebuildProgress, RunnerConfig, TableDef,
};
use ordo_store::testing::TestDatabase;
use ordo_store::{
    AppendRequest, EventFilter, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId,
};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc as channel;

/// The counter's name, which keys its checkpoint.
pub const COUNTS: &str = "test_counts";

/// The category of the streams the counter counts.
pub const CATEGORY: &str = "count";

/// Counts events per stream by incrementing a row: not idempotent on its own, so any
/// double delivery shows. It can be told to fail after writing (as if the process
/// died between its writes and their commit), and to refuse `Poison` events.
#[derive(Default)]
pub struct Counter {
    /// Batches still to fail after their writes.
    pub fail_after_write: AtomicUsize,
    /// Whether `Poison` events cannot be applied.
    pub poison: AtomicBool,
}

#[async_trait]
impl Projector for Counter {
    fn name(&self) -> &'static str {
        COUNTS
    }

    fn filter(&self) -> EventFilter {
        EventFilter::Categories(vec![CATEGORY.into()])
    }

    fn tables(&self) -> Vec<TableDef> {
        vec![TableDef {
            name: COUNTS,
            create: "CREATE TABLE IF NOT EXISTS {table} (stream_id TEXT PRIMARY KEY, n BIGINT NOT NULL)",
            indexes: &[],
        }]
    }

    async fn apply(&self, tx: &mut ProjectorTx<'_, '_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let table = tx.table(COUNTS);
        let sql = format!(
            "INSERT INTO {table} (stream_id, n) VALUES ($1, 1) ON CONFLICT (stream_id) DO UPDATE SET n = {table}.n + 1"
        );
        for e in events {
            if e.event_type == "Poison" && self.poison.load(Ordering::SeqCst) {
                return Err(ProjectionError::apply(e, "poisoned"));
            }
            tx.execute(&sql, &[e.stream_id.as_str().into()]).await?;
        }
        let failing = self.fail_after_write.load(Ordering::SeqCst);
        if failing > 0 {
            self.fail_after_write.store(failing - 1, Ordering::SeqCst);
            return Err(ProjectionError::apply(&events[0], "died after writing, before commit"));
        }
        Ok(())
    }

    fn partitioned_by_stream(&self) -> bool {
        true // one row per stream, from that stream's events alone
    }

    async fn forget_stream(&self, tx: &mut ProjectorTx<'_, '_>, stream: &StreamId) -> Result<bool, ProjectionError> {
        let sql = format!("DELETE FROM {} WHERE stream_id = $1", tx.table(COUNTS));
        tx.execute(&sql, &[stream.as_str().into()]).await?;
        Ok(true)
    }
}

/// A runner that moves in small batches and notices failures fast.
pub fn fast() -> RunnerConfig {
    RunnerConfig {
        batch_size: 7,
        rebuild_batch_size: 50,
        rebuild_lanes: 3,
        poll_interval: Duration::from_millis(50),
        retry_base: Duration::from_millis(10),
        max_attempts: 3,
        lease_retry: Duration::from_millis(100),
    }
}

pub async fn runtime(db: &TestDatabase, projectors: Vec<Arc<dyn Projector>>) -> ProjectionRuntime {
    ProjectionRuntime::open(db.open().await, projectors, fast()).await.unwrap()
}

pub fn stream(name: &str) -> StreamId {
    StreamId::new(format!("{CATEGORY}-{name}")).unwrap()
}

/// Appends one event of `event_type` to `count-{name}`; returns its position.
pub async fn append_one(store: &dyn EventStore, name: &str, event_type: &str) -> Position {
    let event = NewEvent::new(event_type, json!({}));
    store.append(AppendRequest::new(stream(name), ExpectedVersion::Any, vec![event])).await.unwrap().last_position()
}

/// Appends `each` events to each of `count-0` … `count-{streams-1}`, in turns;
/// returns the last position.
pub async fn append_counted(store: &dyn EventStore, streams: usize, each: usize) -> Position {
    let mut last = 0;
    for _ in 0..each {
        for s in 0..streams {
            last = append_one(store, &s.to_string(), "Counted").await;
        }
    }
    last
}

/// What the counter's table holds, by stream id.
pub async fn counts(db: &ReadDb) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = db.fetch_all(&format!("SELECT stream_id, n FROM {COUNTS}"), &[]).await.unwrap();
    rows.sort();
    rows
}

/// What the counter's table should hold for the streams `count-{name}`: a row per
/// stream, with its version (every event counts, once), by stream id.
pub async fn truth(store: &dyn EventStore, names: impl IntoIterator<Item = String>) -> Vec<(String, i64)> {
    let mut expected = Vec::new();
    for name in names {
        let stream = stream(&name);
        let version = store.stream_version(&stream).await.unwrap();
        expected.push((stream.as_str().to_owned(), i64::try_from(version).unwrap()));
    }
    expected.sort();
    expected
}

pub async fn caught_up(runtime: &ProjectionRuntime, name: &str, position: Position) {
    assert!(
        runtime.wait_for_position(name, position, Duration::from_secs(30)).await.unwrap(),
        "{name} did not reach position {position} within 30 s"
    );
}

/// Holds a rebuild at its first progress report until the test lets it go: a
/// rebuild that is certainly under way, for as long as the test needs, with no
/// timing involved. Pass [`Gate::progress`] as the rebuild's progress callback.
pub struct Gate {
    held: Mutex<Option<(channel::UnboundedSender<RebuildProgress>, mpsc::Receiver<()>)>>,
}

/// The test's side of a [`Gate`].
pub struct GateKeeper {
    held: channel::UnboundedReceiver<RebuildProgress>,
    release: mpsc::Sender<()>,
}

pub fn gate() -> (Arc<Gate>, GateKeeper) {
    let (tell, held) = channel::unbounded_channel();
    let (release, wait) = mpsc::channel();
    (Arc::new(Gate { held: Mutex::new(Some((tell, wait))) }), GateKeeper { held, release })
}

impl Gate {
    /// The first call reports `progress` and blocks (the rebuild's task only) until
    /// released, or until the keeper is gone; later calls pass.
    pub fn progress(&self, progress: RebuildProgress) {
        let first = self.held.lock().unwrap().take();
        if let Some((tell, wait)) = first {
            let _ = tell.send(progress);
            tokio::task::block_in_place(|| wait.recv()).ok();
        }
    }
}

impl GateKeeper {
    /// Waits until the rebuild is held; returns how far it had come.
    pub async fn held(&mut self) -> RebuildProgress {
        let held = tokio::time::timeout(Duration::from_secs(30), self.held.recv()).await;
        held.expect("the rebuild reached its first progress report within 30 s").expect("the rebuild reports")
    }

    /// Lets the rebuild go on.
    pub fn release(&self) {
        let _ = self.release.send(());
    }
}

//! A store that makes a race happen for certain: its first appends are held until
//! all of them have arrived, and then go to the database together.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordo_store::{
    AppendRequest, AppendResult, Backend, EventFilter, EventSignal, EventStore, IdempotencyRecord, Position,
    RecordedEvent, Snapshot, StoreError, StoredIdempotency, StreamId, Version,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;

/// An event store that holds its first `racers` appends until every one of them has
/// arrived, then lets them go at once; later appends pass straight through. Handlers
/// on it that each append once are sure to have decided before any of them
/// committed, whatever the scheduler does. If the racers do not all arrive within
/// 20 s, the held appends panic: the race the test is about did not happen.
pub struct RacingStore {
    inner: Arc<dyn EventStore>,
    racers: usize,
    arrived: AtomicUsize,
    start: Barrier,
}

impl RacingStore {
    pub fn holding(inner: Arc<dyn EventStore>, racers: usize) -> Arc<dyn EventStore> {
        Arc::new(Self { inner, racers, arrived: AtomicUsize::new(0), start: Barrier::new(racers) })
    }
}

#[async_trait]
impl EventStore for RacingStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        let number = self.arrived.fetch_add(1, Ordering::SeqCst);
        if number < self.racers {
            let racers = self.racers;
            tokio::time::timeout(Duration::from_secs(20), self.start.wait())
                .await
                .unwrap_or_else(|_| panic!("append {number}: the other of {racers} racing appends never came"));
        }
        self.inner.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, from, max).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.inner.stream_version(stream).await
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, max, filter).await
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        self.inner.head_position().await
    }

    async fn count_after(&self, after: Position, filter: &EventFilter) -> Result<u64, StoreError> {
        self.inner.count_after(after, filter).await
    }

    fn subscribe(&self) -> EventSignal {
        self.inner.subscribe()
    }

    async fn record_outcome(&self, record: IdempotencyRecord) -> Result<(), StoreError> {
        self.inner.record_outcome(record).await
    }

    async fn find_idempotency(&self, scope: &str, key: &str) -> Result<Option<StoredIdempotency>, StoreError> {
        self.inner.find_idempotency(scope, key).await
    }

    async fn purge_idempotency(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.purge_idempotency(now).await
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.inner.load_snapshot(stream).await
    }
}

//! An event store with a test's hook around every append and after every read of
//! `$all`, and everything else passed straight through: for tests that must hold
//! appends back (to make a race certain), stop a process between two appends (to
//! crash it there), or know that a reader has looked. Appends under a stream hold
//! ([`EventStore::hold_stream`]) go to the inner store's hold, past the hook: a hold
//! is what a writer takes so as not to be held back again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

use crate::{
    AppendRequest, AppendResult, Backend, EventFilter, EventSignal, EventStore, HeldStream, IdempotencyRecord,
    Position, RecordedEvent, Snapshot, StoreError, StoredIdempotency, StreamId, Version,
};

/// What a test does around each append, and after each read of `$all`, of a
/// [`HookedStore`].
#[async_trait]
pub trait StoreHook: Send + Sync + 'static {
    /// Runs before the append goes to the database.
    async fn before(&self, request: &AppendRequest) {
        let _ = request;
    }

    /// Runs once the append has returned, with what it returned.
    async fn after(&self, result: &Result<AppendResult, StoreError>) {
        let _ = result;
    }

    /// Runs once a read of `$all` has returned, with what it returned.
    async fn after_read_all(&self, result: &Result<Vec<RecordedEvent>, StoreError>) {
        let _ = result;
    }
}

/// `inner`, with `hook` around every append.
pub struct HookedStore<H> {
    inner: Arc<dyn EventStore>,
    hook: H,
}

impl<H: StoreHook> HookedStore<H> {
    /// The store `inner` with `hook` around its appends.
    pub fn around(inner: Arc<dyn EventStore>, hook: H) -> Arc<dyn EventStore> {
        Arc::new(Self { inner, hook })
    }
}

#[async_trait]
impl<H: StoreHook> EventStore for HookedStore<H> {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        self.hook.before(&request).await;
        let result = self.inner.append(request).await;
        self.hook.after(&result).await;
        result
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
        let result = self.inner.read_all(after, max, filter).await;
        self.hook.after_read_all(&result).await;
        result
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

    async fn hold_stream<'a>(&'a self, stream: &StreamId) -> Result<Box<dyn HeldStream + 'a>, StoreError> {
        self.inner.hold_stream(stream).await
    }
}

//! A bounded cache of recently used aggregates (state and version), so that a
//! command on a warm aggregate reads nothing and copies nothing. An entry is only a
//! starting point: the append's expected version catches a stale one, which is then
//! dropped and reloaded.

use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use ordo_store::Version;

pub(crate) struct AggregateCache<S> {
    entries: Option<Mutex<LruCache<String, (Version, S)>>>,
}

impl<S> AggregateCache<S> {
    /// A cache of at most `capacity` aggregates (0 turns caching off).
    pub(crate) fn new(capacity: usize) -> Self {
        Self { entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))) }
    }

    /// Takes the entry out (no clone): the caller holds the aggregate's turn, so no
    /// one else needs it until the caller puts it back.
    pub(crate) fn take(&self, stream: &str) -> Option<(Version, S)> {
        self.entries.as_ref().and_then(|m| lock(m).pop(stream))
    }

    pub(crate) fn put(&self, stream: &str, version: Version, state: S) {
        if let Some(m) = &self.entries {
            lock(m).put(stream.to_owned(), (version, state));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave an LRU half-updated in a way that matters here.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

//! A bounded cache of recently used aggregates (state and version), so that a
//! command on a warm aggregate reads nothing. An entry is only a starting point: the
//! append's expected version catches a stale one, which is then dropped and reloaded.

use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use ordo_store::Version;

pub(crate) struct AggregateCache<S> {
    entries: Option<Mutex<LruCache<String, (Version, S)>>>,
}

impl<S: Clone> AggregateCache<S> {
    /// A cache of at most `capacity` aggregates (0 turns caching off).
    pub(crate) fn new(capacity: usize) -> Self {
        Self { entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))) }
    }

    pub(crate) fn get(&self, stream: &str) -> Option<(Version, S)> {
        self.entries.as_ref().and_then(|m| lock(m).get(stream).cloned())
    }

    pub(crate) fn put(&self, stream: &str, version: Version, state: S) {
        if let Some(m) = &self.entries {
            lock(m).put(stream.to_owned(), (version, state));
        }
    }

    pub(crate) fn invalidate(&self, stream: &str) {
        if let Some(m) = &self.entries {
            lock(m).pop(stream);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave an LRU half-updated in a way that matters here.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

//! Per-aggregate serialization within one process. Commands on the same aggregate
//! take turns, so that optimistic conflicts arise only between processes. The locks
//! are a fixed array of stripes (an aggregate hashes to one), so memory stays
//! bounded however many aggregates pass through; two aggregates sharing a stripe
//! merely take turns too.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use tokio::sync::{Mutex, MutexGuard};

pub(crate) struct StripedLocks {
    stripes: Vec<Mutex<()>>,
}

impl StripedLocks {
    pub(crate) fn new(stripes: usize) -> Self {
        Self { stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect() }
    }

    /// Waits for the turn of `key`'s stripe (tokio's mutex is fair: first come, first
    /// served).
    pub(crate) async fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let stripe = (hasher.finish() % self.stripes.len() as u64) as usize;
        self.stripes[stripe].lock().await
    }
}

//! A store that makes a race happen for certain: its first appends are held until
//! all of them have arrived, and then go to the database together.

use async_trait::async_trait;
use ordo_store::testing::{HookedStore, StoreHook};
use ordo_store::{AppendRequest, EventStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;

/// Holds the first `racers` appends until every one of them has arrived, then lets
/// them go at once; later appends pass straight through. Handlers on it that each
/// append once are sure to have decided before any of them committed, whatever the
/// scheduler does. If the racers do not all arrive within 20 s, the held appends
/// panic: the race the test is about did not happen.
pub struct RacingStore {
    racers: usize,
    arrived: AtomicUsize,
    start: Barrier,
}

impl RacingStore {
    pub fn holding(inner: Arc<dyn EventStore>, racers: usize) -> Arc<dyn EventStore> {
        HookedStore::around(inner, Self { racers, arrived: AtomicUsize::new(0), start: Barrier::new(racers) })
    }
}

#[async_trait]
impl StoreHook for RacingStore {
    async fn before(&self, _: &AppendRequest) {
        let number = self.arrived.fetch_add(1, Ordering::SeqCst);
        if number < self.racers {
            let racers = self.racers;
            tokio::time::timeout(Duration::from_secs(20), self.start.wait())
                .await
                .unwrap_or_else(|_| panic!("append {number}: the other of {racers} racing appends never came"));
        }
    }
}

//! Test support, behind the `testing` feature: a fresh database per test on either
//! backend, `#[backend_test]` to run one body against every backend, and waits on
//! conditions with deadlines (never bare sleeps).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod database;

pub use database::{postgres_url, run, TestDatabase};
/// Runs an `async fn name(db: TestDatabase)` on every backend (see `ordo-test-macros`).
pub use ordo_test_macros::backend_test;

use std::future::Future;
use std::time::Duration;

use crate::{EventStore, Position};

/// Polls `condition` until it holds, failing the test with `what` if it does not
/// within `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `$all` readers can see everything up to `position`. On PostgreSQL they
/// trail appends by the transactions still in flight anywhere in the cluster (here:
/// other tests), which is what keeps them from skipping events.
pub async fn settle(store: &dyn EventStore, position: Position) {
    let what = format!("$all reaches position {position}");
    eventually(Duration::from_secs(30), &what, || async {
        store.head_position().await.expect("head position") >= position
    })
    .await;
}

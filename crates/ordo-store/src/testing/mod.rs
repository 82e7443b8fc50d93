//! Test support, behind the `testing` feature: a fresh database per test on either
//! backend, `#[backend_test]` to run one body against every backend, and waits on
//! conditions with deadlines (never bare sleeps).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod database;
mod hooked;

pub use database::{postgres_url, run, TestDatabase};
pub use hooked::{HookedStore, StoreHook};
/// Runs an `async fn name(db: TestDatabase)` on every backend (see `ordo-test-macros`).
pub use ordo_test_macros::backend_test;

/// The module `#[backend_test]` adds beside a body: one test per backend (or the one
/// named). Every backend Ordo has is listed here, and only here.
#[doc(hidden)]
#[macro_export]
macro_rules! __backend_tests {
    ($name:ident, all) => {
        /// The body above, once per backend.
        mod $name {
            $crate::__backend_tests!(@test $name, sqlite, Sqlite);
            $crate::__backend_tests!(@test $name, postgres, Postgres);
        }
    };
    ($name:ident, sqlite) => {
        mod $name {
            $crate::__backend_tests!(@test $name, sqlite, Sqlite);
        }
    };
    ($name:ident, postgres) => {
        mod $name {
            $crate::__backend_tests!(@test $name, postgres, Postgres);
        }
    };
    (@test $name:ident, $test:ident, $backend:ident) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $test() {
            $crate::testing::run($crate::Backend::$backend, stringify!($name), super::$name).await;
        }
    };
}

use std::future::Future;
use std::time::Duration;

use crate::{Backend, EventStore, Position};

/// Every backend, for tests that loop over them (a property test, say).
pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

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

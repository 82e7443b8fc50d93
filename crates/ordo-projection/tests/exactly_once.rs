//! Exactly-once effect, on both backends: the runtime delivers events at least once
//! and commits a projector's writes with its checkpoint, so that a batch whose
//! transaction fails is applied again from scratch, and two runtimes on one database
//! never both apply an event. The counting projector is not idempotent itself: an
//! event applied twice would count twice.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use ordo_store::testing::{backend_test, TestDatabase};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use support::{append_counted, caught_up, counts, runtime, truth, Counter, COUNTS};

#[backend_test]
async fn writes_that_fail_before_commit_are_not_applied_twice(db: TestDatabase) {
    let counter = Arc::new(Counter::default());
    counter.fail_after_write.store(2, Ordering::SeqCst);
    let rt = runtime(&db, vec![counter.clone()]).await;
    let last = append_counted(&**rt.store(), 3, 10).await;
    rt.start().await.unwrap();
    caught_up(&rt, COUNTS, last).await;
    rt.shutdown().await;
    assert_eq!(counter.fail_after_write.load(Ordering::SeqCst), 0, "both failures happened");
    let expected = truth(&**rt.store(), (0..3).map(|s| s.to_string())).await;
    assert_eq!(expected.iter().map(|(_, n)| n).sum::<i64>(), 30);
    assert_eq!(counts(rt.db()).await, expected, "each event counted exactly once");
}

#[backend_test]
async fn two_runtimes_on_one_database_apply_each_event_once(db: TestDatabase) {
    let (a, b) = (Arc::new(Counter::default()), Arc::new(Counter::default()));
    let (rt_a, rt_b) = (runtime(&db, vec![a]).await, runtime(&db, vec![b]).await);
    rt_a.start().await.unwrap();
    rt_b.start().await.unwrap();
    let last = append_counted(&**rt_a.store(), 4, 25).await;
    caught_up(&rt_a, COUNTS, last).await;
    caught_up(&rt_b, COUNTS, last).await;
    rt_a.shutdown().await;
    rt_b.shutdown().await;
    let expected = truth(&**rt_a.store(), (0..4).map(|s| s.to_string())).await;
    assert_eq!(expected.iter().map(|(_, n)| n).sum::<i64>(), 100);
    assert_eq!(counts(rt_a.db()).await, expected, "two runners, still each event once");
}

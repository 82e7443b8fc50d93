//! A projector that cannot apply an event, and what the runtime reports, on both
//! backends: it stops at that event, reports it (position, type, message) with the
//! lag behind it, never skips it, and goes on from it once resumed; and the status
//! shows position, head, lag and state before, while and after running.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use ordo_projection::ProjectorState;
use ordo_store::testing::{backend_test, eventually, settle, TestDatabase};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use support::{append_counted, append_one, caught_up, counts, runtime, Counter, COUNTS};

#[backend_test]
async fn a_failing_projector_stops_reports_and_resumes_without_skipping(db: TestDatabase) {
    let counter = Arc::new(Counter::default());
    counter.poison.store(true, Ordering::SeqCst);
    let rt = runtime(&db, vec![counter.clone()]).await;
    let store = Arc::clone(rt.store());
    append_counted(&*store, 1, 5).await;
    let poison = append_one(&*store, "0", "Poison").await;
    let last = append_counted(&*store, 1, 5).await;
    settle(&*store, last).await;
    rt.start().await.unwrap();
    eventually(Duration::from_secs(30), "the projector reports failed", || async {
        rt.statuses().await.unwrap()[0].status == ProjectorState::Failed
    })
    .await;
    let status = rt.statuses().await.unwrap().remove(0);
    let error = status.error.expect("the failure comes with its error");
    assert_eq!(error.position, Some(poison));
    assert_eq!(error.event_type.as_deref(), Some("Poison"));
    assert!(error.message.contains("poisoned"), "{}", error.message);
    assert!(status.position < poison, "it did not skip the poison event");
    assert_eq!(status.lag, 6, "the poison event and the five after it wait");
    assert_eq!(counts(rt.db()).await, vec![("count-0".to_owned(), 5)], "everything before it was applied");
    // Fixed, and resumed by an admin: it goes on from the poison event.
    counter.poison.store(false, Ordering::SeqCst);
    rt.resume(COUNTS).await.unwrap();
    caught_up(&rt, COUNTS, last).await;
    rt.shutdown().await;
    assert_eq!(counts(rt.db()).await, vec![("count-0".to_owned(), 11)], "the poison event and those after it");
}

#[backend_test]
async fn status_reports_lag_and_state(db: TestDatabase) {
    let rt = runtime(&db, vec![Arc::new(Counter::default())]).await;
    let store = Arc::clone(rt.store());
    // An event of another category does not count as lag.
    let other = ordo_store::NewEvent::new("Other", serde_json::json!({}));
    let other = ordo_store::AppendRequest::new(
        ordo_store::StreamId::new("other-1").unwrap(),
        ordo_store::ExpectedVersion::Any,
        vec![other],
    );
    store.append(other).await.unwrap();
    let last = append_counted(&*store, 5, 1).await;
    settle(&*store, last).await;
    let before = rt.statuses().await.unwrap().remove(0);
    assert_eq!(before.name, COUNTS);
    assert_eq!((before.position, before.lag, before.status), (0, 5, ProjectorState::Stopped));
    assert!(before.lag_seconds >= 0.0);
    assert_eq!(before.head, last);
    assert!(before.error.is_none() && before.rebuild.is_none());
    rt.start().await.unwrap();
    caught_up(&rt, COUNTS, last).await;
    let after = rt.statuses().await.unwrap().remove(0);
    assert_eq!((after.position, after.lag, after.lag_seconds), (last, 0, 0.0));
    assert!(matches!(after.status, ProjectorState::Running | ProjectorState::CatchingUp), "{:?}", after.status);
    rt.shutdown().await;
    assert_eq!(rt.statuses().await.unwrap()[0].status, ProjectorState::Stopped);
}

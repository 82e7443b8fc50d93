//! Rebuilding a read model from scratch while the system keeps serving, on both
//! backends. A gate holds the rebuild at its first batch for as long as the test
//! needs — no timing involved — so that events arrive and readers read while it is
//! certainly under way. The counting projector is not idempotent: an event the swap
//! applied twice, or skipped, shows in the counts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use ordo_projection::{ProjectionError, ProjectorState};
use ordo_store::testing::{backend_test, eventually, settle, TestDatabase};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{append_counted, append_one, caught_up, counts, gate, runtime, truth, Counter, COUNTS};

const WAIT: Duration = Duration::from_secs(30);

#[backend_test]
async fn a_rebuild_under_load_ends_with_every_event_counted_once(db: TestDatabase) {
    let rt = runtime(&db, vec![Arc::new(Counter::default())]).await;
    let store = Arc::clone(rt.store());
    rt.start().await.unwrap();
    let last = append_counted(&*store, 4, 20).await;
    caught_up(&rt, COUNTS, last).await;
    let before = counts(rt.db()).await;
    assert_eq!(before.len(), 4);
    // Events keep arriving — on the four streams and on new ones — and a reader keeps
    // reading, during the rebuild and after it.
    let stop = Arc::new(AtomicBool::new(false));
    let (written, last_written) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (store, stop, written, last_written) =
            (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&written), Arc::clone(&last_written));
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                append_one(&*store, &(i % 4).to_string(), "Counted").await;
                let position = append_one(&*store, &format!("n{i}"), "Counted").await;
                last_written.store(position, Ordering::SeqCst);
                i += 1;
                written.store(i, Ordering::SeqCst);
            }
        })
    };
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (db, stop, reads) = (rt.db().clone(), Arc::clone(&stop), Arc::clone(&reads));
        tokio::spawn(async move {
            let mut seen: HashMap<String, i64> = HashMap::new();
            while !stop.load(Ordering::SeqCst) {
                let now = counts(&db).await;
                assert!(now.len() >= 4, "a reader saw {} rows during the rebuild, fewer than 4", now.len());
                for (stream, n) in now {
                    let was = seen.insert(stream.clone(), n).unwrap_or(0);
                    assert!(n >= was, "{stream} went back from {was} to {n}");
                }
                reads.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };
    let (gate, mut keeper) = gate();
    let rebuild = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.rebuild(COUNTS, move |p| gate.progress(p)).await })
    };
    keeper.held().await;
    // While it is held: more events, more reads, and the live runner goes on.
    let (written_at, reads_at) = (written.load(Ordering::SeqCst), reads.load(Ordering::SeqCst));
    eventually(WAIT, "events are written and read while the rebuild is held", || async {
        written.load(Ordering::SeqCst) >= written_at + 10 && reads.load(Ordering::SeqCst) >= reads_at + 3
    })
    .await;
    caught_up(&rt, COUNTS, last_written.load(Ordering::SeqCst)).await;
    keeper.release();
    let replayed = rebuild.await.unwrap().unwrap();
    assert!(replayed >= 80 + 20, "the rebuild replayed the events written while it was held ({replayed})");
    let (written_at, reads_at) = (written.load(Ordering::SeqCst), reads.load(Ordering::SeqCst));
    eventually(WAIT, "events are written and read after the rebuild", || async {
        written.load(Ordering::SeqCst) >= written_at + 10 && reads.load(Ordering::SeqCst) >= reads_at + 3
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    reader.await.unwrap();
    caught_up(&rt, COUNTS, last_written.load(Ordering::SeqCst)).await;
    rt.shutdown().await;
    let streams = written.load(Ordering::SeqCst);
    let names = (0..4).map(|s| s.to_string()).chain((0..streams).map(|i| format!("n{i}")));
    assert_eq!(counts(rt.db()).await, truth(&*store, names).await, "every event counted once, none skipped");
}

#[backend_test]
async fn a_second_rebuild_is_refused_while_one_runs(db: TestDatabase) {
    let rt = runtime(&db, vec![Arc::new(Counter::default())]).await;
    let last = append_counted(&**rt.store(), 3, 100).await;
    settle(&**rt.store(), last).await;
    let (gate, mut keeper) = gate();
    let first = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.rebuild(COUNTS, move |p| gate.progress(p)).await })
    };
    let held = keeper.held().await;
    assert_eq!((held.done, held.total), (50, 300), "held after its first batch");
    let second = rt.rebuild(COUNTS, |_| {}).await;
    assert!(matches!(second, Err(ProjectionError::AlreadyRebuilding(_))), "{second:?}");
    let status = rt.statuses().await.unwrap().remove(0);
    assert_eq!(status.status, ProjectorState::Rebuilding);
    let progress = status.rebuild.expect("the status shows the rebuild's progress");
    assert_eq!(progress, held, "the status counts events replayed, not positions");
    keeper.release();
    assert_eq!(first.await.unwrap().unwrap(), 300);
    let expected = truth(&**rt.store(), (0..3).map(|s| s.to_string())).await;
    assert_eq!(counts(rt.db()).await, expected);
    // Done: a new rebuild may start, and yields the same counts.
    assert_eq!(rt.rebuild(COUNTS, |_| {}).await.unwrap(), 300);
    assert_eq!(counts(rt.db()).await, expected);
    assert_ne!(rt.statuses().await.unwrap()[0].status, ProjectorState::Rebuilding);
}

#[backend_test]
async fn one_stream_is_rebuilt_alone(db: TestDatabase) {
    let rt = runtime(&db, vec![Arc::new(Counter::default())]).await;
    let last = append_counted(&**rt.store(), 2, 3).await;
    rt.start().await.unwrap();
    caught_up(&rt, COUNTS, last).await;
    rt.shutdown().await;
    // Damage both rows behind the projector's back; repair one.
    rt.db()
        .transaction(|mut tx| {
            Box::pin(async move { tx.execute(&format!("UPDATE {COUNTS} SET n = 99"), &[]).await.map(drop) })
        })
        .await
        .unwrap();
    assert_eq!(rt.rebuild_stream(COUNTS, &support::stream("0")).await.unwrap(), 3);
    assert_eq!(counts(rt.db()).await, vec![("count-0".to_owned(), 3), ("count-1".to_owned(), 99)]);
}

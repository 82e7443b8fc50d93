//! PostgreSQL-only behaviour: the skip-free `$all` watermark under out-of-order
//! commits, and the trigger that keeps events immutable.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_store::postgres::{OpenAppend, PostgresStore};
use ordo_store::testing::{backend_test, settle, TestDatabase};
use ordo_store::{AppendRequest, EventFilter, EventStore, ExpectedVersion, NewEvent, Position, StreamId};
use serde_json::json;

fn one_event(stream: &str) -> AppendRequest {
    let stream = StreamId::new(stream).unwrap();
    AppendRequest::new(stream, ExpectedVersion::NoStream, vec![NewEvent::new("Happened", json!({}))])
}

/// A `$all` reader: what it returns after a position.
type Reader = for<'a> fn(&'a PostgresStore, Position) -> futures::future::BoxFuture<'a, Vec<Position>>;

fn watermark_reader(store: &PostgresStore, after: Position) -> futures::future::BoxFuture<'_, Vec<Position>> {
    Box::pin(async move {
        store.read_all(after, 100, &EventFilter::All).await.unwrap().iter().map(|e| e.position).collect()
    })
}

/// What a store without the watermark would do: read by position alone.
fn naive_reader(store: &PostgresStore, after: Position) -> futures::future::BoxFuture<'_, Vec<Position>> {
    Box::pin(async move {
        let rows: Vec<i64> = sqlx::query_scalar("SELECT position FROM events WHERE position > $1 ORDER BY position")
            .bind(after as i64)
            .fetch_all(store.pool())
            .await
            .unwrap();
        rows.into_iter().map(|p| p as u64).collect()
    })
}

/// What a reader did in the out-of-order scenario.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// It read every event once, in commit-safe order.
    Everything,
    /// It checkpointed past A while A was open: A is lost to it.
    SkippedA { checkpoint: Position, a: Position },
}

/// Transaction A takes its position and stays open; B takes a later one and commits.
/// A checkpointing reader must not move past A while A is open, and must get A once
/// A commits.
async fn out_of_order_commit(db: &TestDatabase, reader: Reader) -> Seen {
    let store = db.postgres().await;
    let a = OpenAppend::begin(store.pool(), one_event("a-1")).await.unwrap();
    let b = store.append(one_event("b-1")).await.unwrap();
    let (a_position, b_position) = (a.result().last_position(), b.last_position());
    assert!(a_position < b_position, "A took the earlier position");

    let mut checkpoint = 0;
    let first_read = reader(&store, checkpoint).await;
    assert!(!first_read.contains(&a_position), "A is not committed yet");
    if let Some(&last) = first_read.last() {
        checkpoint = last;
    }
    let mut seen = first_read;
    if checkpoint > a_position {
        a.commit().await.unwrap();
        return Seen::SkippedA { checkpoint, a: a_position };
    }
    a.commit().await.unwrap();
    settle(&store, b_position).await;
    seen.extend(reader(&store, checkpoint).await);
    assert_eq!(seen, vec![a_position, b_position], "A was skipped or B read twice");
    Seen::Everything
}

#[backend_test(postgres)]
async fn out_of_order_commits_are_never_skipped(db: TestDatabase) {
    assert_eq!(out_of_order_commit(&db, watermark_reader).await, Seen::Everything);
}

/// The same scenario against a reader without the watermark skips A: this is what
/// shows the scenario really commits out of order.
#[backend_test(postgres)]
async fn a_naive_position_reader_skips_out_of_order_commits(db: TestDatabase) {
    let seen = out_of_order_commit(&db, naive_reader).await;
    assert!(matches!(seen, Seen::SkippedA { .. }), "the naive reader saw everything: {seen:?}");
}

#[backend_test(postgres)]
async fn stored_events_cannot_be_changed_or_deleted(db: TestDatabase) {
    let store = db.postgres().await;
    store.append(one_event("order-1")).await.unwrap();
    for sql in ["UPDATE events SET data = '{}'", "DELETE FROM events", "TRUNCATE events"] {
        let err = sqlx::query(sql).execute(store.pool()).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(store.read_stream(&StreamId::new("order-1").unwrap(), 1, 10).await.unwrap().len(), 1);
}

/// Another node's append wakes this node's subscribers through LISTEN/NOTIFY.
#[backend_test(postgres)]
async fn other_nodes_appends_wake_subscribers(db: TestDatabase) {
    let (here, there) = (db.postgres().await, db.postgres().await);
    let mut signal = here.subscribe();
    assert!(!signal.wait(std::time::Duration::ZERO).await, "quiet before any append");
    there.append(one_event("order-elsewhere")).await.unwrap();
    assert!(signal.wait(std::time::Duration::from_secs(5)).await, "woken by the other node's NOTIFY");
}

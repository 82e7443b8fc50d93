//! PostgreSQL-only behaviour: the skip-free `$all` watermark under out-of-order
//! commits, the trigger that keeps events immutable, stream holds, positions after a
//! restore.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_store::postgres::{OpenAppend, PostgresStore};
use ordo_store::testing::{backend_test, eventually, settle, TestDatabase};
use ordo_store::{AppendRequest, EventFilter, EventStore, ExpectedVersion, NewEvent, Position, StoreError, StreamId};
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

/// Writes `n` events straight into `events` with positions far above the cluster's
/// transaction ids, as a `pg_dump` of an older, busier cluster restored here would
/// leave them; returns their positions.
async fn plant_restored_events(store: &PostgresStore, n: i64) -> Vec<Position> {
    let positions: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, data, metadata, \
         category) SELECT ((pg_current_xact_id()::text::bigint + 10000000) << 16) + i, 'restored-1', i + 1, \
         gen_random_uuid(), 'Restored', 1, '{}', '{}', 'restored' FROM generate_series(0, $1 - 1) AS i \
         RETURNING position",
    )
    .bind(n)
    .fetch_all(store.pool())
    .await
    .unwrap();
    positions.into_iter().map(|p| p as u64).collect()
}

/// Follows `$all` from `after` until it has read `count` events (or fails after a
/// deadline), as a projector would.
async fn follow(store: &PostgresStore, mut after: Position, count: usize) -> Vec<Position> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while seen.len() < count {
        assert!(tokio::time::Instant::now() < deadline, "the reader saw only {} of {count} events", seen.len());
        let batch = store.read_all(after, 3, &EventFilter::All).await.unwrap();
        if let Some(last) = batch.last() {
            after = last.position;
        }
        seen.extend(batch.iter().map(|e| e.position));
        if batch.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    seen
}

/// A restore into a new cluster leaves events with positions above the transaction
/// ids: appends on a running store re-base and come after them, and a reader that
/// checkpointed before sees every event once, in order.
#[backend_test(postgres)]
async fn new_positions_lie_above_restored_ones_on_a_running_store(db: TestDatabase) {
    let store = db.postgres().await;
    let before = store.append(one_event("before-1")).await.unwrap();
    settle(&store, before.last_position()).await;
    let checkpoint = store.head_position().await.unwrap();

    let restored = plant_restored_events(&store, 5).await;
    let after = store.append(one_event("after-1")).await.unwrap();
    let top = *restored.last().unwrap();
    assert!(after.last_position() > top, "new position {} is not above restored {top}", after.last_position());
    // Groups of appends (several streams at once) come after them too.
    let group = futures::future::join_all((0..8).map(|i| store.append(one_event(&format!("group-{i}"))))).await;
    let group: Vec<Position> = group.into_iter().map(|r| r.unwrap().last_position()).collect();
    assert!(group.iter().all(|p| *p > top), "{group:?} vs {top}");

    let seen = follow(&store, checkpoint, 5 + 1 + 8).await;
    let mut expected: Vec<Position> = restored.iter().copied().chain([after.last_position()]).chain(group).collect();
    expected.sort_unstable();
    assert_eq!(seen, expected, "the reader skipped or repeated an event");
}

/// The same restore found at connect time: the store re-bases before its first append.
#[backend_test(postgres)]
async fn a_store_opened_on_a_restored_database_appends_above_it(db: TestDatabase) {
    let first = db.postgres().await;
    let checkpoint = first.head_position().await.unwrap();
    let restored = plant_restored_events(&first, 3).await;
    drop(first);
    let store = db.postgres().await;
    let shift: i64 = sqlx::query_scalar("SELECT shift FROM ordo_position_base").fetch_one(store.pool()).await.unwrap();
    assert!(shift > 0, "connecting raised the shift (shift {shift})");
    let appended = store.append(one_event("after-1")).await.unwrap();
    assert!(appended.last_position() > *restored.last().unwrap());
    let seen = follow(&store, checkpoint, 4).await;
    assert_eq!(seen, restored.iter().copied().chain([appended.last_position()]).collect::<Vec<_>>());
}

/// A commit acknowledged before it is durable could be lost with the command it
/// acknowledged: such a database is refused.
#[backend_test(postgres)]
async fn a_database_with_synchronous_commit_off_is_refused(db: TestDatabase) {
    let store = db.postgres().await;
    let name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(store.pool()).await.unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} SET synchronous_commit = off")).execute(store.pool()).await.unwrap();
    drop(store);
    match ordo_store::connect(db.url()).await {
        Err(e @ ordo_store::StoreError::UnsafeDurability { .. }) => {
            assert!(e.to_string().contains("synchronous_commit=off"), "{e}")
        }
        Err(other) => panic!("expected UnsafeDurability, got {other:?}"),
        Ok(_) => panic!("a store opened on a database with synchronous_commit=off"),
    }
}

/// While a stream is held, another node's append to it waits for the hold (and is
/// then refused, its version taken), so the holder's read stays current and its
/// append cannot lose the race.
#[backend_test(postgres)]
async fn a_held_stream_keeps_other_nodes_appends_waiting(db: TestDatabase) {
    let (here, there) = (db.postgres().await, db.postgres().await);
    let s = StreamId::new("order-held").unwrap();
    here.append(one_event("order-held")).await.unwrap();
    let mut held = here.hold_stream(&s).await.unwrap();

    let second =
        |expected| AppendRequest::new(s.clone(), expected, vec![NewEvent::new("Happened", json!({"by": "rival"}))]);
    let rival = tokio::spawn({
        let request = second(ExpectedVersion::Exact(1));
        async move { there.append(request).await }
    });
    let pool = here.pool().clone();
    eventually(std::time::Duration::from_secs(20), "the rival append waits for the hold", || {
        let pool = pool.clone();
        async move {
            // A two-key advisory lock of this database, not granted: the rival's hold.
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND NOT granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            waiting > 0
        }
    })
    .await;
    assert!(!rival.is_finished(), "the rival append went through a held stream");

    assert_eq!(held.read(1, 10).await.unwrap().len(), 1, "the holder reads the stream as it is");
    let appended = held.append(second(ExpectedVersion::Exact(1))).await.unwrap();
    assert_eq!(appended.last_version, 2);
    match rival.await.unwrap() {
        Err(StoreError::WrongExpectedVersion { actual: 2, .. }) => {}
        other => panic!("the rival that waited must be refused, got {other:?}"),
    }
}

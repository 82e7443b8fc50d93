//! How the handler loads an aggregate from a real store, on both backends: from a
//! snapshot and the tail after it, ignoring a snapshot of an older state schema, and
//! through the event's upcaster when a stored event has an older schema.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use ordo_core::{Aggregate, CommandError, CommandRequest, HandlerConfig};
use ordo_store::testing::{backend_test, eventually, TestDatabase};
use ordo_store::{AppendRequest, ExpectedVersion, NewEvent, Snapshot};
use serde_json::json;
use std::time::Duration;
use support::{node, open, reserve, stream, Stock, StockRejection};

#[backend_test]
async fn long_streams_load_from_a_snapshot(db: TestDatabase) {
    let store = db.store().await;
    let config = HandlerConfig { snapshot_every: Some(10), ..HandlerConfig::default() };
    let h = node(&store, config.clone());
    h.handle(CommandRequest::new("l1", open(1_000))).await.unwrap();
    for _ in 0..24 {
        h.handle(CommandRequest::new("l1", reserve(1))).await.unwrap();
    }
    let s = stream("l1");
    // Snapshots are saved in the background, at multiples of 10 (versions 10, 20).
    eventually(Duration::from_secs(20), "a snapshot at version 20 is saved", || async {
        store.load_snapshot(&s).await.unwrap().is_some_and(|snapshot| snapshot.version == 20)
    })
    .await;
    let snapshot = store.load_snapshot(&s).await.unwrap().unwrap();
    let state: Stock = serde_json::from_value(snapshot.state.clone()).unwrap();
    assert_eq!(state, Stock { capacity: Some(1_000), reserved: 19 }, "the state at version 20");
    // A marked copy of it claims version 21, so that a load that used it shows: the
    // mark, and no reservation of version 21 (22..=25 replay on top).
    let marked = Stock { reserved: state.reserved + 500, ..state };
    let marked = Snapshot { version: 21, state: serde_json::to_value(&marked).unwrap(), ..snapshot };
    store.save_snapshot(&marked).await.unwrap();
    let (version, loaded) = node(&store, config).load(&s).await.unwrap();
    assert_eq!(version, 25);
    assert_eq!(loaded.reserved, 519 + 4, "the load started from the snapshot at 21 (the truth is 24)");
}

/// A process with no cache of a long stream (a new node, say) finds its snapshot far
/// behind: its load saves a new one, so that the next cold load replays little.
#[backend_test]
async fn a_cold_load_far_past_the_snapshot_saves_a_new_one(db: TestDatabase) {
    let store = db.store().await;
    let config = HandlerConfig { snapshot_every: Some(100), ..HandlerConfig::default() };
    let warm = node(&store, config.clone());
    warm.handle(CommandRequest::new("l3", open(1_000))).await.unwrap();
    for _ in 0..150 {
        warm.handle(CommandRequest::new("l3", reserve(1))).await.unwrap();
    }
    let s = stream("l3");
    // The warm node's cache served it: its one snapshot is the one at 100.
    eventually(Duration::from_secs(20), "the snapshot at version 100 is saved", || async {
        store.load_snapshot(&s).await.unwrap().is_some_and(|snapshot| snapshot.version == 100)
    })
    .await;
    let (version, _) = node(&store, config).load(&s).await.unwrap();
    assert_eq!(version, 151);
    eventually(Duration::from_secs(20), "the cold load, 51 events past it, saves one at the head", || async {
        store.load_snapshot(&s).await.unwrap().is_some_and(|snapshot| snapshot.version == 151)
    })
    .await;
}

#[backend_test]
async fn a_snapshot_of_an_older_state_schema_is_ignored(db: TestDatabase) {
    let store = db.store().await;
    let config = HandlerConfig { snapshot_every: Some(1_000), ..HandlerConfig::default() };
    let h = node(&store, config.clone());
    h.handle(CommandRequest::new("l2", open(10))).await.unwrap();
    h.handle(CommandRequest::new("l2", reserve(2))).await.unwrap();
    let s = stream("l2");
    // A state of the right shape but the wrong schema: used, it would show.
    let state = serde_json::to_value(Stock { capacity: Some(99), reserved: 99 }).unwrap();
    let other = Snapshot { stream_id: s.clone(), version: 2, state_schema: Stock::STATE_SCHEMA + 1, state };
    store.save_snapshot(&other).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap().map(|x| x.version), Some(2), "the snapshot is there");
    let (version, stock) = node(&store, config.clone()).load(&s).await.unwrap();
    assert_eq!((version, stock), (2, Stock { capacity: Some(10), reserved: 2 }));
    // Garbage under the current schema is ignored too (rebuilt from events).
    let garbage = Snapshot { stream_id: s.clone(), version: 3, state_schema: Stock::STATE_SCHEMA, state: json!(7) };
    store.save_snapshot(&garbage).await.unwrap();
    let (version, stock) = node(&store, config).load(&s).await.unwrap();
    assert_eq!((version, stock), (2, Stock { capacity: Some(10), reserved: 2 }));
}

#[backend_test]
async fn an_old_event_schema_loads_through_the_upcaster(db: TestDatabase) {
    let store = db.store().await;
    // Opened as an older build wrote it: schema v1 called the capacity `size`.
    let v1 = NewEvent::new("Opened", json!({"size": 7})).with_schema_version(1);
    store.append(AppendRequest::new(stream("l3"), ExpectedVersion::NoStream, vec![v1])).await.unwrap();
    let h = node(&store, HandlerConfig::default());
    let (version, stock) = h.load(&stream("l3")).await.unwrap();
    assert_eq!((version, stock), (1, Stock { capacity: Some(7), reserved: 0 }));
    // And the handler decides on it.
    let over = h.handle(CommandRequest::new("l3", reserve(8))).await;
    assert!(
        matches!(
            over,
            Err(CommandError::Rejected { rejection: StockRejection::WouldOversell { requested: 8, available: 7 }, .. })
        ),
        "{over:?}"
    );
    assert_eq!(h.handle(CommandRequest::new("l3", reserve(7))).await.unwrap().version, 2);
}

//! Idempotency keys through the command handler, on both backends: a keyed command
//! takes effect at most once however many duplicates race on however many nodes; a
//! key reused for another request is refused; a refusal is recorded and answered
//! again; and a command whose transaction never committed leaves no trace, neither
//! events nor its key's record.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use ordo_core::{encode_event, CommandError, CommandRequest, FieldError, HandlerConfig};
use ordo_store::testing::{backend_test, TestDatabase};
use ordo_store::{AppendRequest, ExpectedVersion, IdempotencyRecord};
use serde_json::json;
use std::sync::Arc;
use support::{key, node, open, redecide, reserve, versions, RacingStore, StockEvent, StockRejection};
use tokio::sync::Barrier;

/// 32 duplicates of one keyed reservation, released at once on two nodes; the first
/// on each node race to append for certain.
#[backend_test]
async fn racing_duplicates_of_a_keyed_command_take_effect_once(db: TestDatabase) {
    let store = db.store().await;
    node(&store, HandlerConfig::default()).handle(CommandRequest::new("k1", open(1_000))).await.unwrap();
    // Each node's first duplicate finds no record and decides before either commits.
    let racing = RacingStore::holding(Arc::clone(&store), 2);
    let nodes = [node(&racing, HandlerConfig::default()), node(&racing, HandlerConfig::default())];
    let start = Arc::new(Barrier::new(32));
    let joins: Vec<_> = (0..32)
        .map(|i| {
            let (handler, start) = (Arc::clone(&nodes[i % 2]), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                let request = CommandRequest::new("k1", reserve(5)).with_idempotency(key("k-reserve", "f"));
                (i % 2, handler.handle(request).await)
            })
        })
        .collect();
    let (mut fresh, mut replayed_by, mut answers) = (0, [0, 0], Vec::new());
    for join in joins {
        match join.await.unwrap() {
            (node, Ok(committed)) => {
                if committed.replayed {
                    replayed_by[node] += 1;
                } else {
                    fresh += 1;
                }
                answers.push((committed.version, committed.position, committed.events));
            }
            (_, Err(CommandError::IdempotencyKeyInFlight)) => {}
            (node, Err(e)) => panic!("node {node}: unexpected error: {e}"),
        }
    }
    assert_eq!(fresh, 1, "exactly one duplicate takes effect");
    assert!(replayed_by.iter().all(|n| *n > 0), "both nodes answer duplicates from the record: {replayed_by:?}");
    assert!(replayed_by[0] + replayed_by[1] >= 16, "the others replay its outcome (got {replayed_by:?})");
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "every answer gives the same version, position and events");
    assert_eq!(answers[0].2, vec![StockEvent::Reserved { quantity: 5, level: 5 }]);
    let replayed = redecide(&*store, "k1").await;
    assert_eq!((replayed.events.len(), replayed.state.reserved), (2, 5), "one effect");
}

#[backend_test]
async fn a_key_reused_for_another_request_is_refused(db: TestDatabase) {
    let store = db.store().await;
    let h = node(&store, HandlerConfig::default());
    h.handle(CommandRequest::new("k2", open(10)).with_idempotency(key("k", "f1"))).await.unwrap();
    let reused = h.handle(CommandRequest::new("k2", reserve(1)).with_idempotency(key("k", "f2"))).await;
    assert!(matches!(reused, Err(CommandError::IdempotencyKeyReused)), "{reused:?}");
    let replay = h.handle(CommandRequest::new("k2", open(10)).with_idempotency(key("k", "f1"))).await.unwrap();
    assert!(replay.replayed);
    assert_eq!((replay.version, replay.events), (1, vec![StockEvent::Opened { capacity: 10 }]));
    assert_eq!(versions(&*store, "k2").await, vec![1], "the reused key wrote nothing");
}

#[backend_test]
async fn rejections_are_recorded_and_replayed(db: TestDatabase) {
    let store = db.store().await;
    let h = node(&store, HandlerConfig::default());
    let keyed = || CommandRequest::new("k3", reserve(2)).with_idempotency(key("k3", "f"));
    let first = h.handle(keyed()).await;
    assert!(matches!(first, Err(CommandError::Rejected { rejection: StockRejection::NotOpen, replayed: false })));
    // The stock is open now, and the reservation would fit; but the keyed retry gets
    // the recorded answer, also from another node.
    h.handle(CommandRequest::new("k3", open(10))).await.unwrap();
    for answering in [Arc::clone(&h), node(&store, HandlerConfig::default())] {
        let again = answering.handle(keyed()).await;
        assert!(
            matches!(again, Err(CommandError::Rejected { rejection: StockRejection::NotOpen, replayed: true })),
            "{again:?}"
        );
    }
    assert_eq!(versions(&*store, "k3").await, vec![1], "the refused command wrote nothing");
}

/// Input refused before it became a command is recorded under its key by the handler
/// (whose record format nobody else knows): the same request gets the same refusal
/// back, replayed, from any node; another request with the key is refused; without a
/// key nothing is recorded.
#[backend_test]
async fn refused_input_is_recorded_and_replayed(db: TestDatabase) {
    let store = db.store().await;
    let h = node(&store, HandlerConfig::default());
    let errors = vec![FieldError { field: "quantity".into(), message: "must be 1 to 10".into() }];
    let first = h.refuse_input(Some(&key("k5", "f")), errors.clone()).await;
    assert!(matches!(&first, Err(CommandError::InvalidInput { errors: e, replayed: false }) if *e == errors));
    for answering in [Arc::clone(&h), node(&store, HandlerConfig::default())] {
        let again = answering.refuse_input(Some(&key("k5", "f")), errors.clone()).await;
        assert!(matches!(&again, Err(CommandError::InvalidInput { errors: e, replayed: true }) if *e == errors));
        // The handler that runs commands finds the same record.
        let keyed = CommandRequest::new("k5", open(10)).with_idempotency(key("k5", "f"));
        let replay = answering.handle(keyed).await;
        assert!(matches!(&replay, Err(CommandError::InvalidInput { replayed: true, .. })), "{replay:?}");
    }
    let reused = h.handle(CommandRequest::new("k5", open(10)).with_idempotency(key("k5", "other"))).await;
    assert!(matches!(reused, Err(CommandError::IdempotencyKeyReused)), "{reused:?}");
    let reused = h.refuse_input(Some(&key("k5", "other")), errors.clone()).await;
    assert!(matches!(reused, Err(CommandError::IdempotencyKeyReused)), "{reused:?}");
    let unkeyed = h.refuse_input(None, errors.clone()).await;
    assert!(matches!(unkeyed, Err(CommandError::InvalidInput { replayed: false, .. })));
    assert!(versions(&*store, "k5").await.is_empty(), "a refusal writes no events");
}

/// A command's transaction that dies before commit (its connection or process is
/// gone) leaves neither events nor its idempotency record; the retry runs afresh.
#[backend_test]
async fn an_abandoned_transaction_leaves_nothing_behind(db: TestDatabase) {
    let store = db.store().await;
    let h = node(&store, HandlerConfig::default());
    h.handle(CommandRequest::new("k4", open(10))).await.unwrap();
    let record = IdempotencyRecord {
        scope: "test".into(),
        key: "k4".into(),
        fingerprint: "f".into(),
        outcome: json!({"outcome": "committed"}),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    let event = encode_event(&StockEvent::Reserved { quantity: 3, level: 3 }).unwrap();
    let request =
        AppendRequest::new(support::stream("k4"), ExpectedVersion::Exact(1), vec![event]).with_idempotency(record);
    let inside = db.abandon_append(request).await.unwrap();
    assert_eq!(inside.last_version, 2, "the dead command's append went through inside its transaction");
    assert_eq!(versions(&*store, "k4").await, vec![1], "no events of the dead command");
    assert!(store.find_idempotency("test", "k4").await.unwrap().is_none(), "no record of it either");
    let retried = h.handle(CommandRequest::new("k4", reserve(3)).with_idempotency(key("k4", "f"))).await.unwrap();
    assert!(!retried.replayed, "the retry runs afresh");
    assert_eq!((retried.version, retried.events), (2, vec![StockEvent::Reserved { quantity: 3, level: 3 }]));
}

/// A keyed command that changes nothing is recorded too: its retry gets the first
/// answer (the version it saw), not a new decision on a stream that moved since.
#[backend_test]
async fn a_command_that_changes_nothing_is_replayed(db: TestDatabase) {
    let store = db.store().await;
    let h = node(&store, HandlerConfig::default());
    h.handle(CommandRequest::new("i9", open(10))).await.unwrap();
    let first = h.handle(CommandRequest::new("i9", reserve(0)).with_idempotency(key("k9", "f"))).await.unwrap();
    assert_eq!((first.version, first.events.len(), first.replayed), (1, 0, false));
    h.handle(CommandRequest::new("i9", reserve(4))).await.unwrap();
    let again = h.handle(CommandRequest::new("i9", reserve(0)).with_idempotency(key("k9", "f"))).await.unwrap();
    assert_eq!((again.version, again.events.len(), again.replayed), (1, 0, true), "the recorded answer");
    let reused = h.handle(CommandRequest::new("i9", reserve(1)).with_idempotency(key("k9", "other"))).await;
    assert!(matches!(reused, Err(CommandError::IdempotencyKeyReused)), "{reused:?}");
}

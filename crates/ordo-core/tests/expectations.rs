//! What a command's answer rests on, on both backends: a pinned expected version is
//! checked against the stream and never retried, and no answer that the stream's
//! version does not check — a refusal, a decision that appends nothing, a pinned
//! version's mismatch — rests on a cached state that another node has moved past.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use ordo_core::{CommandError, CommandRequest, Expectation, HandlerConfig};
use ordo_store::testing::{backend_test, TestDatabase};
use ordo_store::ExpectedVersion;
use support::{key, node, open, reserve, restock, versions, StockCommand, StockEvent};

fn pinned(id: &str, command: StockCommand, expected: ExpectedVersion) -> CommandRequest<StockCommand> {
    CommandRequest::new(id, command).expecting(Expectation::Pinned(expected))
}

#[backend_test]
async fn a_pinned_version_is_checked_and_never_retried(db: TestDatabase) {
    let store = db.store().await;
    let h = node(&store, HandlerConfig::default());
    let opened = h.handle(pinned("e1", open(10), ExpectedVersion::NoStream)).await.unwrap();
    assert_eq!(opened.version, 1);
    let again = h.handle(pinned("e1", restock(1), ExpectedVersion::NoStream)).await;
    assert!(matches!(again, Err(CommandError::WrongExpectedVersion { actual: 1, .. })), "{again:?}");
    let stale = h.handle(pinned("e1", reserve(1), ExpectedVersion::Exact(0))).await;
    assert!(matches!(stale, Err(CommandError::WrongExpectedVersion { actual: 1, replayed: false, .. })), "{stale:?}");
    let ok = h.handle(pinned("e1", reserve(1), ExpectedVersion::Exact(1))).await.unwrap();
    assert_eq!(ok.version, 2);
    // Another node moves the stream behind this handler's cache: the pinned command
    // conflicts at append time and is answered, not retried.
    node(&store, HandlerConfig::default()).handle(CommandRequest::new("e1", reserve(1))).await.unwrap();
    let raced = h.handle(pinned("e1", reserve(1), ExpectedVersion::Exact(2))).await;
    assert!(matches!(raced, Err(CommandError::WrongExpectedVersion { actual: 3, .. })), "{raced:?}");
    assert_eq!((h.stats().conflicts, h.stats().retries), (1, 0), "the append conflicted and was not retried");
    assert_eq!(versions(&*store, "e1").await, vec![1, 2, 3]);
    let exists = h.handle(pinned("e2", reserve(1), ExpectedVersion::StreamExists)).await;
    assert!(matches!(exists, Err(CommandError::WrongExpectedVersion { actual: 0, .. })), "{exists:?}");
    assert!(versions(&*store, "e2").await.is_empty());
}

/// Node A has the stock cached as sold out; node B restocks it. Commands on A whose
/// answer its cache alone would give — a refusal recorded under a key, a reservation
/// of nothing, a pinned version — are decided on the real state instead.
#[backend_test]
async fn no_answer_rests_on_another_nodes_stale_cache(db: TestDatabase) {
    let store = db.store().await;
    let (a, b) = (node(&store, HandlerConfig::default()), node(&store, HandlerConfig::default()));
    a.handle(CommandRequest::new("e3", open(5))).await.unwrap();
    a.handle(CommandRequest::new("e3", reserve(5))).await.unwrap();
    b.handle(CommandRequest::new("e3", restock(5))).await.unwrap();
    // A's cache says nothing is left; a refusal would be recorded under the key.
    let reserved = a.handle(CommandRequest::new("e3", reserve(3)).with_idempotency(key("e3", "f"))).await.unwrap();
    assert_eq!((reserved.version, reserved.events), (4, vec![StockEvent::Reserved { quantity: 3, level: 8 }]));
    let replayed = a.handle(CommandRequest::new("e3", reserve(3)).with_idempotency(key("e3", "f"))).await.unwrap();
    assert!(replayed.replayed && replayed.version == 4, "the key recorded the commit: {replayed:?}");
    // A decision that appends nothing answers with the stream's real version.
    b.handle(CommandRequest::new("e3", reserve(1))).await.unwrap();
    let nothing = a.handle(CommandRequest::new("e3", reserve(0))).await.unwrap();
    assert_eq!((nothing.version, nothing.events.len()), (5, 0), "not A's cached version 4");
    // A pinned version B produced is accepted although A's cache is older.
    b.handle(CommandRequest::new("e3", reserve(1))).await.unwrap();
    let pinned_on_b = a.handle(pinned("e3", restock(1), ExpectedVersion::Exact(6))).await.unwrap();
    assert_eq!(pinned_on_b.version, 7);
    assert_eq!(a.stats().conflicts, 0, "each stale cache was caught before an append, not by a conflict");
    assert_eq!(versions(&*store, "e3").await, (1..=7).collect::<Vec<_>>());
}

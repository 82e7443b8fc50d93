//! SQLite acknowledges an append only once it is durable: the writer's connection —
//! the one every append and read-model write commits through — runs with
//! `synchronous=FULL` (an acknowledged commit survives power loss, not just a crash)
//! and `journal_mode=wal` (readers beside the writer, and the crash recovery the
//! kill -9 tests rely on). Read back from that connection itself, after writes went
//! through it, so a pool default or a reader's setting cannot stand in for it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_store::testing::{backend_test, TestDatabase};
use ordo_store::{AppendRequest, ExpectedVersion, NewEvent, StreamId};
use serde_json::json;

/// `PRAGMA synchronous` answers 2 for FULL (0 OFF, 1 NORMAL, 3 EXTRA).
const SYNCHRONOUS_FULL: i64 = 2;

#[backend_test(sqlite)]
async fn the_writer_commits_with_synchronous_full_in_wal_mode(db: TestDatabase) {
    let store = db.sqlite().await;
    // The writer has committed something: its settings are the ones appends used.
    let event = NewEvent::new("Durable", json!({}));
    let stream = StreamId::new("durable-1").unwrap();
    ordo_store::EventStore::append(&store, AppendRequest::new(stream, ExpectedVersion::NoStream, vec![event]))
        .await
        .unwrap();
    let (synchronous, journal_mode) = store.writer_pragmas().await.unwrap();
    assert_eq!(synchronous, SYNCHRONOUS_FULL, "the writer's PRAGMA synchronous (2 is FULL)");
    assert_eq!(journal_mode.to_lowercase(), "wal", "the writer's PRAGMA journal_mode");
}

//! The command path of the order domain against real databases, on both backends:
//! what only orders do. The handler's own guarantees (no lost updates, idempotency,
//! pinned versions, snapshots, upcasting on the load path) are tested in
//! `ordo-core/tests` with an aggregate of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_core::{CommandError, CommandHandler, CommandRequest, HandlerConfig, IdempotencyKey};
use ordo_orders::values::CustomerId;
use ordo_orders::{Order, OrderCommand};
use ordo_store::testing::{backend_test, settle, TestDatabase};
use ordo_store::EventFilter;
use std::collections::HashSet;
use std::sync::Arc;

fn create() -> OrderCommand {
    OrderCommand::CreateOrder { customer_id: CustomerId::parse("c-1").unwrap() }
}

/// `POST /orders` without an id: each duplicate picks a fresh id, so only the key
/// (not the stream) can stop the second order.
#[backend_test]
async fn duplicate_creates_without_an_id_replay_the_first_order(db: TestDatabase) {
    let store = db.store().await;
    let h = Arc::new(CommandHandler::<Order>::new(Arc::clone(&store), HandlerConfig::default()));
    let joins: Vec<_> = (0..8)
        .map(|_| {
            let h = Arc::clone(&h);
            tokio::spawn(async move {
                let id = uuid::Uuid::new_v4().to_string();
                let key = IdempotencyKey::new("test", "create-1", "f").unwrap();
                h.handle(CommandRequest::new(id, create()).with_idempotency(key)).await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for j in joins {
        match j.await.unwrap() {
            Ok(c) => {
                ids.insert(c.aggregate_id);
            }
            Err(CommandError::IdempotencyKeyInFlight) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ids.len(), 1, "every answer names the one order that was created");
    let stream = CommandHandler::<Order>::stream_id(ids.iter().next().unwrap()).unwrap();
    let position = store.read_stream(&stream, 1, 1).await.unwrap()[0].position;
    settle(&*store, position).await;
    assert_eq!(store.count_after(0, &EventFilter::All).await.unwrap(), 1, "one order in the whole store");
}

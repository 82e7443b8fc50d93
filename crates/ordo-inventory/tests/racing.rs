//! A SKU is never oversold, on both backends, while two nodes — two command handlers,
//! each with its own store connections, cache and locks — take reservations for it
//! from many tasks at once. The aggregate's rule holds only if every append is checked
//! against the version its decision saw: appending at any version, the two nodes'
//! caches would each sell the same units.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_core::{Aggregate, CommandError, CommandHandler, CommandRequest, HandlerConfig, HandlerStats, RetryPolicy};
use ordo_inventory::values::{ReservationId, StockQuantity};
use ordo_inventory::{StockCommand, StockEvent, StockItem, StockRejection};
use ordo_store::testing::{backend_test, TestDatabase};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;

const SKU: &str = "hot-1";
const STOCK: i64 = 300;
const TASKS_PER_NODE: usize = 8;

/// What one task saw: reservations acknowledged, and refusals as (available, requested).
#[derive(Default)]
struct Seen {
    acknowledged: Vec<(String, i64)>,
    refused: Vec<(i64, i64)>,
    gave_up: usize,
}

/// Reserves 1 to 3 units at a time under fresh reservation ids until the SKU is sold
/// out; a refusal for more than is available asks for what is left next.
async fn reserve_until_sold_out(node: Arc<CommandHandler<StockItem>>, name: String, start: Arc<Barrier>) -> Seen {
    let mut seen = Seen::default();
    start.wait().await;
    let mut wanted = 1;
    for i in 0.. {
        let id = format!("{name}-{i}");
        let reserve = StockCommand::Reserve {
            reservation_id: ReservationId::parse(&id).unwrap(),
            quantity: StockQuantity::new(wanted).unwrap(),
        };
        match node.handle(CommandRequest::new(SKU, reserve)).await {
            Ok(_) => seen.acknowledged.push((id, wanted)),
            Err(CommandError::Rejected {
                rejection: StockRejection::InsufficientStock { available, requested },
                ..
            }) => {
                seen.refused.push((available, requested));
                if available <= 0 {
                    return seen;
                }
                wanted = available.min(3);
                continue;
            }
            // The retries ran out against the other node: nothing was appended.
            Err(CommandError::Conflict { .. }) => seen.gave_up += 1,
            Err(other) => panic!("{id}: {other}"),
        }
        wanted = (wanted % 3) + 1;
    }
    seen
}

fn node(store: Arc<dyn ordo_store::EventStore>) -> Arc<CommandHandler<StockItem>> {
    let retry = RetryPolicy { max_attempts: 50, max_elapsed: Duration::from_secs(20), ..RetryPolicy::default() };
    Arc::new(CommandHandler::new(store, HandlerConfig { retry, ..HandlerConfig::default() }))
}

#[backend_test]
async fn two_nodes_reserving_at_once_never_oversell(db: TestDatabase) {
    // Two nodes: each its own store (pool, and on SQLite its own writer), cache, locks.
    let (a, b) = (node(db.store().await), node(db.store().await));
    let restock = StockCommand::Restock { quantity: StockQuantity::new(STOCK).unwrap() };
    a.handle(CommandRequest::new(SKU, restock)).await.unwrap();
    // Every task's first command goes out at once: the nodes race from the start.
    let start = Arc::new(Barrier::new(2 * TASKS_PER_NODE));
    let tasks: Vec<_> = [("a", &a), ("b", &b)]
        .into_iter()
        .flat_map(|(name, node)| {
            let start = Arc::clone(&start);
            (0..TASKS_PER_NODE).map(move |t| {
                let task = reserve_until_sold_out(Arc::clone(node), format!("{name}{t}"), Arc::clone(&start));
                tokio::spawn(task)
            })
        })
        .collect();
    let mut acknowledged = BTreeMap::new();
    let (mut refused, mut gave_up) = (Vec::new(), 0);
    for task in tasks {
        let seen = task.await.unwrap();
        for (id, quantity) in seen.acknowledged {
            assert!(acknowledged.insert(id, quantity).is_none(), "a reservation id acknowledged twice");
        }
        refused.extend(seen.refused);
        gave_up += seen.gave_up;
    }

    // The stream, folded event by event: never more reserved than on hand.
    let stream = CommandHandler::<StockItem>::stream_id(SKU).unwrap();
    let events = a.store().read_stream(&stream, 1, 100_000).await.unwrap();
    let mut item = StockItem::default();
    let mut in_stream = BTreeMap::new();
    for stored in &events {
        let event: StockEvent = ordo_core::decode_event(stored).unwrap();
        item.apply(&event);
        assert!(
            item.available() >= 0,
            "oversold at version {}: {} reserved of {}",
            stored.version,
            item.reserved(),
            item.on_hand
        );
        if let StockEvent::Reserved { reservation_id, quantity } = event {
            assert!(in_stream.insert(reservation_id, quantity).is_none(), "a reservation in the stream twice");
        }
    }
    let sold: i64 = acknowledged.values().sum();
    assert!(sold <= STOCK, "oversold: {sold} units acknowledged of {STOCK}");
    assert_eq!(in_stream, acknowledged, "the stream holds exactly the acknowledged reservations");
    assert_eq!(sold, STOCK, "sold out exactly");
    for (available, requested) in &refused {
        assert!(requested > available, "refused {requested} with {available} available");
    }

    let (sa, sb): (HandlerStats, HandlerStats) = (a.stats(), b.stats());
    println!(
        "{}: {} reservations, {} refusals, {gave_up} gave up; node a {sa:?}, node b {sb:?}",
        db.backend(),
        acknowledged.len(),
        refused.len()
    );
    assert!(sa.conflicts + sb.conflicts > 0, "the nodes raced: some appends lost to the other node");
    assert!(sa.retries + sb.retries > 0, "and were decided again");
}

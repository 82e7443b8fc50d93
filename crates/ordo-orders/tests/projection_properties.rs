//! Property: for random command sequences on a few orders, the order read model
//! equals an independent oracle row by row — each order's stream folded through the
//! `Order` aggregate itself (status, items, total, customer, version, place in the
//! listing) — after incremental application (in small batches, as events arrive) and
//! again after a rebuild from scratch, on both backends. A projector that writes
//! nothing, drops an event or folds one wrongly fails it, even if it does so the same
//! way in both modes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use ordo_core::{decode_event, Aggregate, CommandHandler, CommandRequest, HandlerConfig};
use ordo_orders::read_model::{self, ListOrders, OrderSummary, ORDER_SUMMARIES};
use ordo_orders::testing::Step;
use ordo_orders::{Order, OrderEvent, OrderStatus};
use ordo_projection::{ProjectionRuntime, ReadDb, RunnerConfig};
use ordo_store::testing::{run, TestDatabase};
use ordo_store::{Backend, EventStore, Position};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The orders a sequence works on.
const ORDERS: u8 = 4;

/// One row of `order_summaries`, as the oracle predicts it.
#[derive(Debug, PartialEq)]
struct Row {
    customer_id: String,
    status: OrderStatus,
    /// (SKU, quantity, unit price), by SKU.
    items: Vec<(String, u32, i64)>,
    total_cents: i64,
    version: u64,
    created_position: Position,
}

fn order_id(order: u8) -> String {
    format!("p{order}")
}

/// The oracle: every order's events, decoded and folded by `Order::apply`.
async fn oracle(store: &dyn EventStore) -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    for id in (0..ORDERS).map(order_id) {
        let events = store.read_stream(&CommandHandler::<Order>::stream_id(&id).unwrap(), 1, 100_000).await.unwrap();
        let (Some(first), Some(last)) = (events.first(), events.last()) else { continue };
        let mut order = Order::default();
        for stored in &events {
            order.apply(&decode_event::<OrderEvent>(stored).unwrap());
        }
        let row = Row {
            status: order.status.expect("an order stream starts with its creation"),
            items: order.items.iter().map(|(sku, line)| (sku.clone(), line.quantity, line.unit_price_cents)).collect(),
            customer_id: order.customer_id,
            total_cents: order.total_cents,
            version: last.version,
            created_position: first.position,
        };
        rows.insert(id, row);
    }
    rows
}

/// What the read model shows, in the oracle's terms.
fn rows(summaries: &[OrderSummary]) -> BTreeMap<String, Row> {
    summaries
        .iter()
        .map(|s| {
            let row = Row {
                customer_id: s.customer_id.clone(),
                status: s.status,
                items: s.items.iter().map(|i| (i.sku.clone(), i.quantity, i.unit_price_cents)).collect(),
                total_cents: s.total_cents,
                version: s.version,
                created_position: s.created_position,
            };
            (s.order_id.clone(), row)
        })
        .collect()
}

async fn listing(db: &ReadDb) -> Vec<OrderSummary> {
    read_model::list_orders(db, &ListOrders { limit: 500, ..ListOrders::default() }).await.unwrap().orders
}

async fn read_model_equals_the_aggregate(db: TestDatabase, steps: Vec<(u8, Step)>) {
    let database = db.open().await;
    let store = Arc::clone(&database.store);
    let config = RunnerConfig { batch_size: 3, poll_interval: Duration::from_millis(20), ..RunnerConfig::default() };
    let rt = ProjectionRuntime::open(database, ordo_orders::projectors(), config).await.unwrap();
    let handler = CommandHandler::<Order>::new(Arc::clone(&store), HandlerConfig::default());
    rt.start().await.unwrap();
    // Two orders exist in every case; the others only if the sequence creates them.
    let created = (0..2).map(|order| (order, support::create(&format!("c-{order}"))));
    let (mut accepted, mut last) = (0, 0);
    for (order, step) in created.chain(steps) {
        let id = order_id(order);
        let (_, state) = handler.load(&CommandHandler::<Order>::stream_id(&id).unwrap()).await.unwrap();
        if let Ok(done) = handler.handle(CommandRequest::new(id, step.command(&state))).await {
            accepted += 1;
            last = last.max(done.position);
        }
    }
    assert!(accepted >= 2, "the creations were accepted");
    assert!(rt.wait_for_position(ORDER_SUMMARIES, last, Duration::from_secs(30)).await.unwrap());
    let expected = oracle(&*store).await;
    assert!(expected.len() >= 2, "the oracle expects the orders created");
    let incremental = listing(rt.db()).await;
    assert_eq!(rows(&incremental), expected, "incremental application vs. the aggregate");
    rt.rebuild(ORDER_SUMMARIES, |_| {}).await.unwrap();
    let rebuilt = listing(rt.db()).await;
    rt.shutdown().await;
    assert_eq!(rows(&rebuilt), expected, "a rebuild from scratch vs. the aggregate");
    assert_eq!(incremental, rebuilt, "the rebuild changed nothing, timestamps included");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn the_read_model_equals_the_aggregate_incrementally_and_after_a_rebuild(
        steps in prop::collection::vec((0..ORDERS, support::any_step()), 1..40)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let steps = steps.clone();
            let name = "the_read_model_equals_the_aggregate_incrementally_and_after_a_rebuild";
            runtime.block_on(run(backend, name, move |db| read_model_equals_the_aggregate(db, steps)));
        }
    }
}

//! Property: for command sequences on a few orders — fixed tours through every event
//! type, then random steps — the order read model equals an independent oracle row
//! by row — each order's stream folded through the
//! `Order` aggregate itself (status, items, total, customer, version, place in the
//! listing) — after incremental application (in small batches, as events arrive) and
//! again after a rebuild from scratch, on both backends. A projector that writes
//! nothing, drops an event or folds one wrongly fails it, even if it does so the same
//! way in both modes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use ordo_core::{decode_event, Aggregate, CommandHandler, CommandRequest, HandlerConfig, Outcome};
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

/// The orders a case works on: `p0` and `p1` go through fixed tours that emit every
/// event type, `p2` is created and then takes random steps, as does `p3` if a random
/// step creates it.
const ORDERS: u8 = 4;

/// Every event type at least once, whatever the random part does: `p0` from creation
/// to delivery (adding to a line and removing one on the way), `p1` cancelled.
fn tours() -> Vec<(u8, Step)> {
    use ordo_orders::values::{CancelReason, Quantity, Sku, TrackingNumber, UnitPrice};
    use ordo_orders::OrderCommand as C;
    let add = |sku: &str, quantity: i64, price: i64| {
        Step::Command(C::AddItem {
            sku: Sku::parse(sku).unwrap(),
            quantity: Quantity::new(quantity).unwrap(),
            unit_price: UnitPrice::new(price).unwrap(),
        })
    };
    let p0 = [
        support::create("c-0"),
        add("A", 2, 150),
        add("B", 1, 1_000),
        add("A", 1, 999), // adds to A's line, at A's first price
        Step::Command(C::RemoveItem { sku: Sku::parse("B").unwrap() }),
        Step::Command(C::PlaceOrder),
        Step::PayTotal,
        Step::Command(C::ShipOrder { tracking_number: TrackingNumber::parse("T-1").unwrap() }),
        Step::Command(C::DeliverOrder),
    ];
    let p1 = [
        support::create("c-1"),
        add("C", 3, 7),
        Step::Command(C::CancelOrder { reason: CancelReason::parse("changed my mind").unwrap() }),
    ];
    let p2 = [support::create("c-2")];
    let tours = p0.into_iter().map(|s| (0, s)).chain(p1.into_iter().map(|s| (1, s)));
    tours.chain(p2.into_iter().map(|s| (2, s))).collect()
}

/// One row of `order_summaries`, as the oracle predicts it.
#[derive(Debug, PartialEq)]
struct Row {
    customer_id: String,
    status: OrderStatus,
    /// (SKU, quantity, unit price), by SKU.
    items: Vec<(String, u32, i64)>,
    /// The amount due.
    total_cents: i64,
    discount_percent: u8,
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
            discount_percent: order.discount_percent,
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
                discount_percent: s.discount_percent,
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

/// The command `step` is against order `order`'s current state, sent.
async fn send(handler: &CommandHandler<Order>, order: u8, step: &Step) -> Outcome<Order> {
    let id = order_id(order);
    let (_, state) = handler.load(&CommandHandler::<Order>::stream_id(&id).unwrap()).await.unwrap();
    handler.handle(CommandRequest::new(id, step.command(&state))).await
}

async fn read_model_equals_the_aggregate(db: TestDatabase, steps: Vec<(u8, Step)>) {
    let database = db.open().await;
    let store = Arc::clone(&database.store);
    let config = RunnerConfig { batch_size: 3, poll_interval: Duration::from_millis(20), ..RunnerConfig::default() };
    let rt = ProjectionRuntime::open(database, ordo_orders::projectors(), config).await.unwrap();
    let handler = CommandHandler::<Order>::new(Arc::clone(&store), HandlerConfig::default());
    rt.start().await.unwrap();
    let mut last = 0;
    for (order, step) in tours() {
        let done = send(&handler, order, &step).await;
        last = done.unwrap_or_else(|e| panic!("a step of the tours was refused: {step:?}: {e}")).position;
    }
    for (order, step) in steps {
        if let Ok(done) = send(&handler, order, &step).await {
            last = last.max(done.position);
        }
    }
    if !rt.wait_for_position(ORDER_SUMMARIES, last, Duration::from_secs(30)).await.unwrap() {
        panic!("the read model did not reach position {last}: {:?}", rt.statuses().await.unwrap());
    }
    let expected = oracle(&*store).await;
    let statuses: Vec<OrderStatus> = expected.values().map(|row| row.status).collect();
    assert!(
        statuses.starts_with(&[OrderStatus::Delivered, OrderStatus::Cancelled]),
        "the tours ended as they should: {statuses:?}"
    );
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
        steps in prop::collection::vec((2..ORDERS, support::any_step()), 1..40)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let steps = steps.clone();
            let name = "the_read_model_equals_the_aggregate_incrementally_and_after_a_rebuild";
            runtime.block_on(run(backend, name, move |db| read_model_equals_the_aggregate(db, steps)));
        }
    }
}

//! The order read model on both backends: it follows commands, waits for a version
//! (read-your-writes), pages stably, and repairs one order alone. The runtime's own
//! guarantees (exactly-once effect, failures, status, rebuilds under load) are tested
//! in `ordo-projection/tests` with a projector of its own; the read model against an
//! independent oracle in `projection_properties.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_core::{CommandHandler, CommandRequest, HandlerConfig};
use ordo_orders::read_model::{self, ListOrders, OrderSummary, OrderWait, ORDER_SUMMARIES};
use ordo_orders::values::{CustomerId, Quantity, Sku, UnitPrice};
use ordo_orders::{Order, OrderCommand, OrderStatus};
use ordo_projection::{ProjectionRuntime, RunnerConfig};
use ordo_store::testing::{backend_test, TestDatabase};
use std::sync::Arc;
use std::time::Duration;

fn create(customer: &str) -> OrderCommand {
    OrderCommand::CreateOrder { customer_id: CustomerId::parse(customer).unwrap() }
}

fn add(sku: &str, quantity: i64, price: i64) -> OrderCommand {
    OrderCommand::AddItem {
        sku: Sku::parse(sku).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
        unit_price: UnitPrice::new(price).unwrap(),
    }
}

async fn orders_runtime(db: &TestDatabase) -> (ProjectionRuntime, Arc<CommandHandler<Order>>) {
    let config = RunnerConfig { batch_size: 7, poll_interval: Duration::from_millis(50), ..RunnerConfig::default() };
    let rt = ProjectionRuntime::open(db.open().await, ordo_orders::projectors(), config).await.unwrap();
    let handler = Arc::new(CommandHandler::new(Arc::clone(rt.store()), HandlerConfig::default()));
    (rt, handler)
}

fn reached(wait: OrderWait) -> OrderSummary {
    match wait {
        OrderWait::Reached(summary) => summary,
        OrderWait::Behind(held) => panic!("the read model stayed behind: {held:?}"),
    }
}

#[backend_test]
async fn the_order_read_model_follows_commands(db: TestDatabase) {
    let (rt, h) = orders_runtime(&db).await;
    rt.start().await.unwrap();
    h.handle(CommandRequest::new("r1", create("alice"))).await.unwrap();
    h.handle(CommandRequest::new("r1", add("A", 2, 150))).await.unwrap();
    h.handle(CommandRequest::new("r1", add("B", 1, 1000))).await.unwrap();
    h.handle(CommandRequest::new("r1", add("A", 1, 150))).await.unwrap();
    h.handle(CommandRequest::new("r1", OrderCommand::RemoveItem { sku: Sku::parse("B").unwrap() })).await.unwrap();
    let placed = h.handle(CommandRequest::new("r1", OrderCommand::PlaceOrder)).await.unwrap();
    let summary =
        reached(read_model::wait_for_order(&rt, "r1", placed.version, Duration::from_secs(20)).await.unwrap());
    assert_eq!(summary.customer_id, "alice");
    assert_eq!(summary.status, OrderStatus::Placed);
    assert_eq!(summary.total_cents, 450);
    assert_eq!(summary.version, 6);
    assert_eq!(summary.items.len(), 1);
    assert_eq!(
        (summary.items[0].sku.as_str(), summary.items[0].quantity, summary.items[0].unit_price_cents),
        ("A", 3, 150)
    );
    assert!(read_model::get_order(rt.db(), "unknown").await.unwrap().is_none());
    rt.shutdown().await;
}

#[backend_test]
async fn read_your_writes_waits_for_the_version(db: TestDatabase) {
    let (rt, h) = orders_runtime(&db).await;
    rt.prepare().await.unwrap();
    let created = h.handle(CommandRequest::new("w1", create("bob"))).await.unwrap();
    // No runner yet: the wait runs out and says what it has (nothing).
    let early = read_model::wait_for_order(&rt, "w1", created.version, Duration::from_millis(200)).await.unwrap();
    assert_eq!(early, OrderWait::Behind(None));
    rt.start().await.unwrap();
    let seen = reached(read_model::wait_for_order(&rt, "w1", created.version, Duration::from_secs(20)).await.unwrap());
    assert_eq!(seen.version, 1);
    let added = h.handle(CommandRequest::new("w1", add("A", 1, 5))).await.unwrap();
    let seen = reached(read_model::wait_for_order(&rt, "w1", added.version, Duration::from_secs(20)).await.unwrap());
    assert_eq!((seen.version, seen.total_cents), (2, 5));
    assert!(rt.wait_for_position(ORDER_SUMMARIES, added.position, Duration::from_secs(20)).await.unwrap());
    rt.shutdown().await;
}

#[backend_test]
async fn listing_pages_are_stable(db: TestDatabase) {
    let (rt, h) = orders_runtime(&db).await;
    rt.start().await.unwrap();
    let mut last = 0;
    for i in 0..23 {
        let customer = if i % 2 == 0 { "even" } else { "odd" };
        last = h.handle(CommandRequest::new(format!("l{i:02}"), create(customer))).await.unwrap().position;
        if i % 3 == 0 {
            h.handle(CommandRequest::new(format!("l{i:02}"), add("A", 1, 1))).await.unwrap();
            last = h.handle(CommandRequest::new(format!("l{i:02}"), OrderCommand::PlaceOrder)).await.unwrap().position;
        }
    }
    assert!(rt.wait_for_position(ORDER_SUMMARIES, last, Duration::from_secs(20)).await.unwrap());
    let list = |customer: Option<&str>, status: Option<OrderStatus>, cursor: Option<String>| ListOrders {
        customer_id: customer.map(str::to_owned),
        status,
        limit: 5,
        cursor,
    };
    let mut seen: Vec<OrderSummary> = Vec::new();
    let mut cursor = None;
    loop {
        let page = read_model::list_orders(rt.db(), &list(Some("even"), None, cursor)).await.unwrap();
        assert!(page.orders.len() <= 5);
        seen.extend(page.orders);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 12);
    assert!(seen.iter().all(|o| o.customer_id == "even"));
    let ids: Vec<&str> = seen.iter().map(|o| o.order_id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "in creation order, each once");
    let placed = read_model::list_orders(
        rt.db(),
        &ListOrders { status: Some(OrderStatus::Placed), limit: 500, ..ListOrders::default() },
    )
    .await
    .unwrap();
    assert_eq!(placed.orders.len(), 8);
    assert!(placed.next_cursor.is_none());
    assert!(read_model::list_orders(rt.db(), &list(None, None, Some("garbage".into()))).await.is_err());
    rt.shutdown().await;
}

#[backend_test]
async fn one_stream_can_be_rebuilt_alone(db: TestDatabase) {
    let (rt, h) = orders_runtime(&db).await;
    rt.start().await.unwrap();
    h.handle(CommandRequest::new("s1", create("c"))).await.unwrap();
    h.handle(CommandRequest::new("s1", add("A", 2, 7))).await.unwrap();
    let last = h.handle(CommandRequest::new("s2", create("c"))).await.unwrap();
    assert!(rt.wait_for_position(ORDER_SUMMARIES, last.position, Duration::from_secs(20)).await.unwrap());
    rt.shutdown().await;
    // Damage one row behind the projector's back.
    rt.db()
        .transaction(|mut tx| {
            Box::pin(async move {
                tx.execute("UPDATE order_summaries SET total_cents = 999 WHERE order_id = 's1'", &[]).await.map(drop)
            })
        })
        .await
        .unwrap();
    let stream = CommandHandler::<Order>::stream_id("s1").unwrap();
    assert_eq!(rt.rebuild_stream(ORDER_SUMMARIES, &stream).await.unwrap(), 2);
    let repaired = read_model::get_order(rt.db(), "s1").await.unwrap().unwrap();
    assert_eq!((repaired.total_cents, repaired.version), (14, 2));
    assert!(read_model::get_order(rt.db(), "s2").await.unwrap().is_some(), "other rows untouched");
}

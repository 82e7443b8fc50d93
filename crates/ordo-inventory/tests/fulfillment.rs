//! The order-fulfillment process manager on both backends: placed orders reserve
//! their stock, an order that cannot be reserved is cancelled with the reason and its
//! reservations released, a cancelled order releases, a shipped one commits; orders
//! placed before it was switched on are left alone; and a redelivery of everything it
//! reacted to (its checkpoint rewound) has no second effect.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use ordo_core::{CommandHandler, HandlerConfig};
use ordo_inventory::fulfillment::{OrderFulfillment, ORDER_FULFILLMENT};
use ordo_inventory::read_model::{get_stock_level, STOCK_LEVELS};
use ordo_inventory::StockEvent;
use ordo_orders::OrderEvent;
use ordo_projection::{ProjectionRuntime, Reactor};
use ordo_store::testing::{backend_test, eventually, TestDatabase};
use ordo_store::{EventStore, Position};
use std::sync::Arc;
use std::time::Duration;
use support::{config, fulfillment, order_events, stock_events, stock_of, Shop};

/// A runtime with the stock read model and a fresh process manager (returned too, for
/// its stats).
async fn runtime(db: &TestDatabase) -> (ProjectionRuntime, Arc<OrderFulfillment>) {
    let database = db.open().await;
    let store = || Arc::clone(&database.store);
    let orders = Arc::new(CommandHandler::new(store(), HandlerConfig::default()));
    let stock = Arc::new(CommandHandler::new(store(), HandlerConfig::default()));
    let process = Arc::new(OrderFulfillment::new(orders, stock));
    let reactors: Vec<Arc<dyn Reactor>> = vec![process.clone()];
    let runtime =
        ProjectionRuntime::open_with(database, ordo_inventory::projectors(), reactors, config()).await.unwrap();
    (runtime, process)
}

/// Waits until the process manager has reacted to everything up to `position` and to
/// everything its reactions caused.
async fn settled(runtime: &ProjectionRuntime, position: Position) {
    eventually(Duration::from_secs(30), "the process manager reacts to everything", || async {
        let status = fulfillment(runtime).await;
        status.position >= position && status.lag == 0
    })
    .await;
}

/// The scenario: o0 placed before the process manager runs; o1 reserved; o2 short of
/// C, so cancelled and its A released; o3 shipped, so its A committed; o4 cancelled by
/// its customer, so its B released. Returns where the process manager started, and
/// the last position the shop wrote.
async fn shop_a_day(store: Arc<dyn EventStore>, runtime: &ProjectionRuntime) -> (Position, Position) {
    let shop = Shop::new(store);
    shop.restock("A", 5).await;
    shop.restock("B", 5).await;
    shop.restock("C", 1).await;
    let before = shop.place("o0", &[("A", 1)]).await;
    // `StartFrom::Now` starts after what `$all` readers can see.
    ordo_store::testing::settle(&**runtime.store(), before).await;
    runtime.start().await.unwrap();
    let started = fulfillment(runtime).await.position;
    shop.place("o1", &[("A", 2), ("B", 1)]).await;
    shop.place("o2", &[("A", 1), ("C", 2)]).await;
    shop.place("o3", &[("A", 1)]).await;
    shop.pay_and_ship("o3").await;
    shop.place("o4", &[("B", 1)]).await;
    (started, shop.cancel("o4").await)
}

fn sorted(mut events: Vec<StockEvent>) -> Vec<String> {
    let mut named: Vec<String> = events.drain(..).map(|e| format!("{e:?}")).collect();
    named.sort();
    named
}

fn reserved(order: &str, quantity: i64) -> StockEvent {
    StockEvent::Reserved { reservation_id: format!("order-{order}"), quantity }
}
fn released(order: &str, quantity: i64) -> StockEvent {
    StockEvent::Released { reservation_id: format!("order-{order}"), quantity }
}

#[backend_test]
async fn placed_orders_reserve_short_ones_are_cancelled_and_reservations_follow_the_order(db: TestDatabase) {
    let (rt, process) = runtime(&db).await;
    let store = Arc::clone(rt.store());
    let (_, last) = shop_a_day(Arc::clone(&store), &rt).await;
    settled(&rt, last).await;

    let restocked = |quantity| StockEvent::Restocked { quantity };
    let a = vec![
        restocked(5),
        reserved("o1", 2),
        reserved("o2", 1),
        released("o2", 1),
        reserved("o3", 1),
        StockEvent::ReservationCommitted { reservation_id: "order-o3".into(), quantity: 1 },
    ];
    assert_eq!(sorted(stock_events(&*store, "A").await), sorted(a), "A: each effect once");
    let b = vec![restocked(5), reserved("o1", 1), reserved("o4", 1), released("o4", 1)];
    assert_eq!(sorted(stock_events(&*store, "B").await), sorted(b), "B: each effect once");
    assert_eq!(stock_events(&*store, "C").await, vec![restocked(1)], "C: nothing reserved");
    assert_eq!(stock_of(&*store, "A").await, (4, vec![("order-o1".into(), 2)]));
    assert_eq!(stock_of(&*store, "B").await, (5, vec![("order-o1".into(), 1)]));

    let o2 = order_events(&*store, "o2").await;
    let cancellations: Vec<&OrderEvent> =
        o2.iter().filter(|e| matches!(e, OrderEvent::OrderCancelled { .. })).collect();
    assert_eq!(cancellations.len(), 1, "o2 cancelled once: {o2:?}");
    assert!(
        matches!(cancellations[0], OrderEvent::OrderCancelled { reason } if reason.contains("C could not be reserved")),
        "with the reason: {cancellations:?}"
    );
    for id in ["o1", "o3"] {
        let events = order_events(&*store, id).await;
        assert!(!events.iter().any(|e| matches!(e, OrderEvent::OrderCancelled { .. })), "{id} was not cancelled");
    }

    // The read model agrees.
    let head = store.head_position().await.unwrap();
    assert!(rt.wait_for_position(STOCK_LEVELS, head, Duration::from_secs(30)).await.unwrap());
    let level = get_stock_level(rt.db(), "A").await.unwrap().unwrap();
    assert_eq!((level.on_hand, level.reserved, level.available), (4, 2, 2));
    let stats = process.stats();
    assert_eq!(stats.replayed, 0, "nothing was delivered twice: {stats:?}");
    rt.shutdown().await;
}

#[backend_test]
async fn redelivered_events_replay_instead_of_acting_twice(db: TestDatabase) {
    let (rt, first) = runtime(&db).await;
    let store = Arc::clone(rt.store());
    let (started, last) = shop_a_day(Arc::clone(&store), &rt).await;
    settled(&rt, last).await;
    let reacted_to = fulfillment(&rt).await.position;
    rt.shutdown().await;
    let streams = ["A", "B", "C"];
    let orders = ["o0", "o1", "o2", "o3", "o4"];
    let mut before = Vec::new();
    for sku in streams {
        before.push(format!("{:?}", stock_events(&*store, sku).await));
    }
    for id in orders {
        before.push(format!("{:?}", order_events(&*store, id).await));
    }

    // Deliver everything again: the checkpoint back to where the process manager
    // started (as a crash just before its first checkpoint move would leave it).
    let started = i64::try_from(started).unwrap();
    rt.db()
        .transaction(move |mut tx| {
            Box::pin(async move {
                tx.execute(
                    "UPDATE projection_checkpoints SET position = $1 WHERE name = $2",
                    &[started.into(), ORDER_FULFILLMENT.into()],
                )
                .await?;
                Ok::<_, ordo_projection::ProjectionError>(())
            })
        })
        .await
        .unwrap();
    let (again, second) = runtime(&db).await;
    again.start().await.unwrap();
    settled(&again, reacted_to).await;
    again.shutdown().await;

    let mut after = Vec::new();
    for sku in streams {
        after.push(format!("{:?}", stock_events(&*store, sku).await));
    }
    for id in orders {
        after.push(format!("{:?}", order_events(&*store, id).await));
    }
    assert_eq!(after, before, "the redelivery changed nothing");
    let (once, twice) = (first.stats(), second.stats());
    assert_eq!(twice.reactions, once.reactions, "the same events: {once:?} then {twice:?}");
    assert_eq!(twice.commands, once.commands, "the same commands: {once:?} then {twice:?}");
    assert_eq!(twice.replayed, twice.commands, "every one a replay: {twice:?}");
}

//! Discounts in the read model, on both backends: `order_summaries` shows the percent
//! and the amount due, and a table of the read model's first version (made before
//! discounts) is rebuilt when the runtime starts, since the projector's version moved.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_core::{CommandHandler, CommandRequest, HandlerConfig};
use ordo_orders::read_model::{self, OrderSummary, OrderWait, ORDER_SUMMARIES};
use ordo_orders::values::{CustomerId, DiscountPercent, Quantity, Sku, UnitPrice};
use ordo_orders::{Order, OrderCommand};
use ordo_projection::{ProjectionRuntime, ProjectorState, RunnerConfig};
use ordo_store::testing::{backend_test, eventually, TestDatabase};
use std::sync::Arc;
use std::time::Duration;

fn config() -> RunnerConfig {
    RunnerConfig { poll_interval: Duration::from_millis(20), ..RunnerConfig::default() }
}

async fn runtime(db: &TestDatabase) -> ProjectionRuntime {
    ProjectionRuntime::open(db.open().await, ordo_orders::projectors(), config()).await.unwrap()
}

fn add(sku: &str, quantity: i64, price: i64) -> OrderCommand {
    OrderCommand::AddItem {
        sku: Sku::parse(sku).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
        unit_price: UnitPrice::new(price).unwrap(),
    }
}

/// Runs `commands` on order `id`; returns the version after the last.
async fn run(handler: &CommandHandler<Order>, id: &str, commands: Vec<OrderCommand>) -> u64 {
    let mut version = 0;
    for command in commands {
        version = handler.handle(CommandRequest::new(id, command)).await.unwrap().version;
    }
    version
}

async fn summary(rt: &ProjectionRuntime, id: &str, version: u64) -> OrderSummary {
    match read_model::wait_for_order(rt, id, version, Duration::from_secs(20)).await.unwrap() {
        OrderWait::Reached(summary) => summary,
        OrderWait::Behind(held) => panic!("the read model stayed behind: {held:?}"),
    }
}

#[backend_test]
async fn a_discounted_order_shows_its_percent_and_the_amount_due(db: TestDatabase) {
    let rt = runtime(&db).await;
    rt.start().await.unwrap();
    let handler = CommandHandler::<Order>::new(Arc::clone(rt.store()), HandlerConfig::default());
    let create = OrderCommand::CreateOrder { customer_id: CustomerId::parse("c-1").unwrap() };
    let discount = OrderCommand::ApplyDiscount { percent: DiscountPercent::new(15).unwrap() };
    let version = run(&handler, "d-1", vec![create, add("A", 1, 999), discount, add("B", 2, 500)]).await;
    let seen = summary(&rt, "d-1", version).await;
    // Subtotal 1999; 15 % of it is 299.85, so 299 off.
    assert_eq!((seen.discount_percent, seen.total_cents), (15, 1700));
    let plain = OrderCommand::CreateOrder { customer_id: CustomerId::parse("c-1").unwrap() };
    let version = run(&handler, "d-2", vec![plain, add("A", 1, 999)]).await;
    let seen = summary(&rt, "d-2", version).await;
    assert_eq!((seen.discount_percent, seen.total_cents), (0, 999));
    rt.shutdown().await;
}

#[backend_test]
async fn a_read_model_of_the_first_version_is_rebuilt_when_the_runtime_starts(db: TestDatabase) {
    // Orders projected before discounts existed.
    let rt = runtime(&db).await;
    rt.start().await.unwrap();
    let handler = CommandHandler::<Order>::new(Arc::clone(rt.store()), HandlerConfig::default());
    let mut before = Vec::new();
    for i in 0..3 {
        let id = format!("o-{i}");
        let create = OrderCommand::CreateOrder { customer_id: CustomerId::parse("c-1").unwrap() };
        let version = run(&handler, &id, vec![create, add("A", i + 1, 250), OrderCommand::PlaceOrder]).await;
        before.push(summary(&rt, &id, version).await);
    }
    rt.shutdown().await;
    // What a database of the first version holds: the table without the column, the
    // checkpoint's version 1.
    rt.db()
        .transaction(|mut tx| {
            Box::pin(async move {
                tx.execute(&format!("ALTER TABLE {ORDER_SUMMARIES} DROP COLUMN discount_percent"), &[]).await?;
                tx.execute(
                    "UPDATE projection_checkpoints SET read_model_version = 1 WHERE name = $1",
                    &[ORDER_SUMMARIES.into()],
                )
                .await?;
                Ok::<_, ordo_projection::ProjectionError>(())
            })
        })
        .await
        .unwrap();
    assert!(read_model::get_order(rt.db(), "o-0").await.is_err(), "the old table lacks discount_percent");

    // A runner on it, without the upgrade `start` makes, refuses to write into it.
    let stale = runtime(&db).await;
    stale.resume(ORDER_SUMMARIES).await.unwrap();
    eventually(Duration::from_secs(20), "the projector refuses the old read model", || async {
        let status = stale.statuses().await.unwrap().remove(0);
        status.status == ProjectorState::Failed
            && status.error.is_some_and(|e| e.message.contains("version 1") && e.message.contains("rebuild it"))
    })
    .await;
    stale.shutdown().await;

    // `start` rebuilds it first: the rows are as before, with the new column.
    let upgraded = runtime(&db).await;
    upgraded.start().await.unwrap();
    for summary in &before {
        let now = read_model::get_order(upgraded.db(), &summary.order_id).await.unwrap();
        assert_eq!(now.as_ref(), Some(summary), "rebuilt as it was");
    }
    let status = upgraded.statuses().await.unwrap().remove(0);
    assert_ne!(status.status, ProjectorState::Failed, "{:?}", status.error);
    // And it runs on: a discount now shows.
    let create = OrderCommand::CreateOrder { customer_id: CustomerId::parse("c-1").unwrap() };
    let discount = OrderCommand::ApplyDiscount { percent: DiscountPercent::new(50).unwrap() };
    let version = run(&handler, "o-new", vec![create, add("A", 1, 301), discount]).await;
    let seen = summary(&upgraded, "o-new", version).await;
    assert_eq!((seen.discount_percent, seen.total_cents), (50, 151));
    upgraded.shutdown().await;
}

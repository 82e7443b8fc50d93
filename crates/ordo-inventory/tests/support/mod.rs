//! What the fulfillment tests share: a shop (order and stock handlers), orders placed
//! in one call, streams read back as domain events, and the process manager's status.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // test support: a failed unwrap is a failed test

use ordo_core::{decode_event, CommandHandler, CommandRequest, DomainEvent, HandlerConfig};
use ordo_inventory::fulfillment::ORDER_FULFILLMENT;
use ordo_inventory::values::StockQuantity;
use ordo_inventory::{StockCommand, StockEvent, StockItem};
use ordo_orders::values::{CancelReason, CustomerId, Quantity, Sku, TrackingNumber, UnitPrice};
use ordo_orders::{Order, OrderCommand, OrderEvent};
use ordo_projection::{ProjectionRuntime, ProjectorStatus, RunnerConfig};
use ordo_store::{EventStore, Position, StreamId};
use std::sync::Arc;
use std::time::Duration;

pub fn config() -> RunnerConfig {
    RunnerConfig {
        poll_interval: Duration::from_millis(20),
        retry_base: Duration::from_millis(10),
        lease_retry: Duration::from_millis(100),
        ..RunnerConfig::default()
    }
}

/// The customers' and the warehouse's side: commands sent as a client would.
pub struct Shop {
    pub orders: CommandHandler<Order>,
    pub stock: CommandHandler<StockItem>,
}

impl Shop {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            orders: CommandHandler::new(Arc::clone(&store), HandlerConfig::default()),
            stock: CommandHandler::new(store, HandlerConfig::default()),
        }
    }

    pub async fn restock(&self, sku: &str, quantity: i64) {
        let restock = StockCommand::Restock { quantity: StockQuantity::new(quantity).unwrap() };
        self.stock.handle(CommandRequest::new(sku, restock)).await.unwrap();
    }

    async fn order(&self, id: &str, command: OrderCommand) -> Position {
        self.orders.handle(CommandRequest::new(id, command)).await.unwrap().position
    }

    /// Creates order `id` with `lines` (SKU, quantity) at 100 cents each and places it.
    pub async fn place(&self, id: &str, lines: &[(&str, i64)]) -> Position {
        self.order(id, OrderCommand::CreateOrder { customer_id: CustomerId::parse("c-1").unwrap() }).await;
        for (sku, quantity) in lines {
            let add = OrderCommand::AddItem {
                sku: Sku::parse(sku).unwrap(),
                quantity: Quantity::new(*quantity).unwrap(),
                unit_price: UnitPrice::new(100).unwrap(),
            };
            self.order(id, add).await;
        }
        self.order(id, OrderCommand::PlaceOrder).await
    }

    /// Pays order `id` its amount due and ships it.
    pub async fn pay_and_ship(&self, id: &str) -> Position {
        let stream = CommandHandler::<Order>::stream_id(id).unwrap();
        let (_, order) = self.orders.load(&stream).await.unwrap();
        self.order(id, OrderCommand::PayOrder { amount_cents: order.total_cents, payment_ref: None }).await;
        let tracking_number = TrackingNumber::parse("T-1").unwrap();
        self.order(id, OrderCommand::ShipOrder { tracking_number }).await
    }

    pub async fn cancel(&self, id: &str) -> Position {
        self.order(id, OrderCommand::CancelOrder { reason: CancelReason::parse("changed my mind").unwrap() }).await
    }
}

/// Every event of `stream`, decoded.
pub async fn events<E: DomainEvent>(store: &dyn EventStore, stream: &StreamId) -> Vec<E> {
    let stored = store.read_stream(stream, 1, 10_000).await.unwrap();
    stored.iter().map(|e| decode_event(e).unwrap()).collect()
}

pub async fn stock_events(store: &dyn EventStore, sku: &str) -> Vec<StockEvent> {
    events(store, &CommandHandler::<StockItem>::stream_id(sku).unwrap()).await
}

pub async fn order_events(store: &dyn EventStore, id: &str) -> Vec<OrderEvent> {
    events(store, &CommandHandler::<Order>::stream_id(id).unwrap()).await
}

/// The process manager's status in `runtime`.
pub async fn fulfillment(runtime: &ProjectionRuntime) -> ProjectorStatus {
    runtime.statuses().await.unwrap().into_iter().find(|s| s.name == ORDER_FULFILLMENT).unwrap()
}

/// The stock item `sku` now: (on hand, reservations as (id, units)).
pub async fn stock_of(store: &dyn EventStore, sku: &str) -> (i64, Vec<(String, i64)>) {
    let mut item = StockItem::default();
    for event in stock_events(store, sku).await {
        ordo_core::Aggregate::apply(&mut item, &event);
    }
    (item.on_hand, item.reservations.into_iter().collect())
}

//! The order-fulfillment process manager: orders and stock, kept in step by events.
//!
//! - An order is **placed**: reserve each of its lines (reservation id `order-{id}` on
//!   the SKU's stock item). If a reservation is refused, cancel the order with the
//!   reason, and reserve nothing more.
//! - An order placed or paid is **cancelled** (by its customer, or by the step above):
//!   release its reservations; a SKU it holds none of refuses, which is fine.
//! - An order is **shipped**: commit its reservations (the units leave the shelf).
//!
//! It is a [`Reactor`]: the projection runtime runs it as a checkpointed subscriber
//! (see [`reactors`] to switch it on). Each command carries an idempotency key derived
//! from the triggering event and its step (`ordo_process::Reaction`), so a redelivered
//! event — after a crash between the commands and the checkpoint — replays instead of
//! acting twice. It decides from the order as it was just before the event (its
//! stream up to it), so a redelivery sends the same commands.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("ordo-doc-fulfillment-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! # let url = format!("sqlite://{}", dir.join("ordo.db").display());
//! use ordo_core::{CommandHandler, CommandRequest, HandlerConfig};
//! use ordo_inventory::fulfillment::{reactors, ORDER_FULFILLMENT};
//! use ordo_inventory::values::StockQuantity;
//! use ordo_inventory::{StockCommand, StockItem};
//! use ordo_orders::values::{CustomerId, Quantity, Sku, UnitPrice};
//! use ordo_orders::{Order, OrderCommand};
//! use ordo_projection::{ProjectionRuntime, RunnerConfig};
//! use std::time::Duration;
//!
//! let db = ordo_store::open(&url).await?; // say, "sqlite://data/ordo.db"
//! let orders = CommandHandler::<Order>::new(db.store.clone(), HandlerConfig::default());
//! let stock = CommandHandler::<StockItem>::new(db.store.clone(), HandlerConfig::default());
//! let fulfillment = reactors(db.store.clone());
//! let runtime = ProjectionRuntime::open_with(db, Vec::new(), fulfillment, RunnerConfig::default()).await?;
//! runtime.start().await?;
//!
//! let restock = StockCommand::Restock { quantity: StockQuantity::new(5)? };
//! stock.handle(CommandRequest::new("MUG", restock)).await?;
//! let create = OrderCommand::CreateOrder { customer_id: CustomerId::parse("alice")? };
//! orders.handle(CommandRequest::new("o-1", create)).await?;
//! let (sku, quantity, unit_price) = (Sku::parse("MUG")?, Quantity::new(2)?, UnitPrice::new(900)?);
//! orders.handle(CommandRequest::new("o-1", OrderCommand::AddItem { sku, quantity, unit_price })).await?;
//! let placed = orders.handle(CommandRequest::new("o-1", OrderCommand::PlaceOrder)).await?;
//!
//! // Once the process manager has reacted to the placement, the units are held.
//! assert!(runtime.wait_for_position(ORDER_FULFILLMENT, placed.position, Duration::from_secs(5)).await?);
//! let (_, mug) = stock.load(&CommandHandler::<StockItem>::stream_id("MUG")?).await?;
//! assert_eq!(mug.reservations.get("order-o-1"), Some(&2));
//! assert_eq!(mug.available(), 3);
//! runtime.shutdown().await;
//! # let _ = std::fs::remove_dir_all(&dir);
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use ordo_core::{decode_event, Aggregate, CommandHandler, CommandRequest, HandlerConfig};
use ordo_orders::values::CancelReason;
use ordo_orders::{Order, OrderCommand, OrderEvent, OrderStatus};
use ordo_process::{Reaction, ReactionError, Reactor, Sent, StartFrom};
use ordo_store::{EventFilter, EventStore, RecordedEvent, READ_PAGE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::values::{ReservationId, Sku, StockQuantity};
use crate::{StockCommand, StockItem};

/// The process manager's name, which keys its checkpoint.
pub const ORDER_FULFILLMENT: &str = "order_fulfillment";

/// The order-fulfillment process manager, for a projection runtime's reactors.
pub struct OrderFulfillment {
    orders: Arc<CommandHandler<Order>>,
    stock: Arc<CommandHandler<StockItem>>,
    counters: Counters,
}

/// What the process manager did since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FulfillmentStats {
    /// Events it reacted to.
    pub reactions: u64,
    /// Commands it sent.
    pub commands: u64,
    /// Commands answered with the recorded outcome of an earlier delivery.
    pub replayed: u64,
    /// Commands refused (a domain outcome).
    pub refused: u64,
}

#[derive(Default)]
struct Counters {
    reactions: AtomicU64,
    commands: AtomicU64,
    replayed: AtomicU64,
    refused: AtomicU64,
}

/// The process managers of this crate, ready for `ProjectionRuntime::open_with`: the
/// server adds them when fulfillment is switched on, and without them nothing of the
/// order flow changes. They send their commands through handlers of their own on
/// `store`.
pub fn reactors(store: Arc<dyn EventStore>) -> Vec<Arc<dyn Reactor>> {
    let orders = Arc::new(CommandHandler::new(Arc::clone(&store), HandlerConfig::default()));
    let stock = Arc::new(CommandHandler::new(store, HandlerConfig::default()));
    vec![Arc::new(OrderFulfillment::new(orders, stock))]
}

impl OrderFulfillment {
    /// The process manager, sending its commands through `orders` and `stock`.
    pub fn new(orders: Arc<CommandHandler<Order>>, stock: Arc<CommandHandler<StockItem>>) -> Self {
        Self { orders, stock, counters: Counters::default() }
    }

    /// What it did since it was made.
    pub fn stats(&self) -> FulfillmentStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FulfillmentStats {
            reactions: get(&self.counters.reactions),
            commands: get(&self.counters.commands),
            replayed: get(&self.counters.replayed),
            refused: get(&self.counters.refused),
        }
    }

    /// Sends one step of `reaction` and counts what came of it.
    async fn send<A: Aggregate>(
        &self,
        reaction: &Reaction<'_>,
        handler: &CommandHandler<A>,
        step: &str,
        request: CommandRequest<A::Command>,
    ) -> Result<Sent<A>, ReactionError> {
        let sent = reaction.send(handler, step, request).await?;
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        if sent.replayed() {
            self.counters.replayed.fetch_add(1, Ordering::Relaxed);
        }
        if matches!(sent, Sent::Refused { .. }) {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        Ok(sent)
    }

    /// Reserves each line of the order; on the first refusal, cancels the order.
    async fn reserve(&self, reaction: &Reaction<'_>, order_id: &str, order: &Order) -> Result<(), ReactionError> {
        for (sku, line) in &order.items {
            let quantity = StockQuantity::new(i64::from(line.quantity)).map_err(ReactionError::failed)?;
            let reserve = StockCommand::Reserve { reservation_id: reservation_of(order_id)?, quantity };
            let request = CommandRequest::new(stock_id(sku)?, reserve);
            let Sent::Refused { rejection, .. } =
                self.send(reaction, &self.stock, &format!("reserve/{sku}"), request).await?
            else {
                continue;
            };
            let reason = CancelReason::parse(&format!("{sku} could not be reserved: {rejection}"))
                .map_err(ReactionError::failed)?;
            let cancel = CommandRequest::new(order_id, OrderCommand::CancelOrder { reason });
            // Refused: the order moved on (its customer cancelled it first, say).
            self.send(reaction, &self.orders, "cancel", cancel).await?;
            return Ok(());
        }
        Ok(())
    }

    /// Sends `command` for each line's reservation (release or commit); a SKU the
    /// order holds no reservation of refuses, which is fine.
    async fn settle(
        &self,
        reaction: &Reaction<'_>,
        order_id: &str,
        order: &Order,
        step: &str,
        command: fn(ReservationId) -> StockCommand,
    ) -> Result<(), ReactionError> {
        for sku in order.items.keys() {
            let request = CommandRequest::new(stock_id(sku)?, command(reservation_of(order_id)?));
            self.send(reaction, &self.stock, &format!("{step}/{sku}"), request).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Reactor for OrderFulfillment {
    fn name(&self) -> &'static str {
        ORDER_FULFILLMENT
    }

    fn filter(&self) -> EventFilter {
        EventFilter::EventTypes(vec!["OrderPlaced".into(), "OrderCancelled".into(), "OrderShipped".into()])
    }

    /// Switched on in a system with a history, it reserves nothing for old orders.
    fn start_from(&self) -> StartFrom {
        StartFrom::Now
    }

    async fn react(&self, event: &RecordedEvent) -> Result<(), ReactionError> {
        let prefix = format!("{}-", Order::CATEGORY);
        let Some(order_id) = event.stream_id.as_str().strip_prefix(&prefix) else { return Ok(()) };
        self.counters.reactions.fetch_add(1, Ordering::Relaxed);
        let reaction = Reaction::new(ORDER_FULFILLMENT, event);
        let happened: OrderEvent = decode_event(event).map_err(ReactionError::failed)?;
        let before = order_before(&**self.orders.store(), event).await?;
        match happened {
            OrderEvent::OrderPlaced { .. } => self.reserve(&reaction, order_id, &before).await,
            OrderEvent::OrderCancelled { .. }
                if matches!(before.status, Some(OrderStatus::Placed | OrderStatus::Paid)) =>
            {
                let release = |reservation_id| StockCommand::Release { reservation_id };
                self.settle(&reaction, order_id, &before, "release", release).await
            }
            OrderEvent::OrderShipped { .. } => {
                let commit = |reservation_id| StockCommand::Commit { reservation_id };
                self.settle(&reaction, order_id, &before, "commit", commit).await
            }
            _ => Ok(()),
        }
    }
}

/// The order as it was just before `event`: its stream's events before it, folded.
/// The same whenever the event is delivered, unlike the order's current state.
async fn order_before(store: &dyn EventStore, event: &RecordedEvent) -> Result<Order, ReactionError> {
    let read = |e: &dyn std::fmt::Display| ReactionError::transient(format!("reading {}: {e}", event.stream_id));
    let mut order = Order::default();
    let mut next = 1;
    while next < event.version {
        let page = store.read_stream(&event.stream_id, next, READ_PAGE).await.map_err(|e| read(&e))?;
        let Some(last) = page.last().map(|e| e.version) else { break };
        for stored in page.iter().filter(|e| e.version < event.version) {
            order.apply(&decode_event(stored).map_err(ReactionError::failed)?);
        }
        next = last + 1;
    }
    Ok(order)
}

/// The reservation an order holds on each of its SKUs.
fn reservation_of(order_id: &str) -> Result<ReservationId, ReactionError> {
    ReservationId::parse(&format!("order-{order_id}")).map_err(ReactionError::failed)
}

/// The stock item of an order line's SKU (an order's SKU has the same bounds).
fn stock_id(sku: &str) -> Result<String, ReactionError> {
    Sku::parse(sku).map(String::from).map_err(ReactionError::failed)
}

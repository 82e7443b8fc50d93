//! The sample domain: an order from draft to delivery. [`Order`] is the aggregate;
//! [`values`] holds the checked value types that commands are built from, so that an
//! invalid SKU or quantity cannot reach a decision. [`read_model`] keeps one summary
//! row per order for queries; [`projectors`] hands it to a projection runtime.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("ordo-doc-orders-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! # let url = format!("sqlite://{}", dir.join("ordo.db").display());
//! use ordo_core::{CommandHandler, CommandRequest, HandlerConfig};
//! use ordo_orders::read_model::{wait_for_order, OrderWait};
//! use ordo_orders::values::{CustomerId, Quantity, Sku, UnitPrice};
//! use ordo_orders::{Order, OrderCommand, OrderStatus};
//! use ordo_projection::{ProjectionRuntime, RunnerConfig};
//! use std::time::Duration;
//!
//! let db = ordo_store::open(&url).await?; // say, "sqlite://data/ordo.db"
//! let orders = CommandHandler::<Order>::new(db.store.clone(), HandlerConfig::default());
//! let runtime = ProjectionRuntime::open(db, ordo_orders::projectors(), RunnerConfig::default()).await?;
//! runtime.start().await?;
//!
//! let create = OrderCommand::CreateOrder { customer_id: CustomerId::parse("alice")? };
//! orders.handle(CommandRequest::new("o-1", create)).await?;
//! let (sku, quantity, unit_price) = (Sku::parse("BOOK-42")?, Quantity::new(2)?, UnitPrice::new(1250)?);
//! orders.handle(CommandRequest::new("o-1", OrderCommand::AddItem { sku, quantity, unit_price })).await?;
//! let placed = orders.handle(CommandRequest::new("o-1", OrderCommand::PlaceOrder)).await?;
//!
//! // The read model trails the commands: wait for the version the command answered.
//! let wait = wait_for_order(&runtime, "o-1", placed.version, Duration::from_secs(5)).await?;
//! let OrderWait::Reached(summary) = wait else { panic!("the read model is behind: {wait:?}") };
//! assert_eq!((summary.status, summary.total_cents), (OrderStatus::Placed, 2500));
//! runtime.shutdown().await;
//! # let _ = std::fs::remove_dir_all(&dir);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod order;
pub mod read_model;
#[cfg(feature = "testing")]
pub mod testing;
pub mod values;

pub use order::{amount_due_cents, Line, Order, OrderCommand, OrderEvent, OrderRejection, OrderStatus};

use std::sync::Arc;

/// Every projector of the order domain, for a projection runtime.
pub fn projectors() -> Vec<Arc<dyn ordo_projection::Projector>> {
    vec![Arc::new(read_model::OrderSummaryProjector)]
}

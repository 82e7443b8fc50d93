//! The sample domain: an order from draft to delivery. [`Order`] is the aggregate;
//! [`values`] holds the checked value types that commands are built from, so that an
//! invalid SKU or quantity cannot reach a decision.

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

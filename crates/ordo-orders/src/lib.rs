//! The sample domain: an order from draft to delivery. [`Order`] is the aggregate;
//! [`values`] holds the checked value types that commands are built from, so that an
//! invalid SKU or quantity cannot reach a decision.

mod order;
pub mod values;

pub use order::{Line, Order, OrderCommand, OrderEvent, OrderRejection, OrderStatus};

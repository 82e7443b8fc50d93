//! A second sample domain, written only against the framework's public APIs: stock
//! items ([`StockItem`]) whose reservations never oversell, even when two servers take
//! reservations for one SKU at once (one stream per SKU, optimistic appends); the
//! `stock_levels` read model ([`read_model`]); and the order-fulfillment process
//! manager ([`fulfillment`]) that reserves an order's stock when it is placed,
//! cancels it when stock runs short, and releases or commits reservations later.

#![warn(missing_docs)]

pub mod fulfillment;
pub mod read_model;
mod stock;
pub mod values;

pub use stock::{StockCommand, StockEvent, StockItem, StockRejection};

use std::sync::Arc;

/// Every projector of the inventory domain, for a projection runtime.
pub fn projectors() -> Vec<Arc<dyn ordo_projection::Projector>> {
    vec![Arc::new(read_model::StockLevelProjector)]
}

//! The JSON shapes of the API's answers, as the wire and the OpenAPI document see
//! them. (Command request bodies live with their commands in `domain`; a command's
//! answer is built by `command`.)

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An RFC 9457 problem: the body of every error.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:ordo:problem:{code}`).
    pub r#type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable and machine-readable: `order_not_found`, `validation_failed`, …
    pub code: String,
    /// With `validation_failed`: each field that was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// One refused field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// One line of an order.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemView {
    pub sku: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
}

/// An order, from the read model.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    #[schema(format = Uuid)]
    pub order_id: String,
    pub customer_id: String,
    #[schema(inline)]
    pub status: OrderStatusName,
    pub items: Vec<ItemView>,
    /// 0 without a discount.
    pub discount_percent: u8,
    /// The amount due: the items' subtotal less the discount.
    pub total_cents: i64,
    pub version: u64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// An order's status, as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatusName {
    Draft,
    Placed,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatusName {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatusName::Draft => "draft",
            OrderStatusName::Placed => "placed",
            OrderStatusName::Paid => "paid",
            OrderStatusName::Shipped => "shipped",
            OrderStatusName::Delivered => "delivered",
            OrderStatusName::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for OrderStatusName {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        use OrderStatusName::*;
        [Draft, Placed, Paid, Shipped, Delivered, Cancelled]
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| format!("{value:?} is not one of draft, placed, paid, shipped, delivered, cancelled"))
    }
}

/// A page of `GET /orders`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderPageView {
    pub orders: Vec<OrderView>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// One stored event of an order's stream.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub version: u64,
    pub position: u64,
    #[schema(format = Uuid)]
    pub event_id: String,
    pub r#type: String,
    /// The payload as stored.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

/// One projector's status.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProjectionView {
    pub name: String,
    /// The position of the last event applied.
    pub position: u64,
    /// The position of the last event readable.
    pub head: u64,
    /// Events still to apply.
    pub lag: u64,
    /// Age of the oldest event still to apply.
    pub lag_seconds: f64,
    /// `running`, `catching_up`, `rebuilding`, `stopped` or `failed`.
    pub status: String,
    pub error: Option<ProjectionErrorView>,
    /// While rebuilding: how far it has come.
    pub rebuild: Option<RebuildView>,
}

/// Why a projector stopped: the event it could not apply (when an event was at
/// fault), and the message.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProjectionErrorView {
    pub position: Option<u64>,
    pub event_type: Option<String>,
    pub message: String,
}

/// A rebuild's progress in events.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RebuildView {
    pub done: u64,
    pub total: u64,
}

/// `POST /projections/{name}/rebuild` accepted.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RebuildAccepted {
    pub name: String,
    /// Always `rebuilding`: follow progress in `GET /projections`.
    pub status: String,
}

/// Health answers.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}

/// A SKU's stock, from the `stock_levels` read model.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StockLevelView {
    pub sku: String,
    /// Units in the warehouse, reserved or not.
    pub on_hand: i64,
    /// Units held by reservations.
    pub reserved: i64,
    /// On hand less reserved: what a reservation may still take.
    pub available: i64,
    /// The version of the SKU's stream it reflects (also the `ETag`).
    pub version: u64,
}

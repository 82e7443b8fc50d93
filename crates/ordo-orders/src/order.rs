//! The `Order` aggregate: draft → placed → paid → shipped → delivered, cancellable
//! from draft, placed or paid. Items and the discount change only in draft; money is
//! i64 cents with checked arithmetic, so an overflow is a rejection, never a panic.

use ordo_core::{Aggregate, DomainEvent, RejectionKind, UpcastError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::values::{CancelReason, CustomerId, DiscountPercent, PaymentRef, Quantity, Sku, TrackingNumber, UnitPrice};

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Draft,
    Placed,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Draft => "draft",
            OrderStatus::Placed => "placed",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Draft, Self::Placed, Self::Paid, Self::Shipped, Self::Delivered, Self::Cancelled]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

/// One SKU's line on an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub quantity: u32,
    pub unit_price_cents: i64,
}

/// What can be asked of an order.
#[derive(Clone, Debug, PartialEq)]
pub enum OrderCommand {
    CreateOrder {
        customer_id: CustomerId,
    },
    /// Adds to the line of `sku` if there is one (keeping its unit price).
    AddItem {
        sku: Sku,
        quantity: Quantity,
        unit_price: UnitPrice,
    },
    RemoveItem {
        sku: Sku,
    },
    /// Takes `percent` off the amount due, however the items change afterwards.
    ApplyDiscount {
        percent: DiscountPercent,
    },
    PlaceOrder,
    PayOrder {
        amount_cents: i64,
        payment_ref: Option<PaymentRef>,
    },
    ShipOrder {
        tracking_number: TrackingNumber,
    },
    DeliverOrder,
    CancelOrder {
        reason: CancelReason,
    },
}

/// What happened to an order. The variant names are the stored event types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    OrderCreated {
        customer_id: String,
    },
    ItemAdded {
        sku: String,
        quantity: u32,
        unit_price_cents: i64,
    },
    ItemRemoved {
        sku: String,
    },
    DiscountApplied {
        percent: u8,
    },
    /// Schema v2 added `subtotal_cents` and `discount_percent` (see `upcast`);
    /// `total_cents` is the amount due.
    OrderPlaced {
        subtotal_cents: i64,
        discount_percent: u8,
        total_cents: i64,
    },
    /// Schema v2 renamed v1's `amount` to `amount_cents` (see `upcast`); `payment_ref`
    /// came later and defaults to none.
    OrderPaid {
        amount_cents: i64,
        #[serde(default)]
        payment_ref: Option<String>,
    },
    OrderShipped {
        tracking_number: String,
    },
    OrderDelivered {},
    OrderCancelled {
        reason: String,
    },
}

impl DomainEvent for OrderEvent {
    fn schema_version(event_type: &str) -> u32 {
        match event_type {
            "OrderPaid" | "OrderPlaced" => 2,
            _ => 1,
        }
    }

    fn upcast(
        event_type: &str,
        schema_version: u32,
        mut data: serde_json::Value,
    ) -> Result<serde_json::Value, UpcastError> {
        let invalid =
            |reason: &str| UpcastError { event_type: event_type.into(), schema_version, reason: reason.into() };
        let fields = data.as_object_mut().ok_or_else(|| invalid("payload is not an object"))?;
        match (event_type, schema_version) {
            ("OrderPaid", 1) => {
                if let Some(amount) = fields.remove("amount") {
                    fields.insert("amount_cents".into(), amount);
                }
            }
            // v1 predates discounts: its total was the subtotal, with none off.
            ("OrderPlaced", 1) => {
                let total = fields.get("total_cents").cloned().ok_or_else(|| invalid("no total_cents"))?;
                fields.insert("subtotal_cents".into(), total);
                fields.insert("discount_percent".into(), 0.into());
            }
            _ => {}
        }
        Ok(data)
    }
}

/// Why an order refused a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum OrderRejection {
    #[error("the order does not exist")]
    OrderNotFound,
    #[error("the order already exists")]
    OrderExists,
    #[error("{reason}")]
    RuleViolation { reason: String },
    #[error("{reason}")]
    ValidationFailed { reason: String },
}

impl OrderRejection {
    fn rule(reason: impl Into<String>) -> Self {
        OrderRejection::RuleViolation { reason: reason.into() }
    }

    /// The stable machine-readable code (`order_not_found`, `rule_violation`, …).
    pub fn code(&self) -> &'static str {
        match self {
            OrderRejection::OrderNotFound => "order_not_found",
            OrderRejection::OrderExists => "order_exists",
            OrderRejection::RuleViolation { .. } => "rule_violation",
            OrderRejection::ValidationFailed { .. } => "validation_failed",
        }
    }
}

/// The amount due on `subtotal_cents` with `discount_percent` off (0: none):
/// `subtotal - subtotal × percent / 100`, the discount rounded down to whole cents.
/// It never overflows: the discount is at most the subtotal.
///
/// ```
/// assert_eq!(ordo_orders::amount_due_cents(999, 15), 850);
/// assert_eq!(ordo_orders::amount_due_cents(300, 0), 300);
/// ```
pub fn amount_due_cents(subtotal_cents: i64, discount_percent: u8) -> i64 {
    let discount = i128::from(subtotal_cents) * i128::from(discount_percent) / 100;
    subtotal_cents - i64::try_from(discount).unwrap_or(0)
}

/// An order's state, rebuilt from its events. `status` is `None` until it is created.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub status: Option<OrderStatus>,
    pub customer_id: String,
    pub items: BTreeMap<String, Line>,
    /// Σ quantity × unit price.
    pub subtotal_cents: i64,
    /// 0 without a discount.
    pub discount_percent: u8,
    /// The amount due: the subtotal less the discount.
    pub total_cents: i64,
    pub paid_cents: i64,
}

impl Order {
    /// The subtotal with `extra` added, or `None` if it overflows.
    fn subtotal_with(&self, extra: i64) -> Option<i64> {
        self.subtotal_cents.checked_add(extra)
    }

    /// Sets the subtotal, and the amount due with it.
    fn set_subtotal(&mut self, subtotal_cents: i64) {
        self.subtotal_cents = subtotal_cents;
        self.total_cents = amount_due_cents(subtotal_cents, self.discount_percent);
    }

    fn expect_status(&self, allowed: &[OrderStatus], what: &str) -> Result<OrderStatus, OrderRejection> {
        let status = self.status.ok_or(OrderRejection::OrderNotFound)?;
        if allowed.contains(&status) {
            Ok(status)
        } else {
            Err(OrderRejection::rule(format!("cannot {what} an order that is {}", status.as_str())))
        }
    }
}

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    /// 2: the subtotal and the discount joined the state.
    const STATE_SCHEMA: u32 = 2;
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Rejection = OrderRejection;

    fn decide(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderRejection> {
        use OrderStatus::*;
        let event = match command {
            OrderCommand::CreateOrder { customer_id } => {
                if self.status.is_some() {
                    return Err(OrderRejection::OrderExists);
                }
                OrderEvent::OrderCreated { customer_id: customer_id.to_string() }
            }
            OrderCommand::AddItem { sku, quantity, unit_price } => {
                self.expect_status(&[Draft], "change the items of")?;
                let existing = self.items.get(sku.as_str());
                // A SKU already on the order keeps its first unit price.
                let price = existing.map_or(unit_price.cents(), |line| line.unit_price_cents);
                let merged = existing.map_or(0, |line| line.quantity) + quantity.get();
                if merged > Quantity::MAX {
                    return Err(OrderRejection::ValidationFailed {
                        reason: format!("quantity of {sku} would be {merged}, above {}", Quantity::MAX),
                    });
                }
                let added = i64::from(quantity.get()).checked_mul(price);
                if added.and_then(|a| self.subtotal_with(a)).is_none() {
                    return Err(OrderRejection::ValidationFailed { reason: "the order total would overflow".into() });
                }
                OrderEvent::ItemAdded { sku: sku.to_string(), quantity: quantity.get(), unit_price_cents: price }
            }
            OrderCommand::RemoveItem { sku } => {
                self.expect_status(&[Draft], "change the items of")?;
                if !self.items.contains_key(sku.as_str()) {
                    return Err(OrderRejection::rule(format!("the order has no item {sku}")));
                }
                OrderEvent::ItemRemoved { sku: sku.to_string() }
            }
            OrderCommand::ApplyDiscount { percent } => {
                self.expect_status(&[Draft], "discount")?;
                if self.discount_percent > 0 {
                    return Err(OrderRejection::rule(format!(
                        "the order already has a {} % discount",
                        self.discount_percent
                    )));
                }
                OrderEvent::DiscountApplied { percent: percent.get() }
            }
            OrderCommand::PlaceOrder => {
                self.expect_status(&[Draft], "place")?;
                if self.items.is_empty() {
                    return Err(OrderRejection::rule("an order needs at least one item to be placed"));
                }
                OrderEvent::OrderPlaced {
                    subtotal_cents: self.subtotal_cents,
                    discount_percent: self.discount_percent,
                    total_cents: self.total_cents,
                }
            }
            OrderCommand::PayOrder { amount_cents, payment_ref } => {
                self.expect_status(&[Placed], "pay")?;
                if *amount_cents != self.total_cents {
                    return Err(OrderRejection::rule(format!(
                        "the payment of {amount_cents} cents does not match the amount due of {} cents",
                        self.total_cents
                    )));
                }
                OrderEvent::OrderPaid {
                    amount_cents: *amount_cents,
                    payment_ref: payment_ref.as_ref().map(ToString::to_string),
                }
            }
            OrderCommand::ShipOrder { tracking_number } => {
                self.expect_status(&[Paid], "ship")?;
                OrderEvent::OrderShipped { tracking_number: tracking_number.to_string() }
            }
            OrderCommand::DeliverOrder => {
                self.expect_status(&[Shipped], "deliver")?;
                OrderEvent::OrderDelivered {}
            }
            OrderCommand::CancelOrder { reason } => {
                self.expect_status(&[Draft, Placed, Paid], "cancel")?;
                OrderEvent::OrderCancelled { reason: reason.to_string() }
            }
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderCreated { customer_id } => {
                self.status = Some(OrderStatus::Draft);
                self.customer_id.clone_from(customer_id);
            }
            OrderEvent::ItemAdded { sku, quantity, unit_price_cents } => {
                let line =
                    self.items.entry(sku.clone()).or_insert(Line { quantity: 0, unit_price_cents: *unit_price_cents });
                line.quantity = line.quantity.saturating_add(*quantity);
                let added = i64::from(*quantity).saturating_mul(line.unit_price_cents);
                self.set_subtotal(self.subtotal_cents.saturating_add(added));
            }
            OrderEvent::ItemRemoved { sku } => {
                if let Some(line) = self.items.remove(sku) {
                    let removed = i64::from(line.quantity).saturating_mul(line.unit_price_cents);
                    self.set_subtotal(self.subtotal_cents.saturating_sub(removed));
                }
            }
            OrderEvent::DiscountApplied { percent } => {
                self.discount_percent = *percent;
                self.set_subtotal(self.subtotal_cents);
            }
            OrderEvent::OrderPlaced { .. } => self.status = Some(OrderStatus::Placed),
            OrderEvent::OrderPaid { amount_cents, .. } => {
                self.status = Some(OrderStatus::Paid);
                self.paid_cents = *amount_cents;
            }
            OrderEvent::OrderShipped { .. } => self.status = Some(OrderStatus::Shipped),
            OrderEvent::OrderDelivered {} => self.status = Some(OrderStatus::Delivered),
            OrderEvent::OrderCancelled { .. } => self.status = Some(OrderStatus::Cancelled),
        }
    }

    fn rejection_kind(rejection: &OrderRejection) -> RejectionKind {
        match rejection {
            OrderRejection::OrderNotFound => RejectionKind::NotFound,
            OrderRejection::OrderExists => RejectionKind::AlreadyExists,
            OrderRejection::RuleViolation { .. } => RejectionKind::RuleViolation,
            OrderRejection::ValidationFailed { .. } => RejectionKind::Invalid,
        }
    }

    fn rejection_code(rejection: &OrderRejection) -> &'static str {
        rejection.code()
    }

    fn command_name(command: &OrderCommand) -> &'static str {
        match command {
            OrderCommand::CreateOrder { .. } => "create_order",
            OrderCommand::AddItem { .. } => "add_item",
            OrderCommand::RemoveItem { .. } => "remove_item",
            OrderCommand::ApplyDiscount { .. } => "apply_discount",
            OrderCommand::PlaceOrder => "place_order",
            OrderCommand::PayOrder { .. } => "pay_order",
            OrderCommand::ShipOrder { .. } => "ship_order",
            OrderCommand::DeliverOrder => "deliver_order",
            OrderCommand::CancelOrder { .. } => "cancel_order",
        }
    }
}

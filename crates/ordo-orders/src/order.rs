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
    /// Created; items and the discount can change.
    Draft,
    /// Placed by the customer; awaiting payment of the amount due.
    Placed,
    /// Paid; awaiting shipment.
    Paid,
    /// On its way.
    Shipped,
    /// Delivered: the end of its life.
    Delivered,
    /// Cancelled (from draft, placed or paid): the end of its life.
    Cancelled,
}

impl OrderStatus {
    /// The stable name (`draft`, `placed`, …), as serialized and stored.
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

    /// The status named `value` (as [`OrderStatus::as_str`] writes it).
    ///
    /// ```
    /// use ordo_orders::OrderStatus;
    /// assert_eq!(OrderStatus::parse("paid"), Some(OrderStatus::Paid));
    /// assert_eq!(OrderStatus::parse("Paid"), None);
    /// ```
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Draft, Self::Placed, Self::Paid, Self::Shipped, Self::Delivered, Self::Cancelled]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

/// One SKU's line on an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Units of the SKU (at most [`Quantity::MAX`]).
    pub quantity: u32,
    /// The price per unit, in cents, as first added.
    pub unit_price_cents: i64,
}

/// What can be asked of an order.
#[derive(Clone, Debug, PartialEq)]
pub enum OrderCommand {
    /// Creates the order, in draft; refused if it exists.
    CreateOrder {
        /// Who orders.
        customer_id: CustomerId,
    },
    /// Adds to the line of `sku` if there is one (keeping its unit price). Draft only;
    /// refused as invalid if the line would pass [`Quantity::MAX`] or the total
    /// would overflow.
    AddItem {
        /// What.
        sku: Sku,
        /// How many.
        quantity: Quantity,
        /// The price per unit (ignored if the order has the SKU already).
        unit_price: UnitPrice,
    },
    /// Removes the whole line of `sku`. Draft only; refused if there is none.
    RemoveItem {
        /// The line's SKU.
        sku: Sku,
    },
    /// Takes `percent` off the amount due, however the items change afterwards.
    /// Draft only, once per order.
    ApplyDiscount {
        /// How much, 1 to 50 %.
        percent: DiscountPercent,
    },
    /// Places a draft that has at least one item, fixing the amount due.
    PlaceOrder,
    /// Pays a placed order; the amount must be exactly the amount due.
    PayOrder {
        /// The amount paid, in cents.
        amount_cents: i64,
        /// The payment provider's reference, if any.
        payment_ref: Option<PaymentRef>,
    },
    /// Ships a paid order.
    ShipOrder {
        /// The carrier's tracking number.
        tracking_number: TrackingNumber,
    },
    /// Marks a shipped order delivered.
    DeliverOrder,
    /// Cancels an order that is in draft, placed or paid.
    CancelOrder {
        /// Why (may be empty).
        reason: CancelReason,
    },
}

/// What happened to an order. The variant names are the stored event types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    /// The order exists, in draft.
    OrderCreated {
        /// Who orders.
        customer_id: String,
    },
    /// Units of a SKU were added (to its line, if it had one).
    ItemAdded {
        /// What.
        sku: String,
        /// How many were added.
        quantity: u32,
        /// The line's price per unit, in cents.
        unit_price_cents: i64,
    },
    /// A SKU's whole line was removed.
    ItemRemoved {
        /// The line's SKU.
        sku: String,
    },
    /// A discount now applies to the amount due.
    DiscountApplied {
        /// How much, in percent.
        percent: u8,
    },
    /// Schema v2 added `subtotal_cents` and `discount_percent` (see `upcast`);
    /// `total_cents` is the amount due.
    OrderPlaced {
        /// The items' total, in cents.
        subtotal_cents: i64,
        /// The discount, in percent (0: none).
        discount_percent: u8,
        /// The amount due, in cents.
        total_cents: i64,
    },
    /// Schema v2 renamed v1's `amount` to `amount_cents` (see `upcast`); `payment_ref`
    /// came later and defaults to none.
    OrderPaid {
        /// The amount paid, in cents.
        amount_cents: i64,
        /// The payment provider's reference, if one was given.
        #[serde(default)]
        payment_ref: Option<String>,
    },
    /// The order left the warehouse.
    OrderShipped {
        /// The carrier's tracking number.
        tracking_number: String,
    },
    /// The order arrived.
    OrderDelivered {},
    /// The order was cancelled.
    OrderCancelled {
        /// Why.
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
    /// A command other than `CreateOrder` for an order that does not exist.
    #[error("the order does not exist")]
    OrderNotFound,
    /// `CreateOrder` for an order that exists.
    #[error("the order already exists")]
    OrderExists,
    /// Not allowed in the order's state (paying a draft, a second discount, …).
    #[error("{reason}")]
    RuleViolation {
        /// What rule, in words.
        reason: String,
    },
    /// Values out of bounds (a line above the most units, a total that overflows).
    #[error("{reason}")]
    ValidationFailed {
        /// What is wrong, in words.
        reason: String,
    },
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
///
/// ```
/// use ordo_core::testkit::given;
/// use ordo_orders::values::DiscountPercent;
/// use ordo_orders::{Order, OrderCommand, OrderEvent, OrderRejection};
///
/// let created = OrderEvent::OrderCreated { customer_id: "alice".into() };
/// let item = OrderEvent::ItemAdded { sku: "BOOK-42".into(), quantity: 2, unit_price_cents: 1250 };
/// let order = given::<Order>([created.clone(), item])
///     .when(OrderCommand::ApplyDiscount { percent: DiscountPercent::new(10)? })
///     .then([OrderEvent::DiscountApplied { percent: 10 }]);
/// assert_eq!((order.subtotal_cents, order.total_cents), (2500, 2250));
///
/// let needs_items = "an order needs at least one item to be placed";
/// given::<Order>([created])
///     .when(OrderCommand::PlaceOrder)
///     .then_rejected(OrderRejection::RuleViolation { reason: needs_items.into() });
/// # Ok::<(), ordo_orders::values::ValidationError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Where it is in its life; `None` before it is created.
    pub status: Option<OrderStatus>,
    /// Who orders.
    pub customer_id: String,
    /// Its lines, by SKU.
    pub items: BTreeMap<String, Line>,
    /// Σ quantity × unit price.
    pub subtotal_cents: i64,
    /// 0 without a discount.
    pub discount_percent: u8,
    /// The amount due: the subtotal less the discount.
    pub total_cents: i64,
    /// What was paid (0 until paid).
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

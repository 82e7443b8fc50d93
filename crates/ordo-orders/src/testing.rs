//! Proptest strategies for order commands (feature `testing`).

#![allow(clippy::expect_used)] // test support: constants that are valid by construction

use proptest::prelude::*;

use crate::values::{CancelReason, CustomerId, DiscountPercent, Quantity, Sku, TrackingNumber, UnitPrice};
use crate::{Order, OrderCommand};

/// A command to generate. `PayTotal` pays whatever the order's total is when it
/// runs, so that random sequences get past payment too.
#[derive(Clone, Debug)]
pub enum Step {
    /// This command, as it is.
    Command(OrderCommand),
    /// `PayOrder` of the order's total at the time.
    PayTotal,
}

impl Step {
    /// The command this step is against `state`.
    pub fn command(&self, state: &Order) -> OrderCommand {
        match self {
            Step::Command(c) => c.clone(),
            Step::PayTotal => OrderCommand::PayOrder { amount_cents: state.total_cents, payment_ref: None },
        }
    }
}

/// Any order command, with SKUs from a small set so that they collide.
pub fn step() -> impl Strategy<Value = Step> {
    let sku = prop::sample::select(vec!["A", "B", "C", "D"]).prop_map(|s| Sku::parse(s).expect("valid SKU"));
    let command = |c: OrderCommand| Step::Command(c);
    prop_oneof![
        Just(command(OrderCommand::CreateOrder { customer_id: CustomerId::parse("c-1").expect("valid") })),
        (sku.clone(), 1i64..=10_000, 0i64..=100_000_000).prop_map(move |(sku, q, p)| command(OrderCommand::AddItem {
            sku,
            quantity: Quantity::new(q).expect("in range"),
            unit_price: UnitPrice::new(p).expect("in range"),
        })),
        sku.prop_map(move |sku| command(OrderCommand::RemoveItem { sku })),
        (1i64..=50).prop_map(move |p| command(OrderCommand::ApplyDiscount {
            percent: DiscountPercent::new(p).expect("in range")
        })),
        Just(command(OrderCommand::PlaceOrder)),
        (0i64..1_000).prop_map(move |amount_cents| command(OrderCommand::PayOrder { amount_cents, payment_ref: None })),
        Just(Step::PayTotal),
        Just(command(OrderCommand::ShipOrder { tracking_number: TrackingNumber::parse("T").expect("valid") })),
        Just(command(OrderCommand::DeliverOrder)),
        Just(command(OrderCommand::CancelOrder { reason: CancelReason::parse("r").expect("valid") })),
    ]
}

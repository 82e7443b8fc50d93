//! Command sequences for the order property tests. `ordo_orders::testing::step`
//! draws any command with equal odds, so that most of a random sequence is refused
//! (before creation, after a cancel, a payment of a random amount): measured, 8% of
//! its commands are accepted and an order is rarely delivered. These sequences mix
//! it with steps that move an order along its life, so that every state is reached
//! and the rejections are still covered.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use ordo_orders::testing::{step, Step};
use ordo_orders::values::{CustomerId, Quantity, Sku, TrackingNumber, UnitPrice};
use ordo_orders::OrderCommand;
use proptest::prelude::*;

/// The creation of an order for `customer`.
pub fn create(customer: &str) -> Step {
    Step::Command(OrderCommand::CreateOrder { customer_id: CustomerId::parse(customer).unwrap() })
}

/// A step that moves a draft-to-delivered order on: add an item, place, pay the
/// total, ship, deliver.
pub fn progress() -> impl Strategy<Value = Step> {
    let sku = prop::sample::select(vec!["A", "B", "C", "D"]).prop_map(|s| Sku::parse(s).unwrap());
    let add = (sku, 1i64..=100, 0i64..=10_000).prop_map(|(sku, quantity, price)| {
        Step::Command(OrderCommand::AddItem {
            sku,
            quantity: Quantity::new(quantity).unwrap(),
            unit_price: UnitPrice::new(price).unwrap(),
        })
    });
    prop_oneof![
        2 => add,
        1 => Just(Step::Command(OrderCommand::PlaceOrder)),
        1 => Just(Step::PayTotal),
        1 => Just(Step::Command(OrderCommand::ShipOrder { tracking_number: TrackingNumber::parse("T").unwrap() })),
        1 => Just(Step::Command(OrderCommand::DeliverOrder)),
    ]
}

/// Any command (one in three) or a step that moves the order on (two in three).
pub fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![1 => step(), 2 => progress()]
}

/// One order's life: created, then up to 40 steps.
pub fn order_life() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(any_step(), 0..40).prop_map(|rest| {
        let mut steps = vec![create("c-1")];
        steps.extend(rest);
        steps
    })
}

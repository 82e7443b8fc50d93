//! Property tests: for random command sequences, replaying the emitted events
//! reproduces the state, and the order's invariants hold after every step.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_core::Aggregate;
use ordo_orders::values::{CancelReason, CustomerId, Quantity, Sku, TrackingNumber, UnitPrice};
use ordo_orders::{Order, OrderCommand, OrderEvent, OrderStatus};
use proptest::prelude::*;

/// A command to generate; `PayTotal` pays whatever the order's total is at the time.
#[derive(Clone, Debug)]
enum Step {
    Command(OrderCommand),
    PayTotal,
}

fn step() -> impl Strategy<Value = Step> {
    let sku = prop::sample::select(vec!["A", "B", "C", "D"]).prop_map(|s| Sku::parse(s).unwrap());
    prop_oneof![
        Just(Step::Command(OrderCommand::CreateOrder { customer_id: CustomerId::parse("c-1").unwrap() })),
        (sku.clone(), 1i64..=10_000, 0i64..=100_000_000).prop_map(|(sku, q, p)| Step::Command(OrderCommand::AddItem {
            sku,
            quantity: Quantity::new(q).unwrap(),
            unit_price: UnitPrice::new(p).unwrap(),
        })),
        sku.prop_map(|sku| Step::Command(OrderCommand::RemoveItem { sku })),
        Just(Step::Command(OrderCommand::PlaceOrder)),
        (0i64..1_000)
            .prop_map(|amount_cents| Step::Command(OrderCommand::PayOrder { amount_cents, payment_ref: None })),
        Just(Step::PayTotal),
        Just(Step::Command(OrderCommand::ShipOrder { tracking_number: TrackingNumber::parse("T").unwrap() })),
        Just(Step::Command(OrderCommand::DeliverOrder)),
        Just(Step::Command(OrderCommand::CancelOrder { reason: CancelReason::parse("r").unwrap() })),
    ]
}

fn command(step: &Step, state: &Order) -> OrderCommand {
    match step {
        Step::Command(c) => c.clone(),
        Step::PayTotal => OrderCommand::PayOrder { amount_cents: state.total_cents, payment_ref: None },
    }
}

fn check_invariants(state: &Order, before: &Order, events: &[OrderEvent]) {
    let sum: i64 = state.items.values().map(|l| i64::from(l.quantity) * l.unit_price_cents).sum();
    assert_eq!(state.total_cents, sum, "total = Σ quantity × price");
    assert!(state.items.values().all(|l| (1..=Quantity::MAX).contains(&l.quantity)));
    if before.status != Some(OrderStatus::Draft) && before.status.is_some() {
        assert_eq!(state.items, before.items, "items changed after draft");
    }
    if matches!(state.status, Some(OrderStatus::Paid | OrderStatus::Shipped | OrderStatus::Delivered)) {
        assert_eq!(state.paid_cents, state.total_cents, "paid amount = total");
    }
    if state.status.is_none() {
        assert!(events.is_empty(), "nothing happens to an order that does not exist, but creation");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn replaying_the_events_reproduces_the_state_and_invariants_hold(steps in prop::collection::vec(step(), 1..60)) {
        let mut state = Order::default();
        let mut history = Vec::new();
        for step in &steps {
            let before = state.clone();
            let events = state.decide(&command(step, &state)).unwrap_or_default();
            for event in &events {
                state.apply(event);
            }
            check_invariants(&state, &before, &events);
            history.extend(events);
        }
        let mut replayed = Order::default();
        for event in &history {
            replayed.apply(event);
        }
        prop_assert_eq!(replayed, state);
    }
}

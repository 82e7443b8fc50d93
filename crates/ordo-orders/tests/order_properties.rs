//! Property tests: for random command sequences, replaying the emitted events
//! reproduces the state, and the order's invariants hold after every step.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_core::Aggregate;
use ordo_orders::testing::step;
use ordo_orders::values::Quantity;
use ordo_orders::{Order, OrderEvent, OrderStatus};
use proptest::prelude::*;

fn check_invariants(state: &Order, before: &Order, events: &[OrderEvent]) {
    let sum: i64 = state.items.values().map(|l| i64::from(l.quantity) * l.unit_price_cents).sum();
    assert_eq!(state.subtotal_cents, sum, "subtotal = Σ quantity × price");
    assert_eq!(state.total_cents, ordo_orders::amount_due_cents(sum, state.discount_percent), "total = amount due");
    assert!(state.discount_percent <= 50);
    if before.status != Some(OrderStatus::Draft) {
        assert_eq!(state.discount_percent, before.discount_percent, "the discount changed outside draft");
    }
    assert!(state.items.values().all(|l| (1..=Quantity::MAX).contains(&l.quantity)));
    if before.status != Some(OrderStatus::Draft) && before.status.is_some() {
        assert_eq!(state.items, before.items, "items changed after draft");
    }
    if matches!(state.status, Some(OrderStatus::Paid | OrderStatus::Shipped | OrderStatus::Delivered)) {
        assert_eq!(state.paid_cents, state.total_cents, "paid amount = amount due");
    }
    if before.status.is_none() {
        assert!(
            events.is_empty() || matches!(events, [OrderEvent::OrderCreated { .. }]),
            "nothing happens to an order that does not exist, but its creation"
        );
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
            let events = state.decide(&step.command(&state)).unwrap_or_default();
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

//! Property tests of the `Order` aggregate on random command sequences: replaying the
//! emitted events reproduces the state, and the order's invariants hold after every
//! step. The sequences are checked not to be vacuous: across all cases enough
//! commands are accepted, and every kind of command is accepted at least once — an
//! aggregate that rejects everything passes no invariant here.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use ordo_core::Aggregate;
use ordo_orders::values::Quantity;
use ordo_orders::{Order, OrderCommand, OrderEvent, OrderStatus};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Of all commands decided, at least this share must be accepted.
const MIN_ACCEPTED_SHARE: f64 = 0.15;

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

fn kind(command: &OrderCommand) -> &'static str {
    Order::command_name(command)
}

/// Commands decided and accepted, by kind, across every case.
#[derive(Default)]
struct Tally(BTreeMap<&'static str, (u64, u64)>);

impl Tally {
    fn count(&mut self, command: &OrderCommand, accepted: bool) {
        let entry = self.0.entry(kind(command)).or_default();
        entry.0 += 1;
        entry.1 += u64::from(accepted);
    }
}

#[test]
fn replaying_the_events_reproduces_the_state_and_invariants_hold() {
    let tally = RefCell::new(Tally::default());
    let config = Config { cases: 512, source_file: Some(file!()), ..Config::default() };
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&support::order_life(), |steps| {
        let mut state = Order::default();
        let mut history = Vec::new();
        for step in &steps {
            let before = state.clone();
            let command = step.command(&state);
            let decided = state.decide(&command);
            tally.borrow_mut().count(&command, decided.is_ok());
            let events = decided.unwrap_or_default();
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
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    let tally = tally.into_inner();
    let (decided, accepted) = tally.0.values().fold((0, 0), |(d, a), (kd, ka)| (d + kd, a + ka));
    let share = accepted as f64 / decided as f64;
    assert!(
        share >= MIN_ACCEPTED_SHARE,
        "only {accepted} of {decided} commands were accepted ({:.1}%): the sequences test little ({:?})",
        share * 100.0,
        tally.0
    );
    let kinds = [
        "create_order",
        "add_item",
        "remove_item",
        "apply_discount",
        "place_order",
        "pay_order",
        "ship_order",
        "deliver_order",
        "cancel_order",
    ];
    let never: Vec<&str> = kinds.into_iter().filter(|k| tally.0.get(k).map_or(0, |(_, a)| *a) == 0).collect();
    assert!(never.is_empty(), "never accepted: {never:?} ({:?})", tally.0);
}

//! Every rule of the order aggregate, as given / when / then.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_core::testkit::given;
use ordo_core::{decode_event, encode_event};
use ordo_orders::values::{
    CancelReason, CustomerId, DiscountPercent, PaymentRef, Quantity, Sku, TrackingNumber, UnitPrice,
};
use ordo_orders::{Order, OrderCommand as C, OrderEvent as E, OrderRejection, OrderStatus};
use serde_json::json;

fn created() -> E {
    E::OrderCreated { customer_id: "c-1".into() }
}
fn added(sku: &str, quantity: u32, price: i64) -> E {
    E::ItemAdded { sku: sku.into(), quantity, unit_price_cents: price }
}
fn add(sku: &str, quantity: i64, price: i64) -> C {
    C::AddItem {
        sku: Sku::parse(sku).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
        unit_price: UnitPrice::new(price).unwrap(),
    }
}
fn remove(sku: &str) -> C {
    C::RemoveItem { sku: Sku::parse(sku).unwrap() }
}
fn pay(amount: i64) -> C {
    C::PayOrder { amount_cents: amount, payment_ref: Some(PaymentRef::parse("pay-1").unwrap()) }
}
fn ship() -> C {
    C::ShipOrder { tracking_number: TrackingNumber::parse("TRACK-1").unwrap() }
}
fn cancel() -> C {
    C::CancelOrder { reason: CancelReason::parse("changed my mind").unwrap() }
}
fn placed_history() -> Vec<E> {
    vec![created(), added("A", 2, 150), E::OrderPlaced { subtotal_cents: 300, discount_percent: 0, total_cents: 300 }]
}
fn paid_history() -> Vec<E> {
    let mut h = placed_history();
    h.push(E::OrderPaid { amount_cents: 300, payment_ref: Some("pay-1".into()) });
    h
}
fn shipped_history() -> Vec<E> {
    let mut h = paid_history();
    h.push(E::OrderShipped { tracking_number: "TRACK-1".into() });
    h
}
fn delivered_history() -> Vec<E> {
    let mut h = shipped_history();
    h.push(E::OrderDelivered {});
    h
}
fn cancelled_history() -> Vec<E> {
    vec![created(), E::OrderCancelled { reason: "r".into() }]
}
fn is_rule(r: &OrderRejection) -> bool {
    matches!(r, OrderRejection::RuleViolation { .. })
}
fn discount(percent: i64) -> C {
    C::ApplyDiscount { percent: DiscountPercent::new(percent).unwrap() }
}
fn discounted(percent: u8) -> E {
    E::DiscountApplied { percent }
}

#[test]
fn creating_an_order_starts_a_draft() {
    let state =
        given::<Order>([]).when(C::CreateOrder { customer_id: CustomerId::parse("c-1").unwrap() }).then([created()]);
    assert_eq!(state.status, Some(OrderStatus::Draft));
    assert_eq!(state.customer_id, "c-1");
}

#[test]
fn creating_an_existing_order_is_refused() {
    given::<Order>([created()])
        .when(C::CreateOrder { customer_id: CustomerId::parse("c-2").unwrap() })
        .then_rejected(OrderRejection::OrderExists);
}

#[test]
fn every_command_on_an_unknown_order_is_not_found() {
    for command in [add("A", 1, 1), remove("A"), discount(5), C::PlaceOrder, pay(0), ship(), C::DeliverOrder, cancel()]
    {
        given::<Order>([]).when(command).then_rejected(OrderRejection::OrderNotFound);
    }
}

#[test]
fn adding_items_to_a_draft() {
    let state = given::<Order>([created()]).when(add("A", 2, 150)).then([added("A", 2, 150)]);
    assert_eq!(state.total_cents, 300);
}

#[test]
fn adding_a_present_sku_adds_to_its_quantity_at_its_first_price() {
    let state = given::<Order>([created(), added("A", 2, 150)]).when(add("A", 3, 999)).then([added("A", 3, 150)]);
    assert_eq!(state.items["A"].quantity, 5);
    assert_eq!(state.total_cents, 750);
}

#[test]
fn a_merged_quantity_above_the_bound_is_invalid() {
    given::<Order>([created(), added("A", 10_000, 1)])
        .when(add("A", 1, 1))
        .then_rejected_where(|r| matches!(r, OrderRejection::ValidationFailed { .. }));
}

#[test]
fn a_total_that_would_overflow_is_invalid_not_a_panic() {
    // Drive the total to the edge of i64 through history, then add one more.
    let history = vec![
        created(),
        added("A", 1, 1),
        E::ItemAdded { sku: "B".into(), quantity: 1, unit_price_cents: i64::MAX - 10 },
    ];
    given::<Order>(history)
        .when(add("C", 10_000, 100_000_000))
        .then_rejected(OrderRejection::ValidationFailed { reason: "the order total would overflow".into() });
}

#[test]
fn removing_an_item() {
    let state = given::<Order>([created(), added("A", 2, 150), added("B", 1, 50)])
        .when(remove("A"))
        .then([E::ItemRemoved { sku: "A".into() }]);
    assert_eq!(state.total_cents, 50);
    assert!(!state.items.contains_key("A"));
}

#[test]
fn removing_an_absent_sku_is_a_rule_violation() {
    given::<Order>([created()]).when(remove("A")).then_rejected_where(is_rule);
}

#[test]
fn items_change_only_in_draft() {
    for history in [placed_history(), paid_history(), shipped_history(), delivered_history(), cancelled_history()] {
        given::<Order>(history.clone()).when(add("B", 1, 1)).then_rejected_where(is_rule);
        given::<Order>(history).when(remove("A")).then_rejected_where(is_rule);
    }
}

#[test]
fn placing_needs_items() {
    given::<Order>([created()]).when(C::PlaceOrder).then_rejected_where(is_rule);
    given::<Order>([created(), added("A", 1, 1), E::ItemRemoved { sku: "A".into() }])
        .when(C::PlaceOrder)
        .then_rejected_where(is_rule);
    let state = given::<Order>([created(), added("A", 2, 150)]).when(C::PlaceOrder).then([E::OrderPlaced {
        subtotal_cents: 300,
        discount_percent: 0,
        total_cents: 300,
    }]);
    assert_eq!(state.status, Some(OrderStatus::Placed));
}

#[test]
fn placing_only_from_draft() {
    for history in [placed_history(), paid_history(), shipped_history(), delivered_history(), cancelled_history()] {
        given::<Order>(history).when(C::PlaceOrder).then_rejected_where(is_rule);
    }
}

#[test]
fn paying_needs_placed_and_the_exact_total() {
    given::<Order>([created(), added("A", 2, 150)]).when(pay(300)).then_rejected_where(is_rule);
    given::<Order>(placed_history()).when(pay(299)).then_rejected_where(is_rule);
    given::<Order>(placed_history()).when(pay(301)).then_rejected_where(is_rule);
    let state = given::<Order>(placed_history())
        .when(pay(300))
        .then([E::OrderPaid { amount_cents: 300, payment_ref: Some("pay-1".into()) }]);
    assert_eq!((state.status, state.paid_cents), (Some(OrderStatus::Paid), 300));
    for history in [paid_history(), shipped_history(), delivered_history(), cancelled_history()] {
        given::<Order>(history).when(pay(300)).then_rejected_where(is_rule);
    }
}

#[test]
fn shipping_needs_paid() {
    for history in [vec![created()], placed_history(), shipped_history(), delivered_history(), cancelled_history()] {
        given::<Order>(history).when(ship()).then_rejected_where(is_rule);
    }
    given::<Order>(paid_history()).when(ship()).then([E::OrderShipped { tracking_number: "TRACK-1".into() }]);
}

#[test]
fn delivering_needs_shipped() {
    for history in [vec![created()], placed_history(), paid_history(), delivered_history(), cancelled_history()] {
        given::<Order>(history).when(C::DeliverOrder).then_rejected_where(is_rule);
    }
    let state = given::<Order>(shipped_history()).when(C::DeliverOrder).then([E::OrderDelivered {}]);
    assert_eq!(state.status, Some(OrderStatus::Delivered));
}

#[test]
fn cancelling_from_draft_placed_or_paid_only() {
    for history in [vec![created()], placed_history(), paid_history()] {
        let state =
            given::<Order>(history).when(cancel()).then([E::OrderCancelled { reason: "changed my mind".into() }]);
        assert_eq!(state.status, Some(OrderStatus::Cancelled));
    }
    for history in [shipped_history(), delivered_history(), cancelled_history()] {
        given::<Order>(history).when(cancel()).then_rejected_where(is_rule);
    }
}

#[test]
fn rejections_have_stable_codes() {
    assert_eq!(OrderRejection::OrderNotFound.code(), "order_not_found");
    assert_eq!(OrderRejection::OrderExists.code(), "order_exists");
    assert_eq!(OrderRejection::RuleViolation { reason: String::new() }.code(), "rule_violation");
    assert_eq!(OrderRejection::ValidationFailed { reason: String::new() }.code(), "validation_failed");
}

/// An event as the store would hand it back, written at `schema_version`.
fn stored(event_type: &str, schema_version: u32, data: serde_json::Value) -> ordo_store::RecordedEvent {
    ordo_store::RecordedEvent {
        position: 1,
        stream_id: ordo_store::StreamId::new("order-1").unwrap(),
        version: 1,
        event_id: uuid::Uuid::new_v4(),
        event_type: event_type.into(),
        schema_version,
        data,
        metadata: Default::default(),
        recorded_at: chrono::Utc::now(),
    }
}

#[test]
fn a_v1_payment_event_reads_as_v2() {
    let event: E = decode_event(&stored("OrderPaid", 1, json!({"amount": 300}))).unwrap();
    assert_eq!(event, E::OrderPaid { amount_cents: 300, payment_ref: None });
    // New events are written as v2.
    let encoded = encode_event(&event).unwrap();
    assert_eq!((encoded.event_type.as_str(), encoded.schema_version), ("OrderPaid", 2));
}

#[test]
fn a_discount_lowers_the_amount_due_of_a_draft() {
    let state = given::<Order>([created(), added("A", 2, 150)]).when(discount(10)).then([discounted(10)]);
    assert_eq!((state.subtotal_cents, state.discount_percent, state.total_cents), (300, 10, 270));
}

#[test]
fn the_discount_is_rounded_down_to_whole_cents() {
    // 15 % of 999 is 149.85: the discount is 149 cents, the amount due 850.
    let state = given::<Order>([created(), added("A", 1, 999)]).when(discount(15)).then([discounted(15)]);
    assert_eq!(state.total_cents, 850);
}

#[test]
fn the_discount_holds_whatever_items_change_afterwards() {
    let state = given::<Order>([created(), discounted(10), added("A", 2, 150)])
        .when(add("B", 1, 100))
        .then([added("B", 1, 100)]);
    assert_eq!((state.subtotal_cents, state.total_cents), (400, 360));
    let state = given::<Order>([created(), discounted(10), added("A", 2, 150), added("B", 1, 100)])
        .when(remove("A"))
        .then([E::ItemRemoved { sku: "A".into() }]);
    assert_eq!((state.subtotal_cents, state.total_cents), (100, 90));
}

#[test]
fn a_discount_only_in_draft() {
    for history in [placed_history(), paid_history(), shipped_history(), delivered_history(), cancelled_history()] {
        given::<Order>(history).when(discount(10)).then_rejected_where(is_rule);
    }
    given::<Order>([]).when(discount(10)).then_rejected(OrderRejection::OrderNotFound);
}

#[test]
fn one_discount_per_order() {
    given::<Order>([created(), discounted(10)]).when(discount(5)).then_rejected_where(is_rule);
    given::<Order>([created(), discounted(10)]).when(discount(10)).then_rejected_where(is_rule);
}

#[test]
fn a_discount_is_1_to_50_percent() {
    for valid in [1, 25, 50] {
        assert_eq!(DiscountPercent::new(valid).unwrap().get(), valid as u8);
    }
    for invalid in [i64::MIN, -1, 0, 51, 100, 256] {
        let error = DiscountPercent::new(invalid).unwrap_err();
        assert_eq!(error.field, "percent");
    }
    assert!(serde_json::from_str::<DiscountPercent>("51").is_err(), "deserializing cannot bypass the bounds");
}

#[test]
fn placing_a_discounted_order_records_the_amount_due() {
    let state = given::<Order>([created(), added("A", 2, 150), discounted(10)])
        .when(C::PlaceOrder)
        .then([E::OrderPlaced { subtotal_cents: 300, discount_percent: 10, total_cents: 270 }]);
    assert_eq!(state.status, Some(OrderStatus::Placed));
}

#[test]
fn paying_a_discounted_order_needs_the_amount_due() {
    let placed = vec![
        created(),
        added("A", 2, 150),
        discounted(10),
        E::OrderPlaced { subtotal_cents: 300, discount_percent: 10, total_cents: 270 },
    ];
    given::<Order>(placed.clone()).when(pay(300)).then_rejected_where(is_rule);
    given::<Order>(placed).when(pay(270)).then([E::OrderPaid { amount_cents: 270, payment_ref: Some("pay-1".into()) }]);
}

#[test]
fn a_discount_on_the_largest_total_does_not_overflow() {
    let subtotal = i64::MAX - 10;
    let history = [created(), E::ItemAdded { sku: "B".into(), quantity: 1, unit_price_cents: subtotal }];
    let state = given::<Order>(history).when(discount(50)).then([discounted(50)]);
    assert_eq!(state.total_cents, subtotal - subtotal / 2);
}

#[test]
fn a_v1_placed_event_reads_as_v2_without_a_discount() {
    let event: E = decode_event(&stored("OrderPlaced", 1, json!({"total_cents": 300}))).unwrap();
    assert_eq!(event, E::OrderPlaced { subtotal_cents: 300, discount_percent: 0, total_cents: 300 });
    assert_eq!(encode_event(&event).unwrap().schema_version, 2, "new events are written as v2");
    // An order placed before discounts existed is still paid its total.
    let history = [created(), added("A", 2, 150), event];
    given::<Order>(history)
        .when(pay(300))
        .then([E::OrderPaid { amount_cents: 300, payment_ref: Some("pay-1".into()) }]);
}

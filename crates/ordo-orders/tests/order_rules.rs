//! Every rule of the order aggregate, as given / when / then.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_core::testkit::given;
use ordo_orders::values::{CancelReason, CustomerId, PaymentRef, Quantity, Sku, TrackingNumber, UnitPrice};
use ordo_orders::{Order, OrderCommand as C, OrderEvent as E, OrderRejection, OrderStatus};

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
    vec![created(), added("A", 2, 150), E::OrderPlaced { total_cents: 300 }]
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
    for command in [add("A", 1, 1), remove("A"), C::PlaceOrder, pay(0), ship(), C::DeliverOrder, cancel()] {
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
    let state =
        given::<Order>([created(), added("A", 2, 150)]).when(C::PlaceOrder).then([E::OrderPlaced { total_cents: 300 }]);
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

#[test]
fn a_v1_payment_event_reads_as_v2() {
    use ordo_core::decode_event;
    let stored = ordo_store::RecordedEvent {
        position: 1,
        stream_id: ordo_store::StreamId::new("order-1").unwrap(),
        version: 4,
        event_id: uuid::Uuid::new_v4(),
        event_type: "OrderPaid".into(),
        schema_version: 1,
        data: serde_json::json!({"amount": 300}),
        metadata: Default::default(),
        recorded_at: chrono_now(),
    };
    let event: E = decode_event(&stored).unwrap();
    assert_eq!(event, E::OrderPaid { amount_cents: 300, payment_ref: None });
    // New events are written as v2.
    let encoded = ordo_core::encode_event(&event).unwrap();
    assert_eq!((encoded.event_type.as_str(), encoded.schema_version), ("OrderPaid", 2));
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

//! Every rule of a stock item, as given / when / then.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_core::testkit::given;
use ordo_core::{Aggregate, RejectionKind};
use ordo_inventory::values::{ReservationId, StockQuantity};
use ordo_inventory::{StockCommand as C, StockEvent as E, StockItem, StockRejection};

fn restock(quantity: i64) -> C {
    C::Restock { quantity: StockQuantity::new(quantity).unwrap() }
}
fn reserve(id: &str, quantity: i64) -> C {
    C::Reserve { reservation_id: ReservationId::parse(id).unwrap(), quantity: StockQuantity::new(quantity).unwrap() }
}
fn release(id: &str) -> C {
    C::Release { reservation_id: ReservationId::parse(id).unwrap() }
}
fn commit(id: &str) -> C {
    C::Commit { reservation_id: ReservationId::parse(id).unwrap() }
}
fn restocked(quantity: i64) -> E {
    E::Restocked { quantity }
}
fn reserved(id: &str, quantity: i64) -> E {
    E::Reserved { reservation_id: id.into(), quantity }
}

#[test]
fn restocking_adds_to_what_is_on_hand() {
    let item = given::<StockItem>([restocked(5)]).when(restock(3)).then([restocked(3)]);
    assert_eq!((item.on_hand, item.reserved(), item.available()), (8, 0, 8));
}

#[test]
fn a_reservation_holds_units_that_stay_on_hand() {
    let item = given::<StockItem>([restocked(5)]).when(reserve("r-1", 2)).then([reserved("r-1", 2)]);
    assert_eq!((item.on_hand, item.reserved(), item.available()), (5, 2, 3));
}

#[test]
fn a_reservation_may_take_everything_available_but_no_more() {
    given::<StockItem>([restocked(5), reserved("r-1", 2)]).when(reserve("r-2", 3)).then([reserved("r-2", 3)]);
    given::<StockItem>([restocked(5), reserved("r-1", 2)])
        .when(reserve("r-2", 4))
        .then_rejected(StockRejection::InsufficientStock { available: 3, requested: 4 });
}

#[test]
fn an_item_never_restocked_has_nothing_to_reserve() {
    given::<StockItem>([])
        .when(reserve("r-1", 1))
        .then_rejected(StockRejection::InsufficientStock { available: 0, requested: 1 });
}

#[test]
fn a_reservation_id_is_used_once_per_item() {
    given::<StockItem>([restocked(5), reserved("r-1", 1)])
        .when(reserve("r-1", 1))
        .then_rejected(StockRejection::ReservationExists { reservation_id: "r-1".into() });
}

#[test]
fn releasing_gives_the_units_back() {
    let item = given::<StockItem>([restocked(5), reserved("r-1", 2)])
        .when(release("r-1"))
        .then([E::Released { reservation_id: "r-1".into(), quantity: 2 }]);
    assert_eq!((item.on_hand, item.available()), (5, 5));
    given::<StockItem>([restocked(5)])
        .when(release("r-1"))
        .then_rejected(StockRejection::UnknownReservation { reservation_id: "r-1".into() });
}

#[test]
fn committing_takes_the_reserved_units_off_the_shelf() {
    let item = given::<StockItem>([restocked(5), reserved("r-1", 2), reserved("r-2", 1)])
        .when(commit("r-1"))
        .then([E::ReservationCommitted { reservation_id: "r-1".into(), quantity: 2 }]);
    assert_eq!((item.on_hand, item.reserved(), item.available()), (3, 1, 2));
    given::<StockItem>([restocked(5), reserved("r-1", 2)])
        .when(release("r-1"))
        .then([E::Released { reservation_id: "r-1".into(), quantity: 2 }]);
    given::<StockItem>([
        restocked(5),
        reserved("r-1", 2),
        E::ReservationCommitted { reservation_id: "r-1".into(), quantity: 2 },
    ])
    .when(release("r-1"))
    .then_rejected(StockRejection::UnknownReservation { reservation_id: "r-1".into() });
}

#[test]
fn stock_on_hand_cannot_overflow() {
    given::<StockItem>([restocked(i64::MAX - 1)]).when(restock(2)).then_rejected(StockRejection::TooMuchStock);
}

#[test]
fn quantities_are_bounded_at_the_edge() {
    assert!(StockQuantity::new(0).is_err());
    assert!(StockQuantity::new(1_000_001).is_err());
    assert!(serde_json::from_str::<StockQuantity>("0").is_err(), "deserializing cannot bypass the bounds");
    assert!(ReservationId::parse(&"r".repeat(257)).is_err());
}

#[test]
fn rejections_have_kinds_and_stable_codes() {
    let cases = [
        (
            StockRejection::InsufficientStock { available: 0, requested: 1 },
            RejectionKind::RuleViolation,
            "insufficient_stock",
        ),
        (
            StockRejection::ReservationExists { reservation_id: "r".into() },
            RejectionKind::AlreadyExists,
            "reservation_exists",
        ),
        (
            StockRejection::UnknownReservation { reservation_id: "r".into() },
            RejectionKind::NotFound,
            "reservation_not_found",
        ),
        (StockRejection::TooMuchStock, RejectionKind::Invalid, "validation_failed"),
    ];
    for (rejection, kind, code) in cases {
        assert_eq!(StockItem::rejection_kind(&rejection), kind);
        assert_eq!(rejection.code(), code);
    }
}

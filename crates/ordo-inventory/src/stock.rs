//! The `StockItem` aggregate: the units of one SKU on hand, and the reservations
//! holding some of them. A reservation is refused if it would oversell: it may take
//! at most what is available (on hand − reserved). Released units become available
//! again; committed ones leave the shelf. One stream per SKU (`stock-{sku}`), so
//! concurrent reservations of a SKU serialize by optimistic append.

use ordo_core::{Aggregate, DomainEvent, RejectionKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::values::{ReservationId, StockQuantity};

/// What can be asked of a stock item.
#[derive(Clone, Debug, PartialEq)]
pub enum StockCommand {
    /// `quantity` units arrived.
    Restock {
        /// How many.
        quantity: StockQuantity,
    },
    /// Holds `quantity` units for `reservation_id`, if that many are available.
    Reserve {
        /// Who holds them; one reservation per id and SKU.
        reservation_id: ReservationId,
        /// How many.
        quantity: StockQuantity,
    },
    /// Gives the units of `reservation_id` back.
    Release {
        /// The reservation.
        reservation_id: ReservationId,
    },
    /// The units of `reservation_id` leave the warehouse (the order shipped).
    Commit {
        /// The reservation.
        reservation_id: ReservationId,
    },
}

/// What happened to a stock item. The variant names are the stored event types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
#[allow(missing_docs)] // the fields are those of the commands above
pub enum StockEvent {
    /// Units arrived.
    Restocked { quantity: i64 },
    /// Units are held for a reservation.
    Reserved { reservation_id: String, quantity: i64 },
    /// A reservation's units are available again.
    Released { reservation_id: String, quantity: i64 },
    /// A reservation's units left the warehouse.
    ReservationCommitted { reservation_id: String, quantity: i64 },
}

impl DomainEvent for StockEvent {}

/// Why a stock item refused a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum StockRejection {
    /// The reservation would oversell.
    #[error("only {available} available, {requested} requested")]
    InsufficientStock {
        /// Units a reservation could take when it was decided.
        available: i64,
        /// Units it asked for.
        requested: i64,
    },
    /// A reservation with this id is held already.
    #[error("reservation {reservation_id} already exists")]
    ReservationExists {
        /// The id.
        reservation_id: String,
    },
    /// No reservation with this id is held (never made, released or committed).
    #[error("no reservation {reservation_id}")]
    UnknownReservation {
        /// The id.
        reservation_id: String,
    },
    /// A restock beyond what can be counted.
    #[error("the stock on hand would overflow")]
    TooMuchStock,
}

impl StockRejection {
    /// The stable machine-readable code (`insufficient_stock`, …).
    pub fn code(&self) -> &'static str {
        match self {
            StockRejection::InsufficientStock { .. } => "insufficient_stock",
            StockRejection::ReservationExists { .. } => "reservation_exists",
            StockRejection::UnknownReservation { .. } => "reservation_not_found",
            StockRejection::TooMuchStock => "validation_failed",
        }
    }
}

/// A SKU's stock, rebuilt from its events. An item never restocked has nothing.
///
/// ```
/// use ordo_core::testkit::given;
/// use ordo_inventory::values::{ReservationId, StockQuantity};
/// use ordo_inventory::{StockCommand, StockEvent, StockItem, StockRejection};
///
/// let restocked = StockEvent::Restocked { quantity: 10 };
/// let reserved = StockEvent::Reserved { reservation_id: "order-1".into(), quantity: 7 };
/// // 3 of the 10 are still available: a reservation of 5 would oversell.
/// let reserve = |id: &str, units| -> Result<StockCommand, Box<dyn std::error::Error>> {
///     Ok(StockCommand::Reserve { reservation_id: ReservationId::parse(id)?, quantity: StockQuantity::new(units)? })
/// };
/// given::<StockItem>([restocked.clone(), reserved.clone()])
///     .when(reserve("order-2", 5)?)
///     .then_rejected(StockRejection::InsufficientStock { available: 3, requested: 5 });
/// let item = given::<StockItem>([restocked, reserved])
///     .when(reserve("order-2", 3)?)
///     .then([StockEvent::Reserved { reservation_id: "order-2".into(), quantity: 3 }]);
/// assert_eq!((item.on_hand, item.reserved(), item.available()), (10, 10, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockItem {
    /// Units in the warehouse, reserved or not.
    pub on_hand: i64,
    /// Units held, by reservation id.
    pub reservations: BTreeMap<String, i64>,
}

impl StockItem {
    /// Units held by reservations.
    pub fn reserved(&self) -> i64 {
        self.reservations.values().sum()
    }

    /// Units a new reservation may take: on hand − reserved.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved()
    }

    /// The units of reservation `id`, or why there are none.
    fn held(&self, id: &ReservationId) -> Result<i64, StockRejection> {
        let unknown = || StockRejection::UnknownReservation { reservation_id: id.to_string() };
        self.reservations.get(id.as_str()).copied().ok_or_else(unknown)
    }
}

impl Aggregate for StockItem {
    const CATEGORY: &'static str = "stock";
    type Command = StockCommand;
    type Event = StockEvent;
    type Rejection = StockRejection;

    fn decide(&self, command: &StockCommand) -> Result<Vec<StockEvent>, StockRejection> {
        let event = match command {
            StockCommand::Restock { quantity } => {
                self.on_hand.checked_add(quantity.get()).ok_or(StockRejection::TooMuchStock)?;
                StockEvent::Restocked { quantity: quantity.get() }
            }
            StockCommand::Reserve { reservation_id, quantity } => {
                if self.reservations.contains_key(reservation_id.as_str()) {
                    return Err(StockRejection::ReservationExists { reservation_id: reservation_id.to_string() });
                }
                let (available, requested) = (self.available(), quantity.get());
                if requested > available {
                    return Err(StockRejection::InsufficientStock { available, requested });
                }
                StockEvent::Reserved { reservation_id: reservation_id.to_string(), quantity: requested }
            }
            StockCommand::Release { reservation_id } => StockEvent::Released {
                reservation_id: reservation_id.to_string(),
                quantity: self.held(reservation_id)?,
            },
            StockCommand::Commit { reservation_id } => StockEvent::ReservationCommitted {
                reservation_id: reservation_id.to_string(),
                quantity: self.held(reservation_id)?,
            },
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Restocked { quantity } => self.on_hand = self.on_hand.saturating_add(*quantity),
            StockEvent::Reserved { reservation_id, quantity } => {
                self.reservations.insert(reservation_id.clone(), *quantity);
            }
            StockEvent::Released { reservation_id, .. } => {
                self.reservations.remove(reservation_id);
            }
            StockEvent::ReservationCommitted { reservation_id, quantity } => {
                self.reservations.remove(reservation_id);
                self.on_hand = self.on_hand.saturating_sub(*quantity);
            }
        }
    }

    fn rejection_kind(rejection: &StockRejection) -> RejectionKind {
        match rejection {
            StockRejection::InsufficientStock { .. } => RejectionKind::RuleViolation,
            StockRejection::ReservationExists { .. } => RejectionKind::AlreadyExists,
            StockRejection::UnknownReservation { .. } => RejectionKind::NotFound,
            StockRejection::TooMuchStock => RejectionKind::Invalid,
        }
    }

    fn rejection_code(rejection: &StockRejection) -> &'static str {
        rejection.code()
    }
}

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
    /// Units arrived.
    Restock { quantity: StockQuantity },
    /// Holds `quantity` units for `reservation_id`, if that many are available.
    Reserve { reservation_id: ReservationId, quantity: StockQuantity },
    /// Gives a reservation's units back.
    Release { reservation_id: ReservationId },
    /// A reservation's units leave the warehouse (the order shipped).
    Commit { reservation_id: ReservationId },
}

/// What happened to a stock item. The variant names are the stored event types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum StockEvent {
    Restocked { quantity: i64 },
    Reserved { reservation_id: String, quantity: i64 },
    Released { reservation_id: String, quantity: i64 },
    ReservationCommitted { reservation_id: String, quantity: i64 },
}

impl DomainEvent for StockEvent {}

/// Why a stock item refused a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum StockRejection {
    #[error("only {available} available, {requested} requested")]
    InsufficientStock { available: i64, requested: i64 },
    #[error("reservation {reservation_id} already exists")]
    ReservationExists { reservation_id: String },
    #[error("no reservation {reservation_id}")]
    UnknownReservation { reservation_id: String },
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockItem {
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
}

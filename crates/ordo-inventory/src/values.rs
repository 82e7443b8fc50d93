//! Checked values of the inventory, parsed at the edge: once a `Sku`, a
//! `StockQuantity` or a `ReservationId` exists it is valid.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A value outside its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// The field, as a request names it.
    pub field: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

/// `value` if it has `1..=max` characters and no control characters.
fn text(field: &'static str, value: &str, max: usize) -> Result<String, ValidationError> {
    let chars = value.chars().count();
    if chars == 0 || chars > max {
        return Err(ValidationError { field, reason: format!("must have 1 to {max} characters, has {chars}") });
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError { field, reason: "must not contain control characters".into() });
    }
    Ok(value.to_owned())
}

/// A stock-keeping unit: 1 to 64 characters (the bounds of an order's SKU), the id
/// of its stock item.
///
/// ```
/// use ordo_inventory::values::Sku;
/// assert_eq!(Sku::parse("SKU-1").unwrap().as_str(), "SKU-1");
/// assert!(Sku::parse("").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

impl Sku {
    /// The longest SKU, in characters.
    pub const MAX_CHARS: usize = 64;

    /// `value` as a SKU, if it is one.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        text("sku", value, Self::MAX_CHARS).map(Self)
    }

    /// The SKU as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who holds a reservation (an order, say): 1 to 256 characters, unique per SKU.
///
/// ```
/// use ordo_inventory::values::ReservationId;
/// assert!(ReservationId::parse("order-42").is_ok());
/// assert!(ReservationId::parse("").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReservationId(String);

impl ReservationId {
    /// The longest reservation id, in characters.
    pub const MAX_CHARS: usize = 256;

    /// `value` as a reservation id, if it is one.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        text("reservation_id", value, Self::MAX_CHARS).map(Self)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! text_conversions {
    ($($name:ident),*) => {$(
        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(value: String) -> Result<Self, ValidationError> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

text_conversions!(Sku, ReservationId);

/// How many units a restock or a reservation moves: 1 to 1,000,000.
///
/// ```
/// use ordo_inventory::values::StockQuantity;
/// assert_eq!(StockQuantity::new(5).map(StockQuantity::get), Ok(5));
/// assert!(StockQuantity::new(0).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct StockQuantity(i64);

impl StockQuantity {
    /// The most units one command moves.
    pub const MAX: i64 = 1_000_000;

    /// `value` units, if that is 1 to [`StockQuantity::MAX`].
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        if (1..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(ValidationError { field: "quantity", reason: format!("must be 1 to {}, is {value}", Self::MAX) })
        }
    }

    /// The number of units.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for StockQuantity {
    type Error = ValidationError;
    fn try_from(value: i64) -> Result<Self, ValidationError> {
        Self::new(value)
    }
}

impl From<StockQuantity> for i64 {
    fn from(q: StockQuantity) -> i64 {
        q.0
    }
}

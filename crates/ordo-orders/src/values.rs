//! Checked values, parsed at the edge: once a `Sku` or `Quantity` exists it is valid.
//! Deserializing checks them too, so a request body cannot bypass the bounds. Text
//! values never contain control characters.
//!
//! ```
//! use ordo_orders::values::{Quantity, Sku, UnitPrice};
//! let sku = Sku::parse("BOOK-42")?;
//! assert_eq!(sku.as_str(), "BOOK-42");
//! assert!(Sku::parse("").is_err() && Sku::parse("a\nb").is_err());
//! assert_eq!(Quantity::new(2)?.get(), 2);
//! let error = Quantity::new(0).unwrap_err();
//! assert_eq!(error.field, "quantity");
//! assert!(serde_json::from_str::<UnitPrice>("-1").is_err());
//! # Ok::<(), ordo_orders::values::ValidationError>(())
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;

/// A value outside its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// The field, as a request names it (`sku`, `quantity`, …).
    pub field: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ValidationError {
    ValidationError { field, reason: reason.into() }
}

fn text(field: &'static str, value: &str, min: usize, max: usize) -> Result<String, ValidationError> {
    let chars = value.chars().count();
    if chars < min || chars > max {
        return Err(invalid(field, format!("must have {min} to {max} characters, has {chars}")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $field:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The most characters it may have.
            pub const MAX_CHARS: usize = $max;

            /// `value`, if its length is within the bounds and it has no control
            /// characters.
            pub fn parse(value: &str) -> Result<Self, ValidationError> {
                text($field, value, $min, $max).map(Self)
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

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
    };
}

text_value!(
    /// A stock-keeping unit: 1 to 64 characters.
    Sku, "sku", 1, 64
);
text_value!(
    /// Who placed an order: 1 to 128 characters.
    CustomerId, "customer_id", 1, 128
);
text_value!(
    /// A carrier's tracking number: 1 to 128 characters.
    TrackingNumber, "tracking_number", 1, 128
);
text_value!(
    /// A payment reference: 1 to 128 characters.
    PaymentRef, "payment_ref", 1, 128
);
text_value!(
    /// Why an order was cancelled: up to 1000 characters.
    CancelReason, "reason", 0, 1000
);

/// How many of a SKU: 1 to 10,000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Quantity(u32);

impl Quantity {
    /// The most units of a SKU, on one command and on one order line.
    pub const MAX: u32 = 10_000;

    /// `value` units, if that is 1 to [`Quantity::MAX`].
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        match u32::try_from(value) {
            Ok(q) if (1..=Self::MAX).contains(&q) => Ok(Self(q)),
            _ => Err(invalid("quantity", format!("must be 1 to {}, is {value}", Self::MAX))),
        }
    }

    /// The number of units.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = ValidationError;
    fn try_from(value: i64) -> Result<Self, ValidationError> {
        Self::new(value)
    }
}

impl From<Quantity> for i64 {
    fn from(q: Quantity) -> i64 {
        i64::from(q.0)
    }
}

/// A unit price in cents: 0 to 100,000,000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct UnitPrice(i64);

impl UnitPrice {
    /// The highest unit price, in cents.
    pub const MAX_CENTS: i64 = 100_000_000;

    /// `cents`, if that is 0 to [`UnitPrice::MAX_CENTS`].
    pub fn new(cents: i64) -> Result<Self, ValidationError> {
        if (0..=Self::MAX_CENTS).contains(&cents) {
            Ok(Self(cents))
        } else {
            Err(invalid("unit_price_cents", format!("must be 0 to {}, is {cents}", Self::MAX_CENTS)))
        }
    }

    /// The price in cents.
    pub fn cents(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for UnitPrice {
    type Error = ValidationError;
    fn try_from(value: i64) -> Result<Self, ValidationError> {
        Self::new(value)
    }
}

impl From<UnitPrice> for i64 {
    fn from(p: UnitPrice) -> i64 {
        p.0
    }
}

/// A discount on an order: 1 to 50 percent.
///
/// ```
/// use ordo_orders::values::DiscountPercent;
/// assert_eq!(DiscountPercent::new(10).map(DiscountPercent::get), Ok(10));
/// assert!(DiscountPercent::new(0).is_err());
/// assert!(DiscountPercent::new(51).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct DiscountPercent(u8);

impl DiscountPercent {
    /// The largest discount, in percent.
    pub const MAX: u8 = 50;

    /// `value` percent, if that is 1 to [`DiscountPercent::MAX`].
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        match u8::try_from(value) {
            Ok(p) if (1..=Self::MAX).contains(&p) => Ok(Self(p)),
            _ => Err(invalid("percent", format!("must be 1 to {}, is {value}", Self::MAX))),
        }
    }

    /// The percent.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for DiscountPercent {
    type Error = ValidationError;
    fn try_from(value: i64) -> Result<Self, ValidationError> {
        Self::new(value)
    }
}

impl From<DiscountPercent> for i64 {
    fn from(p: DiscountPercent) -> i64 {
        i64::from(p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced_at_the_edge() {
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse(&"s".repeat(64)).is_ok());
        assert!(Sku::parse(&"s".repeat(65)).is_err());
        assert!(Sku::parse("a\nb").is_err());
        assert!(CustomerId::parse(&"é".repeat(128)).is_ok());
        assert!(CustomerId::parse(&"é".repeat(129)).is_err());
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(1).is_ok());
        assert!(Quantity::new(10_000).is_ok());
        assert!(Quantity::new(10_001).is_err());
        assert!(Quantity::new(-1).is_err());
        assert!(UnitPrice::new(-1).is_err());
        assert!(UnitPrice::new(0).is_ok());
        assert!(UnitPrice::new(100_000_000).is_ok());
        assert!(UnitPrice::new(100_000_001).is_err());
        assert!(serde_json::from_str::<Quantity>("20000").is_err(), "deserializing cannot bypass the bounds");
        assert!(serde_json::from_str::<Sku>("\"\"").is_err());
    }
}

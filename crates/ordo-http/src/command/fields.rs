//! Refused fields: what [`HttpCommand::into_command`](super::HttpCommand) answers
//! when its input is out of bounds, and [`check_all`], which checks several fields
//! at once so that a client learns of every bad field in one answer.

use crate::dto::FieldError;

/// Every refused field of a request (422 `validation_failed`, listed in `errors`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// `message` about `field`.
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError { field: field.into(), message: message.into() }])
    }

    /// Adds `other`'s fields after these.
    pub fn extend(&mut self, other: FieldErrors) {
        self.0.extend(other.0);
    }

    /// The refused fields, in the order they were found.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

impl From<Vec<FieldError>> for FieldErrors {
    fn from(errors: Vec<FieldError>) -> Self {
        Self(errors)
    }
}

/// Several checked fields at once: see [`check_all`].
pub trait CheckAll {
    /// The checked values, in order.
    type Values;
    /// Every value, or every refusal.
    fn check_all(self) -> Result<Self::Values, FieldErrors>;
}

/// Every value of a tuple of checks, or all of their refusals:
/// `let (sku, quantity) = check_all((Sku::parse(&self.sku), Quantity::new(self.quantity)))?;`
pub fn check_all<C: CheckAll>(checks: C) -> Result<C::Values, FieldErrors> {
    checks.check_all()
}

macro_rules! check_all_tuple {
    ($($value:ident $error:ident),+) => {
        impl<$($value, $error: Into<FieldErrors>),+> CheckAll for ($(Result<$value, $error>,)+) {
            type Values = ($($value,)+);

            #[allow(non_snake_case)] // the type parameters' names, as variables
            fn check_all(self) -> Result<Self::Values, FieldErrors> {
                let ($($value,)+) = self;
                let mut errors = FieldErrors::default();
                $(let $value = $value.map_err(|e| errors.extend(e.into())).ok();)+
                match ($($value,)+) {
                    ($(Some($value),)+) => Ok(($($value,)+)),
                    _ => Err(errors),
                }
            }
        }
    };
}

check_all_tuple!(A EA, B EB);
check_all_tuple!(A EA, B EB, C EC);
check_all_tuple!(A EA, B EB, C EC, D ED);

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(field: &str) -> Result<u8, FieldErrors> {
        Err(FieldErrors::one(field, "bad"))
    }

    #[test]
    fn all_values_or_all_refusals_in_order() {
        assert_eq!(check_all((Ok::<_, FieldErrors>(1), Ok::<_, FieldErrors>("x"))), Ok((1, "x")));
        let refused = check_all((refuse("a"), Ok::<_, FieldErrors>(2), refuse("c"))).unwrap_err().into_vec();
        let fields: Vec<&str> = refused.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["a", "c"]);
    }
}

//! Request bodies checked into order commands: each raw field goes through its checked
//! value type of `ordo_orders::values`, and every refused field is reported (422).

use ordo_orders::values::{
    CancelReason, CustomerId, PaymentRef, Quantity, Sku, TrackingNumber, UnitPrice, ValidationError,
};
use ordo_orders::OrderCommand;
use uuid::Uuid;

use crate::dto::{AddItemBody, CancelBody, CreateOrderBody, FieldError, PayBody, ShipBody};
use crate::error::ApiError;

/// An order command, checked and ready to run.
#[derive(Debug)]
pub struct OrderCmd(OrderCommand);

impl OrderCmd {
    pub(super) fn into_inner(self) -> OrderCommand {
        self.0
    }

    /// Whether it creates the order.
    pub fn creates(&self) -> bool {
        matches!(self.0, OrderCommand::CreateOrder { .. })
    }

    pub fn remove_item(sku: &str) -> Result<Self, ApiError> {
        let mut errors = Errors::default();
        let sku = errors.check(Sku::parse(sku));
        errors.finish()?;
        Ok(Self(OrderCommand::RemoveItem { sku: sku.ok_or_else(missing)? }))
    }

    pub fn place() -> Self {
        Self(OrderCommand::PlaceOrder)
    }

    pub fn deliver() -> Self {
        Self(OrderCommand::DeliverOrder)
    }
}

/// Collects refused fields, so that a client learns of all of them at once.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn check<T>(&mut self, result: Result<T, ValidationError>) -> Option<T> {
        result.map_err(|e| self.0.push(FieldError { field: e.field.to_owned(), message: e.reason })).ok()
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(self.0))
        }
    }
}

/// Unreachable once `finish` passed; an internal error rather than a panic all the same.
fn missing() -> ApiError {
    ApiError::Internal("a checked field went missing".into())
}

/// `POST /orders`: the command, and the order id (the client's, or a new one).
pub fn create(body: &CreateOrderBody) -> Result<(Uuid, OrderCmd), ApiError> {
    let mut errors = Errors::default();
    let customer_id = errors.check(CustomerId::parse(&body.customer_id));
    let order_id = match body.order_id.as_deref() {
        None => Some(Uuid::new_v4()),
        Some(raw) => Uuid::try_parse(raw)
            .map_err(|_| {
                errors.0.push(FieldError { field: "order_id".into(), message: "must be a UUID".into() });
            })
            .ok(),
    };
    errors.finish()?;
    let command = OrderCommand::CreateOrder { customer_id: customer_id.ok_or_else(missing)? };
    Ok((order_id.ok_or_else(missing)?, OrderCmd(command)))
}

pub fn add_item(body: &AddItemBody) -> Result<OrderCmd, ApiError> {
    let mut errors = Errors::default();
    let sku = errors.check(Sku::parse(&body.sku));
    let quantity = errors.check(Quantity::new(body.quantity));
    let unit_price = errors.check(UnitPrice::new(body.unit_price_cents));
    errors.finish()?;
    Ok(OrderCmd(OrderCommand::AddItem {
        sku: sku.ok_or_else(missing)?,
        quantity: quantity.ok_or_else(missing)?,
        unit_price: unit_price.ok_or_else(missing)?,
    }))
}

pub fn pay(body: &PayBody) -> Result<OrderCmd, ApiError> {
    let mut errors = Errors::default();
    let payment_ref = body.payment_ref.as_deref().map(|r| errors.check(PaymentRef::parse(r)));
    errors.finish()?;
    let payment_ref = payment_ref.map(|r| r.ok_or_else(missing)).transpose()?;
    Ok(OrderCmd(OrderCommand::PayOrder { amount_cents: body.amount_cents, payment_ref }))
}

pub fn ship(body: &ShipBody) -> Result<OrderCmd, ApiError> {
    let mut errors = Errors::default();
    let tracking_number = errors.check(TrackingNumber::parse(&body.tracking_number));
    errors.finish()?;
    Ok(OrderCmd(OrderCommand::ShipOrder { tracking_number: tracking_number.ok_or_else(missing)? }))
}

pub fn cancel(body: &CancelBody) -> Result<OrderCmd, ApiError> {
    let mut errors = Errors::default();
    let reason = errors.check(CancelReason::parse(&body.reason));
    errors.finish()?;
    Ok(OrderCmd(OrderCommand::CancelOrder { reason: reason.ok_or_else(missing)? }))
}

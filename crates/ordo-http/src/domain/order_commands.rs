//! The order's commands over HTTP: each request body is an [`HttpCommand`] that checks
//! its raw fields into `ordo_orders::values` (every refused field is reported, 422);
//! the generic command route does the rest. And the order as an [`HttpAggregate`]:
//! `{id}` is a UUID, answers name it `order_id`.

use ordo_orders::values::{
    CancelReason, CustomerId, DiscountPercent, PaymentRef, Quantity, Sku, TrackingNumber, UnitPrice, ValidationError,
};
use ordo_orders::{Order, OrderCommand};
use serde::Deserialize;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
use utoipa::openapi::{Object, ObjectBuilder, Required, Type};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::command::{
    check_all, command_route, BodyKind, CommandMethod, CommandPath, CommandRoute, FieldErrors, HttpAggregate,
    HttpCommand,
};
use crate::error::ApiError;

/// The order's command routes.
pub fn routes() -> Vec<CommandRoute> {
    vec![
        command_route::<CreateOrderBody>(),
        command_route::<AddItemBody>(),
        command_route::<RemoveItemRequest>(),
        command_route::<DiscountBody>(),
        command_route::<PlaceBody>(),
        command_route::<PayBody>(),
        command_route::<ShipBody>(),
        command_route::<DeliverBody>(),
        command_route::<CancelBody>(),
    ]
}

impl HttpAggregate for Order {
    const NAME: &'static str = "order";
    const ID_PARAM: &'static str = "id";
    const ID_FIELD: &'static str = "order_id";
    const RESULT_SCHEMA: &'static str = "CommandResult";

    fn parse_id(raw: &str) -> Result<String, ApiError> {
        let id = Uuid::try_parse(raw).map_err(|_| ApiError::InvalidOrderId(raw.to_owned()))?;
        Ok(id.hyphenated().to_string())
    }

    fn id_schema() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .build()
    }
}

impl From<ValidationError> for FieldErrors {
    fn from(e: ValidationError) -> Self {
        FieldErrors::one(e.field, e.reason)
    }
}

/// `POST /orders`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateOrderBody {
    #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub customer_id: String,
    /// Chosen by the server when absent.
    #[serde(default)]
    #[schema(format = Uuid)]
    pub order_id: Option<String>,
}

impl HttpCommand for CreateOrderBody {
    type Aggregate = Order;
    const PATH: &'static str = "/orders";
    const CREATES: bool = true;
    const OPERATION_ID: &'static str = "create_order";
    const SUMMARY: &'static str = "Create an order (with the client's id, or a new one)";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (409, "order_exists, concurrency_conflict or idempotency_key_in_flight"),
        (412, "wrong_expected_version (If-None-Match: * on an existing order)"),
    ];

    fn into_command(self, _: &CommandPath) -> Result<OrderCommand, FieldErrors> {
        Ok(OrderCommand::CreateOrder { customer_id: CustomerId::parse(&self.customer_id)? })
    }

    fn aggregate_id(&self, _: &CommandPath) -> Result<String, FieldErrors> {
        match self.order_id.as_deref() {
            None => Ok(Uuid::new_v4().hyphenated().to_string()),
            Some(raw) => Uuid::try_parse(raw)
                .map(|id| id.hyphenated().to_string())
                .map_err(|_| FieldErrors::one("order_id", "must be a UUID")),
        }
    }
}

/// `POST /orders/{id}/items`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddItemBody {
    #[schema(min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub sku: String,
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: i64,
    #[schema(minimum = 0, maximum = 100000000)]
    pub unit_price_cents: i64,
}

impl HttpCommand for AddItemBody {
    type Aggregate = Order;
    const PATH: &'static str = "/orders/{id}/items";
    const OPERATION_ID: &'static str = "add_item";
    const SUMMARY: &'static str = "Add an item, or more of one already there (draft only)";

    fn into_command(self, _: &CommandPath) -> Result<OrderCommand, FieldErrors> {
        let (sku, quantity, unit_price) =
            check_all((Sku::parse(&self.sku), Quantity::new(self.quantity), UnitPrice::new(self.unit_price_cents)))?;
        Ok(OrderCommand::AddItem { sku, quantity, unit_price })
    }
}

/// `DELETE /orders/{id}/items/{sku}`: no body, the SKU is in the path.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RemoveItemRequest {}

impl HttpCommand for RemoveItemRequest {
    type Aggregate = Order;
    const PATH: &'static str = "/orders/{id}/items/{sku}";
    const METHOD: CommandMethod = CommandMethod::Delete;
    const BODY: BodyKind = BodyKind::None;
    const OPERATION_ID: &'static str = "remove_item";
    const SUMMARY: &'static str = "Remove an item (draft only)";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (409, "rule_violation (no such item, or not a draft), concurrency_conflict or idempotency_key_in_flight"),
        (422, "validation_failed (the SKU) or idempotency_key_reused"),
    ];

    fn into_command(self, path: &CommandPath) -> Result<OrderCommand, FieldErrors> {
        Ok(OrderCommand::RemoveItem { sku: Sku::parse(path.param("sku").unwrap_or_default())? })
    }

    fn path_parameters() -> Vec<Parameter> {
        let sku = ParameterBuilder::new()
            .name("sku")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("The SKU to remove"))
            .schema(Some(super::text(Sku::MAX_CHARS)));
        vec![sku.build()]
    }
}

/// `POST /orders/{id}/discount`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DiscountBody {
    #[schema(minimum = 1, maximum = 50)]
    pub percent: i64,
}

impl HttpCommand for DiscountBody {
    type Aggregate = Order;
    const PATH: &'static str = "/orders/{id}/discount";
    const OPERATION_ID: &'static str = "apply_discount";
    const SUMMARY: &'static str = "Take a percentage off the amount due (draft only, once)";

    fn into_command(self, _: &CommandPath) -> Result<OrderCommand, FieldErrors> {
        Ok(OrderCommand::ApplyDiscount { percent: DiscountPercent::new(self.percent)? })
    }
}

/// `POST /orders/{id}/place`: `{}` or no body at all.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PlaceBody {}

impl HttpCommand for PlaceBody {
    type Aggregate = Order;
    const PATH: &'static str = "/orders/{id}/place";
    const BODY: BodyKind = BodyKind::OptionalJson;
    const OPERATION_ID: &'static str = "place_order";
    const SUMMARY: &'static str = "Place a draft that has items";

    fn into_command(self, _: &CommandPath) -> Result<OrderCommand, FieldErrors> {
        Ok(OrderCommand::PlaceOrder)
    }
}

/// `POST /orders/{id}/pay`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PayBody {
    /// The amount due, exactly.
    pub amount_cents: i64,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub payment_ref: Option<String>,
}

impl HttpCommand for PayBody {
    type Aggregate = Order;
    const PATH: &'static str = "/orders/{id}/pay";
    const OPERATION_ID: &'static str = "pay_order";
    const SUMMARY: &'static str = "Pay a placed order its amount due";

    fn into_command(self, _: &CommandPath) -> Result<OrderCommand, FieldErrors> {
        let payment_ref = self.payment_ref.as_deref().map(PaymentRef::parse).transpose()?;
        Ok(OrderCommand::PayOrder { amount_cents: self.amount_cents, payment_ref })
    }
}

/// `POST /orders/{id}/ship`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ShipBody {
    #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub tracking_number: String,
}

impl HttpCommand for ShipBody {
    type Aggregate = Order;
    const PATH: &'static str = "/orders/{id}/ship";
    const OPERATION_ID: &'static str = "ship_order";
    const SUMMARY: &'static str = "Ship a paid order";

    fn into_command(self, _: &CommandPath) -> Result<OrderCommand, FieldErrors> {
        Ok(OrderCommand::ShipOrder { tracking_number: TrackingNumber::parse(&self.tracking_number)? })
    }
}

/// `POST /orders/{id}/deliver`: `{}` or no body at all.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DeliverBody {}

impl HttpCommand for DeliverBody {
    type Aggregate = Order;
    const PATH: &'static str = "/orders/{id}/deliver";
    const BODY: BodyKind = BodyKind::OptionalJson;
    const OPERATION_ID: &'static str = "deliver_order";
    const SUMMARY: &'static str = "Mark a shipped order delivered";

    fn into_command(self, _: &CommandPath) -> Result<OrderCommand, FieldErrors> {
        Ok(OrderCommand::DeliverOrder)
    }
}

/// `POST /orders/{id}/cancel`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CancelBody {
    #[schema(max_length = 1000, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub reason: String,
}

impl HttpCommand for CancelBody {
    type Aggregate = Order;
    const PATH: &'static str = "/orders/{id}/cancel";
    const OPERATION_ID: &'static str = "cancel_order";
    const SUMMARY: &'static str = "Cancel an order that is a draft, placed or paid";

    fn into_command(self, _: &CommandPath) -> Result<OrderCommand, FieldErrors> {
        Ok(OrderCommand::CancelOrder { reason: CancelReason::parse(&self.reason)? })
    }
}

//! The inventory over HTTP (an extension of the contract, see `docs/http.md`): the
//! stock item as an [`HttpAggregate`] (`{sku}` in the path, `sku` in answers), its
//! commands as [`HttpCommand`]s — restock, reserve, release, commit — and its level
//! from the `stock_levels` read model, waiting for a version when asked.

use ordo_core::CommandHandler;
use ordo_inventory::read_model::{get_stock_level, StockLevel, STOCK_LEVELS};
use ordo_inventory::values::{ReservationId, Sku, StockQuantity, ValidationError};
use ordo_inventory::{StockCommand, StockItem};
use serde::Deserialize;
use std::time::Duration;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{Object, Required};
use utoipa::ToSchema;

use super::errors::{projection_error, store_error};
use super::{text, Domain};
use crate::command::{
    check_all, command_route, BodyKind, CommandMethod, CommandPath, CommandRoute, FieldErrors, HttpAggregate,
    HttpCommand,
};
use crate::dto::{FieldError, StockLevelView};
use crate::error::ApiError;

/// The stock item's command routes.
pub fn routes() -> Vec<CommandRoute> {
    vec![
        command_route::<RestockBody>(),
        command_route::<ReserveBody>(),
        command_route::<ReleaseRequest>(),
        command_route::<CommitBody>(),
    ]
}

impl HttpAggregate for StockItem {
    const NAME: &'static str = "stock item";
    const ID_PARAM: &'static str = "sku";
    const ID_FIELD: &'static str = "sku";
    const RESULT_SCHEMA: &'static str = "StockCommandResult";

    /// A SKU out of bounds is refused like a body field (422).
    fn parse_id(raw: &str) -> Result<String, ApiError> {
        let refused =
            |e: ValidationError| ApiError::invalid(vec![FieldError { field: e.field.into(), message: e.reason }]);
        Sku::parse(raw).map(String::from).map_err(refused)
    }

    fn id_schema() -> Object {
        text(Sku::MAX_CHARS).build()
    }
}

impl From<ValidationError> for FieldErrors {
    fn from(e: ValidationError) -> Self {
        FieldErrors::one(e.field, e.reason)
    }
}

/// `POST /stock/{sku}/restock`: units arrived.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RestockBody {
    #[schema(minimum = 1, maximum = 1000000)]
    pub quantity: i64,
}

impl HttpCommand for RestockBody {
    type Aggregate = StockItem;
    const PATH: &'static str = "/stock/{sku}/restock";
    const OPERATION_ID: &'static str = "restock";
    const SUMMARY: &'static str = "Add units to a SKU's stock on hand";

    fn into_command(self, _: &CommandPath) -> Result<StockCommand, FieldErrors> {
        Ok(StockCommand::Restock { quantity: StockQuantity::new(self.quantity)? })
    }
}

/// `POST /stock/{sku}/reservations`: hold units, if that many are available.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReserveBody {
    /// Who holds them (an order, say); one reservation per id and SKU.
    #[schema(min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub reservation_id: String,
    #[schema(minimum = 1, maximum = 1000000)]
    pub quantity: i64,
}

impl HttpCommand for ReserveBody {
    type Aggregate = StockItem;
    const PATH: &'static str = "/stock/{sku}/reservations";
    const OPERATION_ID: &'static str = "reserve_stock";
    const SUMMARY: &'static str = "Reserve units of a SKU; never more than are available";
    const RESPONSES: &'static [(u16, &'static str)] =
        &[(409, "insufficient_stock, reservation_exists, concurrency_conflict or idempotency_key_in_flight")];

    fn into_command(self, _: &CommandPath) -> Result<StockCommand, FieldErrors> {
        let (reservation_id, quantity) =
            check_all((ReservationId::parse(&self.reservation_id), StockQuantity::new(self.quantity)))?;
        Ok(StockCommand::Reserve { reservation_id, quantity })
    }
}

/// The reservation named in the path.
fn reservation(path: &CommandPath) -> Result<ReservationId, FieldErrors> {
    Ok(ReservationId::parse(path.param("reservation_id").unwrap_or_default())?)
}

fn reservation_parameter() -> Vec<Parameter> {
    let id = ParameterBuilder::new()
        .name("reservation_id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("The reservation"))
        .schema(Some(text(ReservationId::MAX_CHARS)));
    vec![id.build()]
}

/// `DELETE /stock/{sku}/reservations/{reservation_id}`: the units are available again.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReleaseRequest {}

impl HttpCommand for ReleaseRequest {
    type Aggregate = StockItem;
    const PATH: &'static str = "/stock/{sku}/reservations/{reservation_id}";
    const METHOD: CommandMethod = CommandMethod::Delete;
    const BODY: BodyKind = BodyKind::None;
    const OPERATION_ID: &'static str = "release_reservation";
    const SUMMARY: &'static str = "Release a reservation";
    const RESPONSES: &'static [(u16, &'static str)] = &[(404, "reservation_not_found: no such reservation is held")];

    fn into_command(self, path: &CommandPath) -> Result<StockCommand, FieldErrors> {
        Ok(StockCommand::Release { reservation_id: reservation(path)? })
    }

    fn path_parameters() -> Vec<Parameter> {
        reservation_parameter()
    }
}

/// `POST /stock/{sku}/reservations/{reservation_id}/commit`: `{}` or no body at all.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CommitBody {}

impl HttpCommand for CommitBody {
    type Aggregate = StockItem;
    const PATH: &'static str = "/stock/{sku}/reservations/{reservation_id}/commit";
    const BODY: BodyKind = BodyKind::OptionalJson;
    const OPERATION_ID: &'static str = "commit_reservation";
    const SUMMARY: &'static str = "Commit a reservation: its units leave the stock on hand";
    const RESPONSES: &'static [(u16, &'static str)] = &[(404, "reservation_not_found: no such reservation is held")];

    fn into_command(self, path: &CommandPath) -> Result<StockCommand, FieldErrors> {
        Ok(StockCommand::Commit { reservation_id: reservation(path)? })
    }

    fn path_parameters() -> Vec<Parameter> {
        reservation_parameter()
    }
}

impl Domain {
    /// The SKU's stock level; with `min_version` > 0, once the read model has applied
    /// that version of it, waiting at most `wait`. A SKU without events is not found
    /// at once.
    pub async fn stock_level(
        &self,
        raw_sku: &str,
        min_version: u64,
        wait: Duration,
    ) -> Result<StockLevelView, ApiError> {
        let sku = StockItem::parse_id(raw_sku)?;
        let not_found = || ApiError::StockItemNotFound(sku.clone());
        if min_version > 0 {
            let stream = CommandHandler::<StockItem>::stream_id(&sku).map_err(|e| store_error(&e))?;
            if self.runtime.store().stream_version(&stream).await.map_err(|e| store_error(&e))? == 0 {
                return Err(not_found());
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let level = get_stock_level(self.runtime.db(), &sku).await.map_err(projection_error)?;
            let version = level.as_ref().map_or(0, |l| u64::try_from(l.version).unwrap_or(0));
            match level {
                Some(level) if version >= min_version => return Ok(view(level)),
                None if min_version == 0 => return Err(not_found()),
                _ => {}
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ApiError::ProjectionLagging { what: "stock item", min_version });
            }
            let poll = (deadline - now).min(Duration::from_millis(50));
            self.runtime.changed(STOCK_LEVELS, poll).await.map_err(projection_error)?;
        }
    }
}

fn view(level: StockLevel) -> StockLevelView {
    StockLevelView {
        sku: level.sku,
        on_hand: level.on_hand,
        reserved: level.reserved,
        available: level.available,
        version: u64::try_from(level.version).unwrap_or(0),
    }
}

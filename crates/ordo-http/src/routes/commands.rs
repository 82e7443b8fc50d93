//! The command routes: each checks its input, hands one order command to the domain
//! and answers `{"order_id","version","position"}` with `ETag: "<version>"`; a create
//! answers 201 with `Location`. A replay under an idempotency key answers the same,
//! plus `Idempotent-Replayed: true`.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::Value;
use tracing::Span;
use uuid::Uuid;

use crate::domain::{self, CommandCall, CommandDone, OrderCmd};
use crate::dto::{AddItemBody, CancelBody, CommandResult, CreateOrderBody, EmptyBody, PayBody, ShipBody};
use crate::error::{ApiError, IDEMPOTENT_REPLAYED};
use crate::extract::{IdempotencyKeyHeader, JsonBody, OptionalJsonBody, OrderPath, Precondition};
use crate::fingerprint::fingerprint;
use crate::request_id::RequestId;
use crate::AppState;

/// A committed command's answer.
pub struct CommandResponse {
    done: CommandDone,
    created: bool,
}

impl IntoResponse for CommandResponse {
    fn into_response(self) -> Response {
        let CommandDone { order_id, version, position, replayed } = self.done;
        let status = if self.created { StatusCode::CREATED } else { StatusCode::OK };
        let location = self.created.then(|| format!("/orders/{order_id}"));
        let body = CommandResult { order_id, version, position };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
            headers.insert(header::ETAG, etag);
        }
        if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        if replayed {
            headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            metrics::counter!("ordo_http_idempotent_replays_total").increment(1);
        }
        response
    }
}

/// What a route knows about the request besides its command.
struct Route<'a> {
    method: &'static str,
    template: &'static str,
    params: &'a [(&'a str, &'a str)],
    body: &'a Value,
}

/// Runs a checked command, or refuses an invalid one (recording that refusal under
/// the idempotency key, as the command handler records rejections).
async fn run(
    app: &AppState,
    route: Route<'_>,
    checked: Result<(Uuid, OrderCmd), ApiError>,
    precondition: Precondition,
    key: Option<String>,
    request_id: Option<Extension<RequestId>>,
) -> Result<CommandResponse, ApiError> {
    let idempotency = key.map(|key| {
        let fingerprint = fingerprint(route.method, route.template, route.params, route.body);
        (key, fingerprint)
    });
    let (order_id, command) = match checked {
        Ok(checked) => checked,
        Err(ApiError::Validation { errors, .. }) => return Err(app.domain.refuse_invalid(idempotency, errors).await),
        Err(other) => return Err(other),
    };
    let span = Span::current();
    span.record("order_id", tracing::field::display(order_id));
    let created = command.creates();
    let call =
        CommandCall { order_id, command, precondition, idempotency, request_id: request_id.map(|Extension(id)| id.0) };
    let done = app.domain.execute(call).await?;
    Ok(CommandResponse { done, created })
}

#[utoipa::path(post, path = "/orders", tag = "commands",
    request_body(content = CreateOrderBody, content_type = "application/json"),
    params(crate::openapi::CommandHeaders),
    responses(
        (status = 201, description = "created", body = CommandResult, headers(
            ("ETag" = String, description = "\"<version>\""),
            ("Location" = String, description = "/orders/{id}"))),
        (status = 409, description = "order_exists, concurrency_conflict or idempotency_key_in_flight"),
        (status = 412, description = "wrong_expected_version (If-None-Match: * on an existing order)"),
        (status = 422, description = "validation_failed or idempotency_key_reused"),
    ))]
pub async fn create_order(
    State(app): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    precondition: Precondition,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    body: JsonBody<CreateOrderBody>,
) -> Result<CommandResponse, ApiError> {
    let checked = body.value.and_then(|body| domain::create(&body));
    let route = Route { method: "POST", template: "/orders", params: &[], body: &body.canonical };
    run(&app, route, checked, precondition, key, request_id).await
}

macro_rules! order_command {
    ($(#[$doc:meta])* $name:ident, $path:literal, $body:ty, $extract:ident, $to_command:expr) => {
        $(#[$doc])*
        pub async fn $name(
            State(app): State<AppState>,
            request_id: Option<Extension<RequestId>>,
            path: OrderPath,
            precondition: Precondition,
            IdempotencyKeyHeader(key): IdempotencyKeyHeader,
            body: $extract<$body>,
        ) -> Result<CommandResponse, ApiError> {
            let to_command: fn(&$body) -> Result<OrderCmd, ApiError> = $to_command;
            let checked = body.value.and_then(|body| to_command(&body)).map(|command| (path.id, command));
            let id = path.id();
            let route = Route { method: "POST", template: $path, params: &[("id", &id)], body: &body.canonical };
            run(&app, route, checked, precondition, key, request_id).await
        }
    };
}

order_command!(
    #[utoipa::path(post, path = "/orders/{id}/items", tag = "commands",
        request_body(content = AddItemBody, content_type = "application/json"),
        params(crate::openapi::OrderId, crate::openapi::CommandHeaders),
        responses(
            (status = 200, description = "item added", body = CommandResult, headers(("ETag" = String))),
            (status = 404, description = "order_not_found"),
            (status = 409, description = "rule_violation, concurrency_conflict or idempotency_key_in_flight"),
            (status = 412, description = "wrong_expected_version"),
            (status = 422, description = "validation_failed or idempotency_key_reused"),
        ))]
    add_item,
    "/orders/{id}/items",
    AddItemBody,
    JsonBody,
    domain::add_item
);
order_command!(
    #[utoipa::path(post, path = "/orders/{id}/place", tag = "commands",
        request_body(content = Option<EmptyBody>, content_type = "application/json"),
        params(crate::openapi::OrderId, crate::openapi::CommandHeaders),
        responses(
            (status = 200, description = "placed", body = CommandResult, headers(("ETag" = String))),
            (status = 404, description = "order_not_found"),
            (status = 409, description = "rule_violation, concurrency_conflict or idempotency_key_in_flight"),
            (status = 412, description = "wrong_expected_version"),
            (status = 422, description = "validation_failed or idempotency_key_reused"),
        ))]
    place_order,
    "/orders/{id}/place",
    EmptyBody,
    OptionalJsonBody,
    |_| Ok(OrderCmd::place())
);
order_command!(
    #[utoipa::path(post, path = "/orders/{id}/pay", tag = "commands",
        request_body(content = PayBody, content_type = "application/json"),
        params(crate::openapi::OrderId, crate::openapi::CommandHeaders),
        responses(
            (status = 200, description = "paid", body = CommandResult, headers(("ETag" = String))),
            (status = 404, description = "order_not_found"),
            (status = 409, description = "rule_violation, concurrency_conflict or idempotency_key_in_flight"),
            (status = 412, description = "wrong_expected_version"),
            (status = 422, description = "validation_failed or idempotency_key_reused"),
        ))]
    pay_order,
    "/orders/{id}/pay",
    PayBody,
    JsonBody,
    domain::pay
);
order_command!(
    #[utoipa::path(post, path = "/orders/{id}/ship", tag = "commands",
        request_body(content = ShipBody, content_type = "application/json"),
        params(crate::openapi::OrderId, crate::openapi::CommandHeaders),
        responses(
            (status = 200, description = "shipped", body = CommandResult, headers(("ETag" = String))),
            (status = 404, description = "order_not_found"),
            (status = 409, description = "rule_violation, concurrency_conflict or idempotency_key_in_flight"),
            (status = 412, description = "wrong_expected_version"),
            (status = 422, description = "validation_failed or idempotency_key_reused"),
        ))]
    ship_order,
    "/orders/{id}/ship",
    ShipBody,
    JsonBody,
    domain::ship
);
order_command!(
    #[utoipa::path(post, path = "/orders/{id}/deliver", tag = "commands",
        request_body(content = Option<EmptyBody>, content_type = "application/json"),
        params(crate::openapi::OrderId, crate::openapi::CommandHeaders),
        responses(
            (status = 200, description = "delivered", body = CommandResult, headers(("ETag" = String))),
            (status = 404, description = "order_not_found"),
            (status = 409, description = "rule_violation, concurrency_conflict or idempotency_key_in_flight"),
            (status = 412, description = "wrong_expected_version"),
            (status = 422, description = "validation_failed or idempotency_key_reused"),
        ))]
    deliver_order,
    "/orders/{id}/deliver",
    EmptyBody,
    OptionalJsonBody,
    |_| Ok(OrderCmd::deliver())
);
order_command!(
    #[utoipa::path(post, path = "/orders/{id}/cancel", tag = "commands",
        request_body(content = CancelBody, content_type = "application/json"),
        params(crate::openapi::OrderId, crate::openapi::CommandHeaders),
        responses(
            (status = 200, description = "cancelled", body = CommandResult, headers(("ETag" = String))),
            (status = 404, description = "order_not_found"),
            (status = 409, description = "rule_violation, concurrency_conflict or idempotency_key_in_flight"),
            (status = 412, description = "wrong_expected_version"),
            (status = 422, description = "validation_failed or idempotency_key_reused"),
        ))]
    cancel_order,
    "/orders/{id}/cancel",
    CancelBody,
    JsonBody,
    domain::cancel
);

#[utoipa::path(delete, path = "/orders/{id}/items/{sku}", tag = "commands",
    params(crate::openapi::OrderId,
        ("sku" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$", description = "The SKU to remove"),
        crate::openapi::CommandHeaders),
    responses(
        (status = 200, description = "item removed", body = CommandResult, headers(("ETag" = String))),
        (status = 404, description = "order_not_found"),
        (status = 409, description = "rule_violation (no such item, or not a draft), concurrency_conflict or idempotency_key_in_flight"),
        (status = 412, description = "wrong_expected_version"),
        (status = 422, description = "validation_failed (the SKU) or idempotency_key_reused"),
    ))]
pub async fn remove_item(
    State(app): State<AppState>,
    request_id: Option<Extension<RequestId>>,
    path: OrderPath,
    precondition: Precondition,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
) -> Result<CommandResponse, ApiError> {
    let sku = path.sku.clone().unwrap_or_default();
    let checked = OrderCmd::remove_item(&sku).map(|command| (path.id, command));
    let id = path.id();
    let params = [("id", id.as_str()), ("sku", sku.as_str())];
    let route = Route { method: "DELETE", template: "/orders/{id}/items/{sku}", params: &params, body: &Value::Null };
    run(&app, route, checked, precondition, key, request_id).await
}

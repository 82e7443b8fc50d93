//! The query routes, served from the read models (eventually consistent) — orders and
//! stock levels —, and the raw event stream of an order, served from the event store.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::dto::{EventView, OrderPageView, OrderView, StockLevelView};
use crate::error::ApiError;
use crate::extract::{IfNoneMatch, OrderPath, PathParam, QueryParams};
use crate::AppState;

/// Default and bounds of `limit` in `GET /orders`.
const LIMIT_DEFAULT: u64 = 50;
const LIMIT_MAX: u64 = 500;

/// `GET /orders/{id}` and `GET /stock/{sku}` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MinVersionQuery {
    /// Wait (bounded) until the read model has applied this version of the order (or
    /// stock item).
    #[serde(default, deserialize_with = "crate::extract::blank_as_none")]
    pub min_version: Option<u64>,
}

#[utoipa::path(get, path = "/orders/{id}", tag = "queries",
    params(crate::openapi::OrderId, MinVersionQuery,
        ("If-None-Match" = Option<String>, Header, description = "304 when the order's ETag is among these")),
    responses(
        (status = 200, description = "the order", body = OrderView, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 304, description = "not modified since the ETag given", headers(("ETag" = String))),
        (status = 404, description = "order_not_found"),
        (status = 503, description = "projection_lagging: min_version not reached in time"),
    ))]
pub async fn get_order(
    State(app): State<AppState>,
    path: OrderPath,
    if_none_match: IfNoneMatch,
    QueryParams(query): QueryParams<MinVersionQuery>,
) -> Result<Response, ApiError> {
    tracing::Span::current().record("order_id", tracing::field::display(path.id));
    let order = match query.min_version {
        Some(min) if min > 0 => app.domain.order_at_least(&path.id, min, app.config.min_version_wait).await?,
        _ => app.domain.order(&path.id).await?,
    };
    Ok(tagged(order.version, Json(order), &if_none_match))
}

/// `body` with `ETag: "<version>"`, or 304 if `If-None-Match` names that version.
fn tagged(version: u64, body: impl IntoResponse, if_none_match: &IfNoneMatch) -> Response {
    let mut response =
        if if_none_match.matches(version) { StatusCode::NOT_MODIFIED.into_response() } else { body.into_response() };
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// `GET /orders` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this customer's orders.
    #[serde(default, deserialize_with = "crate::extract::blank_as_none")]
    pub customer_id: Option<String>,
    /// Only orders in this status.
    #[param(inline)]
    #[serde(default, deserialize_with = "crate::extract::blank_as_none")]
    pub status: Option<crate::dto::OrderStatusName>,
    /// Orders per page: 1 to 500, 50 by default.
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, deserialize_with = "crate::extract::blank_as_none")]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    #[serde(default, deserialize_with = "crate::extract::blank_as_none")]
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/orders", tag = "queries",
    params(ListQuery),
    responses(
        (status = 200, description = "a page of orders, oldest first", body = OrderPageView),
    ))]
pub async fn list_orders(
    State(app): State<AppState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<OrderPageView>, ApiError> {
    let limit = query.limit.unwrap_or(LIMIT_DEFAULT);
    if !(1..=LIMIT_MAX).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!("limit must be 1 to {LIMIT_MAX}, is {limit}")));
    }
    let status = query.status.map(|s| s.as_str());
    let page = app.domain.list(query.customer_id, status, limit as usize, query.cursor).await?;
    Ok(Json(page))
}

#[utoipa::path(get, path = "/orders/{id}/events", tag = "queries",
    params(crate::openapi::OrderId),
    responses(
        (status = 200, description = "the order's events, oldest first", body = Vec<EventView>),
        (status = 404, description = "order_not_found"),
    ))]
pub async fn order_events(State(app): State<AppState>, path: OrderPath) -> Result<Json<Vec<EventView>>, ApiError> {
    tracing::Span::current().record("order_id", tracing::field::display(path.id));
    Ok(Json(app.domain.events(&path.id).await?))
}

#[utoipa::path(get, path = "/stock/{sku}", tag = "queries",
    params(
        ("sku" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$", description = "The SKU"),
        MinVersionQuery,
        ("If-None-Match" = Option<String>, Header, description = "304 when the stock level's ETag is among these")),
    responses(
        (status = 200, description = "the SKU's stock", body = StockLevelView, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 304, description = "not modified since the ETag given", headers(("ETag" = String))),
        (status = 404, description = "stock_item_not_found: the SKU was never restocked"),
        (status = 422, description = "validation_failed: the SKU is out of bounds"),
        (status = 503, description = "projection_lagging: min_version not reached in time"),
    ))]
pub async fn stock_level(
    State(app): State<AppState>,
    PathParam(sku): PathParam,
    if_none_match: IfNoneMatch,
    QueryParams(query): QueryParams<MinVersionQuery>,
) -> Result<Response, ApiError> {
    tracing::Span::current().record("sku", tracing::field::display(&sku));
    let min_version = query.min_version.unwrap_or(0);
    let level = app.domain.stock_level(&sku, min_version, app.config.min_version_wait).await?;
    Ok(tagged(level.version, Json(level), &if_none_match))
}

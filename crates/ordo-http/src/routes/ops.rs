//! Operations: projection status and the admin rebuild, health, metrics and the
//! OpenAPI document.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::dto::{Health, ProjectionView, RebuildAccepted};
use crate::error::ApiError;
use crate::AppState;

#[utoipa::path(get, path = "/projections", tag = "operations",
    responses((status = 200, description = "every projector's status", body = Vec<ProjectionView>)))]
pub async fn projections(State(app): State<AppState>) -> Result<Json<Vec<ProjectionView>>, ApiError> {
    Ok(Json(app.domain.projections().await?))
}

#[utoipa::path(post, path = "/projections/{name}/rebuild", tag = "operations",
    params(("name" = String, Path, description = "The projector, as GET /projections names it")),
    security(("admin_token" = [])),
    responses(
        (status = 202, description = "the rebuild started; follow it in GET /projections", body = RebuildAccepted),
        (status = 401, description = "unauthorized: missing or wrong admin token"),
        (status = 403, description = "admin_disabled: no admin token is configured"),
        (status = 404, description = "projection_not_found"),
        (status = 409, description = "rebuild_in_progress"),
    ))]
pub async fn rebuild(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<RebuildAccepted>), ApiError> {
    authorize(&headers, app.admin_digest.as_ref())?;
    let name = app.domain.start_rebuild(&name).await?;
    Ok((StatusCode::ACCEPTED, Json(RebuildAccepted { name, status: "rebuilding".into() })))
}

/// The digest of an admin token, which is what is kept and compared.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Checks `Authorization: Bearer <token>` against the configured token. Digests are
/// compared in constant time, so neither the token's bytes nor its length leak.
fn authorize(headers: &HeaderMap, expected: Option<&[u8; 32]>) -> Result<(), ApiError> {
    let expected = expected.ok_or(ApiError::AdminDisabled)?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(ApiError::Unauthorized)?;
    if bool::from(token_digest(presented).ct_eq(expected)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "the process is up", body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "the database answers and is migrated", body = Health),
        (status = 503, description = "not_ready"),
    ))]
pub async fn ready(State(app): State<AppState>) -> Result<Json<Health>, ApiError> {
    app.domain.ready().await?;
    Ok(Json(Health { status: "ready".into() }))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(app): State<AppState>) -> Response {
    app.domain.refresh_gauges().await;
    let text = app.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "this document (OpenAPI 3.1)", body = Object)))]
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document_json()).into_response()
}

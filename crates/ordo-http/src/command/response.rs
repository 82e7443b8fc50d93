//! A committed command's answer: `{ID_FIELD, "version", "position"}` with
//! `ETag: "<version>"`, 201 with `Location` for a create, and
//! `Idempotent-Replayed: true` on a replay. It depends only on the recorded outcome,
//! so a replay is byte-identical.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::run::Done;
use crate::error::IDEMPOTENT_REPLAYED;

/// The answer to a committed command (or its replay).
pub(super) struct CommandResponse {
    pub done: Done,
    /// The answer's field naming the aggregate (`order_id`).
    pub id_field: &'static str,
    /// `Some(collection)` for a create: 201 with `Location: {collection}/{id}`.
    pub created_in: Option<&'static str>,
}

/// The body, fields in this order: the id, `version`, `position`.
struct Body<'a>(&'a CommandResponse);

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let CommandResponse { done, id_field, .. } = self.0;
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry(id_field, &done.aggregate_id)?;
        map.serialize_entry("version", &done.version)?;
        map.serialize_entry("position", &done.position)?;
        map.end()
    }
}

impl IntoResponse for CommandResponse {
    fn into_response(self) -> Response {
        let status = if self.created_in.is_some() { StatusCode::CREATED } else { StatusCode::OK };
        let mut response = (status, axum::Json(Body(&self))).into_response();
        let Done { aggregate_id, version, replayed, .. } = &self.done;
        let headers = response.headers_mut();
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
            headers.insert(header::ETAG, etag);
        }
        let location = self.created_in.map(|collection| format!("{collection}/{aggregate_id}"));
        if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        if *replayed {
            headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            metrics::counter!("ordo_http_idempotent_replays_total").increment(1);
        }
        response
    }
}

//! A command route's body, read as its [`BodyKind`] says: the typed body, or why the
//! JSON does not fit the type (kept for the route, which records that refusal under
//! the idempotency key like any other), and the canonical JSON for the fingerprint.
//! A body that cannot be read at all (413, 415, 400) is refused at once.

use axum::extract::{FromRequest, Request};
use serde_json::{Map, Value};

use super::{BodyKind, FieldErrors, HttpCommand};
use crate::error::ApiError;
use crate::extract::{canonical_json, is_json, read_body};

/// The body of a request for command `B`.
pub(super) struct CommandBody<B> {
    pub value: Result<B, FieldErrors>,
    /// As fingerprinted: the canonical JSON, `{}` for an optional body left out, and
    /// `null` on a route without a body.
    pub canonical: Value,
}

impl<S: Send + Sync, B: HttpCommand> FromRequest<S> for CommandBody<B> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let empty = Value::Object(Map::new());
        if B::BODY == BodyKind::None {
            return Ok(Self { value: typed(&empty), canonical: Value::Null });
        }
        let json = is_json(req.headers());
        let bytes = read_body(req, state).await?;
        if B::BODY == BodyKind::OptionalJson && bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self { value: typed(&empty), canonical: empty });
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let canonical = canonical_json(&bytes)?;
        Ok(Self { value: typed(&canonical), canonical })
    }
}

fn typed<B: HttpCommand>(json: &Value) -> Result<B, FieldErrors> {
    B::deserialize(json).map_err(|e| FieldErrors::one("body", e.to_string()))
}

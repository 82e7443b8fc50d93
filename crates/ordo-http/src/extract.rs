//! Extractors that turn the parts of a request into checked values, each refusing
//! with an `ApiError` (so with problem+json): the order id in the path,
//! `If-Match`/`If-None-Match`, `Idempotency-Key` and query strings; and the reading
//! of JSON bodies that command routes build on.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;

use crate::error::ApiError;
use crate::fingerprint::canonical;

/// Longest `Idempotency-Key` accepted, in characters (the contract's bound).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// The whole body; one over the limit is a 413.
pub(crate) async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadBody(format!("could not read the request body: {}", rejection.body_text()))
        }
    })
}

/// `application/json`, or any `application/*+json`, with any parameters.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body parsed as JSON and made canonical (for fingerprints); not JSON is a 400.
pub(crate) fn canonical_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(canonical(value))
}

/// `{id}`: a UUID (written in its lowercase hyphenated form).
pub struct OrderPath {
    pub id: Uuid,
}

impl<S: Send + Sync> FromRequestParts<S> for OrderPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = PathParam::from_request_parts(parts, state).await?.0;
        let id = Uuid::try_parse(&raw).map_err(|_| ApiError::InvalidOrderId(raw.clone()))?;
        Ok(Self { id })
    }
}

/// The one parameter of a path (`{sku}` of `/stock/{sku}`), percent-decoded.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::InvalidPath(e.body_text()))?;
        Ok(Self(params.into_values().next().unwrap_or_default()))
    }
}

/// What `If-Match` / `If-None-Match` ask of the order's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precondition {
    /// No condition: decide against the latest state, retrying on conflicts.
    #[default]
    None,
    /// `If-Match: *`: the order must exist.
    Exists,
    /// `If-Match: "N"`: the order must be at version N.
    Version(u64),
    /// `If-None-Match: *`: the order must not exist yet.
    Absent,
}

impl<S: Send + Sync> FromRequestParts<S> for Precondition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let if_match = header_text(&parts.headers, header::IF_MATCH, "If-Match")?;
        let if_none_match = header_text(&parts.headers, header::IF_NONE_MATCH, "If-None-Match")?;
        match (if_match, if_none_match) {
            (None, None) => Ok(Precondition::None),
            (Some(_), Some(_)) => Err(ApiError::InvalidHeader {
                name: "If-Match",
                detail: "send If-Match or If-None-Match, not both".into(),
            }),
            (Some(value), None) => parse_if_match(value.trim()),
            (None, Some(value)) if value.trim() == "*" => Ok(Precondition::Absent),
            (None, Some(_)) => Err(ApiError::InvalidHeader {
                name: "If-None-Match",
                detail: "commands accept only If-None-Match: *".into(),
            }),
        }
    }
}

fn parse_if_match(value: &str) -> Result<Precondition, ApiError> {
    if value == "*" {
        return Ok(Precondition::Exists);
    }
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .map(Precondition::Version)
        .ok_or_else(|| ApiError::InvalidHeader {
            name: "If-Match",
            detail: "expected * or one strong entity tag as this API issues them, like \"3\"".into(),
        })
}

/// The header's value as text, if present; a value that is not visible ASCII is a
/// client error.
fn header_text<'a>(
    headers: &'a HeaderMap,
    name: header::HeaderName,
    label: &'static str,
) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(&name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::InvalidHeader { name: label, detail: "sent more than once".into() });
    }
    first.to_str().map(Some).map_err(|_| ApiError::InvalidHeader { name: label, detail: "not visible ASCII".into() })
}

/// The `Idempotency-Key` header, checked: 1 to 255 characters, no control characters.
pub struct IdempotencyKeyHeader(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let name = header::HeaderName::from_static("idempotency-key");
        let mut values = parts.headers.get_all(&name).iter();
        let Some(value) = values.next() else { return Ok(Self(None)) };
        if values.next().is_some() {
            return Err(ApiError::InvalidIdempotencyKey("sent more than once".into()));
        }
        let key = value.to_str().map_err(|_| ApiError::InvalidIdempotencyKey("not visible ASCII".into()))?;
        let chars = key.chars().count();
        if chars == 0 || chars > MAX_IDEMPOTENCY_KEY_CHARS {
            return Err(ApiError::InvalidIdempotencyKey(format!(
                "a key has 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters, this one has {chars}"
            )));
        }
        if key.chars().any(char::is_control) {
            return Err(ApiError::InvalidIdempotencyKey("a key has no control characters".into()));
        }
        Ok(Self(Some(key.to_owned())))
    }
}

/// A query parameter given blank (`?limit=`) reads as not given; any other value
/// must parse.
pub fn blank_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let raw: Option<String> = serde::Deserialize::deserialize(deserializer)?;
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => value.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// Query parameters; a malformed query string is a 400 with `validation_failed`.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) =
            Query::<T>::from_request_parts(parts, state).await.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
        Ok(Self(value))
    }
}

/// `If-None-Match` on a read: `*` or a list of entity tags, weak or strong (RFC 9110
/// §13.1.2 compares them weakly for GET). A header that does not parse is ignored, as
/// the RFC allows for conditions a server cannot evaluate.
pub struct IfNoneMatch(Option<String>);

impl IfNoneMatch {
    /// Whether the representation at `version` matches, so the answer is 304.
    pub fn matches(&self, version: u64) -> bool {
        let Some(value) = &self.0 else { return false };
        let current = version.to_string();
        value.split(',').map(str::trim).any(|tag| {
            tag == "*"
                || tag.trim_start_matches("W/").strip_prefix('"').and_then(|t| t.strip_suffix('"')) == Some(&current)
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let values: Vec<&str> =
            parts.headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).collect();
        Ok(Self((!values.is_empty()).then(|| values.join(","))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_a_star_or_one_strong_version() {
        assert_eq!(parse_if_match("*").unwrap(), Precondition::Exists);
        assert_eq!(parse_if_match("\"0\"").unwrap(), Precondition::Version(0));
        assert_eq!(parse_if_match("\"42\"").unwrap(), Precondition::Version(42));
        for bad in ["42", "W/\"1\"", "\"1\", \"2\"", "\"\"", "\"x\"", "\"99999999999999999999999\"", "\"-1\""] {
            assert!(parse_if_match(bad).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn if_none_match_on_reads_compares_weakly() {
        let of = |v: &str| IfNoneMatch(Some(v.to_owned()));
        assert!(of("\"3\"").matches(3));
        assert!(of("W/\"3\"").matches(3));
        assert!(of("\"1\", \"3\"").matches(3));
        assert!(of("*").matches(3));
        assert!(!of("\"2\"").matches(3));
        assert!(!of("garbage").matches(3));
        assert!(!IfNoneMatch(None).matches(3));
    }

    #[test]
    fn json_content_types() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static(v));
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/json"));
        assert!(!with("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }
}

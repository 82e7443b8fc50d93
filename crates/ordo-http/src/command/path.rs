//! A command route's path parameters: the aggregate's id, checked by its
//! [`HttpAggregate::parse_id`], and the others as the client sent them
//! (percent-decoded), in the order of the route's template.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use std::collections::HashMap;

use super::{FieldErrors, HttpAggregate};
use crate::error::ApiError;

/// The path parameters of a command request.
#[derive(Clone, Debug, Default)]
pub struct CommandPath {
    id: Option<String>,
    /// Every parameter in template order, the id in its canonical form.
    params: Vec<(String, String)>,
}

impl CommandPath {
    /// The aggregate's id, when the route's path names one.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The path parameter `name`, percent-decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// `(name, value)` of every parameter in template order, for the fingerprint.
    pub(super) fn params(&self) -> Vec<(&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    /// The parameters of `template` from `raw`. A malformed id is an error at once;
    /// an id out of bounds comes back beside the path (kept as sent), to be refused
    /// like any other field.
    pub(super) fn parse<A: HttpAggregate>(
        template: &str,
        mut raw: HashMap<String, String>,
    ) -> Result<(Self, Option<FieldErrors>), ApiError> {
        let mut path = Self::default();
        let mut refused = None;
        for name in template_params(template) {
            let mut value = raw.remove(name).unwrap_or_default();
            if name == A::ID_PARAM {
                match A::parse_id(&value) {
                    Ok(id) => value = id,
                    Err(ApiError::Validation { errors, .. }) => refused = Some(FieldErrors::from(errors)),
                    Err(other) => return Err(other),
                }
                path.id = Some(value.clone());
            }
            path.params.push((name.to_owned(), value));
        }
        Ok((path, refused))
    }
}

/// The names of a template's parameters, in order: `id`, `sku` for
/// `/orders/{id}/items/{sku}`.
pub(super) fn template_params(template: &str) -> impl Iterator<Item = &str> {
    template.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

/// The raw path parameters (none on a route without any); a path that is not UTF-8
/// once decoded is a 400.
pub(super) struct RawPath(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for RawPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<HashMap<String, String>>::from_request_parts(parts, state).await {
            Ok(Path(params)) => Ok(Self(params)),
            Err(PathRejection::MissingPathParams(_)) => Ok(Self(HashMap::new())),
            Err(e) => Err(ApiError::InvalidPath(e.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parameters_in_order() {
        assert_eq!(template_params("/orders/{id}/items/{sku}").collect::<Vec<_>>(), ["id", "sku"]);
        assert_eq!(template_params("/orders").count(), 0);
    }
}

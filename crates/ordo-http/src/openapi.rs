//! The OpenAPI 3.1 document: the queries and operations from their route
//! annotations, the command routes from their `HttpCommand`s (with links from the
//! routes that create an aggregate). One pass then gives every error response its
//! problem+json body and the headers that go with it, and adds the errors every
//! operation can meet (rate limit, overload, outage), so that a schema-driven fuzzer
//! finds no undocumented status or shape.

use serde::Deserialize;
use std::sync::OnceLock;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder, Type};
use utoipa::{IntoParams, Modify, OpenApi};

use crate::error::PROBLEM_JSON;
use crate::routes::{ops, queries};
use crate::{command, dto};

/// The headers every command takes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documentation only: the extractors read these headers
pub struct CommandHeaders {
    /// `*` (it must exist) or `"<version>"` (it must be at that version).
    #[serde(rename = "If-Match")]
    #[param(pattern = r#"^(\*|"[0-9]+")$"#)]
    if_match: Option<String>,
    /// `*`: it must not exist yet (for a create).
    #[serde(rename = "If-None-Match")]
    #[param(pattern = r"^\*$")]
    if_none_match: Option<String>,
    /// Makes the command take effect at most once; a retry replays the first answer.
    #[serde(rename = "Idempotency-Key")]
    #[param(min_length = 1, max_length = 255)]
    idempotency_key: Option<String>,
}

/// The order id in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documentation only: `OrderPath` reads it
pub struct OrderId {
    /// The order's id (a UUID).
    id: uuid::Uuid,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Ordo", description = "An event-sourced CQRS order system: commands, queries and operations."),
    paths(
        queries::get_order,
        queries::list_orders,
        queries::order_events,
        queries::stock_level,
        ops::projections,
        ops::rebuild,
        ops::live,
        ops::ready,
        ops::metrics,
        ops::openapi,
    ),
    components(schemas(dto::Problem, dto::FieldError))
)]
struct ApiDoc;

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    let routes = crate::domain::command_routes();
    command::document(&mut document, &routes);
    command::add_links(&mut document, &routes);
    ProblemResponses.modify(&mut document);
    document
}

/// The document as served, built once.
pub fn document_json() -> String {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| document().to_json().unwrap_or_default()).clone()
}

struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.post, &mut item.delete].into_iter().flatten() {
                complete(operation);
            }
        }
    }
}

/// Adds the errors any operation can meet, then shapes every error response.
fn complete(operation: &mut Operation) {
    let has_body = operation.request_body.is_some();
    let has_params = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let mut generic = vec![
        ("429", "rate_limited: too many requests from this client"),
        ("500", "internal_error"),
        ("503", "overloaded, timeout, database_unavailable or projection_lagging; see Retry-After"),
    ];
    if has_params || has_body {
        generic.push((
            "400",
            "invalid_order_id, invalid_header, validation_failed (query, Idempotency-Key) or invalid_json",
        ));
    }
    if has_body {
        generic.push(("413", "payload_too_large: the body is over the limit (64 KiB)"));
        generic.push(("415", "unsupported_media_type: the body must be application/json"));
        generic.push(("422", "validation_failed"));
    }
    let responses = &mut operation.responses.responses;
    for (status, description) in generic {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(description).build()));
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else { continue };
        if !status.starts_with(['4', '5']) {
            continue;
        }
        let problem = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
        response.content.clear();
        response.content.insert(PROBLEM_JSON.to_owned(), problem);
        let header = |description: &str| {
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(description))
                .build()
        };
        match status.as_str() {
            "409" | "429" | "503" => {
                response.headers.insert(
                    "Retry-After".into(),
                    header("seconds to wait before retrying (when the error is transient)"),
                );
            }
            "412" => {
                response.headers.insert("ETag".into(), header("the order's current version, \"<version>\""));
            }
            "401" => {
                response.headers.insert("WWW-Authenticate".into(), header("Bearer"));
            }
            _ => {}
        }
    }
}

//! The command route, written once for every command of every aggregate: routing,
//! reading and checking the body, `If-Match`/`If-None-Match` as the expectation, the
//! `Idempotency-Key` with the request's fingerprint, the mapping of every outcome to
//! its status and problem, the answer (`ETag`, `Location`, `Idempotent-Replayed`) and
//! the route's OpenAPI operation.
//!
//! Exposing a command is implementing [`HttpCommand`] on its request body and listing
//! it with [`command_route`]; exposing an aggregate is implementing [`HttpAggregate`]
//! once. This module knows of the library crates only `ordo-core`'s generic command
//! API (`Aggregate`, `CommandHandler`); the domains' commands live in `domain`.

mod body;
mod document;
mod fields;
mod path;
mod response;
mod route;
mod run;

use ordo_core::Aggregate;
use serde::de::DeserializeOwned;
use utoipa::openapi::path::Parameter;
use utoipa::openapi::Object;
use utoipa::ToSchema;

use crate::error::ApiError;

pub use document::{add_links, document};
pub use fields::{check_all, FieldErrors};
pub use path::CommandPath;
pub use route::{command_route, CommandRoute, Handlers};

/// An aggregate as the API shows it: how its id appears in paths and answers.
pub trait HttpAggregate: Aggregate {
    /// What the API calls one, in messages: `order`, `stock item`.
    const NAME: &'static str;
    /// The path parameter that names one: `id` in `/orders/{id}/place`.
    const ID_PARAM: &'static str;
    /// The field of a command's answer that names it: `order_id`.
    const ID_FIELD: &'static str;
    /// The name of its commands' answer (`{ID_FIELD, version, position}`) in the
    /// OpenAPI document.
    const RESULT_SCHEMA: &'static str;

    /// The id as the path gives it, checked and in its canonical form. A malformed id
    /// is a 400; [`ApiError::Validation`] (422) is recorded under the request's
    /// idempotency key like any refused input.
    fn parse_id(raw: &str) -> Result<String, ApiError>;

    /// The id's schema, for the path parameter and the answer's field.
    fn id_schema() -> Object;
}

/// The HTTP method of a command route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandMethod {
    /// `POST`: most commands.
    Post,
    /// `DELETE`: a command that removes something the path names.
    Delete,
}

impl CommandMethod {
    /// As the request line writes it (and the fingerprint hashes it).
    pub fn as_str(self) -> &'static str {
        match self {
            CommandMethod::Post => "POST",
            CommandMethod::Delete => "DELETE",
        }
    }
}

/// What a command route reads as its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// A JSON body, required.
    Json,
    /// A JSON body, or none at all (read as `{}`).
    OptionalJson,
    /// No body: the command is in the path (read as `{}`; a body sent is ignored).
    None,
}

/// The command of `B`'s aggregate.
pub type CommandOf<B> = <<B as HttpCommand>::Aggregate as Aggregate>::Command;

/// A request body that is one command of one aggregate, exposed as one route. The
/// route answers `{ID_FIELD, "version", "position"}` with `ETag: "<version>"` (201 with
/// `Location` when it creates the aggregate), every error as problem+json, and
/// takes `If-Match`, `If-None-Match: *` and `Idempotency-Key`.
pub trait HttpCommand: DeserializeOwned + ToSchema + Send + 'static {
    /// Whose command it is.
    type Aggregate: HttpAggregate;
    /// The route's template; the aggregate's id is the `{ID_PARAM}` parameter.
    const PATH: &'static str;
    /// `POST` unless said otherwise.
    const METHOD: CommandMethod = CommandMethod::Post;
    /// A JSON body, required, unless said otherwise.
    const BODY: BodyKind = BodyKind::Json;
    /// Whether it creates the aggregate: 201 with `Location: {PATH}/{id}`, and the
    /// id comes from [`HttpCommand::aggregate_id`] since the path has none.
    const CREATES: bool = false;
    /// The OpenAPI operation's id (`apply_discount`).
    const OPERATION_ID: &'static str;
    /// The OpenAPI operation's one-line summary.
    const SUMMARY: &'static str;
    /// Descriptions of statuses that say more than the generic ones (`409`: which
    /// rules), or statuses the generic ones lack.
    const RESPONSES: &'static [(u16, &'static str)] = &[];

    /// The checked command, or every field that is out of bounds (422).
    fn into_command(self, path: &CommandPath) -> Result<CommandOf<Self>, FieldErrors>;

    /// The aggregate the command goes to: the one the path names, or on a route
    /// without one (a create) a new UUID. Override to let the body name it.
    fn aggregate_id(&self, path: &CommandPath) -> Result<String, FieldErrors> {
        Ok(path.id().map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned))
    }

    /// The path parameters besides the aggregate's id, for the OpenAPI document.
    fn path_parameters() -> Vec<Parameter> {
        Vec::new()
    }
}

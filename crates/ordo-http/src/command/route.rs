//! [`command_route`]: an [`HttpCommand`] made a route — its axum handler and its
//! OpenAPI operation — and [`Handlers`], one `CommandHandler` per aggregate, shared
//! by that aggregate's routes (its cache and per-aggregate locks are the handler's).

use axum::routing::{delete, post, MethodRouter};
use axum::Extension;
use ordo_core::{Aggregate, CommandHandler, HandlerConfig};
use ordo_store::EventStore;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use utoipa::openapi::OpenApi;

use super::body::CommandBody;
use super::path::RawPath;
use super::response::CommandResponse;
use super::run::{self, Call};
use super::{CommandMethod, CommandOf, CommandPath, FieldErrors, HttpAggregate, HttpCommand};
use crate::error::ApiError;
use crate::extract::{IdempotencyKeyHeader, Precondition};
use crate::fingerprint::fingerprint;
use crate::request_id::RequestId;
use crate::AppState;

/// A command route, ready to be mounted and documented.
pub struct CommandRoute {
    /// The route's template (`/orders/{id}/discount`).
    pub path: &'static str,
    pub(super) method: CommandMethod,
    pub(super) creates: bool,
    pub(super) id_param: &'static str,
    pub(super) id_field: &'static str,
    pub(super) body_fields: fn() -> Vec<String>,
    mount: fn(&Handlers) -> MethodRouter<AppState>,
    document: fn(&mut OpenApi),
}

/// The route of command `B`.
pub fn command_route<B: HttpCommand>() -> CommandRoute {
    CommandRoute {
        path: B::PATH,
        method: B::METHOD,
        creates: B::CREATES,
        id_param: B::Aggregate::ID_PARAM,
        id_field: B::Aggregate::ID_FIELD,
        body_fields: super::document::body_fields::<B>,
        mount: mount::<B>,
        document: super::document::add::<B>,
    }
}

impl CommandRoute {
    /// The route's handler, running its commands through `handlers`.
    pub fn mount(&self, handlers: &Handlers) -> MethodRouter<AppState> {
        (self.mount)(handlers)
    }

    /// Adds the route's operation to `openapi`.
    pub fn document(&self, openapi: &mut OpenApi) {
        (self.document)(openapi)
    }
}

/// One command handler per aggregate type, made on first use.
#[derive(Clone)]
pub struct Handlers {
    store: Arc<dyn EventStore>,
    by_aggregate: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl Handlers {
    /// Handlers on `store`, none made yet.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store, by_aggregate: Arc::default() }
    }

    /// The handler of aggregate `A`.
    pub fn get<A: Aggregate>(&self) -> Arc<CommandHandler<A>> {
        let mut handlers = self.by_aggregate.lock().unwrap_or_else(PoisonError::into_inner);
        let handler = handlers
            .entry(TypeId::of::<A>())
            .or_insert_with(|| Arc::new(CommandHandler::<A>::new(Arc::clone(&self.store), HandlerConfig::default())));
        match Arc::clone(handler).downcast::<CommandHandler<A>>() {
            Ok(handler) => handler,
            // Unreachable (the entry of A's type id holds A's handler); a fresh one
            // would only lose the cache.
            Err(_) => Arc::new(CommandHandler::new(Arc::clone(&self.store), HandlerConfig::default())),
        }
    }
}

fn mount<B: HttpCommand>(handlers: &Handlers) -> MethodRouter<AppState> {
    let handler = handlers.get::<B::Aggregate>();
    let endpoint = move |request_id: Option<Extension<RequestId>>,
                         RawPath(raw): RawPath,
                         precondition: Precondition,
                         IdempotencyKeyHeader(key): IdempotencyKeyHeader,
                         body: CommandBody<B>| {
        let handler = Arc::clone(&handler);
        async move {
            let request_id = request_id.map(|Extension(id)| id.0);
            handle::<B>(&handler, raw, precondition, key, request_id, body).await
        }
    };
    match B::METHOD {
        CommandMethod::Post => post(endpoint),
        CommandMethod::Delete => delete(endpoint),
    }
}

/// Checks the request into a command and runs it, or refuses its input (recording
/// the refusal under the idempotency key, as the command handler records rejections).
async fn handle<B: HttpCommand>(
    handler: &CommandHandler<B::Aggregate>,
    raw_path: HashMap<String, String>,
    precondition: Precondition,
    key: Option<String>,
    request_id: Option<String>,
    body: CommandBody<B>,
) -> Result<CommandResponse, ApiError> {
    let (path, refused_id) = CommandPath::parse::<B::Aggregate>(B::PATH, raw_path)?;
    let idempotency = key.map(|key| {
        let fingerprint = fingerprint(B::METHOD.as_str(), B::PATH, &path.params(), &body.canonical);
        (key, fingerprint)
    });
    let done = match check::<B>(refused_id, body.value, &path) {
        Ok((aggregate_id, command)) => {
            tracing::Span::current().record(B::Aggregate::ID_FIELD, tracing::field::display(&aggregate_id));
            let call = Call { aggregate_id, command, precondition, idempotency, request_id };
            run::execute(handler, call).await?
        }
        Err(errors) => run::refuse(handler, idempotency, errors).await?,
    };
    Ok(CommandResponse { done, id_field: B::Aggregate::ID_FIELD, created_in: B::CREATES.then_some(B::PATH) })
}

/// The aggregate's id and the command, or every refused field: the path's id first,
/// then the body's fields, then an id the body names.
fn check<B: HttpCommand>(
    refused_id: Option<FieldErrors>,
    body: Result<B, FieldErrors>,
    path: &CommandPath,
) -> Result<(String, CommandOf<B>), FieldErrors> {
    if let Some(refused) = refused_id {
        return Err(refused);
    }
    let body = body?;
    let id = body.aggregate_id(path);
    match (body.into_command(path), id) {
        (Ok(command), Ok(id)) => Ok((id, command)),
        (command, id) => {
            let mut errors = FieldErrors::default();
            command.err().into_iter().chain(id.err()).for_each(|e| errors.extend(e));
            Err(errors)
        }
    }
}

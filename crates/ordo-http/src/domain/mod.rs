//! The seam between HTTP and the library crates: the domains' commands as
//! [`HttpCommand`](crate::command::HttpCommand)s (`order_commands`, `stock`), their
//! queries (`orders`, `stock`), the projections' status and rebuilds; `errors` turns
//! library errors into [`ApiError`]s. Routes see only DTOs, so a change of a library
//! API is an edit here (or, for the generic command API, in `command`) alone.

mod errors;
mod order_commands;
mod orders;
mod stock;

use ordo_projection::{ProjectionRuntime, ProjectorState};
use std::sync::{Arc, Mutex};

use crate::command::CommandRoute;
use crate::dto::{ProjectionErrorView, ProjectionView, RebuildView};
use crate::error::ApiError;

use errors::projection_error;
pub(crate) use errors::store_error;
use utoipa::openapi::{ObjectBuilder, Type};

/// Every command route of the API.
pub fn command_routes() -> Vec<CommandRoute> {
    let mut routes = order_commands::routes();
    routes.extend(stock::routes());
    routes
}

/// The domains and their projections, as the HTTP layer queries them.
#[derive(Clone)]
pub struct Domain {
    runtime: ProjectionRuntime,
    rebuilds: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Domain {
    pub fn new(runtime: ProjectionRuntime) -> Self {
        Self { runtime, rebuilds: Arc::default() }
    }

    /// Every projector's status.
    pub async fn projections(&self) -> Result<Vec<ProjectionView>, ApiError> {
        let statuses = self.runtime.statuses().await.map_err(projection_error)?;
        Ok(statuses
            .into_iter()
            .map(|s| ProjectionView {
                name: s.name,
                position: s.position,
                head: s.head,
                lag: s.lag,
                lag_seconds: s.lag_seconds,
                status: s.status.as_str().to_owned(),
                error: s.error.map(|e| ProjectionErrorView {
                    position: e.position,
                    event_type: e.event_type,
                    message: e.message,
                }),
                rebuild: s.rebuild.map(|p| RebuildView { done: p.done, total: p.total }),
            })
            .collect())
    }

    /// Starts rebuilding `name` in the background; progress shows in `projections`.
    pub async fn start_rebuild(&self, name: &str) -> Result<String, ApiError> {
        let Some(name) = self.runtime.names().into_iter().find(|n| *n == name) else {
            return Err(ApiError::ProjectionNotFound(name.to_owned()));
        };
        let statuses = self.runtime.statuses().await.map_err(projection_error)?;
        if statuses.iter().any(|s| s.name == name && s.status == ProjectorState::Rebuilding) {
            return Err(ApiError::RebuildInProgress(name.to_owned()));
        }
        let runtime = self.runtime.clone();
        let task = tokio::spawn(async move {
            match runtime.rebuild(name, |_| {}).await {
                Ok(events) => tracing::info!(projection = name, events, "rebuild finished"),
                Err(e) => tracing::warn!(projection = name, error = %e, "rebuild failed"),
            }
        });
        let mut rebuilds = self.rebuilds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        rebuilds.retain(|t| !t.is_finished());
        rebuilds.push(task);
        Ok(name.to_owned())
    }

    /// Stops rebuilds still running (their shadow tables are dropped by the next one).
    pub fn abort_rebuilds(&self) {
        let rebuilds = self.rebuilds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        rebuilds.iter().for_each(tokio::task::JoinHandle::abort);
    }

    /// Whether the database answers, with its schema migrated (the store opened, which
    /// applies migrations, and its tables and the read model can be queried).
    pub async fn ready(&self) -> Result<(), ApiError> {
        self.runtime.store().head_position().await.map_err(|e| ApiError::NotReady(e.to_string()))?;
        ordo_orders::read_model::get_order(self.runtime.db(), "")
            .await
            .map_err(|e| ApiError::NotReady(e.to_string()))?;
        Ok(())
    }

    /// Refreshes the projection gauges before a metrics scrape.
    pub async fn refresh_gauges(&self) {
        if let Err(e) = self.runtime.statuses().await {
            tracing::debug!(error = %e, "could not refresh projection gauges");
        }
    }
}

/// The schema of a checked text value: 1 to `max` characters, none of them control
/// characters (as the values check).
fn text(max: usize) -> ObjectBuilder {
    let pattern = r"^[^\x00-\x1F\x7F-\x9F]*$";
    ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(max)).pattern(Some(pattern))
}

//! The seam between HTTP and the library crates: every call into `ordo-core`,
//! `ordo-orders`, `ordo-projection` and `ordo-store` is in this module (`errors` maps
//! their errors, `parse` checks request bodies into commands), and every
//! library error becomes an [`ApiError`] here. Routes see only DTOs, [`OrderCmd`] and
//! [`CommandDone`], so a change of a library API is an edit here alone.

mod errors;
mod parse;

use ordo_core::{CommandHandler, CommandRequest, Expectation, HandlerConfig, IdempotencyKey};
use ordo_orders::read_model::{self, ListOrders, OrderSummary, OrderWait};
use ordo_orders::Order;
use ordo_projection::{ProjectionRuntime, ProjectorState};
use ordo_store::{EventMetadata, ExpectedVersion, IdempotencyRecord, StoreError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

use crate::dto::{
    EventView, FieldError, ItemView, OrderPageView, OrderStatusName, OrderView, ProjectionErrorView, ProjectionView,
    RebuildView,
};
use crate::error::ApiError;
use crate::extract::Precondition;

pub use parse::{add_item, cancel, create, pay, ship, OrderCmd};

use errors::{command_error, projection_error, refusal_outcome, replayed_refusal, store_error};

/// What every idempotency key is unique within: one scope for all routes, so a key
/// reused on another route is caught as a different request.
const IDEMPOTENCY_SCOPE: &str = "http";
/// Events read per page of `GET /orders/{id}/events`.
const EVENTS_PAGE: usize = 1_000;

/// A command to run, as a route hands it over.
pub struct CommandCall {
    pub order_id: Uuid,
    pub command: OrderCmd,
    pub precondition: Precondition,
    /// The `Idempotency-Key` and the request's fingerprint.
    pub idempotency: Option<(String, String)>,
    pub request_id: Option<String>,
}

/// A committed command, or the replay of one.
#[derive(Debug)]
pub struct CommandDone {
    pub order_id: String,
    pub version: u64,
    pub position: u64,
    pub replayed: bool,
}

/// The order domain and its projections, as the HTTP layer uses them.
#[derive(Clone)]
pub struct Domain {
    handler: Arc<CommandHandler<Order>>,
    /// How long idempotency records live (the handler's setting, for the records
    /// this module writes itself).
    retention: Duration,
    runtime: ProjectionRuntime,
    rebuilds: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Domain {
    pub fn new(runtime: ProjectionRuntime) -> Self {
        let config = HandlerConfig::default();
        let retention = config.idempotency_retention;
        let handler = Arc::new(CommandHandler::new(Arc::clone(runtime.store()), config));
        Self { handler, retention, runtime, rebuilds: Arc::default() }
    }

    /// Runs a command; `Ok` means its events are committed (or it is the replay of a
    /// committed one).
    pub async fn execute(&self, call: CommandCall) -> Result<CommandDone, ApiError> {
        let creates = call.command.creates();
        let order_id = call.order_id.hyphenated().to_string();
        let expectation = match call.precondition {
            Precondition::None => Expectation::Latest,
            Precondition::Exists => Expectation::Pinned(ExpectedVersion::StreamExists),
            Precondition::Version(v) => Expectation::Pinned(ExpectedVersion::Exact(v)),
            Precondition::Absent => Expectation::Pinned(ExpectedVersion::NoStream),
        };
        let mut metadata = EventMetadata::default();
        if let Some(id) = call.request_id {
            metadata.extra.insert("request_id".into(), id.into());
        }
        let mut request =
            CommandRequest::new(order_id, call.command.into_inner()).expecting(expectation).with_metadata(metadata);
        if let Some((key, fingerprint)) = call.idempotency {
            let key = IdempotencyKey::new(IDEMPOTENCY_SCOPE, key, fingerprint)
                .map_err(|e| ApiError::InvalidIdempotencyKey(e.reason))?;
            request = request.with_idempotency(key);
        }
        // The handler records `attempts` and `outcome` on the request's span.
        let committed = self.handler.handle(request).await.map_err(|e| command_error(e, creates))?;
        Ok(CommandDone {
            order_id: committed.aggregate_id,
            version: committed.version,
            position: committed.position,
            replayed: committed.replayed,
        })
    }

    /// Refuses a command whose input is invalid (422). Under an idempotency key the
    /// refusal is recorded like the handler records rejections, so that a retry gets
    /// it replayed and a different request with the key is `idempotency_key_reused`.
    pub async fn refuse_invalid(&self, idempotency: Option<(String, String)>, errors: Vec<FieldError>) -> ApiError {
        let Some((key, fingerprint)) = idempotency else { return ApiError::invalid(errors) };
        let store = self.runtime.store();
        for _ in 0..2 {
            match store.find_idempotency(IDEMPOTENCY_SCOPE, &key).await {
                Ok(Some(stored)) if stored.record.fingerprint != fingerprint => return ApiError::IdempotencyKeyReused,
                Ok(Some(stored)) => return replayed_refusal(&stored.record.outcome),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not look up an idempotency key; refusing unrecorded");
                    return ApiError::invalid(errors);
                }
            }
            let record = IdempotencyRecord {
                scope: IDEMPOTENCY_SCOPE.into(),
                key: key.clone(),
                fingerprint: fingerprint.clone(),
                outcome: refusal_outcome(&errors),
                expires_at: chrono::Utc::now()
                    + chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::days(1)),
            };
            match store.record_outcome(record).await {
                Ok(()) => return ApiError::invalid(errors),
                // A duplicate recorded first: look again and replay it.
                Err(StoreError::IdempotencyKeyExists { .. }) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "could not record a refusal; refusing unrecorded");
                    return ApiError::invalid(errors);
                }
            }
        }
        ApiError::IdempotencyKeyInFlight
    }

    /// The order as the read model has it now.
    pub async fn order(&self, id: &Uuid) -> Result<OrderView, ApiError> {
        let summary =
            read_model::get_order(self.runtime.db(), &id.hyphenated().to_string()).await.map_err(projection_error)?;
        summary.map(order_view).transpose()?.ok_or(ApiError::OrderNotFound { replayed: false })
    }

    /// The order once the read model has applied `min_version` of it, waiting at most
    /// `wait`. An order with no events at all is not found at once.
    pub async fn order_at_least(&self, id: &Uuid, min_version: u64, wait: Duration) -> Result<OrderView, ApiError> {
        let order_id = id.hyphenated().to_string();
        let stream = CommandHandler::<Order>::stream_id(&order_id).map_err(|e| store_error(&e))?;
        if self.runtime.store().stream_version(&stream).await.map_err(|e| store_error(&e))? == 0 {
            return Err(ApiError::OrderNotFound { replayed: false });
        }
        match read_model::wait_for_order(&self.runtime, &order_id, min_version, wait).await {
            Ok(OrderWait::Reached(summary)) => order_view(summary),
            Ok(OrderWait::Behind(_)) => Err(ApiError::ProjectionLagging { min_version }),
            Err(e) => Err(projection_error(e)),
        }
    }

    /// A page of orders, by creation.
    pub async fn list(
        &self,
        customer_id: Option<String>,
        status: Option<&str>,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<OrderPageView, ApiError> {
        let status = status
            .map(|s| {
                ordo_orders::OrderStatus::parse(s).ok_or_else(|| {
                    ApiError::InvalidQuery(format!(
                        "status {s:?} is not one of draft, placed, paid, shipped, delivered, cancelled"
                    ))
                })
            })
            .transpose()?;
        if let Some(cursor) = &cursor {
            read_model::parse_cursor(cursor)
                .map_err(|_| ApiError::InvalidQuery(format!("invalid cursor {cursor:?}")))?;
        }
        let query = ListOrders { customer_id, status, limit, cursor };
        let page = read_model::list_orders(self.runtime.db(), &query).await.map_err(|e| match e {
            read_model::ListError::InvalidCursor(_) => ApiError::InvalidQuery("invalid cursor".into()),
            read_model::ListError::Projection(e) => projection_error(e),
            other => ApiError::Internal(other.to_string()),
        })?;
        let orders = page.orders.into_iter().map(order_view).collect::<Result<Vec<_>, _>>()?;
        Ok(OrderPageView { orders, next_cursor: page.next_cursor })
    }

    /// The order's stream, oldest first, straight from the event store.
    pub async fn events(&self, id: &Uuid) -> Result<Vec<EventView>, ApiError> {
        let stream = CommandHandler::<Order>::stream_id(&id.hyphenated().to_string()).map_err(|e| store_error(&e))?;
        let store = self.runtime.store();
        let mut events = Vec::new();
        loop {
            let from = events.len() as u64 + 1;
            let page = store.read_stream(&stream, from, EVENTS_PAGE).await.map_err(|e| store_error(&e))?;
            let full = page.len() == EVENTS_PAGE;
            for e in page {
                events.push(EventView {
                    version: e.version,
                    position: e.position,
                    event_id: e.event_id.hyphenated().to_string(),
                    r#type: e.event_type,
                    data: e.data,
                    metadata: serde_json::to_value(&e.metadata).map_err(|e| ApiError::Internal(e.to_string()))?,
                    recorded_at: e.recorded_at,
                });
            }
            if !full {
                break;
            }
        }
        if events.is_empty() {
            return Err(ApiError::OrderNotFound { replayed: false });
        }
        Ok(events)
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
        read_model::get_order(self.runtime.db(), "").await.map_err(|e| ApiError::NotReady(e.to_string()))?;
        Ok(())
    }

    /// Refreshes the projection gauges before a metrics scrape.
    pub async fn refresh_gauges(&self) {
        if let Err(e) = self.runtime.statuses().await {
            tracing::debug!(error = %e, "could not refresh projection gauges");
        }
    }
}

fn order_view(summary: OrderSummary) -> Result<OrderView, ApiError> {
    use ordo_orders::OrderStatus;
    let status = match summary.status {
        OrderStatus::Draft => OrderStatusName::Draft,
        OrderStatus::Placed => OrderStatusName::Placed,
        OrderStatus::Paid => OrderStatusName::Paid,
        OrderStatus::Shipped => OrderStatusName::Shipped,
        OrderStatus::Delivered => OrderStatusName::Delivered,
        OrderStatus::Cancelled => OrderStatusName::Cancelled,
    };
    Ok(OrderView {
        order_id: summary.order_id,
        customer_id: summary.customer_id,
        status,
        items: summary
            .items
            .into_iter()
            .map(|i| ItemView { sku: i.sku, quantity: i.quantity, unit_price_cents: i.unit_price_cents })
            .collect(),
        total_cents: summary.total_cents,
        version: summary.version,
        updated_at: summary.updated_at,
    })
}

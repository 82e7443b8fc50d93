//! Ordo's HTTP API (axum): the commands, queries and operations of the contract in
//! `api-contract.md` (and the inventory's, `docs/http.md`), with problem+json errors,
//! `ETag`/`If-Match` preconditions, idempotency keys, read-your-writes, OpenAPI,
//! health, metrics, and protection against overload.
//!
//! **Architecture Invariant:** only this crate knows HTTP; it reaches the library
//! crates through `domain` (the domains' commands and queries) and `command` (the
//! generic command route, which knows only `ordo-core`'s generic command API).

mod command;
mod config;
mod domain;
mod dto;
mod error;
mod extract;
mod fingerprint;
mod openapi;
mod protect;
mod request_id;
mod routes;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use ordo_projection::ProjectionRuntime;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use config::{HttpConfig, RateLimit, BODY_LIMIT_DEFAULT};
pub use error::ApiError;

use command::Handlers;
use domain::Domain;
use routes::{ops, queries};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    domain: Domain,
    config: Arc<HttpConfig>,
    metrics: Option<PrometheusHandle>,
    admin_digest: Option<[u8; 32]>,
}

/// The API over a projection runtime (its store and read models).
pub struct Api {
    state: AppState,
    /// One command handler per aggregate, shared by its routes.
    handlers: Handlers,
}

impl Api {
    /// `metrics`: the Prometheus recorder's handle, when one is installed.
    pub fn new(runtime: ProjectionRuntime, config: HttpConfig, metrics: Option<PrometheusHandle>) -> Self {
        let admin_digest = config.admin_token.as_deref().filter(|t| !t.is_empty()).map(ops::token_digest);
        let handlers = Handlers::new(Arc::clone(runtime.store()));
        let state = AppState { domain: Domain::new(runtime), config: Arc::new(config), metrics, admin_digest };
        Self { state, handlers }
    }

    /// Every route with its middleware. Health and metrics stay outside the rate
    /// limit and the load shedder, so that probes still answer under overload.
    pub fn router(&self) -> Router {
        let config = &self.state.config;
        let commands = domain::command_routes();
        let api = commands.iter().fold(Router::new(), |api, c| api.route(c.path, c.mount(&self.handlers)));
        let api = api
            .route("/orders", get(queries::list_orders))
            .route("/orders/{id}", get(queries::get_order))
            .route("/orders/{id}/events", get(queries::order_events))
            .route("/stock/{sku}", get(queries::stock_level))
            .route("/projections", get(ops::projections))
            .route("/projections/{name}/rebuild", post(ops::rebuild))
            .route("/openapi.json", get(ops::openapi))
            .layer(DefaultBodyLimit::max(config.body_limit))
            .with_state(self.state.clone());
        let probes = Router::new()
            .route("/health/live", get(ops::live))
            .route("/health/ready", get(ops::ready))
            .route("/metrics", get(ops::metrics))
            .with_state(self.state.clone());
        Router::new()
            .merge(protect::protect(api, config))
            .merge(probes)
            .fallback(not_found)
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
            .layer(axum::middleware::from_fn(request_id::middleware))
    }

    /// Serves on `listener` until `shutdown` resolves, then lets in-flight requests
    /// finish; rebuilds started over HTTP are stopped.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.router().into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
        self.state.domain.abort_rebuilds();
        served
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}

fn panic_response(_: Box<dyn std::any::Any + Send>) -> axum::response::Response {
    axum::response::IntoResponse::into_response(ApiError::Internal("a handler panicked".into()))
}

/// Installs the process-wide Prometheus recorder (once; later calls get `None`).
pub fn install_metrics() -> Option<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        .ok()?
        .install_recorder()
        .ok()
}

//! `ordo serve`: opens the store, runs the projectors (and, when switched on, the
//! order-fulfillment process manager) and the idempotency purge, serves the HTTP
//! API, and on SIGINT/SIGTERM stops taking connections, lets in-flight requests
//! finish, then stops the projectors at a batch boundary.

use anyhow::Context;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::projections::ProcessManagers;

/// `ordo serve`'s settings (flags, or the environment).
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port; the real address is printed).
    #[arg(long, env = "ORDO_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Enables the admin routes (`POST /projections/{name}/rebuild`) for
    /// `Authorization: Bearer <token>`.
    #[arg(long, env = "ORDO_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "ORDO_BODY_LIMIT", default_value_t = ordo_http::BODY_LIMIT_DEFAULT)]
    body_limit: usize,
    /// Longest a request may take, in milliseconds (503 after).
    #[arg(long, env = "ORDO_REQUEST_TIMEOUT_MS", default_value_t = 15_000)]
    request_timeout_ms: u64,
    /// Requests handled at once; more are answered 503 at once.
    #[arg(long, env = "ORDO_MAX_CONCURRENCY", default_value_t = 512)]
    max_concurrency: usize,
    /// Requests per second per client (0: no rate limit).
    #[arg(long, env = "ORDO_RATE_LIMIT", default_value_t = 0)]
    rate_limit: u32,
    /// Requests a client may burst above the rate (default: the rate).
    #[arg(long, env = "ORDO_RATE_LIMIT_BURST")]
    rate_limit_burst: Option<u32>,
    /// Take the client address from `X-Forwarded-For` (only behind a proxy you trust).
    #[arg(long, env = "ORDO_TRUST_FORWARDED_FOR", default_value_t = false)]
    trust_forwarded_for: bool,
    /// Longest `GET /orders/{id}?min_version=N` waits for the read model, in milliseconds.
    #[arg(long, env = "ORDO_MIN_VERSION_WAIT_MS", default_value_t = 5_000)]
    min_version_wait_ms: u64,
    /// Runs the order-fulfillment process manager: a placed order reserves its items'
    /// stock and is cancelled (with the reason) when one is short; a cancelled order
    /// releases its reservations, a shipped one commits them. Off by default: the
    /// order flow is then exactly the contract's. `ORDO_FULFILLMENT` takes 1/0,
    /// true/false, yes/no or on/off.
    #[arg(long, env = "ORDO_FULFILLMENT", value_parser = clap::builder::BoolishValueParser::new())]
    fulfillment: bool,
}

impl ServeArgs {
    fn http_config(&self) -> ordo_http::HttpConfig {
        ordo_http::HttpConfig {
            body_limit: self.body_limit,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_concurrency: self.max_concurrency,
            rate_limit: (self.rate_limit > 0).then(|| ordo_http::RateLimit {
                per_second: self.rate_limit,
                burst: self.rate_limit_burst.unwrap_or(self.rate_limit),
            }),
            trust_forwarded_for: self.trust_forwarded_for,
            admin_token: self.admin_token.clone().filter(|t| !t.is_empty()),
            min_version_wait: Duration::from_millis(self.min_version_wait_ms),
        }
    }
}

pub async fn serve(url: &str, args: ServeArgs) -> anyhow::Result<()> {
    // Listening for signals first: one that arrives while starting must stop the
    // server gracefully, not kill it with the default action.
    let mut shutdown = ShutdownSignal::listen()?;
    let metrics = ordo_http::install_metrics();
    let process_managers = if args.fulfillment { ProcessManagers::Fulfillment } else { ProcessManagers::Off };
    let runtime = crate::projections::runtime(url, process_managers).await?;
    runtime.start().await.context("could not start the projectors")?;
    let purge = ordo_core::spawn_idempotency_purge(std::sync::Arc::clone(runtime.store()), Duration::from_secs(60));
    let listener =
        tokio::net::TcpListener::bind(args.bind).await.with_context(|| format!("cannot listen on {}", args.bind))?;
    let address = listener.local_addr().context("cannot read the bound address")?;
    let api = ordo_http::Api::new(runtime.clone(), args.http_config(), metrics);
    tracing::info!(backend = %runtime.store().backend(), %address, ?process_managers, "ordo is running");
    // Scripts and tests read the port from this line (with `--bind 127.0.0.1:0`).
    println!("listening on {address}");
    let _ = std::io::stdout().flush();
    let served = api
        .serve(listener, async move {
            shutdown.received().await;
            tracing::info!(
                "shutting down: in-flight requests finish, then projectors stop at their next batch boundary"
            );
        })
        .await;
    purge.abort();
    runtime.shutdown().await;
    tracing::info!("stopped");
    served.context("the HTTP server failed")
}

/// SIGINT and SIGTERM, listened for from the moment this is made.
struct ShutdownSignal {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignal {
    fn listen() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        })
    }

    async fn received(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

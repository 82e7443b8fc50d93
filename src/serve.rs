//! `ordo serve`: opens the store, runs the projectors and the idempotency purge, and
//! stops them at a batch boundary on SIGINT/SIGTERM. The HTTP API is mounted here
//! once it exists.

use anyhow::Context;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

pub async fn serve(url: &str, bind: SocketAddr) -> anyhow::Result<()> {
    // Listening for signals first: one that arrives while starting must stop the
    // server gracefully, not kill it with the default action.
    let mut shutdown = ShutdownSignal::listen()?;
    let runtime = crate::projections::runtime(url).await?;
    runtime.start().await.context("could not start the projectors")?;
    let purge = ordo_core::spawn_idempotency_purge(std::sync::Arc::clone(runtime.store()), Duration::from_secs(60));
    tracing::info!(backend = %runtime.store().backend(), %bind, "ordo is running (the HTTP API is not mounted yet)");
    shutdown.received().await;
    tracing::info!("shutting down: projectors stop at their next batch boundary");
    purge.abort();
    runtime.shutdown().await;
    Ok(())
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

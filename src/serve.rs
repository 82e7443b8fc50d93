//! `ordo serve`: opens the store, runs the projectors and the idempotency purge, and
//! stops them at a batch boundary on SIGINT/SIGTERM. The HTTP API is mounted here
//! once it exists.

use anyhow::Context;
use std::net::SocketAddr;
use std::time::Duration;

pub async fn serve(url: &str, bind: SocketAddr) -> anyhow::Result<()> {
    let runtime = crate::projections::runtime(url).await?;
    runtime.start().await.context("could not start the projectors")?;
    let purge = ordo_core::spawn_idempotency_purge(std::sync::Arc::clone(runtime.store()), Duration::from_secs(60));
    tracing::info!(backend = %runtime.store().backend(), %bind, "ordo is running (the HTTP API is not mounted yet)");
    shutdown_signal().await?;
    tracing::info!("shutting down: projectors stop at their next batch boundary");
    purge.abort();
    runtime.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

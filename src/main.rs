//! `ordo`: the server and its operator commands. Parses the command line, sets up
//! logging and hands over to the library crates; errors leave here as readable text.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;

#[derive(Parser)]
#[command(name = "ordo", version, about = "Ordo: an event-sourced CQRS order system")]
struct Cli {
    /// Where the events live: `sqlite://PATH` (the default, created if missing) or
    /// `postgres://USER@HOST/DATABASE`.
    #[arg(long, env = "DATABASE_URL", global = true, default_value_t = ordo_store::default_database_url())]
    database_url: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Applies migrations, then serves the HTTP API.
    Serve {
        /// The address to listen on.
        #[arg(long, env = "ORDO_BIND", default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
    },
    /// Applies the database migrations and exits.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Migrate => {
            ordo_store::connect(&cli.database_url).await.context("could not migrate the database")?;
            println!("migrations applied");
        }
        Command::Serve { bind } => {
            let store = ordo_store::connect(&cli.database_url).await.context("could not open the database")?;
            tracing::info!(backend = %store.backend(), %bind, "database ready, migrations applied");
            // The HTTP API arrives with its own issue; until then `serve` keeps the
            // store open until it is told to stop.
            tokio::signal::ctrl_c().await.context("waiting for a shutdown signal")?;
        }
    }
    Ok(())
}

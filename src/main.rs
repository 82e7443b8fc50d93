//! `ordo`: the server and its operator commands. Parses the command line, sets up
//! logging and hands over to the library crates; errors leave here as readable text.

mod projections;
mod serve;

use anyhow::Context;
use clap::{Parser, Subcommand};

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
    /// Applies migrations, runs the projectors and serves until SIGINT/SIGTERM.
    Serve(serve::ServeArgs),
    /// Applies the database migrations and exits.
    Migrate,
    /// Inspects and rebuilds projections (with or without a server running).
    Projections {
        #[command(subcommand)]
        command: projections::Command,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate => {
            let runtime = projections::runtime(&cli.database_url, projections::ProcessManagers::Off).await?;
            runtime.prepare().await.context("could not create the read models' tables")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Serve(args) => serve::serve(&cli.database_url, args).await,
        Command::Projections { command } => projections::run(&cli.database_url, command).await,
    }
}

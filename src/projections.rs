//! `ordo projections list | rebuild`: operator commands that work on the database
//! directly, whether or not a server is running.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use ordo_projection::{ProjectionRuntime, RunnerConfig};
use ordo_store::StreamId;
use std::sync::Arc;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Shows every projector's position, lag and status.
    List,
    /// Rebuilds a projection from the first event into shadow tables, then swaps them
    /// in (readers keep seeing the old read model until then).
    Rebuild {
        /// The projector, as `list` names it.
        name: String,
        /// Rebuild only this stream's rows (for read models keyed by stream).
        #[arg(long)]
        stream: Option<String>,
    },
}

/// The process managers a runtime runs beside the projectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessManagers {
    /// None: the contract's order flow exactly as written.
    Off,
    /// Order fulfillment (`ordo_inventory::fulfillment`): placed orders reserve
    /// stock, and an order short of stock is cancelled.
    Fulfillment,
}

/// The runtime with every projector Ordo ships (orders, stock levels) and the chosen
/// process managers, on the database at `url`, with every schema in place: the event
/// store's, then the projection runtime's.
pub async fn runtime(url: &str, process_managers: ProcessManagers) -> anyhow::Result<ProjectionRuntime> {
    let database = ordo_store::open(url).await.context("could not open the database")?;
    let mut projectors = ordo_orders::projectors();
    projectors.extend(ordo_inventory::projectors());
    let reactors = match process_managers {
        ProcessManagers::Off => Vec::new(),
        ProcessManagers::Fulfillment => ordo_inventory::fulfillment::reactors(Arc::clone(&database.store)),
    };
    ProjectionRuntime::open_with(database, projectors, reactors, RunnerConfig::default())
        .await
        .context("could not prepare the projection runtime's schema")
}

pub async fn run(url: &str, command: Command) -> anyhow::Result<()> {
    let runtime = runtime(url, ProcessManagers::Off).await?;
    match command {
        Command::List => list(&runtime).await,
        Command::Rebuild { name, stream: Some(stream) } => {
            let stream = StreamId::new(stream).context("invalid --stream")?;
            let applied = runtime.rebuild_stream(&name, &stream).await.with_context(|| format!("rebuilding {name}"))?;
            println!("rebuilt {name} for stream {stream} from {applied} events");
            Ok(())
        }
        Command::Rebuild { name, stream: None } => rebuild(&runtime, &name).await,
    }
}

async fn list(runtime: &ProjectionRuntime) -> anyhow::Result<()> {
    let statuses = runtime.statuses().await.context("could not read the projections' status")?;
    println!(
        "{:<24} {:>16} {:>16} {:>10} {:>10}  {:<12} error",
        "name", "position", "head", "lag", "lag (s)", "status"
    );
    for s in statuses {
        let error = s
            .error
            .map(|e| match (e.position, e.event_type) {
                (Some(position), Some(event_type)) => format!("at {position} ({event_type}): {}", e.message),
                _ => e.message,
            })
            .unwrap_or_default();
        println!(
            "{:<24} {:>16} {:>16} {:>10} {:>10.1}  {:<12} {error}",
            s.name,
            s.position,
            s.head,
            s.lag,
            s.lag_seconds,
            s.status.as_str()
        );
    }
    Ok(())
}

async fn rebuild(runtime: &ProjectionRuntime, name: &str) -> anyhow::Result<()> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} events, {per_sec}, ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_owned());
    let progress = bar.clone();
    let replayed = runtime
        .rebuild(name, move |p| {
            progress.set_length(p.total);
            progress.set_position(p.done);
        })
        .await
        .with_context(|| format!("could not rebuild {name}"))?;
    bar.finish();
    println!("rebuilt {name} from {replayed} events");
    Ok(())
}

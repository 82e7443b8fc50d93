//! The inventory aggregate embedded in a program of your own, without HTTP: stock that
//! never oversells, and its `stock_levels` read model, on a temporary SQLite file.
//! Run it with `cargo run --example inventory`.

use anyhow::Context;
use ordo_core::{CommandError, CommandHandler, CommandRequest, HandlerConfig};
use ordo_inventory::read_model::{get_stock_level, STOCK_LEVELS};
use ordo_inventory::values::{ReservationId, StockQuantity};
use ordo_inventory::{StockCommand, StockItem};
use ordo_projection::{ProjectionRuntime, RunnerConfig};
use std::time::Duration;

fn reserve(order: &str, units: i64) -> anyhow::Result<CommandRequest<StockCommand>> {
    let command =
        StockCommand::Reserve { reservation_id: ReservationId::parse(order)?, quantity: StockQuantity::new(units)? };
    Ok(CommandRequest::new("mug", command))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let database = ordo_store::open(&format!("sqlite://{}", dir.path().join("shop.db").display())).await?;
    let stock = CommandHandler::<StockItem>::new(database.store.clone(), HandlerConfig::default());
    let runtime = ProjectionRuntime::open(database, ordo_inventory::projectors(), RunnerConfig::default()).await?;
    runtime.start().await?;

    let restock = StockCommand::Restock { quantity: StockQuantity::new(10)? };
    stock.handle(CommandRequest::new("mug", restock)).await?;
    println!("restocked 10 mugs");
    stock.handle(reserve("order-1", 7)?).await?;
    println!("reserved 7 for order-1");
    match stock.handle(reserve("order-2", 5)?).await {
        Err(CommandError::Rejected { rejection, .. }) => println!("refused 5 for order-2: {rejection}"),
        other => anyhow::bail!("expected a refusal, got {other:?}"),
    }
    let release = StockCommand::Release { reservation_id: ReservationId::parse("order-1")? };
    stock.handle(CommandRequest::new("mug", release)).await?;
    println!("released order-1's 7");
    let last = stock.handle(reserve("order-2", 5)?).await?;
    println!("reserved 5 for order-2");

    anyhow::ensure!(runtime.wait_for_position(STOCK_LEVELS, last.position, Duration::from_secs(5)).await?);
    let level = get_stock_level(runtime.db(), "mug").await?.context("the read model has the mug")?;
    println!("stock_levels: {} on hand, {} reserved, {} available", level.on_hand, level.reserved, level.available);
    anyhow::ensure!((level.on_hand, level.reserved, level.available) == (10, 5, 5), "as reserved");
    runtime.shutdown().await;
    Ok(())
}

//! The `stock_levels` read model: one row per SKU with what is on hand, reserved and
//! available, kept by [`StockLevelProjector`] and read with [`get_stock_level`].
//!
//! A batch loads the rows it touches, folds the events in memory and writes each row
//! back once. It skips events a row already holds (by stream version) and fails
//! loudly on a gap, so a redelivered event is harmless and a lost one is noticed.

use async_trait::async_trait;
use ordo_core::{decode_event, Aggregate};
use ordo_projection::{Column, ProjectionError, Projector, ProjectorTx, ReadDb, SqlValue, TableDef};
use ordo_store::{EventFilter, RecordedEvent, StreamId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{StockEvent, StockItem};

/// The projector's name, which keys its checkpoint.
pub const STOCK_LEVELS: &str = "stock_levels";

const TABLE: TableDef = TableDef {
    name: STOCK_LEVELS,
    create: "CREATE TABLE IF NOT EXISTS {table} (
        sku TEXT PRIMARY KEY,
        on_hand BIGINT NOT NULL,
        reserved BIGINT NOT NULL,
        available BIGINT NOT NULL,
        version BIGINT NOT NULL
    )",
    indexes: &[],
};

const COLUMNS: &str = "sku, on_hand, reserved, available, version";

/// A SKU's stock as the read model holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct StockLevel {
    /// The SKU.
    pub sku: String,
    /// Units in the warehouse, reserved or not.
    pub on_hand: i64,
    /// Units held by reservations.
    pub reserved: i64,
    /// On hand − reserved: what a reservation may still take.
    pub available: i64,
    /// The version of the SKU's stream it reflects.
    pub version: i64,
}

impl StockLevel {
    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Restocked { quantity } => self.on_hand += quantity,
            StockEvent::Reserved { quantity, .. } => self.reserved += quantity,
            StockEvent::Released { quantity, .. } => self.reserved -= quantity,
            StockEvent::ReservationCommitted { quantity, .. } => {
                self.reserved -= quantity;
                self.on_hand -= quantity;
            }
        }
        self.available = self.on_hand - self.reserved;
    }
}

/// The SKU of a stock stream (`stock-A-1` → `A-1`).
fn sku_of(stream: &StreamId) -> Option<&str> {
    stream.as_str().strip_prefix(StockItem::CATEGORY)?.strip_prefix('-')
}

/// Keeps `stock_levels`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StockLevelProjector;

#[async_trait]
impl Projector for StockLevelProjector {
    fn name(&self) -> &'static str {
        STOCK_LEVELS
    }

    fn filter(&self) -> EventFilter {
        EventFilter::Categories(vec![StockItem::CATEGORY.into()])
    }

    fn tables(&self) -> Vec<TableDef> {
        vec![TABLE]
    }

    fn partitioned_by_stream(&self) -> bool {
        true // one row per SKU, from that SKU's events alone
    }

    async fn apply(&self, tx: &mut ProjectorTx<'_, '_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let table = tx.table(STOCK_LEVELS);
        let mut skus: Vec<String> = events.iter().filter_map(|e| sku_of(&e.stream_id)).map(str::to_owned).collect();
        skus.sort_unstable();
        skus.dedup();
        let sql = format!("SELECT {COLUMNS} FROM {table} WHERE sku {}{}", tx.any_of("$1"), tx.for_update());
        let rows: Vec<StockLevel> = tx.fetch_all(&sql, &[SqlValue::TextList(skus)]).await?;
        let mut levels: BTreeMap<String, StockLevel> = rows.into_iter().map(|r| (r.sku.clone(), r)).collect();
        for stored in events {
            let Some(sku) = sku_of(&stored.stream_id) else {
                return Err(ProjectionError::apply(stored, "not a stock stream"));
            };
            let level = levels.entry(sku.to_owned()).or_insert_with(|| StockLevel {
                sku: sku.to_owned(),
                on_hand: 0,
                reserved: 0,
                available: 0,
                version: 0,
            });
            let version = i64::try_from(stored.version).map_err(|e| ProjectionError::apply(stored, e))?;
            if version <= level.version {
                continue; // already applied: a redelivery
            }
            if version != level.version + 1 {
                let gap = format!("{sku} is at version {}, the event is version {version}", level.version);
                return Err(ProjectionError::apply(stored, gap));
            }
            let event: StockEvent = decode_event(stored).map_err(|e| ProjectionError::apply(stored, e))?;
            level.apply(&event);
            level.version = version;
        }
        let levels: Vec<StockLevel> = levels.into_values().collect();
        let ints = |f: fn(&StockLevel) -> i64| levels.iter().map(f).collect::<Vec<_>>();
        let columns = [
            Column::Text("sku", levels.iter().map(|l| l.sku.clone()).collect()),
            Column::Int("on_hand", ints(|l| l.on_hand)),
            Column::Int("reserved", ints(|l| l.reserved)),
            Column::Int("available", ints(|l| l.available)),
            Column::Int("version", ints(|l| l.version)),
        ];
        Ok(tx.upsert(table, "sku", &columns, Some("version")).await?)
    }

    async fn forget_stream(&self, tx: &mut ProjectorTx<'_, '_>, stream: &StreamId) -> Result<bool, ProjectionError> {
        let Some(sku) = sku_of(stream) else { return Ok(true) };
        let sql = format!("DELETE FROM {} WHERE sku = $1", tx.table(STOCK_LEVELS));
        tx.execute(&sql, &[sku.into()]).await?;
        Ok(true)
    }
}

/// A SKU's stock level, if the read model has seen the SKU.
pub async fn get_stock_level(db: &ReadDb, sku: &str) -> Result<Option<StockLevel>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM {STOCK_LEVELS} WHERE sku = $1");
    Ok(db.fetch_all::<StockLevel>(&sql, &[sku.into()]).await?.pop())
}

//! The raw baselines, on a twin of the `events` table (same columns, constraints and
//! indexes; see `ordo_store::baseline`), through the same connections and with the
//! same durability as the store: what the database itself can do, with no
//! event-store logic. Single-row INSERTs pay one commit per row; the batched ceiling
//! sends many rows per statement and commit, the most the database can durably take.

use ordo_store::baseline::{RawEvent, RawEvents};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use crate::phase::{self, Outcome, Tally};

/// Rows per commit of the batched ceiling.
pub const BATCH_ROWS: u64 = 100;

fn raw_event(stream: String, version: i64) -> RawEvent {
    RawEvent {
        stream_id: stream,
        version,
        event_id: uuid::Uuid::now_v7(),
        event_type: "ItemAdded".into(),
        data: json!({"sku": "SKU-1", "quantity": 1, "unit_price_cents": 1000}),
        metadata: json!({"correlation_id": uuid::Uuid::now_v7()}),
    }
}

/// Raw single-row inserts/s with `writers` concurrent writers, each on a stream of
/// its own (`run` keeps the streams of different phases apart).
pub async fn measure(raw: &Arc<RawEvents>, run: &str, writers: usize, duration: Duration) -> anyhow::Result<Tally> {
    let raw = Arc::clone(raw);
    let prefix = format!("raw{run}w{writers}");
    phase::run(writers, duration, move |worker, i| {
        let raw = Arc::clone(&raw);
        let row = raw_event(format!("{prefix}-{worker}"), i as i64 + 1);
        async move {
            raw.insert_one(&row).await?;
            Ok(Outcome::Success)
        }
    })
    .await
}

/// The batched ceiling: rows/s when `writers` writers each commit [`BATCH_ROWS`] rows
/// at a time (a tally's successes are rows).
pub async fn measure_batched(
    raw: &Arc<RawEvents>,
    run: &str,
    writers: usize,
    duration: Duration,
) -> anyhow::Result<Tally> {
    let raw = Arc::clone(raw);
    let prefix = format!("rawb{run}w{writers}");
    let mut tally = phase::run(writers, duration, move |worker, i| {
        let raw = Arc::clone(&raw);
        let first = (i * BATCH_ROWS) as i64;
        let rows: Vec<RawEvent> =
            (1..=BATCH_ROWS as i64).map(|v| raw_event(format!("{prefix}-{worker}"), first + v)).collect();
        async move {
            raw.insert_many(&rows).await?;
            Ok(Outcome::Success)
        }
    })
    .await?;
    tally.successes *= BATCH_ROWS;
    Ok(tally)
}

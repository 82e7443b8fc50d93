//! `ordo-bench append`: the event store's append path against raw single-row INSERTs,
//! with 1, 8, 32 and 64 writers on distinct streams (1 and 10 events per append) and
//! 32 writers fighting over one hot stream.

use ordo_store::baseline::RawEvents;
use ordo_store::{
    AppendRequest, DatabaseUrl, EventStore, ExpectedVersion, NewEvent, OpenOptions, StoreError, StreamId,
};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

use crate::phase::{self, Outcome, Tally};
use crate::raw;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: phase::Target,
}

const WRITERS: [usize; 4] = [1, 8, 32, 64];
const HOT_WRITERS: usize = 32;

/// The store under test, and the baseline on the same database and connections.
pub async fn open(url: &DatabaseUrl, connections: u32) -> anyhow::Result<(Arc<dyn EventStore>, Arc<RawEvents>)> {
    let db = ordo_store::open_with(url.as_str(), OpenOptions::default().max_connections(connections)).await?;
    let raw = RawEvents::create(&db).await?;
    Ok((db.store, Arc::new(raw)))
}

/// Drops the baseline's table once every phase is done with it.
pub async fn drop_raw(raw: Arc<RawEvents>) -> anyhow::Result<()> {
    match Arc::try_unwrap(raw) {
        Ok(raw) => Ok(raw.drop_table().await?),
        Err(_) => anyhow::bail!("the raw baseline is still in use"),
    }
}

fn item_added() -> NewEvent {
    NewEvent::new("ItemAdded", json!({"sku": "SKU-1", "quantity": 1, "unit_price_cents": 1000}))
}

/// Appends of `batch` events by `writers` writers, each on a stream of its own.
async fn distinct(
    store: &Arc<dyn EventStore>,
    run_id: &str,
    writers: usize,
    batch: u64,
    duration: Duration,
) -> anyhow::Result<Tally> {
    let store = Arc::clone(store);
    let prefix = format!("bench{run_id}w{writers}b{batch}");
    phase::run(writers, duration, move |worker, i| {
        let store = Arc::clone(&store);
        let stream = format!("{prefix}-{worker}");
        async move {
            let stream = StreamId::new(stream)?;
            let events = (0..batch).map(|_| item_added()).collect();
            match store.append(AppendRequest::new(stream, ExpectedVersion::Exact(i * batch), events)).await {
                Ok(_) => Ok(Outcome::Success),
                Err(StoreError::WrongExpectedVersion { .. }) => Ok(Outcome::Conflict),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await
}

/// `writers` writers appending to one stream, each at the version it last read.
async fn hot(store: &Arc<dyn EventStore>, run_id: &str, writers: usize, duration: Duration) -> anyhow::Result<Tally> {
    let store = Arc::clone(store);
    let stream = StreamId::new(format!("bench{run_id}hot-1"))?;
    phase::run(writers, duration, move |_, _| {
        let store = Arc::clone(&store);
        let stream = stream.clone();
        async move {
            let version = store.stream_version(&stream).await?;
            let request = AppendRequest::new(stream, ExpectedVersion::Exact(version), vec![item_added()]);
            match store.append(request).await {
                Ok(_) => Ok(Outcome::Success),
                Err(StoreError::WrongExpectedVersion { .. }) => Ok(Outcome::Conflict),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let url = DatabaseUrl::parse(&args.target.database_url)?;
    let duration = Duration::from_secs(args.target.seconds);
    let connections = (WRITERS[3] + 8) as u32;
    let (store, raw_pool) = open(&url, connections).await?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut figures = Map::new();
    figures.insert("bench".into(), json!("append"));
    figures.insert("backend".into(), json!(url.backend().to_string()));
    figures.insert("seconds_per_phase".into(), json!(args.target.seconds));

    println!("{:<34} {:>12} {:>12}", "phase", "per second", "conflicts/s");
    let mut distinct_conflicts = 0;
    for writers in WRITERS {
        let raw = raw::measure(&raw_pool, &run_id, writers, duration).await?;
        row(&format!("raw insert, {writers} writers"), &raw);
        let one = distinct(&store, &run_id, writers, 1, duration).await?;
        row(&format!("append 1 event, {writers} writers"), &one);
        let ten = distinct(&store, &run_id, writers, 10, duration).await?;
        row(&format!("append 10 events, {writers} writers"), &ten);
        distinct_conflicts += one.conflicts + ten.conflicts;
        let ratio = one.successes_per_s() / raw.successes_per_s();
        println!("{:<34} {:>12.2}", format!("ratio, {writers} writers"), ratio);
        figures.insert(format!("raw_per_s_{writers}"), round(raw.successes_per_s()));
        figures.insert(format!("append_per_s_{writers}"), round(one.successes_per_s()));
        figures.insert(format!("append10_per_s_{writers}"), round(ten.successes_per_s()));
        figures.insert(format!("append10_events_per_s_{writers}"), round(10.0 * ten.successes_per_s()));
        figures.insert(format!("ratio_{writers}"), json!((ratio * 1000.0).round() / 1000.0));
        if writers == 32 {
            let batched = raw::measure_batched(&raw_pool, &run_id, writers, duration).await?;
            row(&format!("raw batched ceiling rows, {writers} writers"), &batched);
            let ratio = one.successes_per_s() / batched.successes_per_s();
            println!("{:<34} {:>12.3}", "ratio to the batched ceiling, 32", ratio);
            figures.insert("raw_batched_per_s_32".into(), round(batched.successes_per_s()));
            figures.insert("ratio_batched_32".into(), json!((ratio * 1000.0).round() / 1000.0));
        }
    }
    let hot = hot(&store, &run_id, HOT_WRITERS, duration).await?;
    row(&format!("hot stream, {HOT_WRITERS} writers"), &hot);
    figures.insert("hot_successes_per_s".into(), round(hot.successes_per_s()));
    figures.insert("hot_conflicts_per_s".into(), round(hot.conflicts_per_s()));
    figures.insert("distinct_conflicts".into(), json!(distinct_conflicts));
    drop_raw(raw_pool).await?;
    println!("{}", Value::Object(figures));
    Ok(())
}

fn row(label: &str, tally: &Tally) {
    println!("{label:<34} {:>12.0} {:>12.0}", tally.successes_per_s(), tally.conflicts_per_s());
}

fn round(x: f64) -> Value {
    json!(x.round())
}

//! `ordo-bench rebuild`: rebuilds the order read model from N events (generated on
//! first use) beside a raw ceiling measured in the same run — a plain scan of the
//! same events and a batched upsert of one row per order in SQL — and then measures
//! the live projection lag (event committed → read model updated) under command load.

use ordo_core::{encode_event, Aggregate, CommandHandler, CommandRequest, HandlerConfig};
use ordo_orders::read_model::ORDER_SUMMARIES;
use ordo_orders::values::{CustomerId, Quantity, Sku, UnitPrice};
use ordo_orders::{Order, OrderCommand, OrderEvent};
use ordo_projection::{ProjectionRuntime, RunnerConfig};
use ordo_store::{
    AppendRequest, Backend, Column, DatabaseUrl, EventFilter, EventStore, ExpectedVersion, ReadDb, ReadModelError,
};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// The database to measure (`sqlite:///tmp/r.db`, or a fresh PostgreSQL database).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Order events to rebuild from (generated if the database has fewer).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seconds of command load for the lag measurement.
    #[arg(long, default_value_t = 10)]
    lag_seconds: u64,
    /// Events per rebuild batch (the runner's default if not given).
    #[arg(long)]
    rebuild_batch: Option<usize>,
}

/// Events per generated order: created, 8 items, placed.
const EVENTS_PER_ORDER: u64 = 10;
const BATCH: usize = 5_000;

fn order_events(n: u64) -> anyhow::Result<Vec<ordo_store::NewEvent>> {
    let mut events = vec![encode_event(&OrderEvent::OrderCreated { customer_id: format!("customer-{}", n % 1_000) })?];
    for i in 0..EVENTS_PER_ORDER - 2 {
        let sku = format!("sku-{}", (n + i) % 200);
        events.push(encode_event(&OrderEvent::ItemAdded { sku, quantity: 1 + (i as u32 % 3), unit_price_cents: 250 })?);
    }
    events.push(encode_event(&OrderEvent::OrderPlaced { total_cents: 0 })?);
    Ok(events)
}

/// Makes sure the database holds at least `events` generated order events.
async fn generate(store: &Arc<dyn EventStore>, events: u64) -> anyhow::Result<u64> {
    let filter = EventFilter::Categories(vec![Order::CATEGORY.into()]);
    let have = store.count_after(0, &filter).await?;
    let orders = events.saturating_sub(have).div_ceil(EVENTS_PER_ORDER);
    if orders == 0 {
        return Ok(have);
    }
    println!("generating {} events ({orders} orders)…", orders * EVENTS_PER_ORDER);
    let started = Instant::now();
    let prefix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let tasks = 32;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = Arc::clone(store);
            let prefix = prefix.clone();
            tokio::spawn(async move {
                let mut n = t;
                while n < orders {
                    let stream = ordo_store::StreamId::in_category(Order::CATEGORY, &format!("gen{prefix}-{n}"))?;
                    store.append(AppendRequest::new(stream, ExpectedVersion::NoStream, order_events(n)?)).await?;
                    n += tasks;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for h in handles {
        h.await??;
    }
    println!("generated in {:.1}s", started.elapsed().as_secs_f64());
    Ok(store.count_after(0, &filter).await?)
}

/// The raw ceiling: read every order event in batches by position and upsert one row
/// per order per batch (its last version and payload), in plain SQL through the
/// read-model database (the same connections, and on SQLite the same single writer,
/// as the rebuild).
async fn raw_ceiling(db: &ReadDb) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    ddl(db, "DROP TABLE IF EXISTS bench_raw_summaries").await?;
    ddl(db, "CREATE TABLE bench_raw_summaries (order_id TEXT PRIMARY KEY, version BIGINT, data TEXT)").await?;
    let (mut after, mut done) = (0i64, 0u64);
    loop {
        let rows: Vec<(i64, String, i64, String)> = db
            .fetch_all(
                "SELECT position, stream_id, version, CAST(data AS TEXT) FROM events WHERE position > $1 \
                 AND category = $2 ORDER BY position LIMIT $3",
                &[after.into(), Order::CATEGORY.into(), (BATCH as i64).into()],
            )
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        done += rows.len() as u64;
        let (ids, versions, data) = latest_per_stream(rows);
        db.transaction(move |mut tx| {
            Box::pin(async move {
                let columns =
                    [Column::Text("order_id", ids), Column::Int("version", versions), Column::Text("data", data)];
                tx.upsert("bench_raw_summaries", "order_id", &columns, None).await
            })
        })
        .await?;
    }
    ddl(db, "DROP TABLE bench_raw_summaries").await?;
    Ok((done, started.elapsed()))
}

async fn ddl(db: &ReadDb, statement: &'static str) -> Result<(), ReadModelError> {
    db.transaction(move |mut tx| Box::pin(async move { tx.execute(statement, &[]).await.map(drop) })).await
}

/// The last version and payload of each stream in a batch, as parallel columns.
fn latest_per_stream(rows: Vec<(i64, String, i64, String)>) -> (Vec<String>, Vec<i64>, Vec<String>) {
    let mut latest: std::collections::HashMap<String, (i64, String)> = std::collections::HashMap::new();
    for (_, stream, version, data) in rows {
        latest.insert(stream, (version, data));
    }
    let mut columns = (Vec::new(), Vec::new(), Vec::new());
    for (stream, (version, data)) in latest {
        columns.0.push(stream);
        columns.1.push(version);
        columns.2.push(data);
    }
    columns
}

/// Event committed → read model updated, for commands sent while others keep coming.
async fn live_lag(store: &Arc<dyn EventStore>, db: &ReadDb, seconds: u64) -> anyhow::Result<(f64, f64, u64)> {
    let database = ordo_store::Database { store: Arc::clone(store), read_db: db.clone() };
    let runtime = ProjectionRuntime::open(database, ordo_orders::projectors(), RunnerConfig::default()).await?;
    runtime.start().await?;
    let head = store.head_position().await?;
    anyhow::ensure!(
        runtime.wait_for_position(ORDER_SUMMARIES, head, Duration::from_secs(600)).await?,
        "the read model did not catch up with {head} within 600 s"
    );
    let handler = Arc::new(CommandHandler::<Order>::new(Arc::clone(store), HandlerConfig::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let load: Vec<_> = (0..8)
        .map(|t| {
            let (handler, stop, run_id) = (Arc::clone(&handler), Arc::clone(&stop), run_id.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("lag{run_id}-{t}-{}", i / 10);
                    handler.handle(CommandRequest::new(id, command(i))).await?;
                    i += 1;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3)?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut i = 0u64;
    while Instant::now() < deadline {
        let committed =
            handler.handle(CommandRequest::new(format!("lag{run_id}-probe-{}", i / 10), command(i))).await?;
        let started = Instant::now();
        let reached = runtime.wait_for_position(ORDER_SUMMARIES, committed.position, Duration::from_secs(30)).await?;
        // A wait that timed out is a failure of the projection, not a 30 s sample.
        anyhow::ensure!(reached, "the read model did not reach position {} within 30 s", committed.position);
        histogram.record(started.elapsed().as_micros() as u64)?;
        i += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await??;
    }
    runtime.shutdown().await;
    let ms = |q| histogram.value_at_quantile(q) as f64 / 1e3;
    Ok((ms(0.5), ms(0.99), histogram.len()))
}

fn command(i: u64) -> OrderCommand {
    if i.is_multiple_of(10) {
        OrderCommand::CreateOrder { customer_id: CustomerId::parse("lag").expect("valid") }
    } else {
        OrderCommand::AddItem {
            sku: Sku::parse(&format!("sku-{}", i % 7)).expect("valid"),
            quantity: Quantity::new(1).expect("valid"),
            unit_price: UnitPrice::new(100).expect("valid"),
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let url = DatabaseUrl::parse(&args.database_url)?;
    // The store and the read models share connections (on SQLite: one writer).
    let database = ordo_store::open(url.as_str()).await?;
    let (store, db) = (Arc::clone(&database.store), database.read_db.clone());
    let events = generate(&store, args.events).await?;
    // Fresh statistics after the bulk load, as autovacuum would soon have: without
    // them PostgreSQL plans each batch read as a full bitmap scan plus sort.
    ordo_store::baseline::analyze_events(&db).await?;
    let mut figures = Map::new();
    figures.insert("bench".into(), json!("rebuild"));
    figures.insert("backend".into(), json!(url.backend().to_string()));
    figures.insert("events".into(), json!(events));

    let (raw_events, raw_time) = raw_ceiling(&db).await?;
    let raw_per_s = raw_events as f64 / raw_time.as_secs_f64();
    println!(
        "{:<40} {raw_events:>10} events in {:>7.2}s = {raw_per_s:>10.0} events/s",
        "raw scan + batched upsert",
        raw_time.as_secs_f64()
    );

    // What reading alone costs: every event through the store's `$all` reader.
    let started = Instant::now();
    let (mut after, mut scanned) = (0, 0u64);
    let filter = EventFilter::Categories(vec![Order::CATEGORY.into()]);
    loop {
        let batch = store.read_all(after, BATCH, &filter).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        scanned += batch.len() as u64;
    }
    let scan_per_s = scanned as f64 / started.elapsed().as_secs_f64();
    println!(
        "{:<40} {scanned:>10} events in {:>7.2}s = {scan_per_s:>10.0} events/s",
        "store read_all alone",
        started.elapsed().as_secs_f64()
    );
    figures.insert("read_all_events_per_s".into(), json!(scan_per_s.round()));

    let mut config = RunnerConfig::default();
    config.rebuild_batch_size = args.rebuild_batch.unwrap_or(config.rebuild_batch_size);
    figures.insert("rebuild_batch".into(), json!(config.rebuild_batch_size));
    let runtime = ProjectionRuntime::open(database, ordo_orders::projectors(), config).await?;
    let started = Instant::now();
    let rebuilt = runtime.rebuild(ORDER_SUMMARIES, |_| {}).await?;
    let time = started.elapsed();
    let per_s = rebuilt as f64 / time.as_secs_f64();
    let ratio = per_s / raw_per_s;
    println!(
        "{:<40} {rebuilt:>10} events in {:>7.2}s = {per_s:>10.0} events/s",
        "rebuild order_summaries",
        time.as_secs_f64()
    );
    println!("{:<40} {ratio:>10.2}", "ratio to raw");
    figures.insert("events_per_s".into(), json!(per_s.round()));
    figures.insert("raw_events_per_s".into(), json!(raw_per_s.round()));
    figures.insert("ratio".into(), json!((ratio * 1000.0).round() / 1000.0));

    let (p50, p99, samples) = live_lag(&store, &db, args.lag_seconds).await?;
    println!("{:<40} p50 {p50:.2} ms, p99 {p99:.2} ms ({samples} samples)", "live projection lag under load");
    figures.insert("lag_p50_ms".into(), json!(p50));
    figures.insert("lag_p99_ms".into(), json!(p99));
    figures.insert("lag_samples".into(), json!(samples));
    if url.backend() == Backend::Sqlite {
        figures.insert("note".into(), json!("sqlite: one writer; rebuild batches share it with live appends"));
    }
    println!("{}", Value::Object(figures));
    Ok(())
}

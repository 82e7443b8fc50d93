//! `ordo-bench commands`: the command path (load, decide, append; no HTTP) beside the
//! raw-insert baselines (single rows with 1 and 32 writers, and the batched ceiling):
//! distinct aggregates with 1, 8 and 32 tasks; one hot aggregate with 32 tasks on one
//! handler, and on two independent handlers (two nodes) with 16 tasks each; and the
//! latency of commands on 10-event vs 10,000-event streams, warm and with a cold
//! cache (a new handler per sample).

use ordo_core::{CommandError, CommandHandler, CommandRequest, HandlerConfig};
use ordo_orders::values::{CustomerId, Quantity, Sku, UnitPrice};
use ordo_orders::{Order, OrderCommand, OrderEvent};
use ordo_store::{AppendRequest, DatabaseUrl, EventStore, ExpectedVersion, OpenOptions};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::append::{drop_raw, open};
use crate::phase::{self, Outcome, Tally};
use crate::raw;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: phase::Target,
    /// Commands timed per latency phase.
    #[arg(long, default_value_t = 300)]
    samples: usize,
}

const COMMANDS_PER_AGGREGATE: u64 = 10;
const LONG_STREAM: u64 = 10_000;

fn create() -> OrderCommand {
    OrderCommand::CreateOrder { customer_id: CustomerId::parse("bench-customer").expect("valid") }
}

fn add(i: u64) -> OrderCommand {
    OrderCommand::AddItem {
        sku: Sku::parse(&format!("sku-{}", i % 50)).expect("valid"),
        quantity: Quantity::new(1).expect("valid"),
        unit_price: UnitPrice::new(1_000).expect("valid"),
    }
}

type Handler = Arc<CommandHandler<Order>>;

/// `tasks` tasks, each on its own aggregates: create, then 9 items, then a fresh one.
async fn distinct(handler: &Handler, run_id: &str, tasks: usize, duration: Duration) -> anyhow::Result<Tally> {
    let handler = Arc::clone(handler);
    let run_id = run_id.to_owned();
    phase::run(tasks, duration, move |task, i| {
        let handler = Arc::clone(&handler);
        let id = format!("{run_id}-t{tasks}-{task}-{}", i / COMMANDS_PER_AGGREGATE);
        async move {
            let command = if i.is_multiple_of(COMMANDS_PER_AGGREGATE) { create() } else { add(i) };
            handler.handle(CommandRequest::new(id, command)).await?;
            Ok(Outcome::Success)
        }
    })
    .await
}

/// `tasks` tasks commanding one aggregate, spread over `handlers` in turn.
async fn hot(handlers: &[Handler], id: &str, tasks: usize, duration: Duration) -> anyhow::Result<Tally> {
    let first = handlers.first().ok_or_else(|| anyhow::anyhow!("no handler"))?;
    first.handle(CommandRequest::new(id, create())).await?;
    let handlers: Vec<Handler> = handlers.to_vec();
    let id = id.to_owned();
    phase::run(tasks, duration, move |task, i| {
        let handler = Arc::clone(&handlers[task % handlers.len()]);
        let id = id.clone();
        async move {
            match handler.handle(CommandRequest::new(id, add(i))).await {
                Ok(_) => Ok(Outcome::Success),
                Err(CommandError::Conflict { .. }) => Ok(Outcome::Conflict),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await
}

/// Writes a stream of `events` order events straight to the store (100 per append),
/// adding to the same nine items as the 10-event streams do, so that the long and the
/// short aggregates differ in length only, not in the size of their state.
async fn long_stream(store: &Arc<dyn EventStore>, id: &str, events: u64) -> anyhow::Result<()> {
    let stream = CommandHandler::<Order>::stream_id(id)?;
    let created = ordo_core::encode_event(&OrderEvent::OrderCreated { customer_id: "c".into() })?;
    store.append(AppendRequest::new(stream.clone(), ExpectedVersion::NoStream, vec![created])).await?;
    let mut version = 1;
    while version < events {
        let n = (events - version).min(100);
        let batch = (0..n)
            .map(|i| {
                let sku = format!("sku-{}", (version + i) % 9 + 1);
                ordo_core::encode_event(&OrderEvent::ItemAdded { sku, quantity: 1, unit_price_cents: 1 })
            })
            .collect::<Result<Vec<_>, _>>()?;
        store.append(AppendRequest::new(stream.clone(), ExpectedVersion::Exact(version), batch)).await?;
        version += n;
    }
    Ok(())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Median latency of one command on each of `ids` in turn, `samples` in all.
async fn latency(handler: &Handler, ids: &[String], samples: usize) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let id = &ids[i % ids.len()];
        let started = Instant::now();
        handler.handle(CommandRequest::new(id.clone(), add(1_000 + i as u64))).await?;
        times.push(started.elapsed());
    }
    Ok(median(times))
}

/// The time of one command on `id` through a new handler (a cold cache: the command
/// loads its aggregate).
async fn cold_command(store: &Arc<dyn EventStore>, id: &str, i: usize) -> anyhow::Result<Duration> {
    let handler = CommandHandler::<Order>::new(Arc::clone(store), HandlerConfig::default());
    let started = Instant::now();
    handler.handle(CommandRequest::new(id.to_owned(), add(1_000 + i as u64))).await?;
    Ok(started.elapsed())
}

/// The streams the latency phases command: `samples` 10-event ones and one
/// 10,000-event one.
struct Streams {
    short: Vec<String>,
    long: String,
}

async fn streams(store: &Arc<dyn EventStore>, run_id: &str, label: &str, samples: usize) -> anyhow::Result<Streams> {
    let setup = Arc::new(CommandHandler::<Order>::new(Arc::clone(store), HandlerConfig::default()));
    let short: Vec<String> = (0..samples).map(|i| format!("{run_id}-{label}-short-{i}")).collect();
    for id in &short {
        setup.handle(CommandRequest::new(id.clone(), create())).await?;
        for i in 1..COMMANDS_PER_AGGREGATE {
            setup.handle(CommandRequest::new(id.clone(), add(i))).await?;
        }
    }
    let long = format!("{run_id}-{label}-long");
    long_stream(store, &long, LONG_STREAM).await?;
    Ok(Streams { short, long })
}

/// Latency on 10-event streams and on a 10,000-event stream with `config`.
async fn latencies(
    store: &Arc<dyn EventStore>,
    run_id: &str,
    label: &str,
    config: HandlerConfig,
    samples: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let Streams { short, long } = streams(store, run_id, label, samples).await?;
    let handler = Arc::new(CommandHandler::<Order>::new(Arc::clone(store), config));
    // One warm-up command per aggregate, as a running server would have had: the long
    // stream's first load replays everything once and writes the snapshot that later
    // loads start from; with a cache, every aggregate is then warm on both sides.
    handler.handle(CommandRequest::new(long.clone(), add(1))).await?;
    for id in &short {
        handler.handle(CommandRequest::new(id.clone(), add(1))).await?;
    }
    wait_for_snapshot(store, &long).await?;
    let short_median = latency(&handler, &short, samples).await?;
    let long_median = latency(&handler, &[long], samples).await?;
    Ok((short_median, long_median))
}

/// Latency with a cold cache: a new handler per command.
async fn latencies_cold(
    store: &Arc<dyn EventStore>,
    run_id: &str,
    samples: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let Streams { short, long } = streams(store, run_id, "cold", samples).await?;
    // The first load of the long stream replays it all and saves its snapshot.
    CommandHandler::<Order>::new(Arc::clone(store), HandlerConfig::default())
        .handle(CommandRequest::new(long.clone(), add(1)))
        .await?;
    wait_for_snapshot(store, &long).await?;
    // Short and long samples take turns, so that both meet the same conditions
    // (background writes, the database's own work) rather than one phase each.
    let (mut short_times, mut long_times) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for (i, id) in short.iter().cycle().take(samples).enumerate() {
        short_times.push(cold_command(store, id, i).await?);
        long_times.push(cold_command(store, &long, i).await?);
    }
    Ok((median(short_times), median(long_times)))
}

/// Waits until the long stream has a snapshot (saved in the background by its first
/// load); an error after a deadline.
async fn wait_for_snapshot(store: &Arc<dyn EventStore>, id: &str) -> anyhow::Result<()> {
    let stream = CommandHandler::<Order>::stream_id(id)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.load_snapshot(&stream).await?.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "no snapshot of {id} within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let url = DatabaseUrl::parse(&args.target.database_url)?;
    let duration = Duration::from_secs(args.target.seconds);
    let (store, raw_pool) = open(&url, 48).await?;
    let run_id = format!("cmd{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut figures = Map::new();
    figures.insert("bench".into(), json!("commands"));
    figures.insert("backend".into(), json!(url.backend().to_string()));
    figures.insert("seconds_per_phase".into(), json!(args.target.seconds));

    println!("{:<44} {:>12} {:>12}", "phase", "per second", "conflicts/s");
    let raw_1 = raw::measure(&raw_pool, &run_id, 1, duration).await?;
    row("raw insert, 1 writer", &raw_1);
    figures.insert("raw_per_s_1".into(), round(raw_1.successes_per_s()));
    let raw = raw::measure(&raw_pool, &run_id, 32, duration).await?;
    row("raw insert, 32 writers", &raw);
    figures.insert("raw_per_s_32".into(), round(raw.successes_per_s()));
    let batched = raw::measure_batched(&raw_pool, &run_id, 32, duration).await?;
    row("raw batched ceiling rows, 32 writers", &batched);
    figures.insert("raw_batched_per_s_32".into(), round(batched.successes_per_s()));
    let handler = Arc::new(CommandHandler::<Order>::new(Arc::clone(&store), HandlerConfig::default()));
    for tasks in [1, 8, 32] {
        let tally = distinct(&handler, &run_id, tasks, duration).await?;
        row(&format!("commands, distinct aggregates, {tasks} tasks"), &tally);
        figures.insert(format!("commands_per_s_{tasks}"), round(tally.successes_per_s()));
        if tasks == 1 {
            figures.insert("single_task_per_s".into(), round(tally.successes_per_s()));
            let ratio = tally.successes_per_s() / raw_1.successes_per_s();
            println!("{:<44} {:>12.2}", "ratio to raw, 1 task", ratio);
            figures.insert("ratio_1".into(), json!((ratio * 1000.0).round() / 1000.0));
        }
        if tasks == 32 {
            let ratio = tally.successes_per_s() / raw.successes_per_s();
            println!("{:<44} {:>12.2}", "ratio to raw, 32 tasks", ratio);
            figures.insert("ratio_32".into(), json!((ratio * 1000.0).round() / 1000.0));
            let ratio = tally.successes_per_s() / batched.successes_per_s();
            println!("{:<44} {:>12.3}", "ratio to the batched ceiling, 32 tasks", ratio);
            figures.insert("ratio_batched_32".into(), json!((ratio * 1000.0).round() / 1000.0));
        }
    }
    let before = handler.stats();
    let hot_tally = hot(std::slice::from_ref(&handler), &format!("{run_id}-hot"), 32, duration).await?;
    let after = handler.stats();
    row("hot aggregate, 32 tasks", &hot_tally);
    figures.insert("hot_successes_per_s".into(), round(hot_tally.successes_per_s()));
    figures.insert("hot_conflicts_surfaced".into(), json!(hot_tally.conflicts));
    figures.insert("hot_conflicts".into(), json!(after.conflicts - before.conflicts));
    figures.insert("hot_retries".into(), json!(after.retries - before.retries));
    println!(
        "{:<44} {:>12} {:>12}",
        "hot aggregate: conflicts / retries in the store",
        after.conflicts - before.conflicts,
        after.retries - before.retries
    );

    // Two nodes on one aggregate: independent handlers (caches, locks) on stores of
    // their own (connection pools, group commit), 16 tasks each, as two servers.
    let mut nodes: Vec<Handler> = Vec::new();
    for _ in 0..2 {
        let db = ordo_store::open_with(url.as_str(), OpenOptions::default().max_connections(24)).await?;
        nodes.push(Arc::new(CommandHandler::<Order>::new(db.store, HandlerConfig::default())));
    }
    let hot2 = hot(&nodes, &format!("{run_id}-hot2"), 32, duration).await?;
    let (conflicts2, retries2) =
        nodes.iter().map(|n| n.stats()).fold((0, 0), |(c, r), s| (c + s.conflicts, r + s.retries));
    row("hot aggregate, two nodes x 16 tasks", &hot2);
    println!("{:<44} {:>12} {:>12}", "two nodes: conflicts / retries", conflicts2, retries2);
    figures.insert("hot2_successes_per_s".into(), round(hot2.successes_per_s()));
    figures.insert("hot2_conflicts_surfaced".into(), json!(hot2.conflicts));
    figures.insert("hot2_conflicts".into(), json!(conflicts2));
    figures.insert("hot2_retries".into(), json!(retries2));

    let (short, long) = latencies(&store, &run_id, "cached", HandlerConfig::default(), args.samples).await?;
    let ratio = long.as_secs_f64() / short.as_secs_f64();
    println!(
        "{:<44} {:>10.3}ms {:>10.3}ms  ratio {ratio:.2}",
        "median latency 10 / 10,000 events (default)",
        ms(short),
        ms(long)
    );
    figures.insert("short_stream_latency_ms".into(), json!(ms(short)));
    figures.insert("long_stream_latency_ms".into(), json!(ms(long)));
    figures.insert("long_short_latency_ratio".into(), json!((ratio * 100.0).round() / 100.0));
    let uncached = HandlerConfig { cache_capacity: 0, ..HandlerConfig::default() };
    let (short, long) = latencies(&store, &run_id, "uncached", uncached, args.samples).await?;
    let ratio = long.as_secs_f64() / short.as_secs_f64();
    println!(
        "{:<44} {:>10.3}ms {:>10.3}ms  ratio {ratio:.2}",
        "same, no cache (snapshot + tail per command)",
        ms(short),
        ms(long)
    );
    figures.insert("short_stream_latency_ms_no_cache".into(), json!(ms(short)));
    figures.insert("long_stream_latency_ms_no_cache".into(), json!(ms(long)));
    figures.insert("long_short_latency_ratio_no_cache".into(), json!((ratio * 100.0).round() / 100.0));
    let (short, long) = latencies_cold(&store, &run_id, args.samples).await?;
    let ratio = long.as_secs_f64() / short.as_secs_f64();
    println!(
        "{:<44} {:>10.3}ms {:>10.3}ms  ratio {ratio:.2}",
        "same, cold cache (a new handler per command)",
        ms(short),
        ms(long)
    );
    figures.insert("short_stream_latency_ms_cold".into(), json!(ms(short)));
    figures.insert("long_stream_latency_ms_cold".into(), json!(ms(long)));
    figures.insert("long_short_latency_ratio_cold".into(), json!((ratio * 100.0).round() / 100.0));
    drop_raw(raw_pool).await?;
    println!("{}", Value::Object(figures));
    Ok(())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn row(label: &str, tally: &Tally) {
    println!("{label:<44} {:>12.0} {:>12.0}", tally.successes_per_s(), tally.conflicts_per_s());
}

fn round(x: f64) -> Value {
    json!(x.round())
}

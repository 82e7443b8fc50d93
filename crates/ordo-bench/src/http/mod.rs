//! `ordo-bench http`: the real server (`ordo serve`, a child process) under an order
//! workflow mix over HTTP, beside the same mix through the command handler in this
//! process and the raw single-row INSERT baseline, all in one run on one database.
//!
//! Phases, in order:
//! 1. raw single-row INSERTs, 32 writers (`raw_per_s_32`);
//! 2. the mix in-process (no HTTP), closed loop up the concurrency ladder, then open
//!    loop at 50 % of its own maximum (the latency that is not HTTP's);
//! 3. the mix over HTTP, closed loop up the same ladder: the maximum sustainable
//!    rate (defined in [`capacity`]);
//! 4. open loop at 50 % and 80 % of that rate: latency from the scheduled send time
//!    (see [`load`]);
//! 5. open loop at 2× that rate against a second server started with a small
//!    concurrency limit, so that it sheds: how fast the shed requests are answered
//!    and the accepted ones' latency.
//!
//! The servers' resident memory is sampled throughout (`rss_mb_max`).
//!
//! `ratio_inprocess` is `http_commands_per_s / inprocess_commands_per_s`, each at the
//! best level of its ladder. The client, the server and the database share the
//! machine's cores (and, on a shared machine, other people's work), so each phase
//! also reports who used the CPU, `cpu_ratio_inprocess` compares CPU per request
//! (in-process vs the server), each open-loop phase reports the generator's own send
//! lag and the server's own p99 from `/metrics`, and on PostgreSQL the share of time
//! other databases' transactions held back the `$all` readers' horizon: enough to
//! tell a slow server from a starved or disturbed one.

mod capacity;
mod client;
mod cpu;
mod driver;
mod inprocess;
mod load;
mod pg_horizon;
mod report;
mod rss;
mod server;
mod server_metrics;
mod stats;
mod workflow;

use ordo_projection::{ProjectionRuntime, RunnerConfig};
use ordo_store::{Backend, DatabaseUrl};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::raw;
use capacity::{Capacity, Level};
use client::HttpDriver;
use cpu::{CpuClock, CpuSplit};
use driver::Driver;
use inprocess::InProcessDriver;
use report::{
    bound, insert_cpu, insert_ladder, insert_open_loop, insert_rss, load_average, load_average_text, round3, row,
    summary,
};
use rss::RssSampler;
use server::ServerProcess;
use server_metrics::StatusFilter;
use stats::{ms, PhaseStats};

#[derive(clap::Args)]
#[command(after_help = concat!(
    "The server is the release `ordo` binary beside this one; build both with\n  ",
    "cargo build --release -p ordo -p ordo-bench\n",
    "then run e.g.\n  target/release/ordo-bench http --database-url sqlite:///tmp/hb/b.db"
))]
pub struct Args {
    /// The database to measure (`sqlite:///tmp/hb/b.db`, or a fresh PostgreSQL database).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Seconds per phase (each rung of the ladders, each open-loop phase).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The `ordo` binary (default: the one beside this benchmark).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Closed-loop concurrency ladder (workflows in flight) for the maximum rate.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128")]
    concurrency: Vec<usize>,
    /// `--max-concurrency` of the server that must shed under 2× the maximum rate.
    #[arg(long, default_value_t = 32)]
    shed_concurrency: usize,
    /// Open-loop requests in flight at most (arrivals beyond are counted as not sent).
    #[arg(long, default_value_t = 2_048)]
    max_in_flight: usize,
}

/// Warm-up before each server's (or the in-process handler's) first measurement.
const WARM_UP: Duration = Duration::from_secs(2);
/// Raw baseline writers.
const RAW_WRITERS: usize = 32;
/// How often the server's RSS is sampled.
const RSS_EVERY: Duration = Duration::from_millis(100);

/// How often other databases' transactions are looked for (PostgreSQL).
const HORIZON_EVERY: Duration = Duration::from_millis(50);

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(!args.concurrency.is_empty(), "--concurrency needs at least one level");
    anyhow::ensure!(args.seconds > 0, "--seconds must be at least 1");
    let url = DatabaseUrl::parse(&args.database_url)?;
    let binary = server::locate_binary(args.server.as_deref())?;
    let duration = Duration::from_secs(args.seconds);
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut figures = Map::new();
    figures.insert("bench".into(), json!("http"));
    figures.insert("backend".into(), json!(url.backend().to_string()));
    figures.insert("seconds_per_phase".into(), json!(args.seconds));
    figures.insert("loadavg_start".into(), json!(load_average()));
    println!(
        "ordo-bench http on {} ({}), {} s per phase, load average {}",
        url.backend(),
        url.as_str(),
        args.seconds,
        load_average_text()
    );
    println!(
        "mix per workflow: create, {} x add item, place, pay, GET /orders/{{id}}?min_version (= {} commands + 1 read)",
        workflow::ITEMS,
        workflow::COMMANDS
    );
    println!(
        "max sustainable rate: closed loop at each of {:?} in flight; the best rate of successful requests among \
         levels with no shedding and <= {:.0}% failures",
        args.concurrency,
        capacity::MAX_FAILURE_RATIO * 100.0,
    );
    println!();
    println!(
        "{:<46} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7}  CPU cores client/server, machine busy",
        "phase", "req/s", "cmd/s", "p50 ms", "p99 ms", "shed/s", "failed"
    );

    let horizon = match url.backend() {
        Backend::Postgres => Some(pg_horizon::HorizonSampler::start(url.as_str(), HORIZON_EVERY).await?),
        Backend::Sqlite => None,
    };

    // 1 + 2: the raw baseline and the in-process mix, on this process's own connections
    // (the store's defaults, as the server opens them).
    let database = ordo_store::open(url.as_str()).await?;
    let raw_events = Arc::new(ordo_store::baseline::RawEvents::create(&database).await?);
    let raw = raw::measure(&raw_events, &run_id, RAW_WRITERS, duration).await?;
    crate::append::drop_raw(raw_events).await?;
    println!("{:<46} {:>9.0}", format!("raw insert, {RAW_WRITERS} writers (rows/s)"), raw.successes_per_s());
    figures.insert("raw_per_s_32".into(), json!(raw.successes_per_s().round()));

    let runtime = ProjectionRuntime::open(database, ordo_orders::projectors(), RunnerConfig::default()).await?;
    runtime.start().await?;
    let in_process = Arc::new(InProcessDriver::new(runtime.clone()));
    let in_process_capacity = ladder(&in_process, "in-process", &args.concurrency, duration, std::process::id()).await;
    let in_process_best = best_level(&in_process_capacity, "in-process")?;
    // The same open loop without HTTP: how much of the latency at 50 % is not HTTP's.
    let rate = in_process_best.stats.requests_per_s() / 2.0;
    let clock = CpuClock::start(std::process::id());
    let in_process_50 = load::open_loop(&in_process, rate, duration, args.max_in_flight).await;
    row(&format!("in-process open loop 50% = {rate:.0} req/s offered"), &in_process_50, Some(clock.stop()));
    figures.insert("inprocess_rate_50_per_s".into(), json!(rate.round()));
    figures.insert("inprocess_p50_ms_50".into(), json!(ms(&in_process_50.ok, 0.5)));
    figures.insert("inprocess_p99_ms_50".into(), json!(ms(&in_process_50.ok, 0.99)));
    figures.insert("inprocess_p99_ms_50_commands".into(), json!(ms(&in_process_50.commands, 0.99)));
    runtime.shutdown().await;
    drop(in_process);
    drop(runtime);
    insert_ladder(&mut figures, "inprocess", &in_process_capacity);
    figures.insert("inprocess_commands_per_s".into(), json!(in_process_best.stats.commands_per_s().round()));
    figures.insert("inprocess_requests_per_s".into(), json!(in_process_best.stats.requests_per_s().round()));
    figures.insert("inprocess_concurrency".into(), json!(in_process_best.concurrency));

    // 3 + 4: the server with its default limits.
    let log = std::env::temp_dir().join(format!("ordo-bench-http-{run_id}-server.log"));
    let server = ServerProcess::start(&binary, url.as_str(), &[], &log).await?;
    announce(&server, "default limits", &log);
    let rss_main = RssSampler::start(server.pid, RSS_EVERY);
    let http = Arc::new(HttpDriver::new(server.address)?);
    let http_capacity = ladder(&http, "http closed loop", &args.concurrency, duration, server.pid).await;
    let http_best = best_level(&http_capacity, "http")?;
    let max_rate = http_best.stats.requests_per_s();
    insert_ladder(&mut figures, "http", &http_capacity);
    figures.insert("http_commands_per_s".into(), json!(http_best.stats.commands_per_s().round()));
    figures.insert("http_requests_per_s".into(), json!(max_rate.round()));
    figures.insert("http_concurrency".into(), json!(http_best.concurrency));
    figures.insert("max_rate_per_s".into(), json!(max_rate.round()));
    let ratio = http_best.stats.commands_per_s() / in_process_best.stats.commands_per_s().max(1e-9);
    figures.insert("ratio_inprocess".into(), json!(round3(ratio)));
    // CPU per request does not depend on how much of the machine others left us.
    let in_process_us = cpu_us_per_request(in_process_best.cpu.client_cores, &in_process_best.stats);
    let server_us = cpu_us_per_request(http_best.cpu.server_cores, &http_best.stats);
    let client_us = cpu_us_per_request(http_best.cpu.client_cores, &http_best.stats);
    figures.insert("inprocess_cpu_us_per_request".into(), json!(in_process_us.round()));
    figures.insert("http_server_cpu_us_per_request".into(), json!(server_us.round()));
    figures.insert("http_client_cpu_us_per_request".into(), json!(client_us.round()));
    figures.insert("cpu_ratio_inprocess".into(), json!(round3(in_process_us / server_us.max(1e-9))));

    let mut all = PhaseStats::default();
    for level in http_capacity.levels.iter().chain(&in_process_capacity.levels) {
        all.merge(&level.stats);
    }
    all.merge(&in_process_50);
    for (percent, key) in [(50, "50"), (80, "80")] {
        let rate = max_rate * f64::from(percent) / 100.0;
        let (stats, seen) = open_loop_phase(&http, &server, rate, duration, args.max_in_flight).await?;
        row(&format!("http open loop {percent}% = {rate:.0} req/s offered"), &stats, Some(seen.cpu));
        insert_cpu(&mut figures, key, &seen.cpu);
        insert_open_loop(&mut figures, key, rate, &stats);
        figures.insert(format!("server_p99_ms_bucket_{key}"), bound(seen.ok_p99_ms));
        println!(
            "{:<46} generator send lag p99 {:.2} ms; server-side p99 <= {} ms (its histogram's bucket)",
            "    … where the time goes",
            ms(&stats.send_lag, 0.99),
            bound(seen.ok_p99_ms)
        );
        all.merge(&stats);
    }
    drop(http);
    let main_rss = rss_main.stop();
    server.stop().await?;

    // 5: 2x the maximum rate against a server that sheds.
    let log_shed = std::env::temp_dir().join(format!("ordo-bench-http-{run_id}-server-shed.log"));
    let limit = vec!["--max-concurrency".to_owned(), args.shed_concurrency.to_string()];
    let server = ServerProcess::start(&binary, url.as_str(), &limit, &log_shed).await?;
    announce(&server, &format!("--max-concurrency {}", args.shed_concurrency), &log_shed);
    let rss_shed = RssSampler::start(server.pid, RSS_EVERY);
    let http = Arc::new(HttpDriver::new(server.address)?);
    let _ =
        load::closed_loop(&http, args.shed_concurrency.min(args.concurrency.first().copied().unwrap_or(1)), WARM_UP)
            .await;
    let rate = 2.0 * max_rate;
    let (overload, seen) = open_loop_phase(&http, &server, rate, duration, args.max_in_flight).await?;
    let label = format!("http open loop 2x = {rate:.0} req/s, limit {}: accepted", args.shed_concurrency);
    row(&label, &overload, Some(seen.cpu));
    insert_cpu(&mut figures, "2x", &seen.cpu);
    println!(
        "{:<46} {:>9} {:>9} {:>8.2} {:>8.2} {:>8.0}",
        "    … the shed ones (503 overloaded)",
        "",
        "",
        ms(&overload.shed, 0.5),
        ms(&overload.shed, 0.99),
        overload.shed_per_s()
    );
    figures.insert("rate_2x_per_s".into(), json!(rate.round()));
    figures.insert("shed_concurrency".into(), json!(args.shed_concurrency));
    figures.insert("shed_per_s".into(), json!(overload.shed_per_s().round()));
    figures.insert("shed_p50_ms".into(), json!(ms(&overload.shed, 0.5)));
    figures.insert("shed_p99_ms".into(), json!(ms(&overload.shed, 0.99)));
    figures.insert("accepted_per_s_2x".into(), json!(overload.requests_per_s().round()));
    figures.insert("accepted_p50_ms_2x".into(), json!(ms(&overload.ok, 0.5)));
    figures.insert("accepted_p99_ms_2x".into(), json!(ms(&overload.ok, 0.99)));
    figures.insert("failed_2x".into(), json!(overload.failed()));
    figures.insert("send_lag_p99_ms_2x".into(), json!(ms(&overload.send_lag, 0.99)));
    figures.insert("server_shed_p99_ms_bucket".into(), bound(seen.shed_p99_ms));
    figures.insert("server_accepted_p99_ms_bucket_2x".into(), bound(seen.ok_p99_ms));
    println!(
        "{:<46} generator send lag p99 {:.2} ms; server-side p99 (its histogram's bucket): accepted <= {}, shed <= {} ms",
        "    … where the time goes",
        ms(&overload.send_lag, 0.99),
        bound(seen.ok_p99_ms),
        bound(seen.shed_p99_ms)
    );
    all.merge(&overload);
    drop(http);
    let shed_rss = rss_shed.stop();
    server.stop().await?;

    insert_rss(&mut figures, &main_rss, &shed_rss);
    figures.insert("requests_total".into(), json!(all.attempted()));
    figures.insert("failures_total".into(), json!(all.failed()));
    if all.failed() > 0 {
        figures.insert("failures".into(), json!(all.failure_summary()));
    }
    figures.insert("loadavg_end".into(), json!(load_average()));
    if let Some(horizon) = horizon {
        let seen = horizon.stop();
        figures.insert("pg_foreign_xid_share".into(), json!(round3(seen.held_share())));
        figures.insert("pg_foreign_xid_oldest_ms".into(), json!(seen.oldest_ms.round()));
    }
    println!();
    summary(&figures, url.backend());
    println!("{}", Value::Object(figures));
    Ok(())
}

/// The server's own p99 of one open-loop phase, as the upper bound of the bucket of
/// its latency histogram that holds it (see [`server_metrics`]).
struct ServerSeen {
    ok_p99_ms: Option<f64>,
    shed_p99_ms: Option<f64>,
    cpu: CpuSplit,
}

/// One open-loop phase against the server at `address`, with the server's own view
/// of it from `/metrics` before and after.
async fn open_loop_phase(
    http: &Arc<HttpDriver>,
    server: &ServerProcess,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
) -> anyhow::Result<(PhaseStats, ServerSeen)> {
    let probe = reqwest::Client::builder().no_proxy().build()?;
    let address = server.address;
    let ok_before = server_metrics::scrape(&probe, address, StatusFilter::Success).await?;
    let shed_before = server_metrics::scrape(&probe, address, StatusFilter::ServiceUnavailable).await?;
    let clock = CpuClock::start(server.pid);
    let stats = load::open_loop(http, rate, duration, max_in_flight).await;
    let cpu = clock.stop();
    let ok = server_metrics::scrape(&probe, address, StatusFilter::Success).await?.since(&ok_before);
    let shed = server_metrics::scrape(&probe, address, StatusFilter::ServiceUnavailable).await?.since(&shed_before);
    Ok((stats, ServerSeen { ok_p99_ms: ok.quantile_bound_ms(0.99), shed_p99_ms: shed.quantile_bound_ms(0.99), cpu }))
}

/// Says where the server is, for whoever wants to profile it (`perf record -p PID`).
fn announce(server: &ServerProcess, limits: &str, log: &std::path::Path) {
    println!("-- server pid {} on {} ({limits}), log {}", server.pid, server.address, log.display());
}

/// A warm-up, then the closed-loop ladder, printing each level.
async fn ladder<D: Driver>(
    driver: &Arc<D>,
    label: &str,
    concurrencies: &[usize],
    duration: Duration,
    server_pid: u32,
) -> Capacity {
    let first = concurrencies.first().copied().unwrap_or(1);
    let _ = load::closed_loop(driver, first, WARM_UP).await;
    capacity::find(driver, concurrencies, duration, server_pid, |level| {
        let mark = if level.sustainable() { "" } else { " (not sustainable)" };
        row(&format!("{label}, {} in flight{mark}", level.concurrency), &level.stats, Some(level.cpu));
    })
    .await
}

fn best_level<'a>(capacity: &'a Capacity, what: &str) -> anyhow::Result<&'a Level> {
    capacity.best().ok_or_else(|| {
        let failures: Vec<String> = capacity.levels.iter().map(|l| l.stats.failure_summary()).collect();
        anyhow::anyhow!("no sustainable level for {what}: {}", failures.join("; "))
    })
}

/// CPU microseconds per successful request, from `cores` busy over the phase.
fn cpu_us_per_request(cores: f64, stats: &PhaseStats) -> f64 {
    cores * 1e6 / stats.requests_per_s().max(1e-9)
}

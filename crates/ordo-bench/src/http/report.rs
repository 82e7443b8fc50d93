//! The readable table and the one JSON line: rows as phases finish, figures keyed as
//! issue 9 names them, and the closing summary with the goals met or missed.

use ordo_store::Backend;
use serde_json::{json, Map, Value};

use super::capacity::Capacity;
use super::cpu::CpuSplit;
use super::rss::RssReport;
use super::stats::{ms, PhaseStats};

/// Goals of issue 9 on PostgreSQL.
const GOAL_RATIO: f64 = 0.7;
const GOAL_P99_50_MS: f64 = 20.0;
const GOAL_SHED_P99_MS: f64 = 5.0;
const GOAL_RSS_MB: f64 = 150.0;

/// A bucket bound for the JSON line (null when nothing was counted, a string past the
/// last bucket).
pub fn bound(ms: Option<f64>) -> Value {
    match ms {
        Some(ms) if ms.is_finite() => json!(ms),
        Some(_) => json!("+Inf"),
        None => Value::Null,
    }
}

pub fn row(label: &str, stats: &PhaseStats, cpu: Option<CpuSplit>) {
    let cpu = cpu.map_or(String::new(), |c| {
        format!("{:.2}/{:.2}, {:.0}%", c.client_cores, c.server_cores, c.machine_busy * 100.0)
    });
    println!(
        "{label:<46} {:>9.0} {:>9.0} {:>8.2} {:>8.2} {:>8.0} {:>7}  {cpu}",
        stats.requests_per_s(),
        stats.commands_per_s(),
        ms(&stats.ok, 0.5),
        ms(&stats.ok, 0.99),
        stats.shed_per_s(),
        stats.failed()
    );
    if stats.failed() > 0 {
        println!("    failures: {}", stats.failure_summary());
    }
}

pub fn insert_ladder(figures: &mut Map<String, Value>, prefix: &str, capacity: &Capacity) {
    let levels: Vec<Value> = capacity
        .levels
        .iter()
        .map(|l| {
            json!({
                "concurrency": l.concurrency,
                "requests_per_s": l.stats.requests_per_s().round(),
                "commands_per_s": l.stats.commands_per_s().round(),
                "p99_ms": ms(&l.stats.ok, 0.99),
                "failed": l.stats.failed(),
                "cpu_client_cores": (l.cpu.client_cores * 100.0).round() / 100.0,
                "cpu_server_cores": (l.cpu.server_cores * 100.0).round() / 100.0,
                "machine_busy": (l.cpu.machine_busy * 100.0).round() / 100.0,
            })
        })
        .collect();
    figures.insert(format!("{prefix}_ladder"), Value::Array(levels));
}

pub fn insert_open_loop(figures: &mut Map<String, Value>, key: &str, rate: f64, stats: &PhaseStats) {
    figures.insert(format!("rate_{key}_per_s"), json!(rate.round()));
    figures.insert(format!("achieved_per_s_{key}"), json!(stats.requests_per_s().round()));
    figures.insert(format!("p50_ms_{key}"), json!(ms(&stats.ok, 0.5)));
    figures.insert(format!("p99_ms_{key}"), json!(ms(&stats.ok, 0.99)));
    figures.insert(format!("p99_ms_{key}_commands"), json!(ms(&stats.commands, 0.99)));
    figures.insert(format!("p99_ms_{key}_reads"), json!(ms(&stats.reads, 0.99)));
    figures.insert(format!("max_ms_{key}"), json!(ms(&stats.ok, 1.0)));
    figures.insert(format!("failed_{key}"), json!(stats.failed()));
    figures.insert(format!("send_lag_p99_ms_{key}"), json!(ms(&stats.send_lag, 0.99)));
}

pub fn insert_cpu(figures: &mut Map<String, Value>, key: &str, cpu: &CpuSplit) {
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    figures.insert(format!("cpu_client_cores_{key}"), json!(round2(cpu.client_cores)));
    figures.insert(format!("cpu_server_cores_{key}"), json!(round2(cpu.server_cores)));
    figures.insert(format!("machine_busy_{key}"), json!(round2(cpu.machine_busy)));
}

pub fn insert_rss(figures: &mut Map<String, Value>, main: &RssReport, shed: &RssReport) {
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    figures.insert("rss_mb_max".into(), json!(round1(main.max_mb.max(shed.max_mb))));
    figures.insert("rss_mb_start".into(), json!(round1(main.first_mb)));
    figures.insert("rss_mb_end".into(), json!(round1(main.last_mb)));
    figures.insert("rss_mb_max_shed_server".into(), json!(round1(shed.max_mb)));
    figures.insert("rss_samples".into(), json!(main.samples + shed.samples));
}

/// The headline figures, and on PostgreSQL the goals met or missed.
pub fn summary(figures: &Map<String, Value>, backend: Backend) {
    let get = |key: &str| figures.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
    println!(
        "commands/s over HTTP {:.0} vs in-process {:.0}: ratio {:.3}",
        get("http_commands_per_s"),
        get("inprocess_commands_per_s"),
        get("ratio_inprocess")
    );
    println!(
        "CPU per request at those levels: in-process {:.0} µs; over HTTP the server {:.0} µs (ratio {:.3}) and the \
         client {:.0} µs (the database's CPU is in neither)",
        get("inprocess_cpu_us_per_request"),
        get("http_server_cpu_us_per_request"),
        get("cpu_ratio_inprocess"),
        get("http_client_cpu_us_per_request")
    );
    println!(
        "p99 at 50 % of the maximum, open loop: over HTTP {:.2} ms (commands {:.2}, reads {:.2}), in-process {:.2} ms",
        get("p99_ms_50"),
        get("p99_ms_50_commands"),
        get("p99_ms_50_reads"),
        get("inprocess_p99_ms_50")
    );
    println!("server RSS: {:.1} MB at start, {:.1} MB max", get("rss_mb_start"), get("rss_mb_max"));
    if backend == Backend::Postgres {
        println!(
            "other databases' transactions holding an xid (and so the $all readers' horizon): in {:.1}% of \
             samples, the oldest {:.0} ms",
            get("pg_foreign_xid_share") * 100.0,
            get("pg_foreign_xid_oldest_ms")
        );
    }
    let goals = [
        ("ratio_inprocess", get("ratio_inprocess") >= GOAL_RATIO, format!(">= {GOAL_RATIO}")),
        ("p99_ms_50", get("p99_ms_50") <= GOAL_P99_50_MS, format!("<= {GOAL_P99_50_MS} ms")),
        ("shed_p99_ms", get("shed_p99_ms") <= GOAL_SHED_P99_MS, format!("<= {GOAL_SHED_P99_MS} ms")),
        ("rss_mb_max", get("rss_mb_max") < GOAL_RSS_MB, format!("< {GOAL_RSS_MB} MB")),
    ];
    let scope = if backend == Backend::Postgres { "goals" } else { "goals (set for PostgreSQL)" };
    for (key, met, goal) in goals {
        println!("{scope}: {key} = {} {goal}: {}", get(key), if met { "met" } else { "MISSED" });
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The 1-, 5- and 15-minute load averages (the machine is shared: figures are
/// only as quiet as it was).
pub fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

pub fn load_average_text() -> String {
    load_average().iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" ")
}

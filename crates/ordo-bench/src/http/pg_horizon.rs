//! PostgreSQL only: samples the transactions of *other* databases of the cluster that
//! hold a transaction id. Ordo's `$all` readers stop below `xmin` of their snapshot,
//! which is cluster-wide, so while any such transaction runs, events committed after
//! it started stay invisible to the projectors — and a `min_version` read waits for
//! them (until another local commit wakes the projector, or its poll interval). On a
//! shared machine (other test suites creating and dropping databases) this explains
//! read latencies that no profile of the server would.

use sqlx::postgres::PgPoolOptions;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::task::JoinHandle;

/// What the sampler saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct HorizonReport {
    pub samples: u64,
    /// Samples in which another database's transaction held an id.
    pub samples_held: u64,
    /// The oldest such transaction seen, in milliseconds.
    pub oldest_ms: f64,
}

impl HorizonReport {
    pub fn held_share(&self) -> f64 {
        self.samples_held as f64 / self.samples.max(1) as f64
    }
}

pub struct HorizonSampler {
    report: Arc<Mutex<HorizonReport>>,
    task: JoinHandle<()>,
}

const QUERY: &str = "SELECT count(*), coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0)::float8 \
                     FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()";

impl HorizonSampler {
    /// Samples every `every` on one connection of its own to `url`.
    pub async fn start(url: &str, every: Duration) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
        let report = Arc::new(Mutex::new(HorizonReport::default()));
        let shared = Arc::clone(&report);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // A failed sample is skipped: this is a diagnosis, not a figure.
                let Ok((held, oldest_s)) = sqlx::query_as::<_, (i64, f64)>(QUERY).fetch_one(&pool).await else {
                    continue;
                };
                let mut report = shared.lock().unwrap_or_else(PoisonError::into_inner);
                report.samples += 1;
                if held > 0 {
                    report.samples_held += 1;
                    report.oldest_ms = report.oldest_ms.max(oldest_s * 1e3);
                }
            }
        });
        Ok(Self { report, task })
    }

    pub fn stop(self) -> HorizonReport {
        self.task.abort();
        *self.report.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

//! A timed phase: N concurrent workers repeat one operation until time is up, and the
//! phase counts what happened.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every throughput benchmark is pointed at and for how long.
#[derive(clap::Args)]
pub struct Target {
    /// The database to measure (`sqlite:///tmp/b.db`, or a fresh PostgreSQL database).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Seconds per phase.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
}

/// What one operation came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Conflict,
}

/// Counts of one phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub successes: u64,
    pub conflicts: u64,
    pub elapsed: Duration,
}

impl Tally {
    pub fn successes_per_s(&self) -> f64 {
        self.successes as f64 / self.elapsed.as_secs_f64()
    }

    pub fn conflicts_per_s(&self) -> f64 {
        self.conflicts as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `op(worker, iteration)` on `workers` tasks for `duration`. An error stops the
/// benchmark: a figure measured around failures would mean nothing.
pub async fn run<F, Fut>(workers: usize, duration: Duration, op: F) -> anyhow::Result<Tally>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Outcome>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..workers)
        .map(|worker| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut iteration = 0;
                while Instant::now() < deadline {
                    match op(worker, iteration).await? {
                        Outcome::Success => tally.successes += 1,
                        Outcome::Conflict => tally.conflicts += 1,
                    }
                    iteration += 1;
                }
                anyhow::Ok(tally)
            })
        })
        .collect();
    let mut total = Tally::default();
    for handle in handles {
        let tally = handle.await??;
        total.successes += tally.successes;
        total.conflicts += tally.conflicts;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

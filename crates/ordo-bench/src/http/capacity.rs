//! The maximum sustainable rate, found with the closed loop.
//!
//! **Definition.** The closed loop runs at rising concurrency (workflows in flight,
//! one request each); a level is *sustainable* when at most [`MAX_FAILURE_RATIO`] of
//! its requests fail (shed requests count as failures here). The ladder stops once a
//! level gains less than [`MIN_GAIN`] over the best so far (the system is
//! saturated: more concurrency only queues), and the maximum sustainable rate is the
//! highest rate of successful requests of a sustainable level. An open-loop arrival
//! rate at or above it would make queues grow without bound; the latency phases
//! offer fractions of it.

use std::sync::Arc;
use std::time::Duration;

use super::driver::Driver;
use super::load;
use super::stats::PhaseStats;

/// Most failures a sustainable level may have.
pub const MAX_FAILURE_RATIO: f64 = 0.01;
/// A level must beat the best so far by this much for the ladder to go on.
pub const MIN_GAIN: f64 = 1.05;

/// One rung of the ladder.
pub struct Level {
    pub concurrency: usize,
    pub stats: PhaseStats,
}

impl Level {
    pub fn sustainable(&self) -> bool {
        self.stats.shed.is_empty() && self.stats.failure_ratio() <= MAX_FAILURE_RATIO
    }
}

/// The ladder as run, and which rung is the maximum.
pub struct Capacity {
    pub levels: Vec<Level>,
    pub best: Option<usize>,
}

impl Capacity {
    pub fn best(&self) -> Option<&Level> {
        self.best.and_then(|i| self.levels.get(i))
    }
}

/// Runs the closed loop at each of `concurrencies` in turn (see the module docs for
/// when it stops); `on_level` sees each level as it is measured.
pub async fn find<D: Driver>(
    driver: &Arc<D>,
    concurrencies: &[usize],
    duration: Duration,
    mut on_level: impl FnMut(&Level),
) -> Capacity {
    let mut capacity = Capacity { levels: Vec::new(), best: None };
    for &concurrency in concurrencies {
        let stats = load::closed_loop(driver, concurrency, duration).await;
        let level = Level { concurrency, stats };
        on_level(&level);
        let best_rate = capacity.best().map_or(0.0, |b| b.stats.requests_per_s());
        let rate = level.stats.requests_per_s();
        let sustainable = level.sustainable();
        capacity.levels.push(level);
        if sustainable && rate > best_rate {
            capacity.best = Some(capacity.levels.len() - 1);
        }
        if capacity.best.is_some() && rate < best_rate * MIN_GAIN {
            break;
        }
    }
    capacity
}

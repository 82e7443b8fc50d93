//! The maximum sustainable rate, found with the closed loop.
//!
//! **Definition.** The closed loop runs at each concurrency of a ladder (workflows in
//! flight, one request each). A level is *sustainable* when none of its requests
//! were shed and at most [`MAX_FAILURE_RATIO`] of them failed. The maximum
//! sustainable rate is the highest rate of successful requests among sustainable
//! levels: the most the system completed when offered as much concurrency as it can
//! use. Every level runs (no early stop): on a shared machine one noisy level must not
//! end the search. An open-loop arrival rate at or above it would make queues grow
//! without bound; the latency phases offer fractions of it.

use std::sync::Arc;
use std::time::Duration;

use super::cpu::{CpuClock, CpuSplit};
use super::driver::Driver;
use super::load;
use super::stats::PhaseStats;

/// Most failures a sustainable level may have.
pub const MAX_FAILURE_RATIO: f64 = 0.01;

/// One rung of the ladder.
pub struct Level {
    pub concurrency: usize,
    pub stats: PhaseStats,
    pub cpu: CpuSplit,
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

/// Runs the closed loop at each of `concurrencies` in turn, with the CPU use of this
/// process and of `server_pid` (this process too, in-process); `on_level` sees each
/// level as it is measured.
pub async fn find<D: Driver>(
    driver: &Arc<D>,
    concurrencies: &[usize],
    duration: Duration,
    server_pid: u32,
    mut on_level: impl FnMut(&Level),
) -> Capacity {
    let mut capacity = Capacity { levels: Vec::new(), best: None };
    for &concurrency in concurrencies {
        let clock = CpuClock::start(server_pid);
        let stats = load::closed_loop(driver, concurrency, duration).await;
        let level = Level { concurrency, stats, cpu: clock.stop() };
        on_level(&level);
        let best_rate = capacity.best().map_or(0.0, |b| b.stats.requests_per_s());
        let better = level.sustainable() && level.stats.requests_per_s() > best_rate;
        capacity.levels.push(level);
        if better {
            capacity.best = Some(capacity.levels.len() - 1);
        }
    }
    capacity
}

//! The two load generators.
//!
//! - **Closed loop** ([`closed_loop`]): `workers` tasks, each running workflows back
//!   to back, one request in flight per task. It finds what the system can do: at
//!   enough concurrency its throughput is the capacity. Latency here is only the
//!   request's own time, so it is not used for the latency figures.
//! - **Open loop** ([`open_loop`]): requests *arrive* at a fixed rate, whatever the
//!   answers do. Arrival `k` is scheduled at `start + k / rate`; at its time it takes
//!   the next step of a workflow whose previous request has been answered (first in,
//!   first out), or starts a new workflow when none is waiting. Latency is measured
//!   from the **scheduled** time, not from when the request left, so a stall of the
//!   server (or of this generator) shows in full instead of being hidden by requests
//!   that were simply not sent meanwhile (coordinated omission). Shed requests (503
//!   `overloaded`) put their workflow back in the queue: a later arrival retries them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::driver::{Driver, Reply};
use super::stats::PhaseStats;
use super::workflow::Workflow;

/// How long a closed-loop worker waits before sending a shed request again.
const SHED_BACKOFF: Duration = Duration::from_millis(1);

/// `workers` workflows at a time, back to back, for `duration`. Only answers that
/// arrive before the end count, so the rate is not inflated by a tail.
pub async fn closed_loop<D: Driver>(driver: &Arc<D>, workers: usize, duration: Duration) -> PhaseStats {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for worker in 0..workers {
        let driver = Arc::clone(driver);
        tasks.spawn(async move {
            let mut stats = PhaseStats::default();
            let mut n = worker as u64;
            'workflows: while Instant::now() < deadline {
                let mut workflow = Workflow::new(n);
                n += workers as u64;
                while Instant::now() < deadline {
                    let step = workflow.step();
                    let sent = Instant::now();
                    let reply = driver.execute(&workflow, step).await;
                    if Instant::now() > deadline {
                        break 'workflows;
                    }
                    stats.record(step, &reply, sent.elapsed());
                    match reply {
                        Reply::Done { version } => match workflow.advance(version) {
                            Some(next) => workflow = next,
                            None => {
                                stats.workflows_done += 1;
                                continue 'workflows;
                            }
                        },
                        Reply::Shed => tokio::time::sleep(SHED_BACKOFF).await,
                        Reply::Failed(_) => continue 'workflows,
                    }
                }
            }
            stats
        });
    }
    let mut total = PhaseStats::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(stats) => total.merge(&stats),
            Err(e) => total.fail(&format!("worker died: {e}")),
        }
    }
    total.elapsed = duration;
    total
}

/// What the open-loop arrivals share.
struct OpenLoop<D> {
    driver: Arc<D>,
    stats: Mutex<PhaseStats>,
    /// Workflows whose previous request was answered, waiting for an arrival.
    ready: Mutex<VecDeque<Workflow>>,
    in_flight: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<D: Driver> OpenLoop<D> {
    async fn arrive(&self, workflow: Workflow, scheduled: Instant) {
        let step = workflow.step();
        let send_lag = scheduled.elapsed();
        let reply = self.driver.execute(&workflow, step).await;
        let latency = scheduled.elapsed();
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut stats = lock(&self.stats);
        stats.record(step, &reply, latency);
        stats.record_send_lag(send_lag);
        match reply {
            Reply::Done { version } => match workflow.advance(version) {
                Some(next) => lock(&self.ready).push_back(next),
                None => stats.workflows_done += 1,
            },
            Reply::Shed => lock(&self.ready).push_back(workflow),
            Reply::Failed(_) => {}
        }
    }
}

/// Requests arriving at `rate` per second for `duration`, at most `max_in_flight` at
/// once (an arrival beyond that is counted as not sent: the generator itself is
/// saturated, and the figure says so). Waits for every request sent to be answered.
pub async fn open_loop<D: Driver>(driver: &Arc<D>, rate: f64, duration: Duration, max_in_flight: usize) -> PhaseStats {
    let shared = Arc::new(OpenLoop {
        driver: Arc::clone(driver),
        stats: Mutex::new(PhaseStats::default()),
        ready: Mutex::new(VecDeque::new()),
        in_flight: AtomicUsize::new(0),
    });
    let arrivals = (rate * duration.as_secs_f64()).round() as u64;
    let mut tasks = JoinSet::new();
    let mut workflows_started = 0u64;
    let start = Instant::now();
    for k in 0..arrivals {
        let scheduled = start + Duration::from_secs_f64(k as f64 / rate);
        if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled).await;
        }
        while tasks.try_join_next().is_some() {}
        if shared.in_flight.load(Ordering::Relaxed) >= max_in_flight {
            lock(&shared.stats).not_sent += 1;
            continue;
        }
        let waiting = lock(&shared.ready).pop_front();
        let workflow = waiting.unwrap_or_else(|| {
            workflows_started += 1;
            Workflow::new(workflows_started)
        });
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shared);
        tasks.spawn(async move { shared.arrive(workflow, scheduled).await });
    }
    while tasks.join_next().await.is_some() {}
    let mut stats = lock(&shared.stats).clone();
    stats.elapsed = duration;
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::workflow::{self, Step};

    /// Answers after a fixed delay; sheds every `shed_every`-th request.
    struct FakeDriver {
        delay: Duration,
        shed_every: usize,
        calls: AtomicUsize,
    }

    impl Driver for FakeDriver {
        async fn execute(&self, _: &Workflow, step: Step) -> Reply {
            let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
            tokio::time::sleep(self.delay).await;
            if self.shed_every > 0 && call.is_multiple_of(self.shed_every) {
                return Reply::Shed;
            }
            Reply::Done { version: if step.is_command() { 1 } else { 0 } }
        }
    }

    #[tokio::test]
    async fn the_open_loop_keeps_its_rate_and_measures_from_the_scheduled_time() {
        let driver = Arc::new(FakeDriver { delay: Duration::from_millis(5), shed_every: 10, calls: 0.into() });
        let stats = open_loop(&driver, 400.0, Duration::from_secs(1), 10_000).await;
        assert_eq!(stats.attempted(), 400);
        assert_eq!(stats.shed.len(), 40);
        assert!(stats.ok.min() >= 4_990, "no answer can beat the driver's delay: {}", stats.ok.min());
        assert!(stats.workflows_done > 0);
        assert!(stats.reads.len() * workflow::COMMANDS <= stats.commands.len());
    }

    #[tokio::test]
    async fn a_stalled_server_shows_in_open_loop_latency() {
        // Each request takes 50 ms and at most 2 may be in flight: arrivals every
        // 5 ms are refused, and those sent are late by their full delay.
        let driver = Arc::new(FakeDriver { delay: Duration::from_millis(50), shed_every: 0, calls: 0.into() });
        let stats = open_loop(&driver, 200.0, Duration::from_millis(500), 2).await;
        assert!(stats.not_sent > 50, "{}", stats.not_sent);
        assert!(!stats.failure_summary().is_empty());
    }

    #[tokio::test]
    async fn the_closed_loop_runs_whole_workflows() {
        let driver = Arc::new(FakeDriver { delay: Duration::from_millis(1), shed_every: 0, calls: 0.into() });
        let stats = closed_loop(&driver, 4, Duration::from_millis(300)).await;
        assert!(stats.workflows_done >= 4);
        assert_eq!(stats.failed(), 0);
    }
}

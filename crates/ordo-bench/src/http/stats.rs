//! What one load phase measured: latency histograms (microseconds) of the successful
//! requests (all, commands, reads), of the shed ones, and counts of everything,
//! failures by label.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

use super::driver::Reply;
use super::workflow::Step;

/// Distinct failure labels kept (the rest are counted as `other`).
const MAX_FAILURE_LABELS: usize = 32;

#[derive(Clone)]
pub struct PhaseStats {
    /// Every successful request.
    pub ok: Histogram<u64>,
    pub commands: Histogram<u64>,
    pub reads: Histogram<u64>,
    /// Requests the load shedder refused.
    pub shed: Histogram<u64>,
    /// Open loop: how late each request left after its scheduled time (the
    /// generator's own delay, part of every latency it measures).
    pub send_lag: Histogram<u64>,
    pub failures: BTreeMap<String, u64>,
    /// Arrivals the open-loop generator could not send (too many in flight).
    pub not_sent: u64,
    /// Workflows that went all the way to the read.
    pub workflows_done: u64,
    pub elapsed: Duration,
}

/// Longest latency a histogram tells apart (larger ones are counted as this): 1 h.
const MAX_MICROS: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 h at 3 significant digits; values beyond are clamped, never refused.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant bounds are valid")
}

impl Default for PhaseStats {
    fn default() -> Self {
        Self {
            ok: histogram(),
            commands: histogram(),
            reads: histogram(),
            shed: histogram(),
            send_lag: histogram(),
            failures: BTreeMap::new(),
            not_sent: 0,
            workflows_done: 0,
            elapsed: Duration::ZERO,
        }
    }
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl PhaseStats {
    /// Counts one request's `reply` after `latency`.
    pub fn record(&mut self, step: Step, reply: &Reply, latency: Duration) {
        let us = micros(latency);
        match reply {
            Reply::Done { .. } => {
                self.ok.saturating_record(us);
                if step.is_command() {
                    self.commands.saturating_record(us);
                } else {
                    self.reads.saturating_record(us);
                }
            }
            Reply::Shed => self.shed.saturating_record(us),
            Reply::Failed(label) => self.fail(label),
        }
    }

    pub fn record_send_lag(&mut self, lag: Duration) {
        self.send_lag.saturating_record(micros(lag));
    }

    pub fn fail(&mut self, label: &str) {
        let label =
            if self.failures.len() < MAX_FAILURE_LABELS || self.failures.contains_key(label) { label } else { "other" };
        *self.failures.entry(label.to_owned()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &PhaseStats) {
        // Adding histograms of equal bounds and precision cannot fail.
        let _ = self.ok.add(&other.ok);
        let _ = self.commands.add(&other.commands);
        let _ = self.reads.add(&other.reads);
        let _ = self.shed.add(&other.shed);
        let _ = self.send_lag.add(&other.send_lag);
        for (label, n) in &other.failures {
            *self.failures.entry(label.clone()).or_default() += n;
        }
        self.not_sent += other.not_sent;
        self.workflows_done += other.workflows_done;
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum::<u64>() + self.not_sent
    }

    /// Every request sent or meant to be sent.
    pub fn attempted(&self) -> u64 {
        self.ok.len() + self.shed.len() + self.failed()
    }

    /// Failures (shed requests aside) over everything attempted.
    pub fn failure_ratio(&self) -> f64 {
        self.failed() as f64 / self.attempted().max(1) as f64
    }

    fn per_s(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn requests_per_s(&self) -> f64 {
        self.per_s(self.ok.len())
    }

    pub fn commands_per_s(&self) -> f64 {
        self.per_s(self.commands.len())
    }

    pub fn shed_per_s(&self) -> f64 {
        self.per_s(self.shed.len())
    }

    /// A short account of the failures, e.g. `409 rule_violation ×3, connect ×1`.
    pub fn failure_summary(&self) -> String {
        let mut parts: Vec<String> = self.failures.iter().map(|(label, n)| format!("{label} ×{n}")).collect();
        if self.not_sent > 0 {
            parts.push(format!("not sent (client saturated) ×{}", self.not_sent));
        }
        parts.join(", ")
    }
}

/// The `quantile` of `histogram` in milliseconds (0 when empty), rounded to µs.
pub fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    histogram.value_at_quantile(quantile) as f64 / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shed_requests_are_not_failures_and_labels_are_capped() {
        let mut stats = PhaseStats::default();
        stats.record(Step::Create, &Reply::Done { version: 1 }, Duration::from_millis(2));
        stats.record(Step::Read { min_version: 1 }, &Reply::Done { version: 1 }, Duration::from_millis(4));
        stats.record(Step::Place, &Reply::Shed, Duration::from_micros(300));
        for i in 0..100 {
            stats.record(Step::Place, &Reply::Failed(format!("e{i}")), Duration::ZERO);
        }
        assert_eq!((stats.ok.len(), stats.commands.len(), stats.reads.len(), stats.shed.len()), (2, 1, 1, 1));
        assert_eq!(stats.failed(), 100);
        assert_eq!(stats.failures.len(), MAX_FAILURE_LABELS + 1);
        assert_eq!(stats.attempted(), 103);
        assert!((ms(&stats.reads, 0.99) - 4.0).abs() < 0.01, "{}", ms(&stats.reads, 0.99));
    }
}

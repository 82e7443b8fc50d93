//! Samples a process's resident memory (`VmRSS` in `/proc/PID/status`) at a fixed
//! interval in the background, keeping the first, last and largest sample.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Resident memory over a sampling period, in MiB.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RssReport {
    pub first_mb: f64,
    pub last_mb: f64,
    pub max_mb: f64,
    pub samples: u64,
}

impl RssReport {
    fn add(&mut self, kib: u64) {
        let mb = kib as f64 / 1024.0;
        if self.samples == 0 {
            self.first_mb = mb;
        }
        self.last_mb = mb;
        self.max_mb = self.max_mb.max(mb);
        self.samples += 1;
    }
}

pub struct RssSampler {
    report: Arc<Mutex<RssReport>>,
    task: JoinHandle<()>,
}

impl RssSampler {
    /// Samples `pid` every `every` until stopped (or the process is gone).
    pub fn start(pid: u32, every: Duration) -> Self {
        let report = Arc::new(Mutex::new(RssReport::default()));
        let shared = Arc::clone(&report);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(kib) = rss_kib(pid) else { break };
                shared.lock().unwrap_or_else(PoisonError::into_inner).add(kib);
            }
        });
        Self { report, task }
    }

    /// What was sampled so far.
    pub fn report(&self) -> RssReport {
        *self.report.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn stop(self) -> RssReport {
        self.task.abort();
        self.report()
    }
}

/// `VmRSS` of `pid` in KiB, or `None` if the process is gone.
fn rss_kib(pid: u32) -> Option<u64> {
    // A read of procfs does not block on I/O.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss_in_kib() {
        let status = "Name:\tordo\nVmPeak:\t  99999 kB\nVmRSS:\t   51200 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(51_200));
        assert_eq!(parse_vm_rss("Name:\tzombie\n"), None);
    }

    #[tokio::test]
    async fn samples_this_process() {
        let sampler = RssSampler::start(std::process::id(), Duration::from_millis(5));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while sampler.report().samples < 2 {
            assert!(tokio::time::Instant::now() < deadline, "fewer than 2 samples in 10 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let report = sampler.stop();
        assert!(report.samples >= 2);
        assert!(report.max_mb > 1.0 && report.max_mb >= report.last_mb);
    }
}

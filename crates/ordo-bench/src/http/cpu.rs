//! Who used the CPU during a phase: this load generator, the server, and the whole
//! machine (from `/proc/PID/stat` and `/proc/stat`). The client, the server and the
//! database share a few cores, often with other work; a latency figure means little
//! without knowing whether the machine was saturated, and by whom.

use std::time::Instant;

/// CPU use over a phase, in cores (1.0 = one core busy all the time).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuSplit {
    pub client_cores: f64,
    pub server_cores: f64,
    /// Busy share of all the machine's cores (0..=1), whoever used them.
    pub machine_busy: f64,
}

/// Readings at the start of a phase.
pub struct CpuClock {
    server_pid: u32,
    started: Instant,
    client: Option<f64>,
    server: Option<f64>,
    machine: Option<MachineTicks>,
}

impl CpuClock {
    pub fn start(server_pid: u32) -> Self {
        Self {
            server_pid,
            started: Instant::now(),
            client: process_seconds("self"),
            server: process_seconds(&server_pid.to_string()),
            machine: machine_ticks(),
        }
    }

    /// Use since `start` (a reading that failed counts as 0).
    pub fn stop(&self) -> CpuSplit {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let cores = |before: Option<f64>, now: Option<f64>| match (before, now) {
            (Some(before), Some(now)) => (now - before).max(0.0) / wall,
            _ => 0.0,
        };
        let machine_busy = match (self.machine, machine_ticks()) {
            (Some(before), Some(now)) => {
                let total = now.total.saturating_sub(before.total).max(1);
                let idle = now.idle.saturating_sub(before.idle);
                1.0 - idle as f64 / total as f64
            }
            _ => 0.0,
        };
        CpuSplit {
            client_cores: cores(self.client, process_seconds("self")),
            server_cores: cores(self.server, process_seconds(&self.server_pid.to_string())),
            machine_busy,
        }
    }
}

/// User + system CPU seconds of `/proc/{pid}`.
fn process_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = process_ticks(&stat)?;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line; the command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn process_ticks(stat: &str) -> Option<u64> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[derive(Clone, Copy, Debug)]
struct MachineTicks {
    total: u64,
    /// idle + iowait
    idle: u64,
}

fn machine_ticks() -> Option<MachineTicks> {
    parse_machine(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_machine(stat: &str) -> Option<MachineTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some(MachineTicks { total, idle })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_process_and_machine_ticks() {
        let stat = "42 (tokio (worker) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 0 0";
        assert_eq!(process_ticks(stat), Some(300));
        let machine = parse_machine("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n").unwrap();
        assert_eq!((machine.total, machine.idle), (1000, 850));
    }

    #[test]
    fn this_process_uses_some_cpu() {
        let clock = CpuClock::start(std::process::id());
        let before = process_seconds("self").unwrap();
        let spin = Instant::now();
        // Spin until the kernel has counted some CPU time (bounded: the machine may be busy).
        while process_seconds("self").unwrap() < before + 0.05 && spin.elapsed().as_secs() < 10 {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        let split = clock.stop();
        assert!(split.client_cores > 0.0, "{split:?}");
        assert!(split.server_cores > 0.0, "the same process: {split:?}");
        assert!((0.0..=1.0).contains(&split.machine_busy), "{split:?}");
    }
}

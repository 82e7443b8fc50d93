//! Bounded retries with exponential backoff and full jitter, for optimistic conflicts.
//! Full jitter (a uniformly random delay up to the exponential cap) spreads retrying
//! writers apart, so that a burst of conflicts does not come back as a burst.

use rand::Rng;
use std::time::Duration;

/// How a conflicted command is retried: at most `max_attempts` attempts in all, and
/// none started after `max_elapsed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The most attempts in all, the first included (default 10).
    pub max_attempts: u32,
    /// No attempt starts after this much time since the first (default 2 s).
    pub max_elapsed: Duration,
    /// The cap of the first delay; it doubles per attempt up to `max_delay` (default
    /// 2 ms).
    pub base_delay: Duration,
    /// The largest delay between attempts (default 200 ms).
    pub max_delay: Duration,
    /// After this many conflicts, a command's attempts hold the stream
    /// ([`EventStore::hold_stream`](ordo_store::EventStore::hold_stream)): it reads,
    /// decides and appends while appends from elsewhere wait, so it cannot lose again
    /// (default 2). Without it, a node that must read after each lost race can lose
    /// every race to a node that decides from its cache, and run out of attempts.
    pub hold_after: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            max_elapsed: Duration::from_secs(2),
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(200),
            hold_after: 2,
        }
    }
}

impl RetryPolicy {
    /// No retries: the first conflict is the answer.
    pub fn never() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// The delay before attempt `attempt + 1`, after `attempt` (from 1) failed:
    /// uniform in `[0, min(max_delay, base_delay * 2^(attempt-1))]`.
    ///
    /// ```
    /// use ordo_core::RetryPolicy;
    /// use std::time::Duration;
    /// let policy = RetryPolicy::default();
    /// let delay = policy.delay(3, &mut rand::thread_rng());
    /// assert!(delay <= policy.base_delay * 4);
    /// assert!(policy.allows_another(1, Duration::ZERO));
    /// assert!(!policy.allows_another(policy.max_attempts, Duration::ZERO));
    /// assert!(!RetryPolicy::never().allows_another(1, Duration::ZERO));
    /// ```
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let cap = self.base_delay.saturating_mul(1 << exponent).min(self.max_delay);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.gen_range(0..=nanos))
    }

    /// Whether another attempt may start after `attempts` attempts and `elapsed` time.
    pub fn allows_another(&self, attempts: u32, elapsed: Duration) -> bool {
        attempts < self.max_attempts && elapsed < self.max_elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_grow_exponentially_up_to_the_cap_and_are_jittered() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(80),
            ..RetryPolicy::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (attempt, cap_ms) in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 80), (30, 80)] {
            let delays: Vec<Duration> = (0..500).map(|_| policy.delay(attempt, &mut rng)).collect();
            let cap = Duration::from_millis(cap_ms);
            assert!(delays.iter().all(|d| *d <= cap), "attempt {attempt}: a delay above {cap:?}");
            // Full jitter: spread over the whole range, not clustered at the cap.
            let below_half = delays.iter().filter(|d| **d < cap / 2).count();
            assert!((150..350).contains(&below_half), "attempt {attempt}: {below_half}/500 below half the cap");
            let distinct: std::collections::HashSet<_> = delays.iter().collect();
            assert!(distinct.len() > 400, "delays are random, not fixed");
        }
    }

    #[test]
    fn retries_are_bounded_by_attempts_and_time() {
        let policy = RetryPolicy { max_attempts: 3, max_elapsed: Duration::from_secs(1), ..RetryPolicy::default() };
        assert!(policy.allows_another(1, Duration::ZERO));
        assert!(policy.allows_another(2, Duration::from_millis(999)));
        assert!(!policy.allows_another(3, Duration::ZERO));
        assert!(!policy.allows_another(1, Duration::from_secs(1)));
        assert!(!RetryPolicy::never().allows_another(1, Duration::ZERO));
    }
}

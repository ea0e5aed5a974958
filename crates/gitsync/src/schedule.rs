//! When to poll next: the configured interval, doubled per consecutive failure up to five
//! minutes, reset on success, with ±10 % jitter on every tick so a fleet started together
//! does not poll its Git host in lockstep.

use std::time::Duration;

/// The longest backoff after failures (unless the interval itself is longer).
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The delay before the next poll after `failures` consecutive failures, without jitter.
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    let cap = BACKOFF_CAP.max(interval);
    let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
    interval.saturating_mul(factor).min(cap)
}

/// The poll schedule of one agent.
#[derive(Clone, Debug)]
pub struct Schedule {
    interval: Duration,
    failures: u32,
    rng: u64,
}

impl Schedule {
    /// A schedule polling every `interval`; `seed` varies the jitter between agents.
    pub fn new(interval: Duration, seed: u64) -> Self {
        Self {
            interval,
            failures: 0,
            // xorshift must not start at zero.
            rng: seed | 1,
        }
    }

    /// Changes the interval (the Node manifest may set it), keeping the failure count.
    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// The configured interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Records the outcome of a poll.
    pub fn record(&mut self, ok: bool) {
        self.failures = if ok {
            0
        } else {
            self.failures.saturating_add(1)
        };
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay before the next poll: backoff, then ±10 % jitter.
    pub fn next_delay(&mut self) -> Duration {
        let base = backoff(self.interval, self.failures);
        // xorshift64: a fleet-spreading jitter, not a secret.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        base.mul_f64(0.9 + 0.2 * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(5), 0), s(5));
        assert_eq!(backoff(s(5), 1), s(10));
        assert_eq!(backoff(s(5), 5), s(160));
        assert_eq!(backoff(s(5), 6), s(300));
        assert_eq!(backoff(s(5), 1000), s(300));
        // An interval longer than the cap is never shortened by failing.
        assert_eq!(backoff(s(600), 3), s(600));
        let mut sched = Schedule::new(s(5), 42);
        sched.record(false);
        sched.record(false);
        assert_eq!(sched.failures(), 2);
        sched.record(true);
        assert_eq!(sched.failures(), 0);
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_varies() {
        let mut sched = Schedule::new(Duration::from_secs(10), 7);
        let delays: Vec<Duration> = (0..1000).map(|_| sched.next_delay()).collect();
        assert!(delays.iter().all(|d| *d >= Duration::from_secs(9)));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(11)));
        let min = delays.iter().min().copied().unwrap_or_default();
        let max = delays.iter().max().copied().unwrap_or_default();
        assert!(max - min > Duration::from_millis(1500), "{min:?}..{max:?}");
    }
}

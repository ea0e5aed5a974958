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
        // xorshift's first outputs from a small seed (a pid, a few nanoseconds) are tiny: every
        // agent would draw a splay and jitter near zero, together. splitmix64 spreads the
        // seed's bits first; xorshift must not start at zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self {
            interval,
            failures: 0,
            rng: (z ^ (z >> 31)) | 1,
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
        base.mul_f64(0.9 + 0.2 * self.unit())
    }

    /// A random fraction of one interval, `[0, interval)`: how long an agent that already has
    /// a revision to run waits before its first poll. A fleet restarted together (a power
    /// cut, an upgrade) would otherwise poll in the same instant, and ±10 % jitter takes
    /// dozens of intervals to spread it (docs/SCALING.md measures the herd).
    pub fn splay(&mut self) -> Duration {
        self.interval.mul_f64(self.unit())
    }

    /// The next number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        // xorshift64: a fleet-spreading jitter, not a secret.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
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

    #[test]
    fn splay_spreads_a_fleet_over_one_interval() {
        let interval = Duration::from_secs(10);
        // Seeds as agents make them: small numbers (a pid mixed with a few nanoseconds).
        let splays: Vec<Duration> = (0..1000u64)
            .map(|agent| Schedule::new(interval, 4000 + agent).splay())
            .collect();
        assert!(splays.iter().all(|d| *d < interval));
        // Every tenth of the interval gets some of the fleet: no clump at the start.
        let mut tenths = [0u32; 10];
        for d in &splays {
            tenths[(d.as_millis() / 1000) as usize] += 1;
        }
        assert!(tenths.iter().all(|n| (50..150).contains(n)), "{tenths:?}");
    }
}

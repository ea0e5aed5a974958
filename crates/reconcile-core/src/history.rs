//! What the agent remembers between passes, and pure backoff over it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Seconds on the agent's clock. The planner never reads a clock: time is passed in.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

/// The agent's memory of failed rollouts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The last failure of each deployment.
    pub failures: BTreeMap<String, Failure>,
}

impl History {
    /// Whether `spec_hash` of `deployment` failed and must wait before it is tried again at
    /// `now`. Another spec (a new commit) never waits for an older one's failure.
    pub fn backing_off(
        &self,
        deployment: &str,
        spec_hash: &str,
        backoff: &Backoff,
        now: Timestamp,
    ) -> bool {
        self.failures
            .get(deployment)
            .is_some_and(|f| f.spec_hash == spec_hash && next_attempt(f, backoff, now) > now)
    }

    /// Records that `spec_hash` of `deployment` failed at `now`: one more attempt of the same
    /// spec, or the first of a new one.
    pub fn record_failure(
        &mut self,
        deployment: &str,
        spec_hash: &str,
        reason: &str,
        now: Timestamp,
    ) {
        let attempts = match self.failures.get(deployment) {
            Some(f) if f.spec_hash == spec_hash => f.attempts.saturating_add(1),
            _ => 1,
        };
        self.failures.insert(
            deployment.to_owned(),
            Failure {
                spec_hash: spec_hash.to_owned(),
                attempts,
                last_failed: now,
                reason: reason.to_owned(),
            },
        );
    }

    /// Forgets `deployment`'s failures: it succeeded.
    pub fn clear(&mut self, deployment: &str) {
        self.failures.remove(deployment);
    }
}

/// A spec that failed to roll out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The spec hash that failed; a different hash (a new commit) is tried at once.
    pub spec_hash: String,
    /// Consecutive failed attempts of this spec.
    pub attempts: u32,
    /// When the last attempt failed.
    pub last_failed: Timestamp,
    /// Why, for status.
    pub reason: String,
}

/// Exponential backoff: `base` doubling per attempt up to `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay after the first failure, in seconds.
    pub base: u64,
    /// Longest delay, in seconds.
    pub cap: u64,
}

impl Default for Backoff {
    /// One minute doubling to one hour.
    fn default() -> Self {
        Self {
            base: 60,
            cap: 3600,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempts + 1`, after `attempts` failures (none after none).
    pub fn delay(&self, attempts: u32) -> u64 {
        if attempts == 0 {
            return 0;
        }
        let doublings = (attempts - 1).min(63);
        self.base.saturating_mul(1u64 << doublings).min(self.cap)
    }
}

/// When a failed spec may be tried again, as seen at `now`.
///
/// A failure recorded in the future means the clock stepped back (RELIABILITY E15): the
/// record cannot measure a wait, so the spec may be tried at once rather than waiting out the
/// skew. The result is never more than `backoff.cap` after `now`.
pub fn next_attempt(failure: &Failure, backoff: &Backoff, now: Timestamp) -> Timestamp {
    if failure.last_failed > now {
        return now;
    }
    Timestamp(
        failure
            .last_failed
            .0
            .saturating_add(backoff.delay(failure.attempts)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_per_spec_and_back_off_from_the_last() {
        let b = Backoff::default();
        let mut h = History::default();
        // (what happens, then: backing off at t=100? at t=1000? attempts)
        type Case = (&'static str, fn(&mut History), bool, bool, u32);
        let cases: [Case; 5] = [
            ("nothing failed", |_| {}, false, false, 0),
            (
                "one failure at 90: a minute's wait",
                |h| h.record_failure("web", "h1", "boom", Timestamp(90)),
                true,
                false,
                1,
            ),
            (
                "again at 95: two minutes from then",
                |h| h.record_failure("web", "h1", "boom", Timestamp(95)),
                true,
                false,
                2,
            ),
            (
                "a new spec failing starts over",
                |h| h.record_failure("web", "h2", "boom", Timestamp(99)),
                false,
                false,
                1,
            ),
            ("success forgets", |h| h.clear("web"), false, false, 0),
        ];
        for (what, act, at_100, at_1000, attempts) in cases {
            act(&mut h);
            assert_eq!(
                h.backing_off("web", "h1", &b, Timestamp(100)),
                at_100,
                "{what}"
            );
            assert_eq!(
                h.backing_off("web", "h1", &b, Timestamp(1000)),
                at_1000,
                "{what}"
            );
            assert_eq!(
                h.failures.get("web").map_or(0, |f| f.attempts),
                attempts,
                "{what}"
            );
            assert!(!h.backing_off("api", "h1", &b, Timestamp(100)), "{what}");
        }
    }

    #[test]
    fn a_clock_that_stepped_back_does_not_hold_a_spec() {
        let mut h = History::default();
        h.record_failure("web", "h1", "boom", Timestamp(5_000));
        assert!(!h.backing_off("web", "h1", &Backoff::default(), Timestamp(100)));
    }
}

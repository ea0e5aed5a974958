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

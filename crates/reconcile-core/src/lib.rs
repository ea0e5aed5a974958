//! The pure planner: from (desired, actual, history, now) to an ordered plan of steps.
//!
//! This crate will own `plan()`, spec hashing, rollout-strategy choice and pure backoff. It
//! performs no IO, reads no clock and is never async, so it is property-tested and embeddable.
//! It knows nothing of Docker, Git or HTTP.

//! Deterministic simulation of the agent's engine. The real engine (`agent-engine`) runs
//! in-process against a simulated Docker host ([`host`]), a simulated Git remote
//! ([`remote`]) and tokio's paused clock; a seed drives each scenario ([`scenario`]):
//! commits good and refused, force-pushes, outages of Docker and Git, and agent crashes at
//! any await point. After every step the invariants are checked; a failing seed prints
//! itself and replays exactly (`cargo xtask sim --seed N`).

pub mod host;
pub mod remote;
pub mod scenario;

pub use scenario::{Failure, Summary, run, run_many};

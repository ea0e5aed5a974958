//! The orun agent's engine: the reconcile loop, health-gated rollouts, crash recovery from the
//! intent journal, the event history, supervision, probes and the status projection.
//!
//! It composes `gitsync`, `manifest-model`, `reconcile-core`, `docker-runtime` and
//! `status-http`; `bins/orun-agent` is a thin shell over it that parses flags, sets up
//! logging and handles signals (docs/ARCHITECTURE.md).

mod agent;
mod apply;
mod error;
mod eventlog;
mod ingress;
mod journal;
mod keys;
mod picture;
mod probe;
mod project;
mod redact;
mod rollout;
mod seams;
mod settings;
mod state;

pub use agent::{Agent, Outcome};
pub use error::{EngineError, report};
pub use ingress::{IngressFlags, IngressMode, IngressSettings, LETS_ENCRYPT};
pub use seams::{
    Accepted, Clock, CommitRules, Git, Head, HttpProbe, LOGGED_PROBLEMS, MirrorGit, Parts, Probe,
    Real, Refusal, Runtime, SystemClock, Warnings, World, discover, judge,
};
pub use settings::{DEFAULT_IMAGE_GRACE, DEFAULT_PULL_CHECK, Settings};

//! Observes and changes the local Docker daemon on the agent's behalf.
//!
//! This crate will own everything that talks to Docker (through `bollard`, known to no other
//! crate): listing managed containers by label, creating, starting, stopping, renaming and
//! removing them, pulling images per the deployment's pull policy, and the events stream that
//! wakes the agent early. Docker status codes become typed errors with `is_transient()`.
//!
//! It does not decide what to change: that is `reconcile-core`'s plan.

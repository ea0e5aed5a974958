//! Keeps a node's copy of its manifest branch current and reads revisions from Git objects.
//!
//! This crate will own everything that touches Git (through `git2`, known to no other crate):
//! cloning and fetching one branch into the data dir, the cheap remote-head check each tick,
//! fetch deadlines and backoff, pinned SSH host keys, and handing a revision's files to
//! `manifest-model` straight from Git objects, never through a checkout.
//!
//! It does not parse manifests, talk to Docker or decide what to run.

//! The agent's read-only status API on loopback.
//!
//! This crate will own the HTTP server (through `hyper`, known to no other crate) for
//! `/healthz`, `/status`, `/readyz` and `/metrics`, answering from a cached snapshot with
//! request size and time limits. It never calls Docker or Git on a request path and never
//! accepts a command.

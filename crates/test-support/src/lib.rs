//! Helpers the tests of every crate share, so each exists once: real Git remotes (bare repos,
//! `git daemon`, `sshd` on loopback), the Docker CLI and a guard that removes a test's
//! containers by label, the real Caddy and the `pebble` ACME server on loopback, and
//! [`wait::wait`], the one way a test waits for something.
//!
//! Dev-only: no crate depends on it outside `[dev-dependencies]`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is the failure report"
)]

pub mod caddy;
pub mod docker;
pub mod git;
pub mod sops;
pub mod wait;

/// Whether a missing component must fail the test rather than skip it: `cargo xtask test`
/// and CI set `ORUN_REQUIRE_ALL`, having installed everything.
pub fn required() -> bool {
    std::env::var_os("ORUN_REQUIRE_ALL").is_some()
}

/// A free TCP port on loopback (free when asked; a test binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

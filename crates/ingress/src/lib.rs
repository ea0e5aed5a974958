//! Caddy as orun's ingress: the agent owns Caddy's whole configuration and drives it through
//! Caddy's admin API.
//!
//! [`render`] turns the node's [`Route`]s and its [`Settings`] into Caddy's complete JSON
//! config, purely and deterministically: host-routed reverse proxies, HTTPS with certificates
//! from an ACME CA or Caddy's internal CA, HTTP→HTTPS redirects, a 503 for a Service with no
//! serving container and a 404 for any other host. [`Caddy`] loads such a config
//! ([`Caddy::load`]), reads Caddy's current one back ([`Caddy::current`]), reloads only on
//! drift ([`Caddy::ensure`]: after Caddy restarted, or someone edited its config), and reports
//! the certificate Caddy actually serves for a domain ([`Caddy::certificate`]).
//!
//! # Reloads without a failed request
//! Caddy (2.6 on Linux) reloads by opening new listeners with `SO_REUSEPORT` and closing the
//! old ones. The kernel resets the connections still queued on a closed listener unless
//! `net.ipv4.tcp_migrate_req` is 1 (Linux 5.14+), which moves them to the new one: with it, 50
//! route swaps under a steady stream of new connections fail no request; without it, 4 to 11
//! of about 1000 requests sent during them were reset (`tests/caddy.rs`). Setting
//! it is the node's part (the host's, or the Caddy container's network namespace).
//!
//! It does not run or install Caddy, decide which routes exist (the agent derives them from
//! its Services and deployments), or verify certificates: it says what is served. Its calls
//! block (one bounded HTTP request each, through `status-http`'s client), so an async caller
//! runs them on its blocking pool. Nothing secret flows through it: routes hold names,
//! domains and addresses.

mod admin;
mod render;

use std::net::SocketAddr;

pub use admin::{Applied, Caddy, Certificate};
pub use render::{Issuer, LETS_ENCRYPT, Route, Settings, render, retarget, routes_in};

/// Why a call to Caddy failed.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// Caddy cannot be reached at `addr` (its admin API, or its HTTPS listener for a
    /// certificate): not running, restarting, or another address.
    #[error("cannot reach Caddy at {addr}")]
    Unreachable {
        /// The address asked.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: status_http::ClientError,
    },
    /// Caddy answered with an error status: for a load, it refused the config, and the config
    /// it had keeps serving. `message` is Caddy's own, at most [`MESSAGE_CAP`] bytes.
    #[error("the admin API refused the request (HTTP {code}): {message}")]
    Refused {
        /// The HTTP status code.
        code: u16,
        /// Caddy's error message, cut to one line of at most [`MESSAGE_CAP`] bytes.
        message: String,
    },
    /// Caddy answered something that is not what its admin API writes (not HTTP, not JSON),
    /// or its HTTPS listener presented a certificate that cannot be read.
    #[error("Caddy at {addr} gave a malformed answer")]
    Malformed {
        /// The address asked.
        addr: SocketAddr,
    },
}

/// The most bytes of Caddy's error message kept in [`IngressError::Refused`]: enough for its
/// nested "loading config: ... : unknown module" chains, bounded for logs and `/status`.
pub const MESSAGE_CAP: usize = 500;

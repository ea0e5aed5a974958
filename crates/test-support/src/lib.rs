//! Helpers the tests of every crate share, so each exists once: real Git remotes (bare repos,
//! `git daemon`, `sshd` on loopback), the Docker CLI and a guard that removes a test's
//! containers by label, the real Caddy and the `pebble` ACME server on loopback, a real Docker
//! registry with htpasswd auth ([`registry::Registry`]), the `minisign` CLI, and
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
pub mod minisign;
pub mod registry;
pub mod sops;
pub mod wait;

/// The workspace's `target` folder (or `CARGO_TARGET_DIR`).
pub fn target_dir() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), std::path::PathBuf::from)
}

/// A binary of this workspace as `cargo build` made it (`target/debug/<name>`, or under
/// `CARGO_TARGET_DIR`); `ORUN_<NAME>_BIN` points elsewhere. Panics, saying what to build,
/// when it is not there.
pub fn built(name: &str) -> std::path::PathBuf {
    let var = format!("ORUN_{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Some(p) = std::env::var_os(var) {
        return std::path::PathBuf::from(p);
    }
    let p = target_dir().join("debug").join(name);
    assert!(
        p.exists(),
        "{} is not built; run `cargo build -p {name}` first (cargo xtask test does)",
        p.display()
    );
    p
}

/// Whether a missing component must fail the test rather than skip it: `cargo xtask test`
/// and CI set `ORUN_REQUIRE_ALL`, having installed everything.
pub fn required() -> bool {
    std::env::var_os("ORUN_REQUIRE_ALL").is_some()
}

/// A free TCP port on loopback (free when asked; a test binds it soon after), never the same
/// twice in one test process.
///
/// The kernel may hand a port out again as soon as the probe socket closes, and a port is
/// often bound only later (Caddy binds its HTTP and HTTPS ports when a config names them).
/// Two tests given the same port would then meet: with Caddy's `SO_REUSEPORT` listeners not
/// even as an error, but as one server answering for another.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A test that panicked while holding the lock left the set whole: take it anyway.
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if given.insert(port) {
            return port;
        }
    }
}

/// The program `name` on the `PATH`, if any.
pub(crate) fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

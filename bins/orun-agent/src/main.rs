//! The orun node agent (not yet built: see issue 4).
//!
//! It will wire `gitsync`, `manifest-model`, `reconcile-core`, `docker-runtime` and
//! `status-http` into one loop: fetch, load, resolve for this node, observe, plan, apply, record.
//! Until then it refuses to run rather than pretend to converge anything.

use std::process::ExitCode;

fn main() -> ExitCode {
    #[allow(
        clippy::print_stderr,
        reason = "the agent has no logger yet; this is its only output"
    )]
    {
        eprintln!("orun-agent: not implemented yet; use `orun validate` to check manifests");
    }
    ExitCode::FAILURE
}

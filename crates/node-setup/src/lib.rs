//! Setting up and checking orun nodes: `orun bootstrap` (installing the agent over SSH),
//! the hardened systemd unit the agent runs under, `orun doctor` (on the node), and
//! `orun fleet` (every node's status through SSH tunnels).

pub mod bootstrap;
pub mod doctor;
pub mod fleet;
mod ssh;
pub mod unit;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use manifest_model::{DirSource, Limits, Node};

/// The Nodes of the manifest repository at `root`, refusing a repository the agent would
/// refuse: its diagnostics (validate's) are written to `out`.
///
/// # Errors
/// [`SetupError::Manifest`].
pub(crate) fn load_nodes(root: &Path, out: &mut dyn Write) -> Result<Vec<Node>, SetupError> {
    let source = DirSource::new(root).map_err(|e| {
        SetupError::Manifest(format!(
            "cannot open manifest repository {}: {e}",
            root.display()
        ))
    })?;
    let report = manifest_model::load(&source, &Limits::default());
    if report.has_errors() {
        for d in &report.diagnostics {
            let _ = writeln!(out, "{d}");
        }
        if !report.omitted.is_empty() {
            let _ = writeln!(out, "{}", report.omitted);
        }
        return Err(SetupError::Manifest(format!(
            "the manifest repository {} is invalid ({} error(s)); `orun validate` shows the same; nothing was done",
            root.display(),
            report.error_count()
        )));
    }
    let rev = report.revision.ok_or_else(|| {
        SetupError::Manifest("the manifest repository has no revision".to_owned())
    })?;
    Ok(rev.nodes.into_values().collect())
}

/// Why setting up a node stopped: `orun bootstrap`'s steps, and a unit that cannot be
/// rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The manifest repository cannot be read, is invalid, or has no such node.
    #[error("{0}")]
    Manifest(String),
    /// A flag is missing or wrong; nothing was changed on the node.
    #[error("{0}")]
    Usage(String),
    /// A local file cannot be read or written.
    #[error("{what} {}: {source}", path.display())]
    Local {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The `ssh` client (or `ssh-keygen`) cannot be run here.
    #[error("cannot run ssh: {0}")]
    Spawn(#[source] std::io::Error),
    /// SSH cannot connect to or authenticate with the node.
    #[error("cannot connect to {target}: {stderr}")]
    Connect {
        /// `user@host`.
        target: String,
        /// The end of ssh's error output.
        stderr: String,
    },
    /// A step on the node failed.
    #[error("on the node, {what} failed ({status}): {stderr}")]
    Remote {
        /// The step.
        what: String,
        /// Its exit status.
        status: String,
        /// The end of its error output (at most 2 KiB).
        stderr: String,
    },
    /// A step on the node did not finish in time.
    #[error("on the node, {what} did not finish within {timeout:?}")]
    Timeout {
        /// The step.
        what: String,
        /// The limit.
        timeout: Duration,
    },
    /// The node cannot run this binary or this setup (architecture, systemd).
    #[error("{0}")]
    Preflight(String),
    /// The Git remote's host key is not pinned, or not the one confirmed.
    #[error("{0}")]
    HostKey(String),
    /// A unit path is not one systemd takes (relative, `.` or `..` in it, not UTF-8,
    /// control characters), or could break out of its line.
    #[error("systemd unit, {field}: {path:?} {reason}")]
    UnitPath {
        /// Which parameter.
        field: &'static str,
        /// The path as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A unit user or group name that is not a plain system name.
    #[error("systemd unit, {field}: {name:?} is not a valid user or group name")]
    UnitName {
        /// Which parameter.
        field: &'static str,
        /// The name as given.
        name: String,
    },
    /// The agent started but did not report ready in time.
    #[error(
        "the agent did not become ready within {timeout:?} (last /readyz: {last}); run `orun bootstrap --check {node_file}` on this machine, or read {logs} on the node"
    )]
    NotReady {
        /// The limit.
        timeout: Duration,
        /// The last `/readyz` answer, or why there was none.
        last: String,
        /// The node file, for the hint.
        node_file: String,
        /// Where the agent's logs are.
        logs: String,
    },
}

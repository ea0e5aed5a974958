//! The engine's one error type, typed so that a caller decides what to do by its kind (retry
//! on the next tick, or give up) and never by matching its text.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;

use docker_runtime::RuntimeError;
use gitsync::GitError;

/// Why the engine could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A file in the data dir could not be read or written.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done: "read", "write", "lock", …
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: io::Error,
    },
    /// A file in the data dir does not parse.
    #[error("{} is damaged; {advice}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What the operator can do about it.
        advice: &'static str,
        /// Where parsing stopped.
        #[source]
        source: serde_json::Error,
    },
    /// Another agent holds the data dir's lock.
    #[error(
        "another orun-agent{} is using the data dir {}; only one agent may use a data dir",
        holder.as_ref().map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
        root.display()
    )]
    Locked {
        /// The data dir.
        root: PathBuf,
        /// The pid its holder wrote, when it could be read.
        holder: Option<String>,
    },
    /// A Docker request failed, with what the engine was doing.
    #[error("{what}")]
    Docker {
        /// What the engine was doing.
        what: &'static str,
        /// Docker's answer.
        #[source]
        source: RuntimeError,
    },
    /// A Docker request failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The rollouts a crash interrupted could not be resolved; nothing else is done until
    /// they are.
    #[error("cannot resolve the rollouts left by the last run")]
    Recover(#[source] Box<EngineError>),
    /// The Git mirror failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The branch to follow could not be learnt: the node's file on the remote's default
    /// branch is missing or refused. Tried again on the next poll; the last good revision
    /// keeps running meanwhile.
    #[error(
        "cannot learn which branch to follow from nodes/{node}.yaml on the remote's default branch `{default_branch}`"
    )]
    Discovery {
        /// This node's name.
        node: String,
        /// The remote's default branch.
        default_branch: String,
        /// Why the file gave no branch.
        #[source]
        source: manifest_model::ModelError,
    },
    /// A setting the engine was given cannot be used (named in the message, as its flag).
    #[error("{0}")]
    Settings(String),
    /// A state the engine's own bookkeeping should have ruled out.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// Docker could not be reached: worth trying again on the next pass, and not the fault of
    /// what was being done.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Docker { source, .. } | Self::Runtime(source) => source.is_unreachable(),
            Self::Recover(inner) => inner.is_unreachable(),
            _ => false,
        }
    }

    /// Wraps a Docker failure with what the engine was doing.
    pub(crate) fn docker(what: &'static str) -> impl FnOnce(RuntimeError) -> Self {
        move |source| Self::Docker { what, source }
    }

    /// Wraps an I/O failure on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}

/// `e` and every cause beneath it on one line, `outer: inner: …`, as logs and `/status` show
/// an error.
pub fn report(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let _ = write!(out, ": {cause}");
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_every_cause_once() {
        let e = EngineError::io("write", "/d/state.json")(io::Error::other("disk full"));
        assert_eq!(report(&e), "cannot write /d/state.json: disk full");
        let locked = EngineError::Locked {
            root: "/d".into(),
            holder: Some("42".into()),
        };
        assert_eq!(
            report(&locked),
            "another orun-agent (pid 42) is using the data dir /d; only one agent may use a data dir"
        );
    }
}

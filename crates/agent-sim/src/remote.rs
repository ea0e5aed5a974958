//! The simulated Git remote: a history of commits (good, refused, force-pushed over) and
//! outages, read through the engine's one revision judge, as the real mirror is.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use agent_engine::{Accepted, EngineError, Git, Head, Refusal, judge};
use gitsync::GitError;
use manifest_model::MemSource;

use crate::host::Host;

/// One commit: its id and its whole tree.
#[derive(Clone, Debug)]
pub struct Commit {
    /// A 40-hex id.
    pub id: String,
    /// Path → text.
    pub files: BTreeMap<String, String>,
}

/// The remote's history and state.
#[derive(Debug, Default)]
pub struct RemoteState {
    /// Every commit ever pushed, oldest first.
    pub commits: Vec<Commit>,
    /// The branch tip: an index into `commits`.
    pub head: Option<usize>,
    /// The remote does not answer.
    pub down: bool,
    /// The remote takes this long to answer each poll.
    pub slow: Option<std::time::Duration>,
}

/// The remote, shared by the engine's [`SimGit`] and the scenario.
#[derive(Clone, Debug, Default)]
pub struct Remote(Rc<RefCell<RemoteState>>);

impl Remote {
    /// Pushes `files` as a new commit on the branch; its id.
    pub fn push(&self, files: BTreeMap<String, String>) -> String {
        let mut r = self.0.borrow_mut();
        let n = r.commits.len() + 1;
        let id = format!(
            "{n:08x}{:032x}",
            (n as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060)
        );
        r.commits.push(Commit {
            id: id.clone(),
            files,
        });
        r.head = Some(r.commits.len() - 1);
        id
    }

    /// Force-pushes the branch back to the `index`th commit.
    pub fn reset(&self, index: usize) {
        let mut r = self.0.borrow_mut();
        if index < r.commits.len() {
            r.head = Some(index);
        }
    }

    /// Reads or changes the remote.
    pub fn change<T>(&self, f: impl FnOnce(&mut RemoteState) -> T) -> T {
        f(&mut self.0.borrow_mut())
    }
}

/// The engine's Git in the simulation.
#[derive(Debug)]
pub struct SimGit {
    /// The remote it follows.
    pub remote: Remote,
    /// The host, whose await points a crash strikes.
    pub host: Host,
}

impl Git for SimGit {
    async fn sync(&mut self) -> Result<Head, EngineError> {
        self.host.point().await;
        let slow = self.remote.0.borrow().slow;
        if let Some(d) = slow {
            tokio::time::sleep(d).await;
        }
        let r = self.remote.0.borrow();
        if r.down {
            return Err(GitError::Unreachable {
                reason: "the simulated remote is down".to_owned(),
            }
            .into());
        }
        match r.head {
            Some(i) => Ok(Head {
                branch: "main".to_owned(),
                commit: r.commits[i].id.clone(),
            }),
            None => Err(GitError::BranchMissing {
                branch: "main".to_owned(),
            }
            .into()),
        }
    }

    async fn read(
        &self,
        commit: &str,
        _current: Option<&str>,
        node: &str,
        branch: &str,
    ) -> Option<Result<Accepted, Refusal>> {
        self.host.point().await;
        let files = {
            let r = self.remote.0.borrow();
            r.commits.iter().find(|c| c.id == commit)?.files.clone()
        };
        let mut src = MemSource::new();
        for (path, text) in files {
            src.insert(path, text.into_bytes());
        }
        Some(judge(&src, Some(commit), node, branch, &Default::default()))
    }
}

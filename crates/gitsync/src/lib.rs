//! Keeps a node's copy of its manifest branch current and reads revisions from Git objects.
//!
//! This crate owns everything that touches Git (through `git2`, known to no other crate):
//! checking which remote URLs are acceptable ([`RemoteUrl`]), the pinned SSH host keys
//! ([`KnownHosts`]), the bare repository in the data dir with its cheap head check and fetch
//! ([`Mirror`]), deadlines around calls that libgit2 cannot interrupt ([`sync_with_deadline`]),
//! the poll schedule with backoff and jitter ([`Schedule`]), and handing a revision's files to
//! `manifest-model` straight from Git objects ([`TreeSource`]), never through a checkout, and
//! checking a commit's SSH or OpenPGP signature against the node's trusted keys ([`Trust`],
//! [`Mirror::verify_commit`]).
//!
//! It does not parse manifests, talk to Docker or decide what to run.

mod checkout;
mod known_hosts;
mod mirror;
mod schedule;
mod signature;
mod tree;
mod url;

use std::sync::mpsc;
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

pub use checkout::branch_tip;
pub use known_hosts::{KnownHosts, Verdict};
pub use mirror::{Listing, Mirror, RemoteOptions, Slot, Synced, Token};
pub use schedule::{BACKOFF_CAP, Schedule, backoff};
pub use signature::{
    MAX_ALLOWED_SIGNERS, MAX_ALLOWED_SIGNERS_LINES, MAX_KEYRING, MAX_SIGNATURE, SignatureKind,
    SignatureRefusal, Signer, Trust, verify_signed_object,
};
pub use tree::TreeSource;
pub use url::{RemoteUrl, Transport};

/// Why talking to the remote or the local mirror failed. Messages name no credential.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The repository URL is refused.
    #[error("invalid repository URL: {reason}")]
    InvalidUrl {
        /// Why.
        reason: String,
    },
    /// The options are incomplete or a file they name cannot be used.
    #[error("{reason}")]
    Config {
        /// Why.
        reason: String,
    },
    /// The ssh host key is not the pinned one.
    #[error("ssh host key for {host} is {}", match verdict {
        Verdict::Unknown => "not in the known_hosts file (orun never trusts on first use)",
        Verdict::Mismatch => "different from the pinned key: possible man-in-the-middle",
        Verdict::Revoked => "revoked",
        Verdict::Trusted => "trusted",
    })]
    HostKey {
        /// The host, in known_hosts form.
        host: String,
        /// What the known_hosts file says.
        verdict: Verdict,
    },
    /// The remote rejected the credentials (deploy key revoked, token expired).
    #[error("authentication failed: {reason}")]
    Auth {
        /// libgit2's account of it.
        reason: String,
    },
    /// The followed branch does not exist on the remote. This is never an empty desired state.
    #[error("branch {branch:?} does not exist on the remote")]
    BranchMissing {
        /// The branch.
        branch: String,
    },
    /// The remote does not say which branch its `HEAD` points at (an empty repository, a
    /// detached `HEAD`, or a server that does not advertise it), so its default branch is
    /// unknown.
    #[error(
        "the remote does not say which branch is its default (its HEAD names no branch); give the branch to follow"
    )]
    NoDefaultBranch,
    /// The head check and fetch took longer than the deadline.
    #[error("fetch took longer than its {seconds}s deadline")]
    Deadline {
        /// The deadline.
        seconds: u64,
    },
    /// The pack is larger than the cap.
    #[error("fetch exceeded the {limit}-byte cap")]
    TooLarge {
        /// The cap in bytes.
        limit: u64,
    },
    /// A previous fetch is still stuck in the network; no second one is started beside it.
    #[error("the previous fetch has not returned yet")]
    Stalled,
    /// The remote cannot be reached or refused the request (no such repository, reset, DNS).
    #[error("remote unreachable: {reason}")]
    Unreachable {
        /// libgit2's account of it.
        reason: String,
    },
    /// The local mirror cannot be opened or is missing an object.
    #[error("local mirror: {reason}")]
    Repository {
        /// Why.
        reason: String,
    },
    /// A commit's signature is missing or not accepted by the node's trusted keys.
    #[error("commit {} {reason}", commit.get(..8).unwrap_or(commit))]
    Signature {
        /// The full commit id.
        commit: String,
        /// Why it is refused.
        reason: SignatureRefusal,
    },
}

/// Initialises libgit2 on a thread of its own and returns at once. libgit2's start-up sets up
/// OpenSSL, which parses every certificate of the system's CA bundle (about 30 ms here, even
/// for a `file://` remote); a process that starts with this overlaps that with its other
/// start-up work, and its first libgit2 call waits only for what is left.
pub fn warm_up() {
    // Any libgit2 call initialises it once; a failure to spawn only loses the overlap.
    let _ = std::thread::Builder::new()
        .name("orun-git-init".to_owned())
        .spawn(|| git2::Reference::is_valid_name("refs/heads/main"));
}

/// Runs [`Mirror::sync`] on its own thread and gives up waiting after `deadline`.
///
/// libgit2 offers no way to interrupt a socket read that never returns (a remote that accepts
/// and then says nothing); its callbacks only run when bytes arrive. So the caller stops
/// waiting at the deadline, the cancel flag makes the call abort at its next callback, and
/// until that thread lets go of the mirror every further sync reports [`GitError::Stalled`]
/// instead of piling up threads.
pub fn sync_with_deadline(
    mirror: &Arc<Mutex<Mirror>>,
    deadline: Duration,
) -> Result<Synced, GitError> {
    with_deadline(mirror, deadline, Mirror::sync)
}

/// Runs `work` on the mirror on a thread of its own and gives up waiting after `deadline`,
/// as [`sync_with_deadline`] does for [`Mirror::sync`]: for a poll made of several calls
/// ([`Mirror::list`], then [`Mirror::hold`] of the branches the caller picks), with the
/// caller's error type.
pub fn with_deadline<T, E>(
    mirror: &Arc<Mutex<Mirror>>,
    deadline: Duration,
    work: impl FnOnce(&mut Mirror) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<GitError> + Send + 'static,
{
    let cancel = match mirror.try_lock() {
        Ok(m) => m.cancel_flag(),
        Err(TryLockError::Poisoned(p)) => p.into_inner().cancel_flag(),
        Err(TryLockError::WouldBlock) => return Err(GitError::Stalled.into()),
    };
    let (tx, rx) = mpsc::channel();
    let shared = Arc::clone(mirror);
    std::thread::Builder::new()
        .name("orun-git".to_owned())
        .spawn(move || {
            let result = work(
                &mut shared
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            // The guard is dropped above, before the caller wakes: a caller that uses the
            // mirror straight after a successful sync must never find it still held.
            // The receiver may be gone after a timeout; nothing to do then.
            let _ = tx.send(result);
        })
        .map_err(|e| {
            E::from(GitError::Repository {
                reason: format!("cannot start the fetch thread: {e}"),
            })
        })?;
    // A small grace beyond the in-call deadline, which usually fires first with a better error.
    match rx.recv_timeout(deadline + Duration::from_secs(1)) {
        Ok(result) => result,
        Err(_) => {
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
            Err(GitError::Deadline {
                seconds: deadline.as_secs(),
            }
            .into())
        }
    }
}

//! Opt-in, verified self-update of an orun binary (RELIABILITY F1–F8, security default 11).
//!
//! A **release feed** (a JSON document at a path or an `https://` URL) names a version and,
//! per program name and target triple, a binary with its size, SHA-256 and minisign
//! signature. [`Updater`] takes one release through these steps, each of which fails closed:
//!
//! 1. [`Updater::check`] reads the feed (at most 64 KiB, unknown fields refused) and refuses
//!    a version at or below the running one, below the highest version ever seen
//!    (persisted, so a replayed old feed cannot roll back), or marked bad.
//! 2. [`Updater::stage`] downloads the binary beside the installed one (at most the signed
//!    size), checks the size, the SHA-256 and the minisign signature against the pinned key,
//!    requires the signature's trusted comment to be exactly `"{name} {version} {target}"`
//!    (so an old signed binary cannot be relabelled as a new release), records the version
//!    as seen, and runs the staged binary: `--version` must print the release version, and
//!    every configured self-test must exit 0.
//! 3. [`Updater::swap`] records the update as pending, keeps the old binary as
//!    `<binary>.prev` (a hard link), and renames the staged one over the installed one. The
//!    caller then re-executes itself.
//! 4. The new process calls [`Updater::on_start`] first: during probation it counts starts
//!    and says when to give up ([`StartCheck::RevertNow`]); once ready it calls
//!    [`Updater::confirm`], or [`Updater::revert`] to put the old binary back and mark the
//!    version bad for good.
//!
//! Every step leaves a complete binary at the installed path: the old one or the new one
//! (the swap is a rename within one directory, and every rename is followed by an fsync of
//! the directory). Leftover staging files (`.<name>.staged-<version>`) are removed by
//! [`Updater::on_start`].
//!
//! It does not decide *when* to update (opt-in, channels, rollout delay belong to the
//! caller), nor re-execute the process, nor speak HTTP itself (`status_http::download` does,
//! with verified TLS).
//!
//! # Test hook: failpoints
//! When the environment variable `ORUN_UPDATE_FAILPOINT` names a step, the process calls
//! [`std::process::abort`] right after that step, to test crash safety (RELIABILITY F8):
//! `downloaded` (binary written to the staging file), `verified` (size, checksum, signature
//! and trusted comment checked, highest version recorded), `self-tested`, `recorded`
//! (pending update written), `linked-prev` (old binary kept as `.prev`), `swapped` (new binary
//! renamed into place), `confirm` (pending cleared by [`Updater::confirm`]). The variable is
//! read once per process; unset, it costs one comparison per step.

mod feed;
mod fetch;
mod selftest;
mod state;
mod verify;
mod version;

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use feed::{Artifact, Feed, FeedLocation, MAX_FEED, Release};
pub use state::{Pending, UpdateState};
pub use version::Version;

use state::sync_dir;
use verify::TrustedKey;

/// The target triple this crate was compiled for: the artifact a binary built with it runs.
pub const TARGET: &str = env!("TARGET");
/// Largest binary ever downloaded, whatever a feed says.
pub const MAX_BINARY: u64 = 256 << 20;
/// Largest signature file read.
pub const MAX_SIGNATURE: u64 = 4 << 10;
/// How many starts a new version gets to confirm it is ready before it is reverted.
pub const MAX_STARTS: u32 = 3;
/// The environment variable of the crash-safety test hook (see the crate docs).
pub const FAILPOINT_VAR: &str = "ORUN_UPDATE_FAILPOINT";

/// Longest remote or user text quoted in an error message.
const QUOTE_CAP: usize = 200;

/// Everything that can go wrong in a self-update. Every verification failure is one of
/// these: nothing is ever installed after an error.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// A file operation failed.
    #[error("cannot {action}")]
    Io {
        /// What was being done, naming the file.
        action: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The public key file cannot be read or is not a minisign public key.
    #[error("cannot use the public key {}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A feed location that is not a path or an `https://` URL.
    #[error("bad feed location {text:?}: {reason}")]
    Location {
        /// The location given (capped).
        text: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A version that is not `MAJOR.MINOR.PATCH[-PRE]`.
    #[error("bad version {text:?}: {reason}")]
    Version {
        /// The text given (capped).
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Something could not be fetched over HTTPS (unreachable, untrusted certificate, a
    /// status other than 200, a body cut short).
    #[error("cannot fetch the {what} from {url}")]
    Fetch {
        /// What was fetched (feed, signature, binary).
        what: String,
        /// From where (capped).
        url: String,
        /// Why it failed.
        #[source]
        source: status_http::ClientError,
    },
    /// More bytes than allowed (the feed cap, the signature cap, the signed size).
    #[error("the {what} is larger than {max} bytes")]
    TooLarge {
        /// What was fetched.
        what: String,
        /// The limit.
        max: u64,
    },
    /// The feed is not a valid release feed.
    #[error("bad release feed: {reason}")]
    Feed {
        /// What is wrong (quoting at most 200 bytes of it).
        reason: String,
    },
    /// The feed has no binary for this program and target.
    #[error("the feed has no artifact {name:?} for {target}")]
    NoArtifact {
        /// The program name.
        name: String,
        /// The target triple.
        target: String,
    },
    /// The release offered may not be installed.
    #[error("release {version} refused: {reason}")]
    Refused {
        /// The version offered.
        version: Version,
        /// Why.
        reason: Refusal,
    },
    /// The download is shorter than the signed size (RELIABILITY F1).
    #[error("the download has {got} bytes, the feed says {expected}")]
    SizeMismatch {
        /// The size in the feed.
        expected: u64,
        /// The size received.
        got: u64,
    },
    /// The download's SHA-256 is not the feed's (RELIABILITY F2).
    #[error("SHA-256 mismatch: the feed says {expected}, the download is {actual}")]
    Checksum {
        /// The checksum in the feed.
        expected: String,
        /// The checksum of what was downloaded.
        actual: String,
    },
    /// The signature is malformed, in an unsupported mode, or does not verify (F3).
    #[error("bad signature: {reason}")]
    Signature {
        /// Why.
        reason: String,
    },
    /// The signature was made with a key other than the pinned one (F3).
    #[error("signed by unknown key {key_id} (the trusted key is {trusted})")]
    UnknownKey {
        /// The signer's key id, as minisign prints it.
        key_id: String,
        /// The pinned key's id.
        trusted: String,
    },
    /// The signature is valid but signs another release: its trusted comment is not
    /// `"{name} {version} {target}"` (an old binary relabelled as new).
    #[error("the signature is for {found:?}, not {expected:?}")]
    TrustedComment {
        /// What the comment must be.
        expected: String,
        /// What it is (capped).
        found: String,
    },
    /// The staged binary failed a self-test run (F6).
    #[error("the staged binary failed `{args}`: {reason}")]
    SelfTest {
        /// The arguments of the run.
        args: String,
        /// What went wrong (with the end of its output, capped).
        reason: String,
    },
    /// The state file exists but is not a valid state; it is left as it is for a human.
    #[error("the update state {} is corrupt", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// [`Updater::revert`] without an update pending.
    #[error("no update is pending")]
    NoPending,
    /// The kept old binary is not there to revert to.
    #[error("the previous binary {} is missing", path.display())]
    NoPrevious {
        /// Where it should be.
        path: PathBuf,
    },
}

impl UpdateError {
    pub(crate) fn io(action: String, source: std::io::Error) -> Self {
        Self::Io { action, source }
    }
}

/// Why a release is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Older than the running version (RELIABILITY F4).
    #[error("older than the running version {current}")]
    Downgrade {
        /// The running version.
        current: Version,
    },
    /// Older than the highest version seen: a replayed or rolled-back feed (F4).
    #[error("older than the highest version seen, {highest}")]
    NotNewer {
        /// The highest version seen.
        highest: Version,
    },
    /// The version failed a trial before (F7).
    #[error("marked bad: {reason}")]
    MarkedBad {
        /// Why it was marked.
        reason: String,
    },
}

/// Cuts `text` to at most 200 bytes (on a character boundary), marking the cut.
pub(crate) fn cap(text: &str) -> String {
    if text.len() <= QUOTE_CAP {
        return text.to_owned();
    }
    let mut end = QUOTE_CAP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Aborts the process when the failpoint test hook names `step` (see the crate docs).
fn failpoint(step: &str) {
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| std::env::var(FAILPOINT_VAR).ok());
    if chosen.as_deref() == Some(step) {
        tracing::warn!(step, "failpoint reached: aborting (test hook)");
        std::process::abort();
    }
}

/// How self-update is set up on this node.
#[derive(Clone, Debug)]
pub struct UpdateConfig {
    /// Where the release feed is.
    pub feed: FeedLocation,
    /// The minisign public key file releases must be signed with.
    pub public_key: PathBuf,
    /// The installed binary to replace (e.g. `/var/lib/orun/bin/orun`).
    pub binary: PathBuf,
    /// The artifact name (`orun`).
    pub name: String,
    /// The running binary's version.
    pub current: Version,
    /// Where `update.json` lives.
    pub state_dir: PathBuf,
    /// Extra PEM root certificates for a private https feed.
    pub ca_file: Option<PathBuf>,
    /// Argument lists the staged binary must each pass (exit 0), after `--version`.
    pub self_test: Vec<Vec<OsString>>,
    /// How long a swapped-in binary has to confirm it is ready.
    pub probation: Duration,
}

/// What the feed offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    /// The feed's version is the running one.
    UpToDate {
        /// The feed's version.
        latest: Version,
    },
    /// A newer release this binary may install.
    Available(Release),
}

/// A verified, self-tested binary waiting in its staging file for [`Updater::swap`].
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    version: Version,
}

impl Staged {
    /// The staging file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version it is.
    pub fn version(&self) -> &Version {
        &self.version
    }
}

/// What a starting process must do about a pending update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartCheck {
    /// Nothing pending for this version: run normally.
    Normal,
    /// This version is on probation: it must call [`Updater::confirm`] once ready, and
    /// [`Updater::revert`] if it is not ready by `deadline`.
    Probation {
        /// The version on probation (the running one).
        version: Version,
        /// When it must have confirmed.
        deadline: SystemTime,
    },
    /// This version has had its chances (too many starts, past its deadline, or already
    /// marked bad): call [`Updater::revert`] with `reason` and re-execute.
    RevertNow {
        /// Why.
        reason: String,
    },
}

/// Takes releases from a feed to an installed, confirmed binary. See the crate docs.
pub struct Updater {
    config: UpdateConfig,
    key: TrustedKey,
    state: UpdateState,
    state_path: PathBuf,
}

impl Updater {
    /// Loads the public key and the persisted state.
    ///
    /// # Errors
    /// [`UpdateError::Key`] for an unusable key, [`UpdateError::State`] for a corrupt state
    /// file, [`UpdateError::Io`] when either cannot be read.
    pub fn new(config: UpdateConfig) -> Result<Self, UpdateError> {
        let key = TrustedKey::load(&config.public_key)?;
        let state_path = config.state_dir.join("update.json");
        let state = UpdateState::load(&state_path)?;
        Ok(Self {
            config,
            key,
            state,
            state_path,
        })
    }

    /// The persisted state.
    pub fn state(&self) -> &UpdateState {
        &self.state
    }

    /// Reads the feed and says whether it offers this binary a newer release.
    ///
    /// # Errors
    /// [`UpdateError::Refused`] for a version below the running one or the highest seen, or
    /// marked bad; [`UpdateError::NoArtifact`] when a newer feed has no
    /// binary for this name and target; the feed's fetch and parse errors. Nothing changes.
    pub fn check(&self) -> Result<Offer, UpdateError> {
        let feed = &self.config.feed;
        let bytes = fetch::fetch_small(feed, "feed", self.config.ca_file.as_deref(), MAX_FEED)?;
        let feed = Feed::parse(&bytes, feed)?;
        let version = feed.version.clone();
        if version == self.config.current {
            return Ok(Offer::UpToDate { latest: version });
        }
        self.admissible(&version)?;
        let release =
            feed.release_for(&self.config.name, TARGET)
                .ok_or_else(|| UpdateError::NoArtifact {
                    name: self.config.name.clone(),
                    target: TARGET.to_owned(),
                })?;
        Ok(Offer::Available(release))
    }

    /// Refuses what may not be installed.
    fn admissible(&self, version: &Version) -> Result<(), UpdateError> {
        let refuse = |reason| {
            Err(UpdateError::Refused {
                version: version.clone(),
                reason,
            })
        };
        if let Some(reason) = self.state.bad.get(version) {
            return refuse(Refusal::MarkedBad {
                reason: reason.clone(),
            });
        }
        if *version <= self.config.current {
            return refuse(Refusal::Downgrade {
                current: self.config.current.clone(),
            });
        }
        // The highest version itself stays installable: a stage that verified it and then
        // did not end in a swap (a failed self-test, a crash, an agent stopping mid-trial) may
        // be tried again; its signature binds the version, so it is the same release.
        if let Some(highest) = &self.state.highest_seen
            && version < highest
        {
            return refuse(Refusal::NotNewer {
                highest: highest.clone(),
            });
        }
        Ok(())
    }

    /// The directory of the installed binary, where staging happens.
    fn binary_dir(&self) -> &Path {
        self.config.binary.parent().unwrap_or(Path::new("."))
    }

    /// The staging file of `version`: hidden, recognisable, beside the installed binary.
    fn staging_path(&self, version: &Version) -> PathBuf {
        self.binary_dir()
            .join(format!(".{}.staged-{version}", self.config.name))
    }

    /// Where the replaced binary is kept.
    fn previous_path(&self) -> PathBuf {
        let mut prev = self.config.binary.clone().into_os_string();
        prev.push(".prev");
        PathBuf::from(prev)
    }

    /// Downloads, verifies and self-tests `release` into a staging file beside the installed
    /// binary. The version is recorded as seen once its signature verified.
    ///
    /// # Guarantees
    /// On any error the staging file is removed and the installed binary is untouched. At
    /// most the signed size (itself at most 256 MiB) is written to disk.
    ///
    /// # Errors
    /// [`UpdateError::Refused`] as [`Updater::check`]; [`UpdateError::SizeMismatch`],
    /// [`UpdateError::TooLarge`], [`UpdateError::Checksum`], [`UpdateError::Signature`],
    /// [`UpdateError::UnknownKey`], [`UpdateError::TrustedComment`],
    /// [`UpdateError::SelfTest`], and fetch and file errors.
    pub fn stage(&mut self, release: &Release) -> Result<Staged, UpdateError> {
        self.admissible(&release.version)?;
        let artifact = &release.artifact;
        let ca = self.config.ca_file.clone();
        let path = self.staging_path(&release.version);
        let mut guard = RemoveOnDrop(Some(path.clone()));
        let io = |action: &str, e| UpdateError::io(format!("{action} {}", path.display()), e);

        // The signature first: it is small, and a missing one fails before any download.
        let signature = fetch::fetch_small(
            &artifact.signature,
            "signature",
            ca.as_deref(),
            MAX_SIGNATURE,
        )?;

        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", e)),
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io("create", e))?;
        let got = fetch::fetch(
            &artifact.url,
            "binary",
            ca.as_deref(),
            artifact.size,
            &mut file,
        )?;
        if got != artifact.size {
            return Err(UpdateError::SizeMismatch {
                expected: artifact.size,
                got,
            });
        }
        file.flush().map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("sync", e))?;
        drop(file);
        failpoint("downloaded");

        let comment = format!("{} {} {}", artifact.name, release.version, artifact.target);
        self.key
            .verify_file(&path, &artifact.sha256, &signature, &comment)?;
        if self
            .state
            .highest_seen
            .as_ref()
            .is_none_or(|h| *h < release.version)
        {
            let mut next = self.state.clone();
            next.highest_seen = Some(release.version.clone());
            self.commit(next)?;
        }
        failpoint("verified");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .map_err(|e| io("make executable", e))?;
        self.self_test(&path, &release.version)?;
        failpoint("self-tested");

        guard.0 = None;
        tracing::info!(version = %release.version, staged = %path.display(), "release verified and staged");
        Ok(Staged {
            path,
            version: release.version.clone(),
        })
    }

    /// `--version` must print the release version; each configured run must exit 0.
    fn self_test(&self, path: &Path, version: &Version) -> Result<(), UpdateError> {
        let version_args = vec![OsString::from("--version")];
        let out = selftest::run(path, &version_args, selftest::SELF_TEST_TIMEOUT)?;
        let failed = |args: &[OsString], reason: String| UpdateError::SelfTest {
            args: selftest::render(args),
            reason,
        };
        if !out.status.success() {
            return Err(failed(
                &version_args,
                format!("{}: {}", out.status, selftest::tail(&out)),
            ));
        }
        if !selftest::prints_version(&out.stdout, &version.to_string()) {
            return Err(failed(
                &version_args,
                format!(
                    "it does not print version {version}: {:?}",
                    selftest::tail(&out)
                ),
            ));
        }
        for args in &self.config.self_test {
            let out = selftest::run(path, args, selftest::SELF_TEST_TIMEOUT)?;
            if !out.status.success() {
                return Err(failed(
                    args,
                    format!("{}: {}", out.status, selftest::tail(&out)),
                ));
            }
        }
        Ok(())
    }

    /// Puts `staged` in place of the installed binary: records the update as pending, keeps
    /// the installed binary as `<binary>.prev`, renames the staged one over it. The caller
    /// re-executes itself afterwards, and the new process calls [`Updater::on_start`].
    ///
    /// # Guarantees
    /// The installed path holds a complete binary throughout, old or new; the pending record
    /// is durable before the binary changes.
    ///
    /// # Errors
    /// File errors; the installed binary is the old one unless the final rename succeeded.
    pub fn swap(&mut self, staged: Staged) -> Result<(), UpdateError> {
        let binary = self.config.binary.clone();
        let prev = self.previous_path();
        let dir = self.binary_dir().to_owned();
        let now = unix_now(SystemTime::now());
        let mut next = self.state.clone();
        next.pending = Some(Pending {
            version: staged.version.clone(),
            previous_version: self.config.current.clone(),
            previous: prev.clone(),
            started_at_unix: now,
            deadline_unix: now.saturating_add(self.config.probation.as_secs()),
            starts: 0,
        });
        self.commit(next)?;
        failpoint("recorded");

        // Linked under a temporary name, then renamed: an older `.prev` is replaced in one
        // step, and a crash never leaves a half-made one.
        let tmp = self.previous_tmp_path();
        let _ = fs::remove_file(&tmp);
        let link = || -> std::io::Result<()> {
            fs::hard_link(&binary, &tmp)?;
            fs::rename(&tmp, &prev)?;
            sync_dir(&dir)
        };
        link().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            UpdateError::io(
                format!("keep {} as {}", binary.display(), prev.display()),
                e,
            )
        })?;
        failpoint("linked-prev");

        let rename = || -> std::io::Result<()> {
            fs::rename(&staged.path, &binary)?;
            sync_dir(&dir)
        };
        rename().map_err(|e| {
            UpdateError::io(
                format!("rename {} to {}", staged.path.display(), binary.display()),
                e,
            )
        })?;
        failpoint("swapped");
        tracing::info!(from = %self.config.current, to = %staged.version, "binary swapped; on probation until confirmed");
        Ok(())
    }

    fn previous_tmp_path(&self) -> PathBuf {
        self.binary_dir()
            .join(format!(".{}.prev-tmp", self.config.name))
    }

    /// Called first thing at process start: removes leftover staging files and judges a
    /// pending update, at the current time. See [`Updater::on_start_at`].
    ///
    /// # Errors
    /// As [`Updater::on_start_at`].
    pub fn on_start(&mut self) -> Result<StartCheck, UpdateError> {
        self.on_start_at(SystemTime::now())
    }

    /// [`Updater::on_start`] at time `now`.
    ///
    /// With an update pending for the running version, the start is counted (persisted) and
    /// the answer is [`StartCheck::Probation`], or [`StartCheck::RevertNow`] after more than
    /// three starts, past the deadline, or when the version is already marked bad (a revert
    /// that crashed half-way). A pending update for another version means the swap never
    /// happened or was undone: it is cleared and the answer is [`StartCheck::Normal`]. With
    /// nothing pending, a leftover `<binary>.prev` is removed.
    ///
    /// # Errors
    /// File errors writing the state or removing leftovers.
    pub fn on_start_at(&mut self, now: SystemTime) -> Result<StartCheck, UpdateError> {
        self.remove_leftovers()?;
        let Some(pending) = self.state.pending.clone() else {
            self.remove_previous()?;
            return Ok(StartCheck::Normal);
        };
        let mut next = self.state.clone();
        if pending.version != self.config.current {
            tracing::info!(pending = %pending.version, running = %self.config.current, "the pending update is not running; cleared");
            next.pending = None;
            self.commit(next)?;
            self.remove_previous()?;
            return Ok(StartCheck::Normal);
        }
        let starts = pending.starts.saturating_add(1);
        if let Some(p) = next.pending.as_mut() {
            p.starts = starts;
        }
        self.commit(next)?;
        let deadline = UNIX_EPOCH + Duration::from_secs(pending.deadline_unix);
        let reason = if let Some(reason) = self.state.bad.get(&pending.version) {
            Some(format!("already marked bad: {reason}"))
        } else if starts > MAX_STARTS {
            Some(format!(
                "started {starts} times without confirming it is ready"
            ))
        } else if now >= deadline {
            Some("not confirmed ready before its deadline".to_owned())
        } else {
            None
        };
        Ok(match reason {
            Some(reason) => StartCheck::RevertNow { reason },
            None => StartCheck::Probation {
                version: pending.version,
                deadline,
            },
        })
    }

    /// Removes `<binary>.prev`, which only an update pending needs (a crash during
    /// [`Updater::confirm`], or before a swap, can leave it behind).
    fn remove_previous(&self) -> Result<(), UpdateError> {
        let prev = self.previous_path();
        match fs::remove_file(&prev) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(UpdateError::io(format!("remove {}", prev.display()), e)),
        }
    }

    /// Removes staging files and half-made `.prev` links a crash may have left.
    fn remove_leftovers(&self) -> Result<(), UpdateError> {
        let dir = self.binary_dir();
        let staged = format!(".{}.staged-", self.config.name);
        let tmp = format!(".{}.prev-tmp", self.config.name);
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(UpdateError::io(format!("list {}", dir.display()), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| UpdateError::io(format!("list {}", dir.display()), e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&staged) || name == tmp {
                let path = entry.path();
                fs::remove_file(&path)
                    .map_err(|e| UpdateError::io(format!("remove {}", path.display()), e))?;
                tracing::debug!(path = %path.display(), "removed a leftover staging file");
            }
        }
        Ok(())
    }

    /// The new binary is ready: clears the pending update and removes `<binary>.prev`.
    /// Without an update pending it does nothing.
    ///
    /// # Errors
    /// File errors.
    pub fn confirm(&mut self) -> Result<(), UpdateError> {
        let Some(pending) = self.state.pending.clone() else {
            return Ok(());
        };
        let mut next = self.state.clone();
        next.pending = None;
        // Pending is cleared before `.prev` goes: the other order could leave an update
        // pending with nothing to revert to.
        self.commit(next)?;
        failpoint("confirm");
        match fs::remove_file(&pending.previous) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(UpdateError::io(
                    format!("remove {}", pending.previous.display()),
                    e,
                ));
            }
        }
        tracing::info!(version = %pending.version, "update confirmed");
        Ok(())
    }

    /// Puts the previous binary back (one rename over the installed one), marks the pending
    /// version bad with `reason`, and clears the pending update. The caller re-executes.
    ///
    /// # Guarantees
    /// The version is marked bad before the binary changes, so a crash half-way still
    /// reverts on the next start and never retries that version.
    ///
    /// # Errors
    /// [`UpdateError::NoPending`], [`UpdateError::NoPrevious`], file errors.
    pub fn revert(&mut self, reason: &str) -> Result<(), UpdateError> {
        let pending = self.state.pending.clone().ok_or(UpdateError::NoPending)?;
        if !pending.previous.exists() {
            return Err(UpdateError::NoPrevious {
                path: pending.previous,
            });
        }
        let mut next = self.state.clone();
        next.bad.insert(pending.version.clone(), cap(reason));
        self.commit(next)?;
        let binary = &self.config.binary;
        fs::rename(&pending.previous, binary)
            .and_then(|()| sync_dir(self.binary_dir()))
            .map_err(|e| {
                UpdateError::io(
                    format!(
                        "rename {} to {}",
                        pending.previous.display(),
                        binary.display()
                    ),
                    e,
                )
            })?;
        let mut next = self.state.clone();
        next.pending = None;
        self.commit(next)?;
        tracing::warn!(version = %pending.version, restored = %pending.previous_version, reason, "update reverted and marked bad");
        Ok(())
    }

    /// Marks `version` bad (never offered again) with `reason`, for a staged binary that
    /// failed a trial before any swap, and removes its staging file.
    ///
    /// # Errors
    /// File errors.
    pub fn mark_bad(&mut self, version: &Version, reason: &str) -> Result<(), UpdateError> {
        let mut next = self.state.clone();
        next.bad.insert(version.clone(), cap(reason));
        self.commit(next)?;
        let path = self.staging_path(version);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(UpdateError::io(format!("remove {}", path.display()), e)),
        }
    }

    /// Persists `next`, and only then takes it as the state.
    fn commit(&mut self, next: UpdateState) -> Result<(), UpdateError> {
        next.save(&self.state_path)?;
        self.state = next;
        Ok(())
    }
}

/// Removes a staging file when dropped, unless disarmed (`.0 = None`).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// Seconds since the Unix epoch; 0 for a clock set before it.
fn unix_now(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_quotes_on_a_character_boundary() {
        assert_eq!(cap("short"), "short");
        let long = "é".repeat(150);
        let capped = cap(&long);
        assert!(capped.len() <= QUOTE_CAP + "…".len(), "{}", capped.len());
        assert!(capped.ends_with('…'));
    }

    #[test]
    fn target_is_a_triple() {
        assert!(TARGET.split('-').count() >= 3, "{TARGET}");
    }
}

//! The opt-in self-update as the agent runs it: reads the release feed every interval, shows
//! what it offers in `/status` and the event history, and in `install` mode, on a ready node,
//! stages the release, runs it on trial in place of this process's engine, swaps it in and
//! re-executes; after the swap, confirms the new version once it is ready, or reverts it.
//!
//! The trial is why a release that crashes or never gets ready is refused without ever being
//! installed: the staged binary runs with this process's flags (its engine and status API
//! stopped, so it takes the data dir and the port) and must answer `/readyz` with 200 within
//! the deadline. Only then is it swapped in and executed in place of this process (same PID,
//! so systemd's `Type=notify` follows). The new process is on probation until ready; past the
//! deadline, or after three starts (a crash loop under systemd), it puts the old binary back.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use self_update::{FeedLocation, Offer, Staged, StartCheck, UpdateConfig, Updater, Version};
use serde::Deserialize;
use status_http::{BearerToken, EventOutcome, Note, SelfUpdateStatus, Status};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::notify::{CHILD_ENV_REMOVE, Notifier};

/// Set in the trial process: it runs the agent, but not the self-update (it must not judge
/// or clean up the update that is trying it).
pub(crate) const TRIAL_VAR: &str = "ORUN_UPDATE_TRIAL";
/// Test hook: the version the self-update takes as running, instead of this build's (the
/// end-to-end test publishes releases of one build under several versions).
pub const CURRENT_VERSION_VAR: &str = "ORUN_UPDATE_CURRENT_VERSION";
/// Step name of the self-update's events.
const STEP: &str = "self-update";
/// How often readiness is looked at, on probation and on trial.
const READY_POLL: Duration = Duration::from_millis(250);
/// How long the trial process has to stop after SIGTERM before it is killed.
const TRIAL_STOP: Duration = Duration::from_secs(30);

/// What the self-update may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UpdateMode {
    /// Nothing (the default).
    Off,
    /// Read the feed and show a newer release in `/status`; install nothing.
    Notify,
    /// Verify, try and install a newer release.
    Install,
}

/// The self-update's settings, checked.
#[derive(Clone, Debug)]
pub struct UpdateSettings {
    /// `Notify` or `Install`.
    pub mode: UpdateMode,
    /// The release feed.
    pub feed: FeedLocation,
    /// The pinned minisign public key.
    pub key: PathBuf,
    /// How often the feed is read.
    pub interval: Duration,
    /// Extra roots for the feed's HTTPS.
    pub ca: Option<PathBuf>,
    /// How long a new version has to get ready, on trial and after the swap.
    pub deadline: Duration,
    /// The installed binary that is replaced.
    pub binary: PathBuf,
}

/// How many times a release may fail to stage, fail its trial without crashing, or fail to
/// swap in before this process stops trying it (until a restart). A release that crashes on
/// trial is refused for good at once.
const MAX_ATTEMPTS: u32 = 3;

/// The process id of a trial run while one runs (0: none), for a second signal to kill.
static TRIAL_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Kills a trial run at once: the agent is exiting without its usual clean-up.
pub(crate) fn kill_trial() {
    let pid = TRIAL_PID.swap(0, Ordering::SeqCst);
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Why a trial did not end ready.
#[derive(Debug)]
pub(crate) enum TrialFailure {
    /// The release's own fault: it exited, or could not be started. Refused for good.
    Crashed(String),
    /// Not ready in time: perhaps the release, perhaps the node (a slow pull, a flapping
    /// deployment). Tried again, up to [`MAX_ATTEMPTS`] times.
    NotReady(String),
    /// The agent is stopping.
    Stopped,
}

/// What the daemon must do for the self-update.
pub(crate) enum Action {
    /// Stop the engine and the status API, and try this release.
    Trial(Staged),
    /// The version on probation is not ready in time: stop, put the old binary back, and
    /// execute it.
    Revert(String),
}

/// The self-update of one running agent.
pub(crate) struct SelfUpdate {
    mode: UpdateMode,
    interval: Duration,
    deadline: Duration,
    binary: PathBuf,
    updater: Arc<Mutex<Updater>>,
    status: Status,
    part: SelfUpdateStatus,
    /// The deadline of the running version, while it is on probation.
    probation: Option<SystemTime>,
    next_check: Instant,
    /// The release last announced, so a notify-only node says it once, not every interval.
    announced: Option<Version>,
    /// Failed attempts per version in this process (see [`MAX_ATTEMPTS`]).
    attempts: std::collections::BTreeMap<Version, u32>,
}

/// The version this process runs as.
fn running_version() -> Result<Version, self_update::UpdateError> {
    match std::env::var(CURRENT_VERSION_VAR) {
        Ok(v) if !v.is_empty() => Version::parse(&v),
        _ => Version::parse(env!("CARGO_PKG_VERSION")),
    }
}

/// Whether this process is a trial run of a staged release.
pub(crate) fn is_trial() -> bool {
    std::env::var_os(TRIAL_VAR).is_some()
}

/// An error with its causes, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn lock(updater: &Mutex<Updater>) -> MutexGuard<'_, Updater> {
    // A panic while holding it leaves the updater as its files say: still usable.
    updater
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The process's arguments after the program name: what the trial, the self-test and the
/// re-executed binary are given.
fn own_args() -> Vec<OsString> {
    std::env::args_os().skip(1).collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SelfUpdate {
    /// Loads the key and the persisted state, and judges a pending update: `Err(reason)`
    /// when the running version must be reverted before anything starts.
    ///
    /// # Errors
    /// The updater cannot start (key, state file): the agent runs without self-update and
    /// shows why.
    pub(crate) fn open(
        settings: UpdateSettings,
        data_dir: &Path,
        program: &str,
        status: Status,
    ) -> Result<(Self, Option<String>), String> {
        let current = running_version().map_err(|e| chain(&e))?;
        let mut self_test = own_args();
        self_test.push("--check-config".into());
        let mut updater = Updater::new(UpdateConfig {
            feed: settings.feed,
            public_key: settings.key,
            binary: settings.binary.clone(),
            name: program.to_owned(),
            current: current.clone(),
            state_dir: data_dir.to_owned(),
            ca_file: settings.ca,
            self_test: vec![self_test],
            probation: settings.deadline,
        })
        .map_err(|e| chain(&e))?;
        let check = updater.on_start().map_err(|e| chain(&e))?;
        let mode = match settings.mode {
            UpdateMode::Install => "install",
            _ => "notify",
        };
        let mut this = Self {
            mode: settings.mode,
            interval: settings.interval,
            deadline: settings.deadline,
            binary: settings.binary,
            updater: Arc::new(Mutex::new(updater)),
            status,
            part: SelfUpdateStatus {
                mode: mode.to_owned(),
                current: current.to_string(),
                phase: "idle".to_owned(),
                ..SelfUpdateStatus::default()
            },
            probation: None,
            next_check: Instant::now(),
            announced: None,
            attempts: std::collections::BTreeMap::new(),
        };
        let revert = match check {
            StartCheck::Normal => None,
            StartCheck::Probation { version, deadline } => {
                info!(%version, "new version on probation until it is ready");
                this.note(
                    &format!("running {version} on probation until it is ready"),
                    EventOutcome::Started,
                );
                this.probation = Some(deadline);
                this.part.phase = "probation".to_owned();
                None
            }
            StartCheck::RevertNow { reason } => Some(reason),
        };
        this.publish();
        Ok((this, revert))
    }

    /// Shows the updater's state (refused versions) and this process's view in `/status`.
    fn publish(&mut self) {
        self.part.refused = lock(&self.updater)
            .state()
            .bad
            .iter()
            .map(|(v, why)| (v.to_string(), why.clone()))
            .collect();
        self.status.set_self_update(Some(self.part.clone()));
    }

    fn note(&self, reason: &str, outcome: EventOutcome) {
        self.status.note(Note {
            step: STEP.to_owned(),
            reason: reason.to_owned(),
            outcome,
        });
    }

    /// Records a failure in `/status` and, when it is news, in the event history.
    fn fail(&mut self, reason: String) {
        warn!(reason = %reason, "self-update failed");
        if self.part.last_error.as_deref() != Some(reason.as_str()) {
            self.note(&reason, EventOutcome::Failed);
        }
        self.part.last_error = Some(reason);
        self.part.phase = "idle".to_owned();
        self.publish();
    }

    fn set_phase(&mut self, phase: &str) {
        phase.clone_into(&mut self.part.phase);
        self.publish();
    }

    /// Puts the previous binary back and marks the running version bad.
    pub(crate) fn revert(&mut self, reason: &str) -> Result<(), String> {
        let result = lock(&self.updater).revert(reason);
        result.map_err(|e| chain(&e))
    }

    /// A revert that could not be done: shown, and not tried again by this process.
    pub(crate) fn revert_failed(&mut self, e: &str) {
        error!(error = %e, "cannot revert the update; running on");
        self.probation = None;
        self.fail(format!(
            "cannot put the previous version back ({e}); this version runs on: install one by hand"
        ));
    }

    /// Counts a failed attempt at `version`; true when it is the last one allowed.
    fn count_failure(&mut self, version: &Version) -> bool {
        let n = self.attempts.entry(version.clone()).or_default();
        *n += 1;
        *n >= MAX_ATTEMPTS
    }

    /// The installed binary, which [`exec`] runs.
    pub(crate) fn binary(&self) -> &Path {
        &self.binary
    }

    /// Waits for what the daemon must do next: confirms a version on probation once the node
    /// is ready, reads the feed every interval, and returns a staged release to try (install
    /// mode, ready node) or a revert. Dropping it mid-way is safe: each step is whole on disk.
    pub(crate) async fn next_action(&mut self) -> Action {
        loop {
            if let Some(deadline) = self.probation {
                if self.status.get().ready {
                    self.confirm().await;
                } else if SystemTime::now() >= deadline {
                    return Action::Revert(format!(
                        "{} was not ready within {:?} of its start",
                        self.part.current, self.deadline
                    ));
                } else {
                    tokio::time::sleep(READY_POLL).await;
                }
                continue;
            }
            tokio::time::sleep_until(self.next_check).await;
            self.next_check = Instant::now() + self.interval;
            if let Some(staged) = self.check_and_stage().await {
                return Action::Trial(staged);
            }
        }
    }

    async fn confirm(&mut self) {
        let updater = Arc::clone(&self.updater);
        let done = tokio::task::spawn_blocking(move || lock(&updater).confirm()).await;
        self.probation = None;
        match done {
            Ok(Ok(())) => {
                info!(version = %self.part.current, "self-update confirmed: the new version is ready");
                self.note(
                    &format!("{} is ready: update confirmed", self.part.current),
                    EventOutcome::Ok,
                );
                self.part.last_error = None;
                self.set_phase("idle");
            }
            Ok(Err(e)) => self.fail(format!("cannot confirm the update: {}", chain(&e))),
            Err(e) => self.fail(format!("cannot confirm the update: {e}")),
        }
    }

    /// Reads the feed; in install mode on a ready node, stages what it offers.
    async fn check_and_stage(&mut self) -> Option<Staged> {
        let updater = Arc::clone(&self.updater);
        let offer = tokio::task::spawn_blocking(move || lock(&updater).check()).await;
        let release = match offer {
            Ok(Ok(Offer::UpToDate { latest })) => {
                tracing::debug!(%latest, "self-update: up to date");
                self.part.available = None;
                self.part.last_check_unix = Some(unix_now());
                self.part.last_error = None;
                self.set_phase("idle");
                return None;
            }
            Ok(Ok(Offer::Available(release))) => release,
            Ok(Err(e)) => {
                self.fail(format!("release feed: {}", chain(&e)));
                return None;
            }
            Err(e) => {
                self.fail(format!("release feed: {e}"));
                return None;
            }
        };
        let version = release.version.clone();
        self.part.available = Some(version.to_string());
        self.part.last_check_unix = Some(unix_now());
        if self.mode == UpdateMode::Install
            && self
                .attempts
                .get(&version)
                .is_some_and(|n| *n >= MAX_ATTEMPTS)
        {
            // Given up on until the agent restarts; the last error stays shown.
            self.set_phase("idle");
            return None;
        }
        if self.mode != UpdateMode::Install {
            if self.announced.as_ref() != Some(&version) {
                info!(%version, "self-update: a newer release is available (notify only)");
                self.note(
                    &format!("{version} is available (notify only: not installed)"),
                    EventOutcome::Ok,
                );
                self.announced = Some(version);
            }
            self.part.last_error = None;
            self.set_phase("idle");
            return None;
        }
        if !self.status.get().ready {
            // A node that is not converged is not a baseline a trial can be judged against.
            self.set_phase("waiting for the node to be ready");
            self.next_check = Instant::now() + self.interval.min(Duration::from_secs(30));
            return None;
        }
        self.set_phase("staging");
        self.note(
            &format!("installing {version}: download, verify, self-test"),
            EventOutcome::Started,
        );
        let updater = Arc::clone(&self.updater);
        let staged = tokio::task::spawn_blocking(move || lock(&updater).stage(&release)).await;
        match staged {
            Ok(Ok(_)) if !self.status.get().ready => {
                // A commit arrived while the release downloaded: stopping the engine now would
                // cancel its rollout. The staging file is written again next time.
                self.set_phase("waiting for the node to be ready");
                self.next_check = Instant::now() + self.interval.min(Duration::from_secs(30));
                None
            }
            Ok(Ok(staged)) => Some(staged),
            Ok(Err(e)) => {
                let last = self.count_failure(&version);
                self.fail(format!("{version} refused: {}{}", chain(&e), give_up(last)));
                None
            }
            Err(e) => {
                let last = self.count_failure(&version);
                self.fail(format!("{version} refused: {e}{}", give_up(last)));
                None
            }
        }
    }

    /// Runs `staged` with this process's flags until its `/readyz` answers 200 (then stops
    /// it) or the deadline passes, it exits, or the agent is stopping. The engine and the
    /// status API must be stopped: the trial takes the data dir and the port.
    pub(crate) async fn trial(
        &mut self,
        staged: &Staged,
        status_addr: SocketAddr,
        token: Option<&BearerToken>,
        terminating: &AtomicBool,
        notifier: &Notifier,
    ) -> Result<(), TrialFailure> {
        let version = staged.version().clone();
        self.set_phase("trial");
        notifier.status(&format!("trying {version}"));
        info!(%version, "self-update: trying the new version in place of this engine");
        let mut command = tokio::process::Command::new(staged.path());
        command
            .args(own_args())
            .env(TRIAL_VAR, "1")
            .env_remove(CURRENT_VERSION_VAR);
        for var in CHILD_ENV_REMOVE {
            command.env_remove(var);
        }
        let mut child = command
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TrialFailure::Crashed(format!("it cannot be started: {e}")))?;
        TRIAL_PID.store(child.id().unwrap_or(0), Ordering::SeqCst);
        let deadline = Instant::now() + self.deadline;
        let token = token.cloned();
        let outcome = loop {
            if let Ok(Some(exit)) = child.try_wait() {
                break Err(TrialFailure::Crashed(format!(
                    "it exited ({exit}) before it was ready"
                )));
            }
            if terminating.load(Ordering::SeqCst) {
                break Err(TrialFailure::Stopped);
            }
            if Instant::now() >= deadline {
                break Err(TrialFailure::NotReady(format!(
                    "it was not ready within {:?}",
                    self.deadline
                )));
            }
            let token = token.clone();
            let ready = tokio::task::spawn_blocking(move || {
                status_http::get_authorized(
                    status_addr,
                    "/readyz",
                    token.as_ref(),
                    Duration::from_secs(1),
                )
                .is_ok_and(|a| a.code == 200)
            })
            .await
            .unwrap_or(false);
            if ready {
                break Ok(());
            }
            tokio::time::sleep(READY_POLL).await;
        };
        stop_child(&mut child).await;
        TRIAL_PID.store(0, Ordering::SeqCst);
        notifier.status("running");
        outcome
    }

    /// After a failed trial: a crash refuses the version for good; not being ready in time
    /// is tried again, up to [`MAX_ATTEMPTS`] trials, then refused for good.
    pub(crate) fn trial_failed(&mut self, version: &Version, failure: TrialFailure) {
        let reason = match failure {
            TrialFailure::Stopped => return,
            TrialFailure::Crashed(reason) => reason,
            TrialFailure::NotReady(reason) => {
                if !self.count_failure(version) {
                    self.fail(format!(
                        "{version} failed its trial ({reason}); tried again at the next check"
                    ));
                    return;
                }
                format!("{reason}, {MAX_ATTEMPTS} times")
            }
        };
        let marked = lock(&self.updater).mark_bad(version, &reason);
        match marked {
            Ok(()) => self.fail(format!(
                "{version} failed its trial and is refused for good: {reason}"
            )),
            Err(e) => {
                // Not marked: at least this process does not try it again.
                self.attempts.insert(version.clone(), MAX_ATTEMPTS);
                self.fail(format!(
                    "{version} failed its trial ({reason}) and cannot be marked bad ({}); not tried again until the agent restarts",
                    chain(&e)
                ));
            }
        }
    }

    /// After a successful trial: the staged binary takes the installed one's place.
    pub(crate) fn swap(&mut self, staged: Staged) -> Result<(), String> {
        let version = staged.version().clone();
        let result = lock(&self.updater).swap(staged);
        result.map_err(|e| {
            // Not tried again by this process: each try stops the engine for a trial.
            self.attempts.insert(version.clone(), MAX_ATTEMPTS);
            let reason = format!(
                "cannot install {version}: {}; not tried again until the agent restarts",
                chain(&e)
            );
            self.fail(reason.clone());
            reason
        })
    }
}

/// The end of a failure's message when it was the last attempt.
fn give_up(last: bool) -> String {
    if last {
        format!("; not tried again until the agent restarts ({MAX_ATTEMPTS} attempts)")
    } else {
        String::new()
    }
}

/// Stops the trial process: SIGTERM, as systemd would, then SIGKILL after [`TRIAL_STOP`].
async fn stop_child(child: &mut tokio::process::Child) {
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    if let Some(pid) = pid.and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(TRIAL_STOP, child.wait())
        .await
        .is_err()
    {
        warn!("the trial process did not stop after SIGTERM; killing it");
        let _ = child.kill().await;
    }
}

/// Replaces this process with `binary`, given this process's arguments and environment (but
/// the version test hook, which speaks for this binary only). Returns only when that fails.
pub(crate) fn exec(binary: &Path) -> std::io::Error {
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(binary);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    command.args(args).env_remove(CURRENT_VERSION_VAR).exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_reads_with_its_causes() {
        let e = std::io::Error::other("disk full");
        let outer = self_update::UpdateError::Io {
            action: "write x".into(),
            source: e,
        };
        assert_eq!(chain(&outer), "cannot write x: disk full");
    }
}

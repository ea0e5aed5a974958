//! `orun doctor`: checks, on a node, everything the agent needs, each problem with a fix in
//! plain words.
//!
//! The checks, in order: Docker answers; the Git remote answers with the deploy key and the
//! pinned host key, and has the branch; the age key reads, parses and opens every file sops
//! encrypted on that branch; the data dir can be used and has room; the status port is free
//! (or an agent answers there); the systemd unit is active and enabled.
//!
//! Each check yields an [`Outcome`], never an error: a doctor that stopped at the first
//! problem would hide the next one. Whatever may hang (Docker, the remote, a listener on the
//! status port, systemctl, a dead network file system) runs on a thread of its own and is
//! given up on after [`DEADLINE`]. Nothing here prints: [`Report::render`] gives the CLI its
//! text. No outcome holds a secret: the age identity, a token and a deploy key are named by
//! path or by public key only, and the branch's decrypted values are dropped unread.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use docker_runtime::{Docker, RuntimeError};
use gitsync::{GitError, Mirror, RemoteOptions, Slot, Transport, Verdict};
use manifest_model::{Identities, Limits, SealedFile, SopsError};

/// How long one check may wait for what it asks (Docker, the remote, a listener, systemd).
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Where systemd keeps its runtime state: present only when systemd is PID 1 (what
/// `sd_booted()` tests).
const SYSTEMD_RUNTIME: &str = "/run/systemd/system";

/// Docker's socket when neither the agent's setting nor `DOCKER_HOST` names another.
const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// What the doctor checks, resolved the way the agent resolves its own settings.
#[derive(Clone, Debug)]
pub struct DoctorInput {
    /// The Docker daemon (`--docker-host`); `None`: `DOCKER_HOST`, else the local socket.
    pub docker_host: Option<String>,
    /// URL, branch, deploy key, pinned known_hosts and token, as the agent's config resolves
    /// them. A `None` branch is the remote's default branch.
    pub remote: RemoteOptions,
    /// The age identity file the agent would use; `None`: `<data_dir>/keys/age.key`.
    pub age_key: Option<PathBuf>,
    /// The agent's data dir.
    pub data_dir: PathBuf,
    /// Where the agent serves its status API.
    pub status_addr: SocketAddr,
    /// The systemd unit that runs the agent (`orun.service`); `None`: not checked.
    pub unit: Option<String>,
    /// Free space below this on the data dir's file system is a warning.
    pub min_free_bytes: u64,
    /// The user the agent runs as, who should own the data dir; `None`: the current user.
    pub service_user: Option<String>,
}

/// What one check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// All is well; what was found.
    Ok(String),
    /// The agent will run, but something should be fixed.
    Warn {
        /// What is wrong.
        problem: String,
        /// What to do about it.
        fix: String,
    },
    /// The agent cannot do its work until this is fixed.
    Fail {
        /// What is wrong.
        problem: String,
        /// What to do about it.
        fix: String,
    },
    /// Not checked, and why.
    Skipped(String),
}

impl Outcome {
    fn warn(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Outcome::Warn {
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    fn fail(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Outcome::Fail {
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// Whether this is a [`Outcome::Fail`].
    pub fn is_fail(&self) -> bool {
        matches!(self, Outcome::Fail { .. })
    }

    /// The fix of a warning or failure.
    pub fn fix(&self) -> Option<&str> {
        match self {
            Outcome::Warn { fix, .. } | Outcome::Fail { fix, .. } => Some(fix),
            Outcome::Ok(_) | Outcome::Skipped(_) => None,
        }
    }
}

/// One check and what it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// `docker`, `git remote`, `age key`, `data dir`, `status port` or `unit`.
    pub name: &'static str,
    /// What it found.
    pub outcome: Outcome,
}

/// Every check, in the order run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether no check failed (warnings and skipped checks pass).
    pub fn passed(&self) -> bool {
        !self.checks.iter().any(|c| c.outcome.is_fail())
    }

    /// The outcome of the check named `name`.
    pub fn outcome(&self, name: &str) -> Option<&Outcome> {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.outcome)
    }

    /// One line per check (`ok`, `warn`, `FAIL` or `skip`, its name, what was found), the fix
    /// of a warning or failure on an indented line under it. Control characters (a line break
    /// in libgit2's account of an error) are shown as spaces, so each check stays one line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let (tag, detail, fix) = match &check.outcome {
                Outcome::Ok(what) => ("ok", what.as_str(), None),
                Outcome::Warn { problem, fix } => ("warn", problem.as_str(), Some(fix.as_str())),
                Outcome::Fail { problem, fix } => ("FAIL", problem.as_str(), Some(fix.as_str())),
                Outcome::Skipped(why) => ("skip", why.as_str(), None),
            };
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{tag:<4} {}: {}", check.name, one_line(detail));
            if let Some(fix) = fix {
                let _ = writeln!(out, "     fix: {}", one_line(fix));
            }
        }
        out
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// [`run`] on a runtime of its own, for a command line that has none.
///
/// # Errors
/// When the runtime cannot start.
pub fn run_blocking(input: &DoctorInput) -> std::io::Result<Report> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(run(input)))
}

/// Runs every check, in order, each within [`DEADLINE`] of what it waits for. Never fails:
/// each problem is an [`Outcome`].
pub async fn run(input: &DoctorInput) -> Report {
    let mut checks = Vec::with_capacity(6);
    checks.push(Check {
        name: "docker",
        outcome: docker(input).await,
    });
    let (git, repo) = git_remote(input).await;
    checks.push(Check {
        name: "git remote",
        outcome: git,
    });
    checks.push(Check {
        name: "age key",
        outcome: age_key(input, repo).await,
    });
    checks.push(Check {
        name: "data dir",
        outcome: data_dir(input).await,
    });
    checks.push(Check {
        name: "status port",
        outcome: status_port(input.status_addr).await,
    });
    checks.push(Check {
        name: "unit",
        outcome: unit(input.unit.as_deref()).await,
    });
    Report { checks }
}

/// Why work given to [`off_thread`] gave no answer.
enum Late {
    /// It was still running at the deadline (it runs on, unwaited for).
    Deadline,
    /// No thread could be started, or it panicked.
    Broken(String),
}

/// Runs blocking `work` on a thread of its own and waits at most [`DEADLINE`] for it. A
/// thread, not tokio's blocking pool: a runtime waits for its blocking tasks when it shuts
/// down, so one stuck in a dead socket would hang the doctor at exit.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Late> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("orun-doctor".to_owned())
        .spawn(move || {
            // The receiver is gone when the doctor stopped waiting: nothing to tell.
            let _ = tx.send(work());
        })
        .map_err(|e| Late::Broken(format!("cannot start a thread: {e}")))?;
    match tokio::time::timeout(DEADLINE, rx).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(Late::Broken("the check panicked".to_owned())),
        Err(_) => Err(Late::Deadline),
    }
}

/// An error and its causes on one line, as the agent's logs show them.
fn chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        // Some errors repeat their cause in their own message.
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// The I/O error kind somewhere in `e`'s causes, if any.
fn io_kind(e: &(dyn StdError + 'static)) -> Option<std::io::ErrorKind> {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cause = c.source();
    }
    None
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

// ---------------------------------------------------------------------------------------
// 1. Docker

async fn docker(input: &DoctorInput) -> Outcome {
    let host = input
        .docker_host
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
    let user = agent_user(input);
    let late = || {
        Outcome::fail(
            format!(
                "Docker at {host} did not answer within {} s",
                secs(DEADLINE)
            ),
            "check the daemon (`systemctl status docker`, `journalctl -u docker`) and restart it if it hangs (`systemctl restart docker`)",
        )
    };
    // Connecting negotiates the API version, which already asks the daemon (`/version`).
    let connected =
        tokio::time::timeout(DEADLINE, Docker::connect(input.docker_host.as_deref())).await;
    let docker = match connected {
        Err(_) => return late(),
        Ok(Err(e)) => return docker_refused(&host, &user, &e),
        Ok(Ok(d)) => d,
    };
    // Listing containers is what every pass of the agent does first: a daemon that answers
    // `/version` but refuses this (an authorization plugin) is no use to it.
    match tokio::time::timeout(DEADLINE, docker.observe()).await {
        Err(_) => late(),
        Ok(Err(e)) => docker_refused(&host, &user, &e),
        Ok(Ok(actual)) => Outcome::Ok(format!(
            "Docker answers at {host} (API {}, {} containers)",
            docker.api_version(),
            actual.containers.len()
        )),
    }
}

fn docker_refused(host: &str, user: &str, e: &RuntimeError) -> Outcome {
    let text = chain(e);
    let lower = text.to_lowercase();
    let kind = io_kind(e);
    let start = "start Docker (`systemctl start docker`), or point the agent at the daemon it should use (--docker-host, DOCKER_HOST)";
    // bollard checks a unix socket's path before connecting and says so in words only.
    if lower.contains("socket not found") || kind == Some(std::io::ErrorKind::NotFound) {
        return Outcome::fail(format!("no Docker socket at {host}"), start);
    }
    if kind == Some(std::io::ErrorKind::PermissionDenied) || lower.contains("permission denied") {
        return Outcome::fail(
            format!("permission denied on Docker's socket at {host}"),
            format!(
                "add the agent's user to the `docker` group (`usermod -aG docker {user}`), then restart the agent"
            ),
        );
    }
    if kind == Some(std::io::ErrorKind::ConnectionRefused) || lower.contains("connection refused") {
        return Outcome::fail(format!("nothing answers at {host}: {text}"), start);
    }
    Outcome::fail(
        format!("Docker at {host}: {text}"),
        "check that Docker runs (`systemctl status docker`) and that --docker-host or DOCKER_HOST names it",
    )
}

/// The agent's user, for a fix to name.
fn agent_user(input: &DoctorInput) -> String {
    input
        .service_user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "<the agent's user>".to_owned())
}

// ---------------------------------------------------------------------------------------
// 2. The Git remote

/// What the remote's branch holds, for the age check.
struct Repo {
    /// The branch read.
    branch: String,
    /// Its tip.
    commit: String,
    /// The files sops encrypted there, or why they could not be found.
    sealed: Result<Vec<SealedFile>, String>,
}

/// Lists the remote's refs, fetches the branch and reads which of its files sops encrypted,
/// all in a scratch repository of its own: the agent's mirror in the data dir is never
/// touched (its lock may be held by a running agent, and a doctor must change nothing).
async fn git_remote(input: &DoctorInput) -> (Outcome, Option<Repo>) {
    let mut options = input.remote.clone();
    // gitsync's own deadline stops libgit2 at its next callback; ours stops the waiting.
    options.deadline = options.deadline.min(DEADLINE);
    let url = options.url.as_str().to_owned();
    let scratch = match tempfile::Builder::new().prefix("orun-doctor-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            return (
                Outcome::fail(
                    format!("cannot make a scratch folder to list the remote in: {e}"),
                    "make the temporary folder writable (TMPDIR, /tmp)",
                ),
                None,
            );
        }
    };
    let mirror = match Mirror::open(&scratch.path().join("git"), options.clone()) {
        Ok(m) => m,
        Err(e) => return (git_refused(&url, &options, &e), None),
    };
    let cancel = mirror.cancel_flag();
    let wanted = options.branch.clone();
    let probed = off_thread(move || {
        let found = probe(mirror, wanted);
        // The scratch folder goes once the mirror in it is closed.
        drop(scratch);
        found
    })
    .await;
    match probed {
        Ok(Ok(repo)) => {
            let outcome = match &repo.sealed {
                Ok(_) => Outcome::Ok(format!(
                    "{url} answers; branch `{}` is at {}",
                    repo.branch,
                    short(&repo.commit)
                )),
                // Reached, but the agent would refuse what it holds: worth saying here, since
                // the agent only says it in `/status`.
                Err(why) => Outcome::warn(
                    format!("{url} answers, but {why}"),
                    format!(
                        "fix the manifests and push (`orun validate` on a checkout of `{}` lists every problem)",
                        repo.branch
                    ),
                ),
            };
            (outcome, Some(repo))
        }
        Ok(Err(e)) => (git_refused(&url, &options, &e), None),
        Err(Late::Deadline) => {
            // Makes libgit2 give up at its next callback, so the thread ends.
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
            let outcome = Outcome::fail(
                format!("{url} did not answer within {} s", secs(DEADLINE)),
                "check that this node reaches the Git host (DNS, routes, firewall, proxy)",
            );
            (outcome, None)
        }
        Err(Late::Broken(why)) => (
            Outcome::fail(
                format!("{url}: {why}"),
                "run `orun doctor` again; report a bug if it persists",
            ),
            None,
        ),
    }
}

/// The listing, the fetch and the read, on the doctor's thread.
fn probe(mut mirror: Mirror, wanted: Option<String>) -> Result<Repo, GitError> {
    let listing = mirror.list()?;
    let branch = match wanted {
        Some(b) => b,
        None => listing.default_branch()?.to_owned(),
    };
    let held = mirror.hold(&listing, &branch, Slot::Followed)?;
    let source = mirror.source(&held.head)?;
    let report = manifest_model::load(&source, &Limits::default());
    let errors = report.error_count();
    let sealed = match report.revision {
        Some(rev) => {
            let mut files: Vec<SealedFile> = rev.secrets.iter().map(|s| s.sealed.clone()).collect();
            files.extend(rev.sealed.into_values());
            Ok(files)
        }
        None => {
            let first = report
                .diagnostics
                .iter()
                .find(|d| d.is_error())
                .map(ToString::to_string)
                .unwrap_or_default();
            Err(format!(
                "the revision of `{branch}` at {} is refused ({errors} {}; the first: {first})",
                short(&held.head),
                if errors == 1 { "error" } else { "errors" }
            ))
        }
    };
    Ok(Repo {
        branch,
        commit: held.head,
        sealed,
    })
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn git_refused(url: &str, options: &RemoteOptions, e: &GitError) -> Outcome {
    let problem = format!("{url}: {e}");
    let fix = match e {
        GitError::HostKey { host, verdict } => {
            let scan = keyscan(host);
            match verdict {
                Verdict::Unknown | Verdict::Trusted => format!(
                    "pin the host key in the agent's known_hosts file (--known-hosts): `{scan} >> <known_hosts>`, then compare its fingerprint (`ssh-keygen -lf <known_hosts>`) with the one your Git host publishes, out of band"
                ),
                Verdict::Mismatch => format!(
                    "if the Git host's key really changed (compare `{scan} | ssh-keygen -lf -` with the fingerprint your Git host publishes, out of band), replace its line in the known_hosts file (--known-hosts); if not, someone may be intercepting this node's traffic"
                ),
                Verdict::Revoked => format!(
                    "the pinned known_hosts file marks this key @revoked: ask the Git host's operator for its new key, pin it (`{scan}`) and compare its fingerprint out of band"
                ),
            }
        }
        GitError::Auth { .. } => match (options.url.transport(), &options.ssh_key) {
            (Transport::Ssh, Some(key)) => format!(
                "add the deploy key's public key (`ssh-keygen -y -f {}`) to the repository as a read-only deploy key, or give the agent the key that is there (--ssh-key)",
                key.display()
            ),
            (Transport::Https, _) => {
                "renew the token (--git-token-file) and check that it may read the repository"
                    .to_owned()
            }
            _ => "give the agent credentials the remote accepts (--ssh-key for ssh, --git-token-file for https)".to_owned(),
        },
        GitError::BranchMissing { branch } => format!(
            "push branch `{branch}` to the remote, or have the node follow a branch that exists (--branch, the Node manifest's gitBranch)"
        ),
        GitError::NoDefaultBranch => {
            "give the branch to follow (--branch), or push a branch and point the remote's HEAD at it".to_owned()
        }
        GitError::Deadline { .. } | GitError::Stalled => {
            "check that this node reaches the Git host (DNS, routes, firewall, proxy)".to_owned()
        }
        GitError::Unreachable { .. } => {
            "check the URL (--repo) and that the repository exists and this node reaches its host (DNS, routes, firewall)".to_owned()
        }
        GitError::TooLarge { limit } => format!(
            "the branch's history is larger than the {limit}-byte fetch cap: keep large files out of the manifest repository"
        ),
        GitError::InvalidUrl { .. } | GitError::Config { .. } => {
            "fix the agent's Git settings (--repo, --branch, --ssh-key, --known-hosts, --git-token-file)".to_owned()
        }
        GitError::Repository { .. } | GitError::Signature { .. } => {
            "make the temporary folder writable (TMPDIR, /tmp) and run `orun doctor` again".to_owned()
        }
    };
    Outcome::fail(problem, fix)
}

/// The `ssh-keyscan` command that prints the key of `host` in known_hosts form
/// (`host` or `[host]:port`).
fn keyscan(host: &str) -> String {
    if let Some(rest) = host.strip_prefix('[')
        && let Some((name, port)) = rest.split_once("]:")
    {
        return format!("ssh-keyscan -p {port} {name}");
    }
    format!("ssh-keyscan {host}")
}

// ---------------------------------------------------------------------------------------
// 3. The age key

async fn age_key(input: &DoctorInput, repo: Option<Repo>) -> Outcome {
    let (path, origin) = match &input.age_key {
        Some(p) => (p.clone(), "--age-key-path or SOPS_AGE_KEY_FILE"),
        None => (input.data_dir.join("keys").join("age.key"), "the data dir"),
    };
    let given = input.age_key.is_some();
    match off_thread(move || judge_age_key(&path, origin, given, repo)).await {
        Ok(outcome) => outcome,
        Err(Late::Deadline) => Outcome::fail(
            format!("reading the age key took longer than {} s", secs(DEADLINE)),
            "check the file system that holds it (a hung network mount?)",
        ),
        Err(Late::Broken(why)) => Outcome::fail(
            format!("the age key check: {why}"),
            "run `orun doctor` again; report a bug if it persists",
        ),
    }
}

fn judge_age_key(path: &Path, origin: &str, given: bool, repo: Option<Repo>) -> Outcome {
    let shown = path.display();
    let sealed = repo.as_ref().map(|r| r.sealed.as_ref());
    let install = format!(
        "install the node's age identity at {shown} (from `age-keygen`; mode 0600, owned by the agent's user)"
    );
    // Opened first only to tell missing from unreadable: `Identities::read` names the kind
    // in words.
    let opened = std::fs::File::open(path).and_then(|f| {
        if f.metadata()?.is_dir() {
            return Err(std::io::Error::other("it is a folder"));
        }
        Ok(f)
    });
    if let Err(e) = opened {
        if e.kind() == std::io::ErrorKind::NotFound {
            return match sealed {
                // The agent only needs a key for a branch with secrets.
                Some(Ok(files)) if files.is_empty() && !given => Outcome::Skipped(format!(
                    "no age key at {shown} (from {origin}), and branch `{}` has no encrypted files",
                    repo.as_ref().map_or("", |r| r.branch.as_str())
                )),
                Some(Ok(files)) if files.is_empty() => Outcome::warn(
                    format!(
                        "the age key file {shown} (from {origin}) does not exist; no file on the branch needs it yet"
                    ),
                    install,
                ),
                Some(Ok(files)) => Outcome::fail(
                    format!(
                        "the age key file {shown} (from {origin}) does not exist, and {} needs it",
                        names(files)
                    ),
                    install,
                ),
                _ if given => Outcome::fail(
                    format!("the age key file {shown} (from {origin}) does not exist"),
                    install,
                ),
                // Whether the branch needs a key is unknown, and none was asked for.
                _ => Outcome::Skipped(format!(
                    "no age key at {shown} (from {origin}); whether the branch needs one is unknown (see the git remote check)"
                )),
            };
        }
        let fix = if e.kind() == std::io::ErrorKind::PermissionDenied {
            format!("let the agent's user read it: `chown <user> {shown} && chmod 600 {shown}`")
        } else {
            install
        };
        return Outcome::fail(
            format!("cannot read the age key file {shown} (from {origin}): {e}"),
            fix,
        );
    }
    let ids = match Identities::read(path) {
        Ok(ids) => ids,
        Err(e) => {
            return Outcome::fail(
                // Names the file and a line number, never the key.
                e.to_string(),
                format!(
                    "{shown} must hold the node's X25519 identity: one `AGE-SECRET-KEY-1…` line as `age-keygen` writes it"
                ),
            );
        }
    };
    let ours = ids.recipients().join(", ");
    let loose = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o077 != 0)
        .unwrap_or(false);
    let files = match sealed {
        None => {
            return Outcome::Skipped(format!(
                "{shown} holds {ours}; not checked against the repository, which could not be read"
            ));
        }
        Some(Err(_)) => {
            return Outcome::Skipped(format!(
                "{shown} holds {ours}; not checked against the branch, whose revision is refused (see the git remote check)"
            ));
        }
        Some(Ok(files)) => files,
    };
    let mut strangers = Vec::new();
    let mut broken = Vec::new();
    for file in files {
        match file.document.decrypt(&ids) {
            // Decrypted to prove the key opens it (and its MAC holds); the values are
            // dropped unread.
            Ok(_) => {}
            Err(SopsError::NoMatchingKey { .. }) => strangers.push(file.file.clone()),
            Err(e) => broken.push(format!("{}: {e}", file.file)),
        }
    }
    if !strangers.is_empty() {
        let list = strangers.join(", ");
        return Outcome::fail(
            format!("{list}: not encrypted to this node's key {ours}"),
            format!(
                "add {ours} to the age recipients in .sops.yaml, then re-encrypt with `sops updatekeys {}`",
                strangers.join(" ")
            ),
        );
    }
    if !broken.is_empty() {
        return Outcome::fail(
            broken.join("; "),
            "re-encrypt the file with sops (edit it only through `sops`: a value changed by hand breaks its MAC)",
        );
    }
    if loose {
        return Outcome::warn(
            format!("{shown} is readable by other users"),
            format!("`chmod 600 {shown}`"),
        );
    }
    let branch = repo.as_ref().map_or("", |r| r.branch.as_str());
    if files.is_empty() {
        Outcome::Ok(format!(
            "{shown} holds {ours}; branch `{branch}` has no encrypted files"
        ))
    } else {
        Outcome::Ok(format!(
            "{shown} holds {ours}, which opens {} on branch `{branch}`",
            names(files)
        ))
    }
}

fn names(files: &[SealedFile]) -> String {
    files
        .iter()
        .map(|f| f.file.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------
// 4. The data dir

async fn data_dir(input: &DoctorInput) -> Outcome {
    let dir = input.data_dir.clone();
    let user = input.service_user.clone();
    let min_free = input.min_free_bytes;
    match off_thread(move || judge_data_dir(&dir, user.as_deref(), min_free)).await {
        Ok(outcome) => outcome,
        Err(Late::Deadline) => Outcome::fail(
            format!(
                "looking at {} took longer than {} s",
                input.data_dir.display(),
                secs(DEADLINE)
            ),
            "check the file system that holds it (a hung network mount?)",
        ),
        Err(Late::Broken(why)) => Outcome::fail(
            format!("the data dir check: {why}"),
            "run `orun doctor` again; report a bug if it persists",
        ),
    }
}

/// A user as `/etc/passwd` knows it.
struct User {
    name: String,
    uid: u32,
    gid: u32,
}

/// The user named `name` in `passwd` (the text of `/etc/passwd`). rustix has no
/// `getpwnam`, and NSS (LDAP users) is out of reach without libc: a service user is local.
fn lookup_user(passwd: &str, name: &str) -> Option<User> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let (n, _, uid, gid) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        (n == name).then_some(())?;
        Some(User {
            name: n.to_owned(),
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
        })
    })
}

fn current_user() -> User {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|line| {
                let mut f = line.split(':');
                let (n, _, u) = (f.next()?, f.next()?, f.next()?);
                (u.parse::<u32>().ok()? == uid).then(|| n.to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"));
    User { name, uid, gid }
}

/// Whether `user` may create entries in a folder with this metadata, by its mode bits
/// (root may always). Judged from the bits rather than by `access(2)`, which answers for
/// whoever runs the doctor, not for the agent's user.
fn may_write(meta: &std::fs::Metadata, user: &User) -> bool {
    let mode = meta.mode();
    user.uid == 0
        || (meta.uid() == user.uid && mode & 0o200 != 0)
        || (meta.gid() == user.gid && mode & 0o020 != 0)
        || mode & 0o002 != 0
}

fn judge_data_dir(dir: &Path, service_user: Option<&str>, min_free: u64) -> Outcome {
    let shown = dir.display();
    let user = match service_user {
        None => current_user(),
        Some(name) => {
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            match lookup_user(&passwd, name) {
                Some(u) => u,
                None => {
                    return Outcome::fail(
                        format!("there is no user `{name}` on this node (/etc/passwd)"),
                        format!(
                            "create it (`useradd --system --no-create-home --shell /usr/sbin/nologin {name}`), or name the agent's real user"
                        ),
                    );
                }
            }
        }
    };
    let name = &user.name;
    let chown = format!("`chown -R {name}: {shown}`");
    let (exists, at) = match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            return Outcome::fail(
                format!("{shown} is not a folder"),
                "move it away, or give the agent another data dir (--data-dir)",
            );
        }
        Ok(meta) => {
            if meta.uid() != user.uid {
                return Outcome::fail(
                    format!(
                        "{shown} is owned by uid {}, not by the agent's user {name} (uid {})",
                        meta.uid(),
                        user.uid
                    ),
                    chown,
                );
            }
            if !may_write(&meta, &user) {
                return Outcome::fail(
                    format!("{shown} is not writable by {name}"),
                    format!("`chmod u+rwx {shown}`"),
                );
            }
            if let Some(stranger) = foreign_entry(dir, user.uid) {
                return Outcome::fail(
                    format!(
                        "{} is not owned by the agent's user {name} (an agent run as another user left it?)",
                        stranger.display()
                    ),
                    chown,
                );
            }
            (true, dir.to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let create =
                format!("`mkdir -p {shown} && chown {name}: {shown} && chmod 700 {shown}`");
            match std::fs::metadata(parent) {
                Ok(meta) if meta.is_dir() && may_write(&meta, &user) => (false, parent.to_owned()),
                Ok(meta) if meta.is_dir() => {
                    return Outcome::fail(
                        format!(
                            "{shown} does not exist, and {name} cannot create it in {}",
                            parent.display()
                        ),
                        create,
                    );
                }
                _ => {
                    return Outcome::fail(
                        format!(
                            "{shown} does not exist, nor does its parent folder {}",
                            parent.display()
                        ),
                        create,
                    );
                }
            }
        }
        Err(e) => {
            return Outcome::fail(
                format!("cannot look at {shown}: {e}"),
                format!("let {name} reach it (every folder above it needs `x` for them)"),
            );
        }
    };
    let free = match rustix::fs::statvfs(&at) {
        Ok(st) => st.f_bavail.saturating_mul(st.f_frsize),
        Err(e) => {
            return Outcome::warn(
                format!("cannot tell the free space of {}: {e}", at.display()),
                "check it by hand (`df -h`)",
            );
        }
    };
    if free < min_free {
        return Outcome::warn(
            format!(
                "only {} free on the file system of {shown} (want at least {})",
                human(free),
                human(min_free)
            ),
            "free some space (`docker system df` shows what Docker keeps), or move the data dir to a larger file system (--data-dir)",
        );
    }
    if exists {
        Outcome::Ok(format!(
            "{shown} belongs to {name}, is writable, {} free",
            human(free)
        ))
    } else {
        Outcome::Ok(format!(
            "{shown} does not exist yet; the agent will create it ({name} may write {}), {} free",
            at.display(),
            human(free)
        ))
    }
}

/// An entry at the top of the data dir that `uid` does not own (`state.json`, `git/`,
/// `keys/` left by an agent run as root), if any. Looks at the first 1 000 only: a data dir
/// holds a handful.
fn foreign_entry(dir: &Path, uid: u32) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.take(1_000).flatten().find_map(|e| {
        let meta = e.path().symlink_metadata().ok()?;
        (meta.uid() != uid).then(|| e.path())
    })
}

/// Bytes in binary units, one decimal: `512.0 MiB`, `1.0 GiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut unit = 0;
    let mut whole = bytes;
    while whole >= 1024 && unit + 1 < UNITS.len() {
        whole /= 1024;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    // A lossy conversion is fine for a number shown to one decimal.
    #[allow(clippy::cast_precision_loss, reason = "shown to one decimal")]
    let value = bytes as f64 / (1u64 << (10 * unit)) as f64;
    format!("{value:.1} {}", UNITS[unit])
}

// ---------------------------------------------------------------------------------------
// 5. The status port

async fn status_port(addr: SocketAddr) -> Outcome {
    match off_thread(move || judge_status_port(addr)).await {
        Ok(outcome) => outcome,
        Err(Late::Deadline) => Outcome::fail(
            format!(
                "something listens on {addr} but did not answer `GET /healthz` within {} s",
                secs(DEADLINE)
            ),
            stop_listener(addr),
        ),
        Err(Late::Broken(why)) => Outcome::fail(
            format!("the status port check: {why}"),
            "run `orun doctor` again; report a bug if it persists",
        ),
    }
}

fn stop_listener(addr: SocketAddr) -> String {
    format!(
        "stop what listens there (`ss -ltnp 'sport = :{}'` shows it), or give the agent another address (--status-addr)",
        addr.port()
    )
}

/// How long a listener on the status port gets to answer `/healthz`: an agent answers at
/// once, from its last snapshot.
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(3);

fn judge_status_port(addr: SocketAddr) -> Outcome {
    let e = match TcpListener::bind(addr) {
        // Dropped at once: the port stays free for the agent.
        Ok(_) => return Outcome::Ok(format!("{addr} is free for the status API")),
        Err(e) => e,
    };
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {}
        std::io::ErrorKind::PermissionDenied => {
            return Outcome::fail(
                format!("may not listen on {addr}: {e}"),
                "use a port above 1023 (--status-addr), or run the agent with CAP_NET_BIND_SERVICE",
            );
        }
        _ => {
            return Outcome::fail(
                format!("cannot listen on {addr}: {e}"),
                "give the agent an address of this host (--status-addr; the default is 127.0.0.1:9100)",
            );
        }
    }
    // Taken: by a running agent (fine: the doctor runs beside it) or by something else.
    let ask = match addr.ip() {
        ip if ip.is_unspecified() => {
            let loopback: std::net::IpAddr = if ip.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            SocketAddr::new(loopback, addr.port())
        }
        _ => addr,
    };
    let answer = status_http::get(ask, "/healthz", HEALTHZ_TIMEOUT);
    let healthy = answer.as_ref().is_ok_and(|a| {
        a.code == 200
            && serde_json::from_str::<serde_json::Value>(&a.body)
                .is_ok_and(|v| v.get("status").and_then(|s| s.as_str()) == Some("ok"))
    });
    if healthy {
        return Outcome::Ok(format!("an orun agent answers on {addr}"));
    }
    let what = match answer {
        Ok(a) => format!("it answers `GET /healthz` with {}", a.code),
        // A read timeout is `WouldBlock` on Linux.
        Err(status_http::ClientError::Io { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            format!(
                "it does not answer `GET /healthz` within {} s",
                secs(HEALTHZ_TIMEOUT)
            )
        }
        Err(e) => format!("it does not answer HTTP there ({e})"),
    };
    Outcome::fail(
        format!("{addr} is taken by something that is not an orun agent: {what}"),
        stop_listener(addr),
    )
}

// ---------------------------------------------------------------------------------------
// 6. The systemd unit

async fn unit(unit: Option<&str>) -> Outcome {
    let Some(unit) = unit else {
        return Outcome::Skipped("no systemd unit given".to_owned());
    };
    if !Path::new(SYSTEMD_RUNTIME).is_dir() {
        return Outcome::Skipped(format!(
            "systemd is not running on this host ({SYSTEMD_RUNTIME} is absent): {unit} not checked"
        ));
    }
    let name = unit.to_owned();
    let asked = off_thread(move || {
        let active = systemctl("is-active", &name)?;
        let enabled = systemctl("is-enabled", &name)?;
        Ok::<_, std::io::Error>((active, enabled))
    })
    .await;
    match asked {
        Ok(Ok((active, enabled))) => judge_unit(unit, &active, &enabled),
        Ok(Err(e)) => Outcome::fail(
            format!("cannot run systemctl: {e}"),
            "run `orun doctor` where systemctl is on the PATH",
        ),
        Err(Late::Deadline) => Outcome::fail(
            format!("systemctl did not answer within {} s", secs(DEADLINE)),
            "check systemd (`systemctl status`)",
        ),
        Err(Late::Broken(why)) => Outcome::fail(
            format!("the unit check: {why}"),
            "run `orun doctor` again; report a bug if it persists",
        ),
    }
}

/// `systemctl <verb> -- <unit>`'s first line: it says the state even when it exits non-zero.
fn systemctl(verb: &str, unit: &str) -> std::io::Result<String> {
    // `--` so a unit name cannot be read as an option.
    let out = std::process::Command::new("systemctl")
        .args([verb, "--", unit])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_owned())
}

/// The outcome of `systemctl is-active` and `is-enabled`'s answers for `unit`.
fn judge_unit(unit: &str, active: &str, enabled: &str) -> Outcome {
    let journal = format!("`journalctl -u {unit}` says why it stopped");
    if enabled == "not-found" || (active.is_empty() && enabled.is_empty()) {
        return Outcome::fail(
            format!("systemd has no unit {unit}"),
            format!(
                "install it (`orun bootstrap` writes it), then `systemctl daemon-reload && systemctl enable --now {unit}`"
            ),
        );
    }
    match active {
        "active" | "reloading" | "activating" => {}
        _ => {
            return Outcome::fail(
                format!("{unit} is {active}"),
                format!("`systemctl start {unit}`; {journal}"),
            );
        }
    }
    match enabled {
        "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated" => {
            Outcome::Ok(format!("{unit} is {active} and {enabled}"))
        }
        _ => Outcome::warn(
            format!("{unit} is {active} but {enabled}: it will not start at boot"),
            format!("`systemctl enable {unit}`"),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    /// The render is one line per check, the fix under a warning or failure, and a line
    /// break in a message does not break a line of the render.
    #[test]
    fn render_is_one_line_per_check_with_fixes_under() {
        let report = Report {
            checks: vec![
                Check {
                    name: "docker",
                    outcome: Outcome::Ok("Docker answers".into()),
                },
                Check {
                    name: "git remote",
                    outcome: Outcome::fail("x: refused\nby host", "do y"),
                },
                Check {
                    name: "data dir",
                    outcome: Outcome::warn("low", "free some"),
                },
                Check {
                    name: "unit",
                    outcome: Outcome::Skipped("no systemd".into()),
                },
            ],
        };
        assert_eq!(
            report.render(),
            "ok   docker: Docker answers\n\
             FAIL git remote: x: refused by host\n     fix: do y\n\
             warn data dir: low\n     fix: free some\n\
             skip unit: no systemd\n"
        );
        assert!(!report.passed());
        report.checks[1..2]
            .iter()
            .for_each(|c| assert!(c.outcome.is_fail()));
        let without_fail = Report {
            checks: vec![report.checks[0].clone(), report.checks[2].clone()],
        };
        assert!(without_fail.passed());
    }

    #[test]
    fn passwd_lines_are_read_by_name() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\norun:x:998:997::/opt/orun:/usr/sbin/nologin\nbroken\n";
        let u = lookup_user(passwd, "orun").unwrap();
        assert_eq!((u.name.as_str(), u.uid, u.gid), ("orun", 998, 997));
        assert!(lookup_user(passwd, "orun-agent").is_none());
        assert!(lookup_user(passwd, "broken").is_none());
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(1 << 30), "1.0 GiB");
        assert_eq!(human(700 << 20), "700.0 MiB");
        assert_eq!(human(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn keyscan_takes_the_port_from_known_hosts_form() {
        assert_eq!(keyscan("[127.0.0.1]:2222"), "ssh-keyscan -p 2222 127.0.0.1");
        assert_eq!(keyscan("github.com"), "ssh-keyscan github.com");
    }

    #[test]
    fn unit_states_map_to_outcomes() {
        let u = "orun.service";
        assert_eq!(
            judge_unit(u, "active", "enabled"),
            Outcome::Ok("orun.service is active and enabled".into())
        );
        let stopped = judge_unit(u, "failed", "enabled");
        assert!(stopped.is_fail());
        assert_eq!(
            stopped.fix(),
            Some(
                "`systemctl start orun.service`; `journalctl -u orun.service` says why it stopped"
            )
        );
        let disabled = judge_unit(u, "active", "disabled");
        assert!(matches!(disabled, Outcome::Warn { .. }), "{disabled:?}");
        assert_eq!(disabled.fix(), Some("`systemctl enable orun.service`"));
        let missing = judge_unit(u, "inactive", "not-found");
        assert!(missing.is_fail());
        assert!(missing.fix().unwrap().contains("enable --now orun.service"));
    }
}

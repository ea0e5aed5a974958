//! The node's private copy of one branch: a bare repository in the data dir, its head check,
//! its fetch, and the commits it can hand out as [`TreeSource`]s.
//!
//! The remote is anonymous (its URL is never written into the repository's config) and the
//! fetched tip lives under `refs/orun/fetched` (and the remote's default branch, when the
//! caller asks for it, under `refs/orun/default`), updated with a forced refspec so a
//! force-push is followed. libgit2 runs no hooks and this code never touches submodules.
//! Each network call carries a deadline and a byte cap enforced from libgit2's progress
//! callbacks; a call stuck where no callback fires is left behind by
//! [`crate::sync_with_deadline`].

use manifest_model::values::check_branch;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, Direction, FetchOptions, Oid,
    RemoteCallbacks, Repository,
};

use crate::known_hosts::{KnownHosts, Verdict};
use crate::url::{RemoteUrl, Transport};
use crate::{GitError, Signer, TreeSource, Trust};

/// The ref the fetched tip is stored under.
const FETCHED: &str = "refs/orun/fetched";
/// The ref the remote's default branch is stored under, when it is asked for.
const DEFAULT: &str = "refs/orun/default";

/// A bearer token for `https://` remotes. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wraps a token (surrounding whitespace, such as a file's trailing newline, is dropped).
    pub fn new(token: &str) -> Self {
        Self(token.trim().to_owned())
    }

    /// The token in the file at `path`.
    ///
    /// # Errors
    /// [`GitError::Config`] naming the file when it cannot be read.
    pub fn load(path: &Path) -> Result<Self, GitError> {
        let text = std::fs::read_to_string(path).map_err(|e| GitError::Config {
            reason: format!("cannot read token file {}: {e}", path.display()),
        })?;
        Ok(Self::new(&text))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// How to reach the remote and how long to wait for it.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// The checked URL.
    pub url: RemoteUrl,
    /// The branch to follow; `None` when the caller picks one on each poll from a
    /// [`Listing`] ([`Mirror::list`], [`Mirror::hold`]), as the agent does when it follows the
    /// branch a manifest on the remote's default branch names.
    pub branch: Option<String>,
    /// The deploy key for ssh remotes.
    pub ssh_key: Option<PathBuf>,
    /// The pinned host keys for ssh remotes (required for ssh).
    pub known_hosts: Option<KnownHosts>,
    /// The token for https remotes.
    pub token: Option<Token>,
    /// Overall deadline of one head check plus fetch.
    pub deadline: Duration,
    /// Largest pack a fetch may download.
    pub max_bytes: u64,
}

impl RemoteOptions {
    /// Options with the defaults: 60 s deadline (Flux's), 256 MiB pack cap, no credentials.
    pub fn new(url: RemoteUrl, branch: impl Into<String>) -> Self {
        Self {
            branch: Some(branch.into()),
            ..Self::without_branch(url)
        }
    }

    /// [`RemoteOptions::new`] naming no branch: [`Mirror::sync`] refuses to run, the caller
    /// picks a branch on each poll with [`Mirror::list`] and [`Mirror::hold`].
    pub fn without_branch(url: RemoteUrl) -> Self {
        Self {
            url,
            branch: None,
            ssh_key: None,
            known_hosts: None,
            token: None,
            deadline: Duration::from_secs(60),
            max_bytes: 256 << 20,
        }
    }

    /// Checks that the options are complete for the transport.
    pub fn check(&self) -> Result<(), GitError> {
        let config = |reason: &str| {
            Err(GitError::Config {
                reason: reason.to_owned(),
            })
        };
        // The manifests' own check, made without libgit2: settings are validated before
        // libgit2 has initialised, which the agent lets happen on another thread
        // ([`crate::warm_up`]) because it parses the system's CA bundle.
        if self
            .branch
            .as_deref()
            .is_some_and(|b| check_branch(b).is_err())
        {
            return config("the branch name is not a valid Git branch name");
        }
        match self.url.transport() {
            Transport::Ssh => {
                if self.known_hosts.is_none() {
                    return config(
                        "an ssh remote needs a known_hosts file with the pinned host key (--known-hosts); orun never trusts a host on first use",
                    );
                }
                if self.ssh_key.is_none() {
                    return config("an ssh remote needs a deploy key (--ssh-key)");
                }
            }
            Transport::File | Transport::Git | Transport::Https => {}
        }
        if self.token.is_some() && self.url.transport() != Transport::Https {
            return config("a token is only used with https:// remotes");
        }
        Ok(())
    }
}

/// What one sync found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    /// The branch tip now held locally.
    pub head: String,
    /// Whether a fetch ran (the remote head differed from the local copy).
    pub fetched: bool,
}

/// Where [`Mirror::hold`] keeps a branch's tip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The branch followed (`refs/orun/fetched`): what [`Mirror::local_head`] reads.
    Followed,
    /// The remote's default branch (`refs/orun/default`), read only to learn which branch
    /// to follow.
    Default,
}

impl Slot {
    fn refname(self) -> &'static str {
        match self {
            Slot::Followed => FETCHED,
            Slot::Default => DEFAULT,
        }
    }
}

/// One listing of the remote's refs: its branches' tips and the branch its `HEAD` names. The
/// head check of a poll; [`Mirror::hold`] then fetches only what moved.
#[derive(Clone, Debug)]
pub struct Listing {
    /// Branch name (without `refs/heads/`) → tip.
    tips: BTreeMap<String, Oid>,
    /// The branch the remote's `HEAD` points at, when it says.
    default_branch: Option<String>,
    /// When the poll began: the deadline of its fetches counts from here.
    started: Instant,
}

impl Listing {
    /// The remote's default branch: the branch its `HEAD` points at (the symref the server
    /// advertises). Never guessed from matching commit ids, which two branches at one commit
    /// would make ambiguous.
    ///
    /// # Errors
    /// [`GitError::NoDefaultBranch`] when the remote does not say (an empty repository, a
    /// detached `HEAD`, a server that does not advertise it).
    pub fn default_branch(&self) -> Result<&str, GitError> {
        self.default_branch
            .as_deref()
            .ok_or(GitError::NoDefaultBranch)
    }

    /// The tip of `branch`, if the remote has it.
    pub fn tip(&self, branch: &str) -> Option<String> {
        self.tips.get(branch).map(Oid::to_string)
    }
}

/// The local bare repository holding the followed branch.
pub struct Mirror {
    repo: Repository,
    options: RemoteOptions,
    cancel: Arc<AtomicBool>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("path", &self.repo.path())
            .field("options", &self.options)
            .finish()
    }
}

impl Mirror {
    /// Opens the mirror in `dir`, creating an empty bare repository there if none exists.
    pub fn open(dir: &Path, options: RemoteOptions) -> Result<Self, GitError> {
        options.check()?;
        let repo = match Repository::open_bare(dir) {
            Ok(repo) => repo,
            Err(_) if !dir.join("HEAD").exists() => {
                std::fs::create_dir_all(dir).map_err(|e| GitError::Repository {
                    reason: format!("cannot create {}: {e}", dir.display()),
                })?;
                Repository::init_bare(dir).map_err(|e| repo_error(&e))?
            }
            Err(e) => return Err(repo_error(&e)),
        };
        Ok(Self {
            repo,
            options,
            cancel: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The options it was opened with.
    pub fn options(&self) -> &RemoteOptions {
        &self.options
    }

    /// A flag that, once set, makes the running network call give up at its next callback.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }

    /// The tip fetched last, if any.
    pub fn local_head(&self) -> Option<String> {
        self.repo
            .refname_to_id(FETCHED)
            .ok()
            .map(|id| id.to_string())
    }

    /// Checks the remote head of the options' branch and fetches when it moved: [`list`]
    /// then [`hold`]. Keeps the last fetched tip on error.
    ///
    /// # Errors
    /// [`GitError::Config`] when the options name no branch; what `list` and `hold` report.
    ///
    /// [`list`]: Mirror::list
    /// [`hold`]: Mirror::hold
    pub fn sync(&mut self) -> Result<Synced, GitError> {
        let Some(branch) = self.options.branch.clone() else {
            return Err(GitError::Config {
                reason: "no branch to follow was given".to_owned(),
            });
        };
        let listing = self.list()?;
        self.hold(&listing, &branch, Slot::Followed)
    }

    /// Lists the remote's refs: one connection, no download. A new poll starts here (its
    /// deadline counts from now, and a cancel from an earlier one is forgotten).
    pub fn list(&mut self) -> Result<Listing, GitError> {
        self.cancel.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let state = CallState::default();
        let mut remote = self
            .repo
            .remote_anonymous(self.options.url.as_str())
            .map_err(|e| repo_error(&e))?;
        let callbacks = callbacks(&self.options, &state, started, &self.cancel);
        let result = remote
            .connect_auth(Direction::Fetch, Some(callbacks), None)
            .and_then(|conn| {
                let mut tips = BTreeMap::new();
                let mut default_branch = None;
                for h in conn.list()? {
                    if let Some(branch) = h.name().strip_prefix("refs/heads/") {
                        tips.insert(branch.to_owned(), h.oid());
                    } else if h.name() == "HEAD" {
                        default_branch = h
                            .symref_target()
                            .and_then(|t| t.strip_prefix("refs/heads/"))
                            .map(str::to_owned);
                    }
                }
                Ok((tips, default_branch))
            });
        match result {
            Ok((tips, default_branch)) => Ok(Listing {
                tips,
                // A name Git's rules refuse is no branch to follow.
                default_branch: default_branch.filter(|b| check_branch(b).is_ok()),
                started,
            }),
            Err(e) => Err(state.classify(&e, &self.options)),
        }
    }

    /// Makes `slot` hold `branch`'s tip as `listing` saw it, fetching only when that commit
    /// is not here yet. Keeps the slot's last tip on error.
    ///
    /// # Errors
    /// [`GitError::BranchMissing`] when the listing has no such branch (this is never an
    /// empty desired state); a refused name as [`GitError::Config`]; the fetch's errors.
    pub fn hold(
        &mut self,
        listing: &Listing,
        branch: &str,
        slot: Slot,
    ) -> Result<Synced, GitError> {
        if check_branch(branch).is_err() {
            return Err(GitError::Config {
                reason: "the branch name is not a valid Git branch name".to_owned(),
            });
        }
        let missing = || GitError::BranchMissing {
            branch: branch.to_owned(),
        };
        let tip = *listing.tips.get(branch).ok_or_else(missing)?;
        let refname = slot.refname();
        if self.repo.refname_to_id(refname).ok() == Some(tip) {
            return Ok(Synced {
                head: tip.to_string(),
                fetched: false,
            });
        }
        // The tip may already be here (a force-push back to a commit fetched before, or the
        // same commit on another branch).
        if self.repo.find_commit(tip).is_ok() {
            self.repo
                .reference(refname, tip, true, "orun: remote head moved")
                .map_err(|e| repo_error(&e))?;
            return Ok(Synced {
                head: tip.to_string(),
                fetched: true,
            });
        }
        self.fetch(listing.started, branch, refname)?;
        let head = self.repo.refname_to_id(refname).map_err(|_| missing())?;
        Ok(Synced {
            head: head.to_string(),
            fetched: true,
        })
    }

    /// Whether `commit` descends from (or is) `ancestor`; false when either is unknown here.
    pub fn descends_from(&self, commit: &str, ancestor: &str) -> bool {
        let (Ok(c), Ok(a)) = (Oid::from_str(commit), Oid::from_str(ancestor)) else {
            return false;
        };
        c == a || self.repo.graph_descendant_of(c, a).unwrap_or(false)
    }

    /// Verifies `commit`'s own signature (its `gpgsig` header) against `trust`: an SSH
    /// signature in namespace `git` by a key in the allowed signers, or an OpenPGP signature
    /// by a key (primary or signing subkey) in the keyring, over the commit object without
    /// that header, as Git signs it. Only this commit is judged, not its parents.
    ///
    /// # Errors
    /// [`GitError::Signature`] saying why the signature is refused (unsigned, unknown key,
    /// not matching, wrong namespace, expired, revoked); [`GitError::Repository`] when the
    /// commit is not here.
    pub fn verify_commit(&self, commit: &str, trust: &Trust) -> Result<Signer, GitError> {
        crate::signature::verify_commit_in(&self.repo, commit, trust)
    }

    /// The files of `commit`.
    pub fn source(&self, commit: &str) -> Result<TreeSource<'_>, GitError> {
        let missing = || GitError::Repository {
            reason: format!("commit {commit} is not in the local mirror"),
        };
        let id = Oid::from_str(commit).map_err(|_| missing())?;
        let tree = self
            .repo
            .find_commit(id)
            .and_then(|c| c.tree())
            .map_err(|_| missing())?;
        Ok(TreeSource::new(&self.repo, tree))
    }

    /// The first line of `commit`'s message, for status and logs.
    pub fn summary(&self, commit: &str) -> Option<String> {
        let id = Oid::from_str(commit).ok()?;
        let c = self.repo.find_commit(id).ok()?;
        c.summary().ok().flatten().map(str::to_owned)
    }

    fn fetch(&mut self, started: Instant, branch: &str, into: &str) -> Result<(), GitError> {
        let state = CallState::default();
        let mut remote = self
            .repo
            .remote_anonymous(self.options.url.as_str())
            .map_err(|e| repo_error(&e))?;
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(callbacks(&self.options, &state, started, &self.cancel));
        fo.download_tags(AutotagOption::None);
        fo.update_fetchhead(false);
        // Credentials were checked against the configured host; do not follow it elsewhere.
        fo.follow_redirects(git2::RemoteRedirect::None);
        let refspec = format!("+refs/heads/{branch}:{into}");
        remote
            .fetch(&[refspec.as_str()], Some(&mut fo), Some("orun: fetch"))
            .map_err(|e| state.classify(&e, &self.options))
    }
}

/// What the callbacks saw, so a libgit2 error can be told apart (host key, auth, deadline).
#[derive(Default)]
struct CallState {
    host_key: Cell<Option<(Verdict, String)>>,
    auth_attempts: Cell<u32>,
    aborted: RefCell<Option<GitError>>,
}

impl CallState {
    fn classify(&self, e: &git2::Error, options: &RemoteOptions) -> GitError {
        if let Some(err) = self.aborted.borrow_mut().take() {
            return err;
        }
        if let Some((verdict, host)) = self.host_key.take()
            && verdict != Verdict::Trusted
        {
            return GitError::HostKey { host, verdict };
        }
        if e.code() == git2::ErrorCode::Auth || self.auth_attempts.get() > 1 {
            return GitError::Auth {
                reason: e.message().to_owned(),
            };
        }
        if e.code() == git2::ErrorCode::Certificate {
            return GitError::Unreachable {
                reason: format!("TLS certificate rejected: {}", e.message()),
            };
        }
        let reason = e.message().to_owned();
        let reason = match &options.token {
            // libgit2 never sees the token in a URL, but scrub it all the same.
            Some(Token(t)) if !t.is_empty() => reason.replace(t.as_str(), "***"),
            _ => reason,
        };
        GitError::Unreachable { reason }
    }
}

fn callbacks<'a>(
    options: &'a RemoteOptions,
    state: &'a CallState,
    started: Instant,
    cancel: &'a AtomicBool,
) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let deadline = options.deadline;
    let max = options.max_bytes;
    let keep_going = move |received: usize| -> bool {
        if cancel.load(Ordering::SeqCst) || started.elapsed() > deadline {
            *state.aborted.borrow_mut() = Some(GitError::Deadline {
                seconds: deadline.as_secs(),
            });
            return false;
        }
        if received as u64 > max {
            *state.aborted.borrow_mut() = Some(GitError::TooLarge { limit: max });
            return false;
        }
        true
    };
    let keep_going = std::rc::Rc::new(keep_going);
    let k1 = std::rc::Rc::clone(&keep_going);
    cb.transfer_progress(move |p| k1(p.received_bytes()));
    let k2 = std::rc::Rc::clone(&keep_going);
    cb.sideband_progress(move |_| k2(0));
    cb.certificate_check(move |cert, _host| {
        if options.url.transport() != Transport::Ssh {
            // TLS: libgit2 and OpenSSL verify the chain against the system roots.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        }
        let host = options.url.ssh_host().unwrap_or_default();
        let verdict = match (
            cert.as_hostkey().and_then(|k| k.hostkey()),
            &options.known_hosts,
        ) {
            (Some(key), Some(known)) => known.check(&host, key),
            _ => Verdict::Unknown,
        };
        state.host_key.set(Some((verdict, host)));
        if verdict == Verdict::Trusted {
            Ok(CertificateCheckStatus::CertificateOk)
        } else {
            Err(git2::Error::from_str("the ssh host key is not pinned"))
        }
    });
    cb.credentials(move |url, user_from_url, allowed| {
        // Over ssh without a user in the URL, libgit2 first asks for a user name alone; that is
        // not a rejected credential.
        if allowed == CredentialType::USERNAME {
            return Cred::username(user_from_url.or(options.url.ssh_user()).unwrap_or("git"));
        }
        // libgit2 asks again after a rejection; one try per call, or it loops.
        state.auth_attempts.set(state.auth_attempts.get() + 1);
        if state.auth_attempts.get() > 1 {
            return Err(git2::Error::from_str("credentials were rejected"));
        }
        // A redirect to another host must not receive the token.
        if options.url.transport() == Transport::Https && !same_host(url, options.url.as_str()) {
            return Err(git2::Error::from_str(
                "the remote redirected to another host; credentials are not sent there",
            ));
        }
        match options.url.transport() {
            Transport::Ssh if allowed.contains(CredentialType::SSH_KEY) => {
                let user = user_from_url.or(options.url.ssh_user()).unwrap_or("git");
                match &options.ssh_key {
                    Some(key) => Cred::ssh_key(user, None, key, None),
                    None => Err(git2::Error::from_str("no deploy key configured")),
                }
            }
            Transport::Ssh if allowed.contains(CredentialType::USERNAME) => {
                Cred::username(user_from_url.or(options.url.ssh_user()).unwrap_or("git"))
            }
            Transport::Https if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                match &options.token {
                    Some(Token(t)) => {
                        Cred::userpass_plaintext(user_from_url.unwrap_or("x-access-token"), t)
                    }
                    None => Err(git2::Error::from_str("the remote asks for credentials")),
                }
            }
            _ => Err(git2::Error::from_str("the remote asks for credentials")),
        }
    });
    cb
}

/// Whether two `https://` URLs name the same host and port.
fn same_host(a: &str, b: &str) -> bool {
    let authority = |u: &str| {
        let rest = u.split_once("://").map_or(u, |(_, r)| r);
        let auth = rest.split('/').next().unwrap_or("");
        auth.rsplit('@').next().unwrap_or(auth).to_ascii_lowercase()
    };
    authority(a) == authority(b)
}

fn repo_error(e: &git2::Error) -> GitError {
    GitError::Repository {
        reason: e.message().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use manifest_model::values::check_branch;

    /// The branch check (manifest-model's, made without libgit2) agrees with libgit2's on
    /// every short name over the characters Git's rules treat specially, and on the longer
    /// cases those rules name; it refuses more only where Git's command line would: a name
    /// that reads as an option, and `@` alone.
    #[test]
    fn branch_names_are_judged_as_libgit2_judges_them() {
        let alphabet: Vec<char> = "a./@{-~^:?* [\\\u{7f}\u{1}é".chars().collect();
        let mut names: Vec<String> = vec![String::new()];
        let mut short = vec![String::new()];
        for _ in 0..3 {
            short = short
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            names.extend(short.iter().cloned());
        }
        names.extend(
            [
                "main",
                "a.lock",
                "a.lock/b",
                "a/b.lock",
                "a/.b",
                "a..b",
                "a/b/",
                "release/1.2",
                "x@{y",
                "@",
                "a.lockx",
                ".lock",
                "feature/new-ui",
                "a//b",
                "a/./b",
            ]
            .map(str::to_owned),
        );
        let mut wrong = Vec::new();
        for name in &names {
            let libgit2 = git2::Reference::is_valid_name(&format!("refs/heads/{name}"));
            let ours = check_branch(name).is_ok();
            let stricter = !ours && libgit2 && (name.starts_with('-') || name == "@");
            if ours != libgit2 && !stricter {
                wrong.push((name.clone(), libgit2));
            }
        }
        assert!(
            wrong.is_empty(),
            "disagreements (name, libgit2's verdict): {wrong:?}"
        );
        assert!(names.len() > 3000);
    }
}

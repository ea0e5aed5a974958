//! The seams: what the engine asks of the container runtime, of Git, of probes and of time.
//! The engine is generic over them ([`World`]); the real world is `docker-runtime`, `gitsync`,
//! HTTP probes and the system clock ([`Real`]), and a simulation can stand in for each.

#![allow(
    async_fn_in_trait,
    reason = "the engine runs on one thread and never sends these futures elsewhere"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use docker_runtime::context::Packed;
use docker_runtime::policy::{Guard, RealHost};
use docker_runtime::{
    BuildRequest, ContainerInfo, Docker, ImageFacts, IngressContainer, IngressFound, Owner,
    RegistryAuth, RuntimeError, WatchEvent,
};
use gitsync::{GitError, Mirror, RemoteOptions, Slot};
use manifest_model::{DesiredNode, Limits, ProbeTarget, Source};
use reconcile_core::{Actual, ObservedContainer, RenderedSpec};
use status_http::ImageProgress;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::EngineError;

/// What the engine asks of the container runtime: Docker's calls, one for one.
pub trait Runtime {
    /// The API version spoken, for the start-up log.
    fn api_version(&self) -> String;
    /// Every container on the host, managed or not.
    async fn observe(&self) -> Result<Actual, RuntimeError>;
    /// The local ids of the references that are on the host.
    async fn image_ids(
        &self,
        references: &[String],
    ) -> Result<BTreeMap<String, String>, RuntimeError>;
    /// Pulls a reference; its local id.
    async fn pull(&self, reference: &str, auth: &RegistryAuth) -> Result<String, RuntimeError>;
    /// Creates (does not start) a container for `spec` under `name`, labelled for `owner`.
    async fn create(
        &self,
        name: &str,
        spec: &RenderedSpec,
        owner: Owner<'_>,
        secrets: &BTreeMap<String, reconcile_core::Secret>,
    ) -> Result<String, RuntimeError>;
    /// Starts a container.
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// Stops a container, killing it after `grace_seconds`.
    async fn stop(&self, id: &str, grace_seconds: i32) -> Result<(), RuntimeError>;
    /// Unpauses a container.
    async fn unpause(&self, id: &str) -> Result<(), RuntimeError>;
    /// Renames a container.
    async fn rename(&self, id: &str, name: &str) -> Result<(), RuntimeError>;
    /// Removes a container, running or not.
    async fn remove(&self, id: &str) -> Result<(), RuntimeError>;
    /// Restarts a container.
    async fn restart(&self, id: &str, grace_seconds: i32) -> Result<(), RuntimeError>;
    /// A closer look at one container.
    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError>;
    /// The last lines of a container's log.
    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>, RuntimeError>;
    /// The containers among `ids` that still exist, as `observe` lists them.
    async fn observe_ids(&self, ids: &[String]) -> Result<Vec<ObservedContainer>, RuntimeError>;
    /// This node's container events, and image events, until the receiver is dropped.
    fn watch(&self, node: &str) -> mpsc::Receiver<WatchEvent>;
    /// Makes the ingress network unless it exists. A runtime without networks (the
    /// simulation) has nothing to make.
    async fn ensure_network(&self, name: &str, node: &str) -> Result<(), RuntimeError> {
        let _ = (name, node);
        Ok(())
    }
    /// The container under the ingress's name. A runtime without an ingress has none.
    async fn ingress_container(
        &self,
        name: &str,
        node: &str,
    ) -> Result<IngressFound, RuntimeError> {
        let _ = (name, node);
        Ok(IngressFound::Absent)
    }
    /// Creates and starts the ingress's container.
    async fn create_ingress(&self, spec: &IngressContainer) -> Result<String, RuntimeError> {
        Err(RuntimeError::NotFound(format!(
            "this runtime cannot run the ingress {}",
            spec.name
        )))
    }
    /// Pulls a reference, reporting progress as it goes; its local id.
    async fn pull_with(
        &self,
        reference: &str,
        auth: &RegistryAuth,
        progress: &mut (dyn FnMut(ImageProgress) + Send),
    ) -> Result<String, RuntimeError> {
        let _ = progress;
        self.pull(reference, auth).await
    }
    /// The manifest digest the registry serves for a reference now (one HEAD request).
    async fn registry_digest(
        &self,
        reference: &str,
        auth: &RegistryAuth,
    ) -> Result<String, RuntimeError> {
        let _ = auth;
        Err(RuntimeError::NotFound(format!(
            "this runtime has no registry for {reference}"
        )))
    }
    /// The repository digests (`name@sha256:…`) of the local image of a reference.
    async fn local_digests(&self, reference: &str) -> Result<Vec<String>, RuntimeError> {
        let _ = reference;
        Ok(Vec::new())
    }
    /// Builds an image; its id.
    async fn build(
        &self,
        req: BuildRequest<'_>,
        redact: &(dyn Fn(&str) -> String + Send + Sync),
        progress: &mut (dyn FnMut(ImageProgress) + Send),
    ) -> Result<String, RuntimeError> {
        let _ = (redact, progress);
        Err(RuntimeError::NotFound(format!(
            "this runtime cannot build {}",
            req.tag
        )))
    }
    /// What an image (id or reference) is, `None` when it is not on the host.
    async fn image_facts(&self, image: &str) -> Result<Option<ImageFacts>, RuntimeError> {
        let _ = image;
        Ok(None)
    }
    /// Removes an image (id, or a tag to untag), never forcing.
    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        let _ = image;
        Ok(())
    }
    /// The size of every local image, by id.
    async fn image_sizes(&self) -> Result<BTreeMap<String, u64>, RuntimeError> {
        Ok(BTreeMap::new())
    }
}

impl Runtime for Docker {
    fn api_version(&self) -> String {
        Docker::api_version(self)
    }
    async fn observe(&self) -> Result<Actual, RuntimeError> {
        Docker::observe(self).await
    }
    async fn image_ids(
        &self,
        references: &[String],
    ) -> Result<BTreeMap<String, String>, RuntimeError> {
        Docker::image_ids(self, references).await
    }
    async fn pull(&self, reference: &str, auth: &RegistryAuth) -> Result<String, RuntimeError> {
        Docker::pull(self, reference, auth).await
    }
    async fn create(
        &self,
        name: &str,
        spec: &RenderedSpec,
        owner: Owner<'_>,
        secrets: &BTreeMap<String, reconcile_core::Secret>,
    ) -> Result<String, RuntimeError> {
        Docker::create(self, name, spec, owner, secrets).await
    }
    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        Docker::start(self, id).await
    }
    async fn stop(&self, id: &str, grace_seconds: i32) -> Result<(), RuntimeError> {
        Docker::stop(self, id, grace_seconds).await
    }
    async fn unpause(&self, id: &str) -> Result<(), RuntimeError> {
        Docker::unpause(self, id).await
    }
    async fn rename(&self, id: &str, name: &str) -> Result<(), RuntimeError> {
        Docker::rename(self, id, name).await
    }
    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        Docker::remove(self, id).await
    }
    async fn restart(&self, id: &str, grace_seconds: i32) -> Result<(), RuntimeError> {
        Docker::restart(self, id, grace_seconds).await
    }
    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        Docker::inspect(self, id).await
    }
    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>, RuntimeError> {
        Docker::logs_tail(self, id, lines).await
    }
    async fn observe_ids(&self, ids: &[String]) -> Result<Vec<ObservedContainer>, RuntimeError> {
        Docker::observe_ids(self, ids).await
    }
    async fn ensure_network(&self, name: &str, node: &str) -> Result<(), RuntimeError> {
        Docker::ensure_network(self, name, node).await
    }
    async fn ingress_container(
        &self,
        name: &str,
        node: &str,
    ) -> Result<IngressFound, RuntimeError> {
        Docker::ingress_container(self, name, node).await
    }
    async fn create_ingress(&self, spec: &IngressContainer) -> Result<String, RuntimeError> {
        Docker::create_ingress(self, spec).await
    }
    async fn pull_with(
        &self,
        reference: &str,
        auth: &RegistryAuth,
        progress: &mut (dyn FnMut(ImageProgress) + Send),
    ) -> Result<String, RuntimeError> {
        let image = reference.to_owned();
        let mut report = |p: docker_runtime::PullProgress| {
            progress(ImageProgress {
                kind: "pull".to_owned(),
                image: image.clone(),
                layers: Some((p.layers_done as u64, p.layers_total as u64)),
                bytes: Some((p.bytes_done, p.bytes_total)),
                ..ImageProgress::default()
            });
        };
        Docker::pull_with(self, reference, auth, &mut report).await
    }
    async fn registry_digest(
        &self,
        reference: &str,
        auth: &RegistryAuth,
    ) -> Result<String, RuntimeError> {
        Docker::registry_digest(self, reference, auth).await
    }
    async fn local_digests(&self, reference: &str) -> Result<Vec<String>, RuntimeError> {
        Docker::local_digests(self, reference).await
    }
    async fn build(
        &self,
        req: BuildRequest<'_>,
        redact: &(dyn Fn(&str) -> String + Send + Sync),
        progress: &mut (dyn FnMut(ImageProgress) + Send),
    ) -> Result<String, RuntimeError> {
        let image = req.tag.to_owned();
        let mut report = |p: &docker_runtime::BuildProgress| {
            progress(ImageProgress {
                kind: "build".to_owned(),
                image: image.clone(),
                step: (p.steps > 0).then_some((u64::from(p.step), u64::from(p.steps))),
                line: Some(p.line.clone()),
                ..ImageProgress::default()
            });
        };
        Docker::build(self, req, redact, &mut report).await
    }
    async fn image_facts(&self, image: &str) -> Result<Option<ImageFacts>, RuntimeError> {
        Docker::image_facts(self, image).await
    }
    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        Docker::remove_image(self, image).await
    }
    async fn image_sizes(&self) -> Result<BTreeMap<String, u64>, RuntimeError> {
        Docker::image_sizes(self).await
    }
    fn watch(&self, node: &str) -> mpsc::Receiver<WatchEvent> {
        Docker::watch(self, node)
    }
}

/// A revision that loaded, validated and resolved for this node, with its warnings.
pub type Accepted = (DesiredNode, Warnings);

/// A revision's warnings: the first few, and a count of the rest.
#[derive(Debug, Default)]
pub struct Warnings {
    /// The first warnings, each naming file, line and field.
    pub shown: Vec<String>,
    /// How many more there were.
    pub more: usize,
}

/// Why a revision was not loaded.
#[derive(Debug)]
pub struct Refusal {
    /// Refused for what it says (stays refused until the branch moves), not for a read
    /// failure worth retrying.
    pub permanent: bool,
    /// The first problems, each naming file, line and field.
    pub problems: Vec<String>,
    /// How many there were in all.
    pub total: usize,
}

/// Problems of a refused revision kept for the log; the rest are counted.
pub const LOGGED_PROBLEMS: usize = 20;

/// The branch followed and its tip, as one sync found them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The branch followed: the one the agent was told, or the one the node's manifest on
    /// the remote's default branch names ([`discover`]).
    pub branch: String,
    /// Its tip, held locally.
    pub commit: String,
}

/// What the engine asks of Git: the branch head, and one revision read for this node.
pub trait Git {
    /// Checks the remote: which branch to follow, when the agent was not told, and that
    /// branch's head, held locally afterwards.
    async fn sync(&mut self) -> Result<Head, EngineError>;
    /// Reads, validates and resolves `commit` for `node` on `branch`. `current` is the
    /// commit running now (a branch that no longer descends from it was force-pushed).
    /// `None` when the repository is busy and the read should be tried later.
    async fn read(
        &self,
        commit: &str,
        current: Option<&str>,
        node: &str,
        branch: &str,
    ) -> Option<Result<Accepted, Refusal>>;
    /// Packs the build context `context` of `commit` (`dockerfile` relative to it), from the
    /// commit's own files.
    async fn pack(
        &self,
        commit: &str,
        context: &str,
        dockerfile: &str,
    ) -> Result<Packed, RuntimeError> {
        let _ = (commit, dockerfile);
        Err(RuntimeError::Context(format!(
            "this repository cannot give the build context `{context}`"
        )))
    }
    /// The subject (first line) of `commit`'s message, at most 200 characters, for the
    /// status page; `None` when it cannot be read now.
    async fn subject(&self, commit: &str) -> Option<String> {
        let _ = commit;
        None
    }
}

/// Most characters of a commit's subject shown in `/status`.
const SUBJECT_CHARS: usize = 200;

/// `subject` cut to [`SUBJECT_CHARS`] characters, with `…` when cut.
fn cap_subject(subject: &str) -> String {
    let mut chars = subject.chars();
    let mut out: String = chars.by_ref().take(SUBJECT_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// Reads one revision from `src` the way every [`Git`] must: loaded whole, refused whole on
/// any error, resolved for `node` as a revision of `branch` (by [`manifest_model::resolve`],
/// as `orun plan` resolves, so a Node manifest naming another branch is refused); at most
/// [`LOGGED_PROBLEMS`] problems kept. Build contexts are read from `src` too (the
/// revision's own files): one that is missing or too large refuses the revision, and each
/// built container gets its build input (`commit` for `buildMode: always`). Last, every
/// container the node would run is judged by `guard`, the node's host policy, with host
/// paths resolved on this host ([`docker_runtime::policy::judge_node`]).
pub fn judge(
    src: &dyn Source,
    commit: Option<&str>,
    node: &str,
    branch: &str,
    guard: &Guard,
) -> Result<Accepted, Refusal> {
    let report = manifest_model::load(src, &Limits::default());
    let refused = |diagnostics: Vec<manifest_model::Diagnostic>, total: usize| Refusal {
        permanent: true,
        problems: diagnostics
            .iter()
            .filter(|d| d.is_error())
            .take(LOGGED_PROBLEMS)
            .map(ToString::to_string)
            .collect(),
        total,
    };
    let (total, total_warnings) = (report.error_count(), report.warning_count());
    let (rev, warnings) = match report.into_result() {
        Ok(ok) => ok,
        Err(manifest_model::ModelError::Invalid { diagnostics, .. }) => {
            return Err(refused(diagnostics, total));
        }
        // Reading failed (I/O): worth trying again on the next tick.
        Err(other) => {
            return Err(Refusal {
                permanent: false,
                problems: vec![other.to_string()],
                total: 1,
            });
        }
    };
    let warnings = Warnings {
        more: total_warnings.saturating_sub(LOGGED_PROBLEMS.min(warnings.len())),
        shown: warnings
            .iter()
            .take(LOGGED_PROBLEMS)
            .map(ToString::to_string)
            .collect(),
    };
    match manifest_model::resolve(&rev, node, Some(branch)) {
        Ok(mut node) => {
            let problems = docker_runtime::context::fill_build_inputs(
                src,
                &mut node,
                commit,
                docker_runtime::context::ContextLimits::default(),
            );
            if problems.is_empty() {
                let denied = docker_runtime::policy::judge_node(&rev, &node, guard, &RealHost);
                if denied.is_empty() {
                    return Ok((node, warnings));
                }
                let total = denied.len();
                return Err(refused(denied, total));
            }
            let total = problems.len();
            let diagnostics = problems
                .into_iter()
                .map(|p| {
                    let file = rev
                        .deployments
                        .get(&p.deployment)
                        .map_or("deployments", |d| d.file.as_str());
                    manifest_model::Diagnostic::error(
                        file,
                        manifest_model::Pos::FILE,
                        p.field,
                        p.message,
                    )
                })
                .collect();
            Err(refused(diagnostics, total))
        }
        Err(manifest_model::ModelError::Unfit { diagnostics }) => {
            let total = diagnostics.len();
            Err(refused(diagnostics, total))
        }
        Err(e) => Err(Refusal {
            permanent: true,
            problems: vec![e.to_string()],
            total: 1,
        }),
    }
}

/// Which branch `node` follows, read from `src`, the tip of the remote's default branch
/// `default_branch`: the `gitBranch` of the node's own file there (`main` when unset), read
/// alone ([`manifest_model::load_node`]), so nothing else on that branch can stop a node from
/// finding its branch. The revision of the branch found is then judged whole, and refused if
/// its own Node manifest names another branch ([`judge`], [`manifest_model::tracking`]).
///
/// # Errors
/// [`EngineError::Discovery`] when the node's file is missing there or refused.
pub fn discover(src: &dyn Source, node: &str, default_branch: &str) -> Result<String, EngineError> {
    manifest_model::load_node(src, node, &Limits::default())
        .map(|n| n.spec.git_branch)
        .map_err(|source| EngineError::Discovery {
            node: node.to_owned(),
            default_branch: default_branch.to_owned(),
            source,
        })
}

/// One poll of the real remote, on the mirror's thread: one listing of the remote's refs;
/// without a `fixed` branch, the default branch's tip held (fetched when it moved) and the
/// branch to follow read from it; then that branch's tip held. Nothing is downloaded when
/// nothing moved, so an idle poll costs what it did before discovery: one listing, plus
/// reading one small file from objects already here.
///
/// With signed commits required, the default branch's tip must be signed too before the
/// branch it names is believed.
fn poll(
    mirror: &mut Mirror,
    fixed: Option<&str>,
    node: &str,
    rules: Option<&CommitRules>,
) -> Result<Head, EngineError> {
    let listing = mirror.list()?;
    let branch = match fixed {
        Some(branch) => branch.to_owned(),
        None => {
            let default = listing.default_branch()?.to_owned();
            let tip = mirror.hold(&listing, &default, Slot::Default)?.head;
            if let Some(rules) = rules {
                mirror.verify_commit(&tip, &rules.trust)?;
            }
            discover(&mirror.source(&tip)?, node, &default)?
        }
    };
    let commit = mirror.hold(&listing, &branch, Slot::Followed)?.head;
    Ok(Head { branch, commit })
}

/// What a node requires of the commits it applies, from the node policy's `commits`.
#[derive(Clone, Debug)]
pub struct CommitRules {
    /// The keys that may sign them.
    pub trust: gitsync::Trust,
    /// Follow a tip that does not descend from the commit running (a force-push, or an
    /// older signed commit served again).
    pub allow_non_fast_forward: bool,
}

/// Whether `commit` may be applied under `rules`, `current` running: signed by a trusted key,
/// and descending from `current` unless the node allows otherwise.
///
/// # Errors
/// A [`Refusal`] naming the commit and why: permanent for what the commit is, not for a
/// commit missing from the mirror.
fn vet(
    mirror: &Mirror,
    commit: &str,
    current: Option<&str>,
    rules: &CommitRules,
) -> Result<(), Refusal> {
    let refuse = |permanent: bool, problem: String| Refusal {
        permanent,
        problems: vec![problem],
        total: 1,
    };
    match mirror.verify_commit(commit, &rules.trust) {
        Ok(signer) => {
            info!(commit, signer = %signer.principal, key = %signer.fingerprint, "commit signature verified");
        }
        Err(e) => {
            let permanent = matches!(e, GitError::Signature { .. });
            return Err(refuse(permanent, e.to_string()));
        }
    }
    if let Some(current) = current
        && !rules.allow_non_fast_forward
        && !mirror.descends_from(commit, current)
    {
        let short = |c: &str| c.get(..8).unwrap_or(c).to_owned();
        return Err(refuse(
            true,
            format!(
                "commit {} does not descend from {}, the last commit accepted: a force-push, another branch, or an older commit served again (set `commits.allowNonFastForward` in the node policy to follow it)",
                short(commit),
                short(current)
            ),
        ));
    }
    Ok(())
}

/// After this many consecutive `Stalled` syncs the stuck mirror handle is abandoned.
const STALLED_REOPEN: u32 = 3;

/// The real [`Git`]: gitsync's bare mirror in the data dir. Fetches run on their own thread
/// with a deadline; reads run on the blocking pool, never on the engine's thread.
pub struct MirrorGit {
    git_dir: PathBuf,
    remote: RemoteOptions,
    /// This node's name, whose file on the default branch names the branch to follow.
    node: String,
    mirror: Arc<Mutex<Mirror>>,
    /// Consecutive syncs that found the previous fetch still stuck.
    stalled: u32,
    /// The node's host policy, which every revision read must pass.
    guard: Arc<Guard>,
    /// Signed commits, when the node requires them.
    rules: Option<Arc<CommitRules>>,
}

impl MirrorGit {
    /// Opens (or creates) the mirror at `git_dir` for `remote`, for `node`: without a branch
    /// in `remote`, each sync follows the one `node`'s manifest on the remote's default
    /// branch names.
    pub fn open(git_dir: PathBuf, remote: RemoteOptions, node: &str) -> Result<Self, GitError> {
        let mirror = Mirror::open(&git_dir, remote.clone())?;
        Ok(Self {
            git_dir,
            remote,
            node: node.to_owned(),
            mirror: Arc::new(Mutex::new(mirror)),
            stalled: 0,
            guard: Arc::default(),
            rules: None,
        })
    }

    /// Applies only commits `rules` accepts (signed, and fast-forward unless allowed).
    #[must_use]
    pub fn with_commit_rules(mut self, rules: Option<CommitRules>) -> Self {
        self.rules = rules.map(Arc::new);
        self
    }

    /// Judges every revision read by `guard` (the node's host policy) instead of the
    /// default, which lets no host path be bound.
    #[must_use]
    pub fn with_guard(mut self, guard: Guard) -> Self {
        self.guard = Arc::new(guard);
        self
    }
}

impl Git for MirrorGit {
    async fn sync(&mut self) -> Result<Head, EngineError> {
        let mirror = Arc::clone(&self.mirror);
        let deadline = self.remote.deadline;
        let (fixed, node) = (self.remote.branch.clone(), self.node.clone());
        let rules = self.rules.clone();
        let result = tokio::task::spawn_blocking(move || {
            gitsync::with_deadline(&mirror, deadline, move |m| {
                poll(m, fixed.as_deref(), &node, rules.as_deref())
            })
        })
        .await
        .unwrap_or_else(|e| {
            Err(GitError::Repository {
                reason: format!("fetch thread failed: {e}"),
            }
            .into())
        });
        if matches!(result, Err(EngineError::Git(GitError::Stalled))) {
            self.stalled += 1;
            if self.stalled >= STALLED_REOPEN {
                // A read that never returns (a silently dropped connection) would hold the
                // mirror forever: leave it to its thread and open a fresh handle.
                match Mirror::open(&self.git_dir, self.remote.clone()) {
                    Ok(m) => {
                        warn!("a fetch has been stuck for several ticks; reopening the mirror");
                        self.mirror = Arc::new(Mutex::new(m));
                        self.stalled = 0;
                    }
                    Err(e) => warn!(error = %e, "cannot reopen the mirror"),
                }
            }
        } else {
            self.stalled = 0;
        }
        result
    }

    async fn read(
        &self,
        commit: &str,
        current: Option<&str>,
        node: &str,
        branch: &str,
    ) -> Option<Result<Accepted, Refusal>> {
        let mirror = Arc::clone(&self.mirror);
        let (commit, current) = (commit.to_owned(), current.map(str::to_owned));
        let (node, branch) = (node.to_owned(), branch.to_owned());
        let guard = Arc::clone(&self.guard);
        let rules = self.rules.clone();
        // Reading, parsing and resolving a revision may take a while for a large (or hostile)
        // one; meanwhile `/healthz` and Docker events must still be served.
        let read = tokio::task::spawn_blocking(move || {
            let mirror = mirror.try_lock().ok()?;
            if let Some(rules) = &rules
                && let Err(refused) = vet(&mirror, &commit, current.as_deref(), rules)
            {
                return Some(Err(refused));
            }
            if let Some(current) = &current
                && !mirror.descends_from(&commit, current)
            {
                warn!(from = %current, to = %commit, "the branch was force-pushed (or the node moved to another branch): following it");
            }
            Some(match mirror.source(&commit) {
                Ok(src) => judge(&src, Some(commit.as_str()), &node, &branch, &guard),
                Err(e) => Err(Refusal {
                    permanent: false,
                    problems: vec![e.to_string()],
                    total: 1,
                }),
            })
        })
        .await;
        match read {
            Ok(result) => result,
            Err(e) => Some(Err(Refusal {
                permanent: false,
                problems: vec![format!("loading the revision failed: {e}")],
                total: 1,
            })),
        }
    }

    async fn pack(
        &self,
        commit: &str,
        context: &str,
        dockerfile: &str,
    ) -> Result<Packed, RuntimeError> {
        let mirror = Arc::clone(&self.mirror);
        let (commit, context, dockerfile) =
            (commit.to_owned(), context.to_owned(), dockerfile.to_owned());
        // Reading a context of up to its cap is blocking work; a fetch holding the mirror
        // is waited for (it ends by its deadline).
        tokio::task::spawn_blocking(move || {
            let mirror = mirror
                .lock()
                .map_err(|_| RuntimeError::Context("the Git mirror is unusable".to_owned()))?;
            let src = mirror
                .source(&commit)
                .map_err(|e| RuntimeError::Context(e.to_string()))?;
            docker_runtime::context::pack(
                &src,
                &context,
                &dockerfile,
                docker_runtime::context::ContextLimits::default(),
            )
        })
        .await
        .map_err(|e| RuntimeError::Context(format!("packing the build context failed: {e}")))?
    }

    async fn subject(&self, commit: &str) -> Option<String> {
        let mirror = Arc::clone(&self.mirror);
        let commit = commit.to_owned();
        // A fetch holding the mirror is not waited for: the subject is shown later.
        tokio::task::spawn_blocking(move || {
            let summary = mirror.try_lock().ok()?.summary(&commit)?;
            Some(cap_subject(&summary))
        })
        .await
        .ok()
        .flatten()
    }
}

/// What the engine asks of a probe: one HTTP check of a container.
pub trait Probe {
    /// Whether `target` answered well within `timeout`, and what was seen.
    async fn http(
        &self,
        target: &ProbeTarget,
        container: &ContainerInfo,
        timeout: Duration,
    ) -> (bool, String);
}

/// The real [`Probe`]: HTTP to the container's address.
#[derive(Debug, Default)]
pub struct HttpProbe;

impl Probe for HttpProbe {
    async fn http(
        &self,
        target: &ProbeTarget,
        container: &ContainerInfo,
        timeout: Duration,
    ) -> (bool, String) {
        crate::probe::http(target, container, timeout).await
    }
}

/// What the engine asks of time. Waiting is tokio's (`tokio::time`), which a simulation
/// pauses and advances; the wall clock, for timestamps and backoff, comes from here.
pub trait Clock {
    /// The monotonic now, for gates, probes and poll timers.
    fn now(&self) -> Instant {
        Instant::now()
    }
    /// The wall clock, for timestamps, history and backoff.
    fn wall(&self) -> SystemTime;
}

/// The real [`Clock`].
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The set of seams one engine runs against.
pub trait World: 'static {
    /// The container runtime.
    type Runtime: Runtime + 'static;
    /// The Git repository.
    type Git: Git + 'static;
    /// The probes.
    type Probe: Probe + 'static;
    /// Time.
    type Clock: Clock + 'static;
}

/// The real world: Docker, gitsync's mirror, HTTP probes, the system clock.
#[derive(Debug)]
pub struct Real;

impl World for Real {
    type Runtime = Docker;
    type Git = MirrorGit;
    type Probe = HttpProbe;
    type Clock = SystemClock;
}

/// One of each seam, handed to [`crate::Agent::with_parts`].
pub struct Parts<W: World> {
    /// The container runtime.
    pub runtime: W::Runtime,
    /// The Git repository.
    pub git: W::Git,
    /// The probes.
    pub probe: W::Probe,
    /// Time.
    pub clock: W::Clock,
    /// Registry logins for pulls.
    pub auth: RegistryAuth,
}

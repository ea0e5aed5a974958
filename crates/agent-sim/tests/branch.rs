//! The branch an agent follows, against a real Git remote: the engine with gitsync's mirror
//! (`MirrorGit`) over a `file://` bare repository, and the simulated Docker host, so what the
//! agent would run is seen container by container.
//!
//! Issue 14: a node whose manifest says `gitBranch: staging`, run by an agent told no
//! branch, follows `staging` and runs its containers as `staging.<name>`, never as
//! production.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use agent_engine::{Agent, MirrorGit, Parts, Settings, SystemClock, World};
use agent_sim::host::{Host, SimProbe, SimRuntime};
use docker_runtime::RegistryAuth;
use gitsync::{RemoteOptions, RemoteUrl};
use reconcile_core::LABEL_ENVIRONMENT;
use status_http::{Snapshot, Status};
use test_support::git::{Remote, git};

const IMAGE: &str = "sim/app:1";

/// The simulated host, the real mirror.
struct RealGit;

impl World for RealGit {
    type Runtime = SimRuntime;
    type Git = MirrorGit;
    type Probe = SimProbe;
    type Clock = SystemClock;
}

fn node_yaml(branch: Option<&str>) -> String {
    let line = branch.map_or(String::new(), |b| format!("  gitBranch: {b}\n"));
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n1\nspec:\n  host: 127.0.0.1\n  gitRepo: /srv/manifests.git\n{line}"
    )
}

fn web_yaml(version: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: {IMAGE}\n  env:\n    VERSION: \"{version}\"\n  rollout:\n    minHealthySeconds: 1\n"
    )
}

/// Pushes the work tree's `HEAD` to `branch` of the bare remote.
fn push_to(remote: &Remote, branch: &str) {
    git(
        &remote.work(),
        &[
            "push",
            "-q",
            "--force",
            &remote.file_url(),
            &format!("HEAD:refs/heads/{branch}"),
        ],
    );
}

/// One agent on its own data dir, run one pass at a time (`--once`'s pass).
struct Node {
    agent: Agent<RealGit>,
    status: Status,
    host: Host,
    options: RemoteOptions,
    data: tempfile::TempDir,
}

impl Node {
    async fn start(remote: &Remote, branch: Option<&str>) -> Self {
        let url = RemoteUrl::parse(&remote.file_url(), Path::new("/")).unwrap();
        let options = match branch {
            Some(b) => RemoteOptions::new(url, b),
            None => RemoteOptions::without_branch(url),
        };
        let host = Host::new(&[(IMAGE, "sha256:app1")], "poison".to_owned());
        Self::open(tempfile::tempdir().unwrap(), host, options).await
    }

    /// The agent stops and starts again on the same data dir and host.
    async fn restart(self) -> Self {
        let Self {
            agent,
            host,
            options,
            data,
            ..
        } = self;
        drop(agent);
        Self::open(data, host, options).await
    }

    async fn open(data: tempfile::TempDir, host: Host, options: RemoteOptions) -> Self {
        let mut settings = Settings::new("n1".to_owned(), data.path().to_owned(), options.clone());
        settings.once = true;
        let parts = Parts {
            runtime: SimRuntime(host.clone()),
            git: MirrorGit::open(data.path().join("git"), settings.remote.clone(), "n1").unwrap(),
            probe: SimProbe(host.clone()),
            clock: SystemClock,
            auth: RegistryAuth::default(),
        };
        let status = Status::new(Snapshot::default());
        let agent = Agent::with_parts(
            settings,
            parts,
            status.clone(),
            Arc::new(AtomicBool::new(false)),
        )
        .await
        .unwrap();
        Self {
            agent,
            status,
            host,
            options,
            data,
        }
    }

    /// One pass with a poll; whether it converged.
    async fn pass(&mut self) -> bool {
        self.agent.pass(true).await.converged
    }

    /// The containers on the host: name → environment label.
    fn containers(&self) -> BTreeMap<String, String> {
        self.host.with(|h| {
            h.containers
                .values()
                .map(|c| {
                    let env = c.labels.get(LABEL_ENVIRONMENT).cloned().unwrap_or_default();
                    (c.name.clone(), env)
                })
                .collect()
        })
    }

    fn head(&self) -> Option<String> {
        self.status.get().node.git_head.clone()
    }

    fn sync_error(&self) -> String {
        self.status
            .get()
            .node
            .sync_error
            .clone()
            .unwrap_or_default()
    }
}

fn containers(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(n, e)| ((*n).to_owned(), (*e).to_owned()))
        .collect()
}

/// The reported case, and what follows from it: the default branch (`main`, the remote's
/// `HEAD`) says the node follows `staging`; an agent told no branch follows `staging`, runs
/// `staging.web` in environment `staging`, and follows a later change of the default
/// branch's manifest to `qa` on its next poll, keeping what runs while it cannot tell.
#[tokio::test(start_paused = true)]
async fn an_agent_told_no_branch_follows_the_branch_its_manifest_names() {
    let remote = Remote::new();
    // `main` itself would run `web` v1 as production, if anything took it for this node's.
    remote.commit(
        "main",
        &[
            ("nodes/n1.yaml", &node_yaml(Some("staging"))),
            ("deployments/web.yaml", &web_yaml("main")),
        ],
    );
    git(&remote.work(), &["checkout", "-q", "-b", "staging"]);
    let staging = remote.commit_local("staging", &[("deployments/web.yaml", &web_yaml("staging"))]);
    push_to(&remote, "staging");

    let mut node = Node::start(&remote, None).await;
    assert!(node.pass().await, "{}", node.sync_error());
    assert_eq!(node.head().as_deref(), Some(staging.as_str()));
    assert_eq!(node.containers(), containers(&[("staging.web", "staging")]));
    let version = node.host.with(|h| {
        h.containers
            .values()
            .find_map(|c| c.version.clone())
            .unwrap_or_default()
    });
    assert_eq!(version, "staging", "staging's revision runs, not main's");

    // A restart with the remote gone resumes the branch the last run followed, before any
    // poll could say which: the host is repaired and nothing is changed.
    let away = remote.dir.path().join("away.git");
    std::fs::rename(remote.bare(), &away).unwrap();
    let ops = node.host.with(|h| h.ops.len());
    let mut node = node.restart().await;
    assert!(
        node.agent.pass(false).await.converged,
        "{}",
        node.sync_error()
    );
    assert_eq!(node.head().as_deref(), Some(staging.as_str()));
    // A pass converges on the host as it stands (a failed fetch changes nothing there).
    node.pass().await;
    assert!(
        node.sync_error().contains("fetch failed"),
        "{}",
        node.sync_error()
    );
    assert_eq!(node.host.with(|h| h.ops.len()), ops, "nothing was changed");
    std::fs::rename(&away, remote.bare()).unwrap();

    // A staging commit the node's manifest of which names another branch is refused whole,
    // naming both branches; what runs keeps running.
    let wrong = remote.commit_local(
        "staging names main",
        &[
            ("nodes/n1.yaml", &node_yaml(None)),
            ("deployments/web.yaml", &web_yaml("wrong")),
        ],
    );
    push_to(&remote, "staging");
    node.pass().await;
    let error = node.sync_error();
    assert!(
        error.contains(&format!("revision {} refused", &wrong[..12]))
            && error.contains(
                "nodes/n1.yaml:0:0: error: spec.gitBranch: this revision is of branch `staging`, but the node's manifest on it names branch `main`"
            ),
        "{error}"
    );
    assert_eq!(node.head().as_deref(), Some(staging.as_str()));
    assert_eq!(node.containers(), containers(&[("staging.web", "staging")]));

    // The default branch loses the node's file: the agent cannot tell which branch to follow,
    // says so, and keeps what runs (the next poll tries again).
    git(&remote.work(), &["checkout", "-q", "main"]);
    git(&remote.work(), &["rm", "-q", "nodes/n1.yaml"]);
    remote.commit("main forgets n1", &[]);
    node.pass().await;
    let error = node.sync_error();
    assert!(
        error.contains(
            "cannot learn which branch to follow from nodes/n1.yaml on the remote's default branch `main`: node `n1` is not declared in nodes/"
        ),
        "{error}"
    );
    assert_eq!(node.containers(), containers(&[("staging.web", "staging")]));

    // The default branch now says `qa`, whose own manifest agrees: followed on the next poll.
    let on_main = remote.commit("main says qa", &[("nodes/n1.yaml", &node_yaml(Some("qa")))]);
    push_to(&remote, "qa");
    assert!(node.pass().await, "{}", node.sync_error());
    assert_eq!(node.head().as_deref(), Some(on_main.as_str()));
    let now = node.containers();
    assert_eq!(now.get("qa.web").map(String::as_str), Some("qa"), "{now:?}");
    // The old environment's container is not this agent's any more: left as it was.
    assert_eq!(
        now.get("staging.web").map(String::as_str),
        Some("staging"),
        "{now:?}"
    );
}

/// Told a branch, the agent follows it; a revision whose node manifest names another branch
/// is refused there too (the agent never runs `main`'s manifests as production for a node
/// that says `staging`), and an agent that was told nothing resumes its branch after a
/// restart before any poll.
#[tokio::test(start_paused = true)]
async fn a_branch_the_agent_is_told_must_be_the_one_its_manifest_names() {
    let remote = Remote::new();
    let main = remote.commit(
        "main",
        &[
            ("nodes/n1.yaml", &node_yaml(Some("staging"))),
            ("deployments/web.yaml", &web_yaml("main")),
        ],
    );
    push_to(&remote, "staging");

    let mut told_main = Node::start(&remote, Some("main")).await;
    assert!(!told_main.pass().await);
    let error = told_main.sync_error();
    assert!(
        error.contains(&format!("revision {} refused", &main[..12]))
            && error.contains("this revision is of branch `main`, but the node's manifest on it names branch `staging`"),
        "{error}"
    );
    assert!(told_main.containers().is_empty());

    let mut told_staging = Node::start(&remote, Some("staging")).await;
    assert!(told_staging.pass().await, "{}", told_staging.sync_error());
    assert_eq!(
        told_staging.containers(),
        containers(&[("staging.web", "staging")])
    );
}

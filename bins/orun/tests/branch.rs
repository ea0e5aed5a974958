//! `orun plan` and the agent resolve a node alike (issue 14): for one repository whose node
//! manifest says `gitBranch: staging`, the `orun plan` binary on a checkout and the agent's
//! own path (gitsync's mirror of a real `file://` remote, then `judge`) give the same branch,
//! environment, container names and specs, with and without a branch given, and refuse the
//! same revision with the same words when the branch given is another.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::path::Path;
use std::process::Command;

use agent_engine::{Git as _, MirrorGit, Refusal};
use gitsync::{RemoteOptions, RemoteUrl};
use manifest_model::DesiredNode;
use reconcile_core::Desired;
use serde_json::Value;
use test_support::git::{Remote, git};

const NODE: &str = "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n\nspec:\n  host: 127.0.0.1\n  gitRepo: /srv/manifests.git\n  gitBranch: staging\n";

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: nginx:1.27\n  ports:\n    - containerPort: 80\n      port: 8080\n"
    )
}

const SERVICE: &str = "apiVersion: run.orcra.dev/v0alpha\nkind: Service\nmetadata:\n  name: web\nspec:\n  deployment: web\n  ingress:\n    domain:\n      default: web.example.com\n      environment: web.$ENV.example.com\n";

/// What the agent makes of the remote, told `branch` or (`None`) told nothing: the branch
/// its sync follows, and the revision read there.
fn agent(remote: &Remote, branch: Option<&str>) -> (String, Result<DesiredNode, Refusal>) {
    let data = tempfile::tempdir().unwrap();
    let url = RemoteUrl::parse(&remote.file_url(), Path::new("/")).unwrap();
    let options = match branch {
        Some(b) => RemoteOptions::new(url, b),
        None => RemoteOptions::without_branch(url),
    };
    let mut mirror = MirrorGit::open(data.path().join("git"), options, "n").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let head = mirror.sync().await.unwrap();
        let read = mirror.read(&head.commit, None, "n", &head.branch).await;
        (head.branch, read.unwrap().map(|(node, _)| node))
    })
}

/// `orun plan --json` on the work tree against an empty host; its exit code, its JSON and
/// its stderr.
fn plan(remote: &Remote, extra: &[&str]) -> (Option<i32>, Value, String) {
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = tmp.path().join("actual.json");
    std::fs::write(&snapshot, r#"{"containers": [], "images": {}}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orun"))
        .arg("plan")
        .arg("--repo")
        .arg(remote.work())
        .args(["--node", "n", "--json", "--actual"])
        .arg(&snapshot)
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (deployment, container name, spec hash) of what `node` runs, as the planner renders it.
fn rendered(node: &DesiredNode) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = Desired::from_node(node, None, |_| None, &Default::default())
        .deployments
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                d.spec.container_name.clone(),
                d.spec_hash.clone(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The same, from a plan's create steps.
fn planned(json: &Value) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["action"], "create", "{s}");
            let field = |k: &str| s[k].as_str().unwrap().to_owned();
            (
                field("deployment"),
                field("container_name"),
                field("spec_hash"),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn plan_and_agent_resolve_a_node_alike() {
    let remote = Remote::new();
    remote.commit(
        "one",
        &[
            ("nodes/n.yaml", NODE),
            ("deployments/web.yaml", &deployment("web")),
            (
                "deployments/api.yaml",
                &deployment("api").replace("8080", "8081"),
            ),
            ("services/web.yaml", SERVICE),
        ],
    );
    git(
        &remote.work(),
        &["push", "-q", &remote.file_url(), "HEAD:refs/heads/staging"],
    );

    // Told nothing, the agent learns `staging` from the default branch; told `staging`, it
    // follows it. Both read the same node.
    let (branch, read) = agent(&remote, None);
    assert_eq!(branch, "staging");
    let desired = read.unwrap();
    assert_eq!(agent(&remote, Some("staging")).1.unwrap(), desired);
    assert_eq!(
        (
            desired.environment.id.as_str(),
            desired.environment.production
        ),
        ("staging", false)
    );
    assert_eq!(
        desired.services[0].domain.as_deref(),
        Some("web.staging.example.com")
    );
    let agents = rendered(&desired);
    assert_eq!(
        agents.iter().map(|a| a.1.as_str()).collect::<Vec<_>>(),
        ["staging.api", "staging.web"]
    );

    // `orun plan` on a checkout, without a branch and with the agent's: the same.
    for extra in [&[][..], &["--branch", "staging"][..]] {
        let (code, json, stderr) = plan(&remote, extra);
        assert_eq!(code, Some(0), "{extra:?}: {stderr}");
        assert_eq!(json["branch"], "staging", "{json}");
        assert_eq!(
            json["environment"],
            serde_json::json!({ "id": "staging", "production": false }),
            "{json}"
        );
        assert_eq!(planned(&json), agents, "{extra:?}");
    }

    // Given `main`, whose node manifest names `staging`: both refuse, in the same words.
    let (code, _, stderr) = plan(&remote, &["--branch", "main"]);
    assert_eq!(code, Some(1), "{stderr}");
    let (branch, read) = agent(&remote, Some("main"));
    assert_eq!(branch, "main");
    let refusal = read.unwrap_err();
    assert!(refusal.permanent);
    let expected = "nodes/n.yaml:0:0: error: spec.gitBranch: this revision is of branch `main`, but the node's manifest on it names branch `staging`; a node runs only the branch its manifest names, so the revision is refused";
    assert_eq!(refusal.problems, [expected]);
    assert!(stderr.contains(expected), "{stderr}");
}

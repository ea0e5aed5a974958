//! `orun plan` against a real Docker daemon and a real checkout (`cargo xtask test` starts
//! the daemon and builds the images offline). Every container carries a per-test label and is
//! removed by it even when the test fails; a non-production branch prefixes container names
//! so nothing collides with other tests or real workloads.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::path::Path;
use std::process::{Command, Output};

use test_support::docker::{Guard, docker};

use manifest_model::{DirSource, Limits, load, resolve};
use reconcile_core::{
    LABEL_DEPLOYMENT, LABEL_ENVIRONMENT, LABEL_NODE, LABEL_SPEC, LABEL_SPEC_HASH, RenderedSpec,
    image_of,
};

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn deployment(name: &str, body: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n{body}"
    )
}

fn orun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orun"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// Creates the container the agent would have made for `deployment` in `repo`'s revision.
fn create_as_agent(
    repo: &Path,
    node: &str,
    deployment: &str,
    label: &str,
    run_args: &[&str],
) -> String {
    let (rev, _) = load(&DirSource::new(repo).unwrap(), &Limits::default())
        .into_result()
        .unwrap();
    let desired = resolve(&rev, node, None).unwrap();
    let c = desired
        .containers
        .iter()
        .find(|c| c.deployment == deployment)
        .unwrap();
    let spec = RenderedSpec::from_container(c, image_of(c), None, &Default::default());
    let labels = [
        format!("{LABEL_NODE}={node}"),
        format!("{LABEL_ENVIRONMENT}={}", desired.environment.id),
        format!("{LABEL_DEPLOYMENT}={deployment}"),
        format!("{LABEL_SPEC_HASH}={}", spec.hash()),
        format!("{LABEL_SPEC}={}", spec.canonical_json()),
        label.to_owned(),
    ];
    let mut args: Vec<&str> = run_args.to_vec();
    args.extend(["--name", &spec.container_name]);
    for l in &labels {
        args.extend(["--label", l]);
    }
    args.push(&spec.image);
    let cmd = spec.args.clone().unwrap_or_default();
    args.extend(cmd.iter().map(String::as_str));
    docker(&args)
}

#[test]
fn plan_against_real_docker() {
    let pid = std::process::id();
    let node = format!("t{pid}");
    let label = format!("orun.test=plan-{pid}");
    let _guard = Guard(label.clone());
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    write(
        repo,
        &format!("nodes/{node}.yaml"),
        &format!(
            "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: {node}\nspec:\n  host: 127.0.0.1\n  gitRepo: /srv/repo.git\n  gitBranch: {node}\n"
        ),
    );
    let sleep = "  image: orun-test/busybox:1\n  args: [sleep, \"300\"]\n";
    // The earlier revision: web on the plain busybox image, api, and `old`.
    write(
        repo,
        "deployments/web.yaml",
        &deployment(
            "web",
            "  image: orun-test/busybox:1\n  args: [httpd, -f, -p, \"80\", -h, /]\n  env:\n    MODE: blue\n",
        ),
    );
    write(repo, "deployments/api.yaml", &deployment("api", sleep));
    write(repo, "deployments/old.yaml", &deployment("old", sleep));
    let web = create_as_agent(repo, &node, "web", &label, &["run", "-d"]);
    let api = create_as_agent(repo, &node, "api", &label, &["create"]);
    create_as_agent(repo, &node, "old", &label, &["run", "-d"]);

    // Strangers: an unmanaged container holding a name a deployment wants, and a look-alike
    // with another node's labels.
    let cache_name = format!("{node}.cache");
    docker(&[
        "run",
        "-d",
        "--name",
        &cache_name,
        "--label",
        &label,
        "orun-test/busybox:1",
        "sleep",
        "300",
    ]);
    docker(&[
        "run",
        "-d",
        "--name",
        &format!("{node}.lookalike"),
        "--label",
        &label,
        "--label",
        "orun.node=someone-else",
        "--label",
        "orun.deployment=api",
        "orun-test/busybox:1",
        "sleep",
        "300",
    ]);

    // The new revision: web moves to the example image, old is gone, cache is new.
    write(
        repo,
        "deployments/web.yaml",
        &deployment(
            "web",
            "  image: orun-example/hello:1\n  env:\n    MODE: green\n",
        ),
    );
    std::fs::remove_file(repo.join("deployments/old.yaml")).unwrap();
    write(repo, "deployments/cache.yaml", &deployment("cache", sleep));
    write(
        repo,
        "deployments/new.yaml",
        &deployment("new", "  image: orun-test/not-built:1\n"),
    );

    let before = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={label}"),
        "--format",
        "{{.ID}} {{.Names}} {{.State}}",
    ]);
    let dir = repo.display().to_string();
    let out = orun(&[
        "plan",
        "--repo",
        &dir,
        "--node",
        &node,
        "--detailed-exitcode",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = format!(
        "node {node}: branch {node}, environment {node}\n\
         - old: remove {node}.old (deployment is no longer in the repository for this node)\n\
         > api: start {node}.api (container is created but not started)\n\
         ~ web: replace {node}.web (start-first)\n\
         \x20   args: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/\"] -> (unset)\n\
         \x20   env.MODE: *** -> ***\n\
         \x20   image: orun-test/busybox:1 -> orun-example/hello:1\n\
         + new: create {node}.new (not running on this node, image to fetch)\n\
         ! cache: name {node}.cache is taken by container {cache}, which is left alone\n\
         Plan: 1 to create, 1 to replace, 1 to start, 1 to remove.\n",
        cache = &docker(&["inspect", "-f", "{{.Id}}", &cache_name])[..12],
    );
    assert_eq!(text, expected);

    // JSON, and the steps name the real container ids.
    let out = orun(&["plan", "--repo", &dir, "--node", &node, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["summary"],
        serde_json::json!({"create": 1, "replace": 1, "start": 1, "remove": 1})
    );
    let steps = json["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["action"] == "start" && s["container_id"] == api.as_str())
    );
    assert!(
        steps
            .iter()
            .any(|s| s["action"] == "replace" && s["old_id"] == web.as_str())
    );

    // Planning changed nothing.
    let after = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={label}"),
        "--format",
        "{{.ID}} {{.Names}} {{.State}}",
    ]);
    assert_eq!(before, after);
}

//! End to end: the real `orun-agent` binary against a real Docker daemon and real Git remotes
//! (`git daemon`, `file://`, `sshd`), through first deploy, change, removal, a bad commit,
//! drift, SIGKILL and restart, a remote outage and a force-push, with unmanaged look-alikes
//! that must never be touched and a secret that must never be shown.
//!
//! Run with `cargo xtask e2e` (it builds the binaries and starts Docker). Every wait polls with
//! a deadline; containers are removed by label when a test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use support::{Agent, WAIT, bin, container, node_yaml, spawn_agent};
use test_support::docker::{Guard, docker};
use test_support::git::{self as git_support, Remote, Sshd, git_daemon};
use test_support::wait::wait;
use test_support::{free_port, required};

const SECRET: &str = "e2e-hunter2-value";

/// A long-running container that stops at once on SIGTERM.
fn worker_yaml(node: &str, name: &str, marker: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: orun-test/busybox:1\n  nodes: [{node}]\n  command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n  env:\n    MARKER: \"{marker}\"\n  rollout:\n    minHealthySeconds: 1\n"
    )
}

fn web_yaml(node: &str, name: &str, port: u16) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: orun-example/hello:1\n  nodes: [{node}]\n  ports:\n    - containerPort: 80\n      port: {port}\n      hostIP: 127.0.0.1\n  env:\n    API_TOKEN: \"{SECRET}\"\n  rollout:\n    minHealthySeconds: 1\n"
    )
}

#[test]
fn the_agent_converges_follows_and_survives_faults() {
    let id = std::process::id();
    let node = format!("e2e-{id}");
    let _guard = Guard(format!("orun.node={node}"));
    let _unmanaged_guard = Guard(format!("orun-e2e={node}"));
    let (web, api, worker) = (
        format!("e2e{id}-web"),
        format!("e2e{id}-api"),
        format!("e2e{id}-worker"),
    );
    let web_port = free_port();

    // Unmanaged containers: one with a deployment-like name, one with another node's labels
    // copied, one holding the exact name a deployment wants later.
    let lookalike_name = format!("{web}-1");
    let copied_name = format!("e2e{id}-copied");
    let clash = format!("e2e{id}-clash");
    let mut unmanaged = Vec::new();
    for (name, labels) in [
        (lookalike_name.as_str(), vec![]),
        (
            copied_name.as_str(),
            vec![
                "orun.node=someone-else".to_owned(),
                format!("orun.deployment={web}"),
                "orun.environment=main".to_owned(),
                "orun.spec-hash=0".to_owned(),
            ],
        ),
        (clash.as_str(), vec![]),
    ] {
        let mut args = vec![
            "run".to_owned(),
            "-d".to_owned(),
            "--name".to_owned(),
            name.to_owned(),
            "--label".to_owned(),
            format!("orun-e2e={node}"),
        ];
        for l in labels {
            args.extend(["--label".to_owned(), l]);
        }
        args.extend(
            ["orun-test/busybox:1", "sleep", "3600"]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        unmanaged.push((name.to_owned(), docker(&argv)));
    }

    let remote = Remote::new();
    let c1 = remote.commit(
        "first",
        &[
            (&format!("nodes/{node}.yaml"), &node_yaml(&node)),
            (
                &format!("deployments/{web}.yaml"),
                &web_yaml(&node, &web, web_port),
            ),
            (
                &format!("deployments/{api}.yaml"),
                &worker_yaml(&node, &api, "v1"),
            ),
            (
                &format!("deployments/{worker}.yaml"),
                &worker_yaml(&node, &worker, "v1"),
            ),
        ],
    );
    let daemon = git_daemon(&remote);
    let git_port = daemon.port;
    let url = format!("git://127.0.0.1:{git_port}/m.git");
    let data_root = tempfile::tempdir().unwrap();
    let data = data_root.path().join("data");
    let status_port = free_port();

    // 1. First deploy.
    let agent = spawn_agent(&url, &node, &data, status_port, &[]);
    let s = agent.converged(&c1);
    assert_eq!(s["deployments"].as_object().unwrap().len(), 3, "{s}");
    let web_addr = SocketAddr::from(([127, 0, 0, 1], web_port));
    let answer = wait("the web container to serve", WAIT)
        .until(|| status_http::get(web_addr, "/health", Duration::from_secs(2)).ok());
    assert_eq!(answer.code, 200, "{answer:?}");
    let web1 = container(&web).expect("web runs");
    let api1 = container(&api).expect("api runs");
    let worker1 = container(&worker).expect("worker runs");

    // A second agent on the same data dir refuses to start.
    let second = Command::new(bin("orun-agent"))
        .args(["--repo", &url, "--node", &node, "--once", "--data-dir"])
        .arg(&data)
        .env("ORUN_LOG_FORMAT", "text")
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another orun-agent"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // `orun status` shows the table.
    let out = Command::new(bin("orun"))
        .args(["status", "--addr", &agent.addr.to_string()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.contains(&format!("commit {}", &c1[..12])), "{table}");
    assert!(table.contains(&api) && table.contains("running"), "{table}");

    // 2. Change one deployment: only it is replaced.
    let c2 = remote.commit(
        "change api",
        &[(
            &format!("deployments/{api}.yaml"),
            &worker_yaml(&node, &api, "v2"),
        )],
    );
    agent.converged(&c2);
    let api2 = container(&api).expect("api runs");
    assert_ne!(api2.0, api1.0, "api was replaced");
    assert_eq!(container(&web).unwrap(), web1, "web untouched");
    assert_eq!(container(&worker).unwrap(), worker1, "worker untouched");

    // 3. Remove one: pruned. A deployment whose name is held by an unmanaged container is
    // reported, and that container is left alone.
    std::fs::remove_file(remote.work().join(format!("deployments/{worker}.yaml"))).unwrap();
    let c3 = remote.commit(
        "remove worker, add clash",
        &[(
            &format!("deployments/{clash}.yaml"),
            &worker_yaml(&node, &clash, "x"),
        )],
    );
    agent.wait_status("worker pruned and the clash reported", |s| {
        s["node"]["git_head"] == c3.as_str()
            && s["deployments"].get(&worker).is_none()
            && s["deployments"][&clash]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("does not manage"))
    });
    wait("worker removed", WAIT).until(|| container(&worker).is_none().then_some(()));
    // Once its owner removes the unmanaged container, the name is free and the deployment
    // runs at the next poll, though that container's events were never watched.
    let held = unmanaged.iter().position(|(n, _)| *n == clash).unwrap();
    let (_, held_id) = unmanaged.remove(held);
    assert_eq!(
        container(&clash).unwrap().0,
        held_id,
        "the clash left alone"
    );
    docker(&["rm", "-f", &held_id]);
    agent.converged(&c3);
    let (clash_id, _) = container(&clash).expect("the deployment took its name");
    assert_ne!(clash_id, held_id);
    std::fs::remove_file(remote.work().join(format!("deployments/{clash}.yaml"))).unwrap();
    let c4 = remote.commit("drop clash", &[]);
    agent.converged(&c4);

    // 4. A bad commit is refused whole, reported with file and line; the old state runs on.
    let bad = remote.commit(
        "broken",
        &[
            (
                &format!("deployments/{api}.yaml"),
                &worker_yaml(&node, &api, "v3"),
            ),
            (
                &format!("deployments/{web}.yaml"),
                &format!("apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  image: orun-test/busybox:1\n  env:\n    API_TOKEN: \"{SECRET}\"\n    API_TOKEN: \"{SECRET}\"\n  bogus: [unclosed {SECRET}\n"),
            ),
        ],
    );
    let s = agent.wait_status("the bad revision reported", |s| {
        s["node"]["sync_error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("deployments/{web}.yaml:")))
    });
    assert_eq!(s["node"]["git_head"], c4.as_str(), "{s}");
    assert!(
        s["node"]["sync_error"]
            .as_str()
            .unwrap()
            .contains(&bad[..12]),
        "{s}"
    );
    assert_eq!(
        container(&api).unwrap(),
        api2,
        "nothing of the bad commit applied"
    );
    common_restore(&remote, &node, &web, web_port);
    let c5 = remote.commit(
        "fix",
        &[(
            &format!("deployments/{api}.yaml"),
            &worker_yaml(&node, &api, "v2"),
        )],
    );
    let s = agent.converged(&c5);
    assert!(s["node"]["sync_error"].is_null(), "{s}");
    assert_eq!(container(&web).unwrap(), web1);
    assert_eq!(container(&api).unwrap(), api2);

    // 5. Drift is repaired without a commit: a killed container is started, a removed one
    // recreated.
    docker(&["kill", &web]);
    docker(&["rm", "-f", &api]);
    wait("drift repaired", WAIT)
        .until(|| (container(&web).is_some() && container(&api).is_some()).then_some(()));
    agent.converged(&c5);
    let web2 = container(&web).unwrap();
    let api3 = container(&api).unwrap();
    assert_eq!(
        web2.0, web1.0,
        "the stopped container is started, not replaced"
    );

    // 6. SIGKILL and restart: no container restarts.
    drop(agent);
    let agent = spawn_agent(&url, &node, &data, status_port, &[]);
    agent.converged(&c5);
    // A few more passes, then compare start times.
    let passes = |a: &Agent| {
        a.get("/metrics")
            .and_then(|m| {
                m.body
                    .lines()
                    .find_map(|l| l.strip_prefix("orun_passes_total ")?.parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    wait("three more passes", WAIT).until(|| (passes(&agent) >= 4.0).then_some(()));
    assert_eq!(container(&web).unwrap(), web2, "web not restarted");
    assert_eq!(container(&api).unwrap(), api3, "api not restarted");

    // A current container left under the temporary name (a replace killed between its last
    // two steps) is promoted by a rename: same container, never restarted.
    docker(&["rename", &api, &format!("{api}.orun-next")]);
    wait("the leftover promoted back", WAIT)
        .until(|| container(&api).filter(|c| *c == api3).map(|_| ()));
    agent.converged(&c5);

    // 7. The remote goes away: status says so, nothing changes; it comes back, a change lands.
    drop(daemon);
    let s = agent.wait_status("the outage reported", |s| {
        s["node"]["stale_since"].is_string() && s["node"]["sync_error"].is_string()
    });
    assert_eq!(s["node"]["git_head"], c5.as_str());
    assert_eq!(container(&api).unwrap(), api3);
    let c6 = remote.commit(
        "while down",
        &[(
            &format!("deployments/{api}.yaml"),
            &worker_yaml(&node, &api, "v4"),
        )],
    );
    let _daemon = git_support::git_daemon_on(&remote, git_port);
    let s = agent.converged(&c6);
    assert!(s["node"]["stale_since"].is_null(), "{s}");

    // 8. Force-push: followed.
    git_support::git(&remote.work(), &["reset", "-q", "--hard", &c5]);
    let forced = remote.commit_local(
        "rewritten",
        &[(
            &format!("deployments/{api}.yaml"),
            &worker_yaml(&node, &api, "v5"),
        )],
    );
    remote.push(true);
    agent.converged(&forced);
    assert!(agent.logs().contains("force-pushed"));

    // 9. Unmanaged containers were never touched; the secret was never shown.
    for (name, id) in &unmanaged {
        let (now_id, _) = container(name).unwrap_or_else(|| panic!("{name} still runs"));
        assert_eq!(&now_id, id, "{name} untouched");
    }
    let status_body = agent.get("/status").unwrap().body;
    let metrics = agent.get("/metrics").unwrap().body;
    let logs = agent.logs();
    for (what, text) in [
        ("status", &status_body),
        ("metrics", &metrics),
        ("logs", &logs),
    ] {
        assert!(!text.contains(SECRET), "the secret appears in {what}");
    }
    assert!(logs.contains("pass{"), "one span per pass in the logs");
}

/// `orun-agent --once` on `node` from `url` with the data dir `data`: its exit code and log.
fn run_once(
    url: &str,
    node: &str,
    data: &std::path::Path,
    extra: &[&str],
) -> (Option<i32>, String) {
    let out = Command::new(bin("orun-agent"))
        .args(["--repo", url, "--node", node, "--once", "--data-dir"])
        .arg(data)
        .args(extra)
        .env("ORUN_LOG_FORMAT", "text")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn common_restore(remote: &Remote, node: &str, web: &str, port: u16) {
    std::fs::write(
        remote.work().join(format!("deployments/{web}.yaml")),
        web_yaml(node, web, port),
    )
    .unwrap();
}

#[test]
fn once_over_ssh_and_file_with_exit_codes() {
    let id = std::process::id();
    let node = format!("e2e-once-{id}");
    let _guard = Guard(format!("orun.node={node}"));
    let remote = Remote::new();
    let name = format!("e2e{id}-once");
    let c = remote.commit(
        "one",
        &[
            (&format!("nodes/{node}.yaml"), &node_yaml(&node)),
            (
                &format!("deployments/{name}.yaml"),
                &worker_yaml(&node, &name, "1"),
            ),
        ],
    );
    let data = tempfile::tempdir().unwrap();
    let once =
        |url: &str, dir: &str, extra: &[&str]| run_once(url, &node, &data.path().join(dir), extra);

    // file://: converged → 0.
    let (code, log) = once(&remote.file_url(), "file", &[]);
    assert_eq!(code, Some(0), "{log}");
    assert!(container(&name).is_some());

    // An image that cannot be pulled: not converged → 1, with the reason.
    let broken = format!("e2e{id}-broken");
    remote.commit(
        "unpullable",
        &[(
            &format!("deployments/{broken}.yaml"),
            &worker_yaml(&node, &broken, "1")
                .replace("orun-test/busybox:1", "127.0.0.1:9/none/such:1"),
        )],
    );
    let (code, log) = once(&remote.file_url(), "file", &[]);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("cannot pull"), "{log}");
    assert!(
        container(&name).is_some(),
        "the good deployment keeps running"
    );

    // ssh with a deploy key and the pinned host key.
    let Some(sshd_bin) = git_support::sshd_binary() else {
        assert!(!required(), "sshd is required (ORUN_REQUIRE_ALL)");
        eprintln!("skipped the ssh part: sshd is not installed");
        return;
    };
    let sshd = Sshd::start(&sshd_bin);
    git_support::git(&remote.work(), &["reset", "-q", "--hard", &c]);
    remote.push(true);
    let url = sshd.url(&remote);
    let key = sshd.path("client");
    let pinned = sshd.path("known_hosts");
    let (code, log) = once(
        &url,
        "ssh",
        &[
            "--ssh-key",
            key.to_str().unwrap(),
            "--known-hosts",
            pinned.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{log}");
    // A host key that is not the pinned one: refused, nothing changes.
    let wrong = sshd.path("wrong_known_hosts");
    let stranger = std::fs::read_to_string(sshd.path("stranger.pub")).unwrap();
    let mut f = stranger.split_whitespace();
    std::fs::write(
        &wrong,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.daemon.port,
            f.next().unwrap(),
            f.next().unwrap()
        ),
    )
    .unwrap();
    let (code, log) = once(
        &url,
        "ssh-wrong",
        &[
            "--ssh-key",
            key.to_str().unwrap(),
            "--known-hosts",
            wrong.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("man-in-the-middle"), "{log}");
}

/// Issue 12: branches whose environment ids fold to one (`feature/x` and `feature_x`) on one
/// host. The first converges as its own environment (its status finds its containers under
/// the branch it labels them with); the second's agent never touches them and says why.
#[test]
fn branches_with_one_environment_id_never_touch_each_other() {
    let id = std::process::id();
    let node = format!("e2b-{id}");
    let _guard = Guard(format!("orun.node={node}"));
    let worker = format!("e2b{id}-w");
    let remote = Remote::new();
    // Each branch's node manifest names its own branch, or the agent refuses it.
    let on =
        |branch: &str| node_yaml(&node).replace("gitBranch: main", &format!("gitBranch: {branch}"));
    let commit = remote.commit(
        "first",
        &[
            (&format!("nodes/{node}.yaml"), &on("feature/x")),
            (
                &format!("deployments/{worker}.yaml"),
                &worker_yaml(&node, &worker, "v1"),
            ),
        ],
    );
    git_support::git(
        &remote.work(),
        &[
            "push",
            "-q",
            &remote.file_url(),
            "HEAD:refs/heads/feature/x",
        ],
    );
    // The other branch says something else (that is why it is a branch): an agent that took
    // the first one's containers for its own would replace them.
    let other = remote.commit_local(
        "other",
        &[
            (&format!("nodes/{node}.yaml"), &on("feature_x")),
            (
                &format!("deployments/{worker}.yaml"),
                &worker_yaml(&node, &worker, "v2"),
            ),
        ],
    );
    git_support::git(
        &remote.work(),
        &[
            "push",
            "-q",
            &remote.file_url(),
            "HEAD:refs/heads/feature_x",
        ],
    );
    assert_ne!(other, commit);
    let url = remote.file_url();
    let data_root = tempfile::tempdir().unwrap();

    let first = spawn_agent(
        &url,
        &node,
        &data_root.path().join("a"),
        free_port(),
        &["--branch", "feature/x"],
    );
    let s = first.converged(&commit);
    assert_eq!(s["deployments"][&worker]["state"], "running", "{s}");
    let name = format!("feature-x.{worker}");
    let before = container(&name).expect("the first branch's container runs");

    let second = spawn_agent(
        &url,
        &node,
        &data_root.path().join("b"),
        free_port(),
        &["--branch", "feature_x"],
    );
    let s = second.wait_status("the second branch to report the clash", |s| {
        s["deployments"][&worker]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("environment `feature/x`"))
    });
    assert_ne!(s["deployments"][&worker]["state"], "running", "{s}");
    // The first branch's container is the same one, never restarted, and still its own.
    assert_eq!(container(&name), Some(before));
    let s = first.converged(&commit);
    assert_eq!(s["deployments"][&worker]["state"], "running", "{s}");
}

/// Issue 14: the Node manifest configures the node. On a remote whose default branch
/// (`HEAD`: `main`) says the node follows `staging`, `orun-agent --once` told no branch runs
/// `staging`'s revision as environment `staging` (`staging.<name>`), never as production;
/// told `main`, whose node manifest names `staging`, it refuses the revision and runs
/// nothing.
#[test]
fn once_without_a_branch_follows_the_one_the_node_manifest_names() {
    let id = std::process::id();
    let node = format!("e2n-{id}");
    let _guard = Guard(format!("orun.node={node}"));
    let name = format!("e2n{id}-w");
    let staging_node = node_yaml(&node).replace("gitBranch: main", "gitBranch: staging");
    let remote = Remote::new();
    // `main` would run the worker as production (`e2n…-w`) if anything took it for this
    // node's revision.
    remote.commit(
        "main",
        &[
            (&format!("nodes/{node}.yaml"), &staging_node),
            (
                &format!("deployments/{name}.yaml"),
                &worker_yaml(&node, &name, "main"),
            ),
        ],
    );
    let staging = remote.commit_local(
        "staging",
        &[(
            &format!("deployments/{name}.yaml"),
            &worker_yaml(&node, &name, "staging"),
        )],
    );
    git_support::git(
        &remote.work(),
        &["push", "-q", &remote.file_url(), "HEAD:refs/heads/staging"],
    );
    let data = tempfile::tempdir().unwrap();
    let url = remote.file_url();
    let once = |dir: &str, extra: &[&str]| run_once(&url, &node, &data.path().join(dir), extra);

    // Told `main`: its node manifest names `staging`, so the revision is refused whole.
    let (code, log) = once("main", &["--branch", "main"]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("this revision is of branch `main`, but the node's manifest on it names branch `staging`"),
        "{log}"
    );
    assert!(container(&name).is_none(), "nothing runs as production");

    // Told nothing: `staging`, from the default branch's node manifest.
    let (code, log) = once("default", &[]);
    assert_eq!(code, Some(0), "{log}");
    let staged = format!("staging.{name}");
    assert!(container(&staged).is_some(), "{log}");
    assert!(container(&name).is_none(), "nothing runs as production");
    let labels = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"orun.environment\"}} {{index .Config.Labels \"orun.commit\"}} {{range .Config.Env}}{{.}} {{end}}",
        &staged,
    ]);
    assert!(
        labels.starts_with(&format!("staging {staging}")) && labels.contains("MARKER=staging"),
        "{labels}"
    );
}

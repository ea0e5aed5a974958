//! End to end, what a node trusts (issue 17), with the real `git`, `ssh-keygen`, Docker and
//! the built agent:
//! - a node whose policy requires signed commits applies a commit signed by `git commit -S`
//!   with an allowed SSH key, refuses an unsigned one, one signed by another key and, after
//!   a newer signed commit, the older signed one force-pushed back (a replay), each named in
//!   `/status` with why, while what it last applied keeps running;
//! - a revision binding the Docker socket, `/`, or a path that a symbolic link leads out of
//!   an allowed folder is refused whole, with file, line and field, until the node's policy
//!   allows it; what it allows is bound;
//! - the status API off loopback needs a bearer token: the agent will not start without
//!   one, and with one a request without it learns nothing but `/healthz`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::path::Path;
use std::process::Command;

use support::{bin, container, node_yaml, spawn_agent};
use test_support::docker::{Guard, docker_ok};
use test_support::free_port;
use test_support::git::{Remote, git};

fn worker(node: &str, name: &str, mode: &str, volumes: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: orun-test/busybox:1\n  nodes: [{node}]\n  command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n  env:\n    MODE: {mode}\n{volumes}  rollout:\n    minHealthySeconds: 1\n"
    )
}

fn bind(host: &str) -> String {
    format!(
        "  volumes:\n    - hostPath: {host}\n      containerPath: /host\n      readOnly: true\n"
    )
}

/// A fresh ed25519 key pair at `dir/name`; returns the private key's path and the public
/// key's `type base64` text.
fn ssh_key(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    (key.display().to_string(), public.join(" "))
}

/// Writes `files` and commits them, signed with the SSH key `key` when given, as `git commit
/// -S` with `gpg.format=ssh` signs; pushes; returns the commit id.
fn commit(remote: &Remote, key: Option<&str>, message: &str, files: &[(&str, &str)]) -> String {
    for (path, text) in files {
        let p = remote.work().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(&remote.work(), &["add", "-A"]);
    let signing = key.map(|k| format!("user.signingkey={k}"));
    let mut args = vec![];
    if let Some(s) = &signing {
        args.extend(["-c", "gpg.format=ssh", "-c", s.as_str()]);
    }
    args.extend(["commit", "-q", "--allow-empty", "-m", message]);
    if key.is_some() {
        args.push("-S");
    }
    git(&remote.work(), &args);
    remote.push(false);
    git(&remote.work(), &["rev-parse", "HEAD"])
}

fn sync_error(s: &serde_json::Value) -> &str {
    s["node"]["sync_error"].as_str().unwrap_or_default()
}

fn env_of(name: &str) -> String {
    docker_ok(&["inspect", "-f", "{{range .Config.Env}}{{.}} {{end}}", name]).unwrap_or_default()
}

#[test]
fn a_signed_commits_node_refuses_unsigned_foreign_and_replayed_commits() {
    let id = std::process::id();
    let node = format!("e2t-{id}");
    let _guard = Guard(format!("orun.node={node}"));
    let web = format!("e2t{id}-web");
    let keys = tempfile::tempdir().unwrap();
    let (trusted, trusted_pub) = ssh_key(keys.path(), "trusted");
    let (stranger, _) = ssh_key(keys.path(), "stranger");
    let signers = keys.path().join("allowed_signers");
    std::fs::write(
        &signers,
        format!("dev@example.invalid namespaces=\"git\" {trusted_pub}\n"),
    )
    .unwrap();
    let policy = keys.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "commits:\n  verify: true\n  allowedSigners: {}\n",
            signers.display()
        ),
    )
    .unwrap();

    let remote = Remote::new();
    let node_file = node_yaml(&node);
    let web_file = format!("deployments/{web}.yaml");
    let c1 = commit(
        &remote,
        Some(&trusted),
        "signed v1",
        &[
            (&format!("nodes/{node}.yaml"), &node_file),
            (&web_file, &worker(&node, &web, "v1", "")),
        ],
    );
    let data_root = tempfile::tempdir().unwrap();
    let data = data_root.path().join("data");
    let policy_arg = policy.display().to_string();
    let agent = spawn_agent(
        &remote.file_url(),
        &node,
        &data,
        free_port(),
        &["--branch", "main", "--policy", &policy_arg],
    );
    agent.converged(&c1);
    let (v1, _) = container(&web).expect("web runs");
    assert!(env_of(&web).contains("MODE=v1"));

    // Unsigned: refused, named, and v1 runs on.
    let c2 = commit(
        &remote,
        None,
        "unsigned v2",
        &[(&web_file, &worker(&node, &web, "v2", ""))],
    );
    let s = agent.wait_status("the unsigned commit refused", |s| {
        sync_error(s).contains(&c2[..8])
    });
    assert!(sync_error(&s).contains("not signed"), "{s}");
    assert_eq!(s["node"]["git_head"], c1.as_str(), "{s}");

    // Signed by a key the node does not trust: refused the same way.
    let c3 = commit(
        &remote,
        Some(&stranger),
        "foreign v3",
        &[(&web_file, &worker(&node, &web, "v3", ""))],
    );
    let s = agent.wait_status("the foreign commit refused", |s| {
        sync_error(s).contains(&c3[..8])
    });
    assert!(sync_error(&s).contains("allowed signers"), "{s}");
    assert_eq!(
        container(&web).unwrap().0,
        v1,
        "nothing of a refused commit applied"
    );
    assert!(env_of(&web).contains("MODE=v1"));

    // A trusted commit on top is applied.
    let c4 = commit(
        &remote,
        Some(&trusted),
        "signed v4",
        &[(&web_file, &worker(&node, &web, "v4", ""))],
    );
    agent.converged(&c4);
    let (v4, _) = agent
        .wait("web replaced by v4")
        .until(|| container(&web).filter(|(c, _)| *c != v1 && env_of(&web).contains("MODE=v4")));

    // The older signed commit served again (a force-push back to it): refused as a replay.
    git(
        &remote.work(),
        &[
            "push",
            "-q",
            "--force",
            &remote.file_url(),
            &format!("{c1}:main"),
        ],
    );
    let s = agent.wait_status("the replayed commit refused", |s| {
        sync_error(s).contains(&c1[..8]) && sync_error(s).contains("does not descend")
    });
    assert_eq!(s["node"]["git_head"], c4.as_str(), "{s}");
    assert_eq!(container(&web).unwrap().0, v4, "v4 keeps running");
}

#[test]
fn dangerous_binds_are_refused_whole_until_the_node_allows_them() {
    let id = std::process::id();
    let node = format!("e2p-{id}");
    let _guard = Guard(format!("orun.node={node}"));
    let (web, tool) = (format!("e2p{id}-web"), format!("e2p{id}-tool"));
    let dir = tempfile::tempdir().unwrap();
    let allowed = std::fs::canonicalize(dir.path()).unwrap().join("allowed");
    std::fs::create_dir_all(allowed.join("data")).unwrap();
    std::os::unix::fs::symlink("/etc", allowed.join("escape")).unwrap();
    let policy = dir.path().join("policy.yaml");
    let write_policy = |tool_binds: &str| {
        std::fs::write(
            &policy,
            format!(
                "host:\n  bind: [{}]\n  deployments:\n    {tool}:\n      bind: [{tool_binds}]\n",
                allowed.display()
            ),
        )
        .unwrap();
    };
    write_policy("");

    let remote = Remote::new();
    let tool_file = format!("deployments/{tool}.yaml");
    let files = |tool_binds: String| {
        vec![
            (format!("nodes/{node}.yaml"), node_yaml(&node)),
            (
                format!("deployments/{web}.yaml"),
                worker(&node, &web, "v1", ""),
            ),
            (tool_file.clone(), worker(&node, &tool, "v1", &tool_binds)),
        ]
    };
    let push = |message: &str, files: Vec<(String, String)>| {
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        remote.commit(message, &refs)
    };
    let sock = push("docker socket", files(bind("/var/run/docker.sock")));
    let data_root = tempfile::tempdir().unwrap();
    let data = data_root.path().join("data");
    let policy_arg = policy.display().to_string();
    let port = free_port();
    let args = ["--branch", "main", "--policy", policy_arg.as_str()];
    let agent = spawn_agent(&remote.file_url(), &node, &data, port, &args);

    // The socket: refused whole, with file, line and field; nothing of the revision runs.
    let s = agent.wait_status("the socket refused", |s| sync_error(s).contains(&sock[..8]));
    let e = sync_error(&s);
    assert!(
        e.contains(&format!("{tool_file}:12:")) && e.contains("spec.volumes[0].hostPath"),
        "{e}"
    );
    assert!(e.contains("socket"), "{e}");
    assert!(container(&web).is_none(), "a refused revision runs nothing");

    // `/`, and a link out of the allowed folder: refused for what they are.
    let root = push("root", files(bind("/")));
    let s = agent.wait_status("`/` refused", |s| sync_error(s).contains(&root[..8]));
    assert!(sync_error(&s).contains("host's root"), "{s}");
    let escape = allowed.join("escape").display().to_string();
    let link = push("escape", files(bind(&escape)));
    let s = agent.wait_status("the link refused", |s| sync_error(s).contains(&link[..8]));
    assert!(sync_error(&s).contains("which leads to /etc"), "{s}");
    assert!(container(&tool).is_none());

    // A folder the node allows is bound.
    let inside = allowed.join("data").display().to_string();
    let ok = push("allowed", files(bind(&inside)));
    agent.converged(&ok);
    let mounts = docker_ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Source}} {{end}}",
        &tool,
    ]);
    assert!(mounts.unwrap_or_default().contains(&inside));
    drop(agent);

    // The node allows the socket to this deployment alone (`/var/run` leads to `/run` on
    // Debian: the entry is followed as the bind is).
    write_policy("/var/run/docker.sock");
    let sock = push("docker socket again", files(bind("/var/run/docker.sock")));
    let agent = spawn_agent(&remote.file_url(), &node, &data, port, &args);
    agent.converged(&sock);
    let mounts = agent.wait("the socket bound").until(|| {
        docker_ok(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Source}} {{end}}",
            &tool,
        ])
        .filter(|m| m.contains("docker.sock"))
    });
    assert!(mounts.contains("docker.sock"), "{mounts}");
}

#[test]
fn the_status_api_off_loopback_needs_a_bearer_token() {
    let id = std::process::id();
    let node = format!("e2k-{id}");
    let remote = Remote::new();
    remote.commit(
        "node",
        &[(&format!("nodes/{node}.yaml"), &node_yaml(&node))],
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let agent = |policy: Option<&Path>| {
        let mut c = Command::new(bin("orun-agent"));
        c.args([
            "--repo",
            &remote.file_url(),
            "--node",
            &node,
            "--branch",
            "main",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--status-addr",
            &format!("0.0.0.0:{port}"),
            "--status-allow-remote",
        ])
        .args(["--ingress", "off", "--poll-interval", "300ms"])
        .env("ORUN_LOG_FORMAT", "text");
        if let Some(p) = policy {
            c.arg("--policy").arg(p);
        }
        c
    };

    // No token: the agent refuses to start, and says why.
    let out = agent(None).output().unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("bearer token"), "{said}");

    // With one: `/healthz` is open, the rest needs it.
    const TOKEN: &str = "e2k-token-5f0c9a1d7e3b";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!("status:\n  tokenFile: {}\n", token_file.display()),
    )
    .unwrap();
    let mut child = agent(Some(&policy))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = std::time::Duration::from_secs(2);
    let get = |path: &str, token: Option<&str>| {
        let token = token.map(|t| status_http::BearerToken::parse(t).unwrap());
        status_http::get_authorized(addr, path, token.as_ref(), timeout).ok()
    };
    let health = test_support::wait::wait("the status API", support::WAIT)
        .until(|| get("/healthz", None).filter(|a| a.code == 200));
    assert!(health.body.contains("ok"));
    // Once the agent has published its node, nothing of it reaches a request without the
    // token.
    let status = test_support::wait::wait("the node in /status", support::WAIT)
        .until(|| get("/status", Some(TOKEN)).filter(|a| a.code == 200 && a.body.contains(&node)));
    assert!(status.body.contains("\"git_head\""), "{}", status.body);
    for path in ["/status", "/metrics", "/events", "/readyz"] {
        for token in [
            None,
            Some("e2k-token-0000000000"),
            Some("e2k-token-5f0c9a1d7e3b0"),
        ] {
            let a = get(path, token).expect("an answer");
            assert_eq!(a.code, 401, "{path} with {token:?}");
            assert!(
                !a.body.contains(&node),
                "{path} told a stranger: {}",
                a.body
            );
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

//! `orun fleet` against several real agents behind a real `sshd` on loopback: each node's
//! status API is read through its own SSH tunnel; a node without an agent, a node behind the
//! operator's checkout and a fleet all converged on its head each give the right table, JSON
//! and exit code.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use test_support::git::{Remote, Sshd, whoami};
use test_support::wait::wait;
use test_support::{built, free_port};

fn node_yaml(name: &str, key: &Path, repo: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  host: 127.0.0.1\n  user: {user}\n  sshKeyPath: {key}\n  gitRepo: {repo}\n  gitBranch: main\n  pollInterval: 1s\n",
        user = whoami(),
        key = key.display(),
    )
}

/// One agent, killed on drop.
struct Agent {
    child: Child,
    addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent(remote: &Remote, node: &str) -> Agent {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(built("orun-agent"))
        .args(["--repo", &remote.file_url(), "--node", node])
        .args(["--poll-interval", "300ms", "--ingress", "off"])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--status-addr", &format!("127.0.0.1:{port}")])
        .env("ORUN_LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Agent {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _data: data,
    }
}

/// Waits until the agent is ready on `commit`.
fn converged(a: &Agent, commit: &str) {
    wait("an agent converged", Duration::from_secs(90))
        .every(Duration::from_millis(100))
        .until(|| {
            let status = status_http::get(a.addr, "/status", Duration::from_secs(2)).ok()?;
            let ready = status_http::get(a.addr, "/readyz", Duration::from_secs(2)).ok()?;
            let s: Value = serde_json::from_str(&status.body).ok()?;
            (ready.code == 200 && s["node"]["git_head"] == commit).then_some(())
        });
}

fn fleet(root: &Path, sshd: &Sshd, addrs: &[(&str, SocketAddr)], json: bool) -> Output {
    let mut cmd = Command::new(built("orun"));
    cmd.arg("fleet")
        .arg("--repo-root")
        .arg(root)
        .args(["--ssh-port", &sshd.daemon.port.to_string(), "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            sshd.path("known_hosts").display()
        ))
        .args(["--timeout", "20s"]);
    for (node, addr) in addrs {
        cmd.args(["--node-status-addr", &format!("{node}={addr}")]);
    }
    if json {
        cmd.arg("--json");
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn rows(out: &Output) -> Vec<Value> {
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
        .as_array()
        .unwrap()
        .clone()
}

fn row<'a>(rows: &'a [Value], node: &str) -> &'a Value {
    rows.iter().find(|r| r["node"] == node).unwrap()
}

#[test]
fn the_fleet_is_read_through_tunnels_and_judged_against_the_branch_head() {
    let Some(sshd_bin) = test_support::git::sshd() else {
        return;
    };
    if !test_support::docker::available() {
        return;
    }
    let sshd = Sshd::start(&sshd_bin);
    let remote = Remote::new();
    let key: PathBuf = sshd.path("client");
    let url = remote.file_url();
    let first = remote.commit(
        "three nodes",
        &[
            ("nodes/n1.yaml", &node_yaml("n1", &key, &url)),
            ("nodes/n2.yaml", &node_yaml("n2", &key, &url)),
            ("nodes/n3.yaml", &node_yaml("n3", &key, &url)),
        ],
    );
    let (a1, a2) = (agent(&remote, "n1"), agent(&remote, "n2"));
    converged(&a1, &first);
    converged(&a2, &first);
    // n3 has no agent: its port answers nothing.
    let n3 = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let addrs = [("n1", a1.addr), ("n2", a2.addr), ("n3", n3)];

    let out = fleet(&remote.work(), &sshd, &addrs, true);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let r = rows(&out);
    assert_eq!(r.len(), 3);
    for n in ["n1", "n2"] {
        let x = row(&r, n);
        assert_eq!(x["converged"], true, "{x}");
        assert_eq!(x["applied"], first.as_str(), "{x}");
        assert_eq!(x["head"], first.as_str(), "{x}");
        assert_eq!(x["branch"], "main");
        assert_eq!(x["agent_version"], env!("CARGO_PKG_VERSION"));
        assert!(x["error"].is_null(), "{x}");
        assert!(x["last_sync_age_secs"].as_u64().unwrap() < 60, "{x}");
    }
    let x = row(&r, "n3");
    assert_eq!(x["converged"], false);
    assert!(
        x["error"]
            .as_str()
            .is_some_and(|e| e.contains("no status API")),
        "{x}"
    );

    // The table says the same, one line per node, and why n3 is unknown.
    let out = fleet(&remote.work(), &sshd, &addrs, false);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let short = &first[..8];
    assert!(text.starts_with("NODE"), "{text}");
    for n in ["n1", "n2"] {
        let line = text.lines().find(|l| l.starts_with(n)).unwrap();
        assert!(line.contains(short) && line.contains("yes"), "{text}");
        assert!(!line.contains("behind"), "{text}");
    }
    assert!(text.contains("n3: no status API"), "{text}");

    // Without n3, every node runs the head, converged: exit 0.
    std::fs::remove_file(remote.work().join("nodes/n3.yaml")).unwrap();
    let second = remote.commit("n3 retired", &[]);
    converged(&a1, &second);
    converged(&a2, &second);
    let out = fleet(&remote.work(), &sshd, &addrs[..2], true);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(rows(&out).len(), 2);

    // A commit the operator has not pushed yet: both nodes are behind the checkout's head.
    let third = remote.commit_local("not pushed", &[("README", "x")]);
    let out = fleet(&remote.work(), &sshd, &addrs[..2], true);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for x in rows(&out) {
        assert_eq!(x["applied"], second.as_str(), "{x}");
        assert_eq!(x["head"], third.as_str(), "{x}");
    }
    let out = fleet(&remote.work(), &sshd, &addrs[..2], false);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("(behind)").count(), 2, "{text}");
}

//! Self-update end to end: the real `orun-agent` with `--self-update`, a release feed signed
//! by the real `minisign` CLI, a real Docker daemon and a `file://` remote. A signed release
//! is tried, installed, executed in place and confirmed, with the running container left
//! alone; a release that crashes is refused after its trial with the old binary serving; a
//! missing feed, a bad signature and a downgrade change nothing; notify mode only reports.
//!
//! The releases are shell scripts that run the real agent under another version
//! (`ORUN_UPDATE_CURRENT_VERSION`), so one build can be published as several versions.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{Agent, bin, container, node_yaml};
use test_support::docker::Guard;
use test_support::git::Remote;
use test_support::{free_port, minisign};

/// The target triple the agent was built for, as the feed names it.
fn target() -> String {
    let out = Command::new("rustc").arg("-vV").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .unwrap()
}

fn minisign_ok() -> bool {
    minisign::available()
}

/// A minisign key pair in `dir`: (public, secret).
fn keypair(dir: &Path) -> (PathBuf, PathBuf) {
    let k = minisign::keypair(dir);
    (k.public, k.secret)
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// A release that runs the real agent as `version`.
fn wrapper(version: &str) -> String {
    format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo \"orun-agent {version}\"; exit 0; fi\n\
         ORUN_UPDATE_CURRENT_VERSION={version} exec '{real}' \"$@\"\n",
        real = bin("orun-agent").display()
    )
}

/// A release that passes its self-test (`--version`, `--check-config`) and crashes when run.
fn crasher(version: &str) -> String {
    format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo \"orun-agent {version}\"; exit 0; fi\n\
         for a in \"$@\"; do [ \"$a\" = --check-config ] && exit 0; done\n\
         echo 'crashed on start' >&2\nexit 3\n"
    )
}

/// A feed directory: publishes a release (binary, signature, `release.json`, written last
/// and renamed into place, as a real publisher would).
struct Feed {
    dir: PathBuf,
    secret: PathBuf,
    target: String,
}

impl Feed {
    fn path(&self) -> PathBuf {
        self.dir.join("release.json")
    }

    fn publish(&self, version: &str, script: &str, secret: &Path) {
        let file = format!("orun-agent-{version}-{}", self.target);
        let binary = self.dir.join(&file);
        fs::write(&binary, script).unwrap();
        let sig = self.dir.join(format!("{file}.minisig"));
        let comment = format!("orun-agent {version} {}", self.target);
        minisign::sign(secret, &binary, &comment, &sig);
        let json = serde_json::json!({
            "version": version,
            "artifacts": [{
                "name": "orun-agent",
                "target": self.target,
                "url": file,
                "size": script.len(),
                "sha256": sha256_hex(&binary),
                "signature": format!("{file}.minisig"),
            }]
        });
        let tmp = self.dir.join(".release.json.tmp");
        fs::write(&tmp, serde_json::to_vec(&json).unwrap()).unwrap();
        fs::rename(&tmp, self.path()).unwrap();
    }
}

/// A node with one running container, an installed agent binary, a trusted key and a feed.
struct Node {
    _dir: tempfile::TempDir,
    root: PathBuf,
    name: String,
    remote: Remote,
    feed: Feed,
    public: PathBuf,
}

impl Node {
    fn new(tag: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let name = format!("su-{tag}-{}", std::process::id());
        let (public, secret) = keypair(&root.join("keys"));
        fs::create_dir_all(root.join("feed")).unwrap();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::copy(bin("orun-agent"), root.join("bin/orun-agent")).unwrap();
        let remote = Remote::new();
        let worker = format!(
            "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}-w\nspec:\n  image: orun-test/busybox:1\n  nodes: [{name}]\n  command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n  rollout:\n    minHealthySeconds: 1\n"
        );
        remote.commit(
            "node",
            &[
                (&format!("nodes/{name}.yaml"), &node_yaml(&name)),
                (&format!("deployments/{name}-w.yaml"), &worker),
            ],
        );
        Self {
            feed: Feed {
                dir: root.join("feed"),
                secret,
                target: target(),
            },
            _dir: dir,
            root,
            name,
            remote,
            public,
        }
    }

    fn installed(&self) -> PathBuf {
        self.root.join("bin/orun-agent")
    }

    /// Starts the installed binary with self-update in `mode`.
    fn start(&self, mode: &str) -> Agent {
        let port = free_port();
        let log = self.root.join("agent.log");
        Agent {
            child: self.spawn(mode, port, &log),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        }
    }

    /// The installed binary, started as systemd would start it, its log appended to `log`.
    fn spawn(&self, mode: &str, port: u16, log: &Path) -> std::process::Child {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Command::new(self.installed())
            .args(["--repo", &self.remote.file_url(), "--node", &self.name])
            .args(["--poll-interval", "300ms", "--ingress", "off"])
            .arg("--data-dir")
            .arg(self.root.join("data"))
            .args(["--status-addr", &format!("127.0.0.1:{port}")])
            .args(["--self-update", mode, "--update-interval", "1s"])
            .args(["--update-deadline", "60s"])
            .arg("--update-feed")
            .arg(self.feed.path())
            .arg("--update-key")
            .arg(&self.public)
            .arg("--update-binary")
            .arg(self.installed())
            .env("ORUN_LOG", "debug")
            .env("ORUN_LOG_FORMAT", "text")
            .env_remove(agent_daemon_version_var())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap()
    }
}

/// The test hook's name (agent-daemon's `CURRENT_VERSION_VAR`); no agent inherits it from
/// the test's own environment.
fn agent_daemon_version_var() -> &'static str {
    "ORUN_UPDATE_CURRENT_VERSION"
}

fn update_part(status: &Value) -> &Value {
    &status["self_update"]
}

fn self_update_events(agent: &Agent) -> Vec<Value> {
    agent
        .get("/events?limit=1000")
        .and_then(|a| serde_json::from_str::<Value>(&a.body).ok())
        .and_then(|v| v["events"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["step"] == "self-update")
        .collect()
}

fn ready(agent: &Agent) -> bool {
    agent.get("/readyz").is_some_and(|a| a.code == 200)
}

#[test]
fn a_signed_release_is_tried_installed_and_confirmed_and_a_bad_one_refused() {
    if !minisign_ok() {
        return;
    }
    let node = Node::new("install");
    let _guard = Guard(format!("orun.node={}", node.name));
    let original = sha256_hex(&node.installed());
    let agent = node.start("install");

    // The feed is not there yet: the agent converges, says why, and nothing changes.
    let s = agent.wait_status("a missing feed reported", |s| {
        update_part(s)["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("release feed"))
    });
    assert_eq!(update_part(&s)["current"], env!("CARGO_PKG_VERSION"));
    agent
        .wait("ready with the feed missing")
        .until(|| ready(&agent).then_some(()));
    let worker = format!("{}-w", node.name);
    let before = container(&worker).expect("the worker runs");
    assert_eq!(sha256_hex(&node.installed()), original);

    // Signed by a key the node does not trust: refused, not marked bad, nothing changes.
    let (_, stranger) = keypair(&node.root.join("stranger"));
    node.feed.publish("0.1.5", &wrapper("0.1.5"), &stranger);
    let s = agent.wait_status("an untrusted signature refused", |s| {
        update_part(s)["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("0.1.5"))
    });
    let error = update_part(&s)["last_error"].as_str().unwrap().to_owned();
    assert!(error.contains("key"), "{error}");
    assert_eq!(sha256_hex(&node.installed()), original);
    assert_eq!(update_part(&s)["current"], env!("CARGO_PKG_VERSION"));

    // A good release: tried in place of the engine, swapped in, executed (same process),
    // ready, confirmed. The container was never restarted.
    let good = wrapper("0.2.0");
    node.feed.publish("0.2.0", &good, &node.feed.secret);
    let s = agent.wait_status("0.2.0 installed and confirmed", |s| {
        update_part(s)["current"] == "0.2.0" && update_part(s)["phase"] == "idle"
    });
    assert!(update_part(&s)["last_error"].is_null(), "{s}");
    assert_eq!(fs::read_to_string(node.installed()).unwrap(), good);
    assert!(!node.root.join("bin/orun-agent.prev").exists());
    assert_eq!(
        container(&worker),
        Some(before.clone()),
        "the worker was restarted"
    );
    let pid = agent.child.id();
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(
        exe,
        bin("orun-agent").canonicalize().unwrap(),
        "the agent's own process runs the release"
    );
    agent.wait("the confirmation in the history").until(|| {
        self_update_events(&agent)
            .iter()
            .any(|e| e["reason"] == "0.2.0 is ready: update confirmed" && e["outcome"] == "ok")
            .then_some(())
    });

    // A release that crashes when run: refused after its trial, for good; the old binary
    // serves again, the worker untouched.
    node.feed
        .publish("0.3.0", &crasher("0.3.0"), &node.feed.secret);
    let s = agent.wait_status("0.3.0 refused after its trial", |s| {
        update_part(s)["refused"]["0.3.0"].is_string() && update_part(s)["phase"] == "idle"
    });
    let why = update_part(&s)["refused"]["0.3.0"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(why.contains("exited"), "{why}");
    assert_eq!(update_part(&s)["current"], "0.2.0");
    assert_eq!(fs::read_to_string(node.installed()).unwrap(), good);
    agent
        .wait("ready after the trial")
        .until(|| ready(&agent).then_some(()));
    assert_eq!(container(&worker), Some(before), "the worker was restarted");
    agent.wait("the refusal in the history").until(|| {
        self_update_events(&agent)
            .iter()
            .any(|e| {
                e["outcome"] == "failed"
                    && e["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("0.3.0 failed its trial"))
            })
            .then_some(())
    });

    // A signed downgrade: refused, nothing changes.
    node.feed
        .publish("0.1.9", &wrapper("0.1.9"), &node.feed.secret);
    let s = agent.wait_status("a downgrade refused", |s| {
        update_part(s)["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("0.1.9") && e.contains("older"))
    });
    assert_eq!(update_part(&s)["current"], "0.2.0");
    assert_eq!(fs::read_to_string(node.installed()).unwrap(), good);
}

#[test]
fn notify_mode_reports_a_release_and_installs_nothing() {
    if !minisign_ok() {
        return;
    }
    let node = Node::new("notify");
    let _guard = Guard(format!("orun.node={}", node.name));
    let original = sha256_hex(&node.installed());
    node.feed
        .publish("0.2.0", &wrapper("0.2.0"), &node.feed.secret);
    let agent = node.start("notify");
    let s = agent.wait_status("0.2.0 reported available", |s| {
        update_part(s)["available"] == "0.2.0"
    });
    assert_eq!(update_part(&s)["mode"], "notify");
    assert!(update_part(&s)["last_error"].is_null(), "{s}");
    let metrics = agent.get("/metrics").unwrap().body;
    assert!(
        metrics.contains("orun_self_update_available 1"),
        "{metrics}"
    );
    agent.wait("the announcement in the history").until(|| {
        self_update_events(&agent)
            .iter()
            .any(|e| {
                e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("0.2.0 is available"))
            })
            .then_some(())
    });
    assert_eq!(sha256_hex(&node.installed()), original);
    assert!(
        fs::read_dir(node.root.join("bin")).unwrap().count() == 1,
        "nothing was staged"
    );
}

/// A release that is ready on trial but cannot start once installed (its Docker socket is
/// wrong outside the trial): the starts are counted, and after three the old binary is put
/// back. The test restarts the agent when it exits, as systemd's `Restart=on-failure` would.
#[test]
fn a_release_that_fails_after_the_swap_is_reverted_by_its_restarts() {
    if !minisign_ok() {
        return;
    }
    let node = Node::new("revert");
    let _guard = Guard(format!("orun.node={}", node.name));
    let original = sha256_hex(&node.installed());
    let mut agent = node.start("install");
    agent.wait("ready").until(|| ready(&agent).then_some(()));
    let real = bin("orun-agent");
    let release = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo \"orun-agent 0.2.0\"; exit 0; fi\n\
         export ORUN_UPDATE_CURRENT_VERSION=0.2.0\n\
         [ -n \"$ORUN_UPDATE_TRIAL\" ] && exec '{real}' \"$@\"\n\
         exec '{real}' \"$@\" --docker-host unix:///nonexistent/docker.sock\n",
        real = real.display()
    );
    node.feed.publish("0.2.0", &release, &node.feed.secret);

    // The supervisor: start the installed binary again whenever the agent exits.
    let port = agent.addr.port();
    let mut restarts = 0;
    let log = agent.log.clone();
    let s = test_support::wait::wait("0.2.0 reverted", std::time::Duration::from_secs(120))
        .every(std::time::Duration::from_millis(100))
        .explain(|| support::tail(&fs::read_to_string(&log).unwrap_or_default()))
        .until(|| {
            if let Ok(Some(_)) = agent.child.try_wait() {
                restarts += 1;
                assert!(restarts <= 8, "restarted {restarts} times without a revert");
                agent.child = node.spawn("install", port, &agent.log);
            }
            let s = agent.status()?;
            (update_part(&s)["refused"]["0.2.0"].is_string()
                && update_part(&s)["current"] == env!("CARGO_PKG_VERSION"))
            .then_some(s)
        });
    let why = update_part(&s)["refused"]["0.2.0"].as_str().unwrap();
    assert!(why.contains("started 4 times"), "{why}");
    assert!(restarts >= 3, "reverted after {restarts} restarts");
    assert_eq!(
        sha256_hex(&node.installed()),
        original,
        "the old binary is back"
    );
    assert!(!node.root.join("bin/orun-agent.prev").exists());
    agent
        .wait("ready on the old binary")
        .until(|| ready(&agent).then_some(()));
}

//! `orun bootstrap` end to end against a real `sshd` on loopback, the built `orun` binary and
//! real Docker: install under a prefix without systemd, converge, re-run without touching
//! anything, upgrade the binary in place; a dry run that creates nothing; ssh remotes refused
//! without a deploy key or a pinned host key.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use test_support::free_port;
use test_support::git::{Remote, Sshd, whoami};
use test_support::wait::wait;

/// The built `orun` (`cargo build -p orun` first).
fn orun() -> PathBuf {
    test_support::built("orun")
}

/// A node named `name` on this machine through `sshd`, following `git_repo`.
fn node_yaml(name: &str, sshd_key: &Path, git_repo: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  host: 127.0.0.1\n  user: {user}\n  sshKeyPath: {key}\n  gitRepo: {git_repo}\n  gitBranch: main\n  pollInterval: 1s\n",
        user = whoami(),
        key = sshd_key.display(),
    )
}

/// `orun bootstrap <args>` with no terminal on stdin.
fn bootstrap(args: &[&str]) -> Output {
    Command::new(orun())
        .arg("bootstrap")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).unwrap().next().is_none()
}

/// Kills the agent bootstrap started, by its pid file, when the test ends however it ends.
struct AgentGuard {
    pidfile: PathBuf,
}

impl AgentGuard {
    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let Some(pid) = self.pid() else { return };
        let proc = PathBuf::from(format!("/proc/{pid}"));
        // Only our agent: its command line names the prefixed config.
        let ours = std::fs::read(proc.join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("/etc/orun/agent.toml"))
            .unwrap_or(false);
        if !ours {
            return;
        }
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let gone = || {
            // A zombie (its parent, the ssh session's shell, is gone) counts as gone.
            std::fs::read_to_string(proc.join("stat"))
                .map(|s| s.split_whitespace().nth(2) == Some("Z"))
                .unwrap_or(true)
        };
        if !std::thread::panicking() {
            wait("the agent to stop", Duration::from_secs(30)).until(|| gone().then_some(()));
        } else if !gone() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// A fixture whose node bootstrap has installed and started once (with the guard that stops
/// its agent); `None` when sshd or Docker is missing and may be.
fn installed() -> Option<(Fixture, AgentGuard)> {
    let sshd_bin = test_support::git::sshd()?;
    if !test_support::docker::available() {
        return None;
    }
    let f = Fixture::new(&sshd_bin);
    let agent = f.agent();
    let first = f.bootstrap(&[]);
    assert!(first.status.success(), "{}", text(&first));
    Some((f, agent))
}

/// A node on this machine through a real sshd, its manifest committed to a real remote, and
/// a prefix to install under.
struct Fixture {
    sshd: Sshd,
    remote: Remote,
    node_file: String,
    prefix: tempfile::TempDir,
    status: SocketAddr,
}

impl Fixture {
    fn new(sshd_bin: &Path) -> Self {
        let sshd = Sshd::start(sshd_bin);
        let remote = Remote::new();
        // A name of its own: the agent owns whatever Docker holds under its node's name.
        let name = format!("bootstrap-{}-{}", std::process::id(), free_port());
        let node_file = format!("nodes/{name}.yaml");
        let yaml = node_yaml(&name, &sshd.path("client"), &remote.file_url());
        remote.commit("node", &[(&node_file, &yaml)]);
        Self {
            sshd,
            remote,
            node_file,
            prefix: tempfile::tempdir().unwrap(),
            status: ([127, 0, 0, 1], free_port()).into(),
        }
    }

    fn p(&self) -> &Path {
        self.prefix.path()
    }

    /// `orun bootstrap` for this node, without systemd, under the prefix, plus `extra`.
    fn bootstrap(&self, extra: &[&str]) -> Output {
        let work = self.remote.work();
        let known = format!(
            "UserKnownHostsFile={}",
            self.sshd.path("known_hosts").display()
        );
        let port = self.sshd.daemon.port.to_string();
        let status = self.status.to_string();
        let mut argv = vec![
            self.node_file.as_str(),
            "--repo-root",
            work.to_str().unwrap(),
            "--prefix",
            self.p().to_str().unwrap(),
            "--no-systemd",
            "--ssh-port",
            &port,
            "-o",
            &known,
            "--status-addr",
            &status,
            "--timeout",
            "90s",
        ];
        argv.extend(extra);
        bootstrap(&argv)
    }

    /// A guard that stops the agent bootstrap starts, at the end of the test.
    fn agent(&self) -> AgentGuard {
        AgentGuard {
            pidfile: self.p().join("run/orun-agent.pid"),
        }
    }
}

#[test]
fn installs_converges_then_changes_nothing_and_upgrades_in_place() {
    let Some(sshd_bin) = test_support::git::sshd() else {
        return;
    };
    if !test_support::docker::available() {
        return;
    }
    let f = Fixture::new(&sshd_bin);
    let p = f.p();
    let agent = f.agent();

    // 1. A fresh install: every file installed, the agent converges.
    let first = f.bootstrap(&[]);
    let out = text(&first);
    assert!(first.status.success(), "{out}");
    for (what, path, want) in [
        ("binary", "var/lib/orun/bin/orun", 0o755),
        ("config", "etc/orun/agent.toml", 0o640),
    ] {
        let line = format!("{what} {}: installed", p.join(path).display());
        assert!(out.contains(&line), "{line:?} in\n{out}");
        assert_eq!(mode(&p.join(path)), want, "{path}");
    }
    assert_eq!(mode(&p.join("opt/orun")), 0o750);
    assert!(out.contains("agent: started"), "{out}");
    assert!(out.contains("agent ready"), "{out}");
    let config = std::fs::read_to_string(p.join("etc/orun/agent.toml")).unwrap();
    assert!(
        config.contains(&format!("data_dir = \"{}/opt/orun\"", p.display())),
        "{config}"
    );
    let ready = wait("/readyz to answer 200", Duration::from_secs(60)).until(|| {
        status_http::get(f.status, "/readyz", Duration::from_secs(2))
            .ok()
            .filter(|a| a.code == 200)
    });
    assert_eq!(ready.code, 200);
    let pid = agent.pid().expect("a pid file");

    // 2. Again: nothing changes, the agent is left running.
    let second = f.bootstrap(&[]);
    let out = text(&second);
    assert!(second.status.success(), "{out}");
    let stdout = String::from_utf8_lossy(&second.stdout);
    for what in ["binary", "config"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(what) && l.ends_with(": unchanged")),
            "{what} unchanged in\n{out}"
        );
    }
    assert!(
        !stdout.contains(": installed") && !stdout.contains(": updated"),
        "{out}"
    );
    assert!(stdout.contains("left alone"), "{out}");
    assert_eq!(agent.pid(), Some(pid), "the agent was restarted:\n{out}");

    // 3. A new binary is an upgrade in place: updated, restarted, ready again.
    let newer = tempfile::tempdir().unwrap();
    let copy = newer.path().join("orun");
    std::fs::copy(orun(), &copy).unwrap();
    // Bytes after an ELF's last section change its hash, not what it runs.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&copy)
        .unwrap();
    std::io::Write::write_all(&mut file, b"bootstrap-test").unwrap();
    drop(file);
    let third = f.bootstrap(&["--binary", copy.to_str().unwrap()]);
    let out = text(&third);
    assert!(third.status.success(), "{out}");
    let line = format!(
        "binary {}: updated",
        p.join("var/lib/orun/bin/orun").display()
    );
    assert!(out.contains(&line), "{line:?} in\n{out}");
    let line = format!(
        "config {}: unchanged",
        p.join("etc/orun/agent.toml").display()
    );
    assert!(out.contains(&line), "{line:?} in\n{out}");
    assert!(out.contains("agent: restarted"), "{out}");
    assert_ne!(agent.pid().unwrap(), pid, "{out}");
    assert!(out.contains("agent ready"), "{out}");
}

#[test]
fn check_runs_the_installed_doctor_on_the_node() {
    let Some((f, agent)) = installed() else {
        return;
    };
    let pid = agent.pid();
    let doctor = f.bootstrap(&["--check"]);
    let out = text(&doctor);
    assert!(
        out.contains("docker") && out.contains("git remote"),
        "{out}"
    );
    assert!(doctor.status.success(), "{out}");
    assert_eq!(agent.pid(), pid, "--check restarted the agent:\n{out}");
}

#[test]
fn a_dry_run_prints_the_systemd_steps_and_creates_nothing() {
    let remote = Remote::new();
    let yaml = node_yaml("dry", Path::new("/nonexistent/key"), &remote.file_url());
    remote.commit("node", &[("nodes/dry.yaml", &yaml)]);
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    let o = bootstrap(&[
        "nodes/dry.yaml",
        "--repo-root",
        remote.work().to_str().unwrap(),
        "--prefix",
        p.to_str().unwrap(),
        // Nothing listens there: a dry run must not try.
        "--ssh-port",
        "1",
        "--dry-run",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let unit = p.join("etc/systemd/system/orun.service");
    assert!(out.contains(&format!("file: {}", unit.display())), "{out}");
    assert!(out.contains("systemctl daemon-reload"), "{out}");
    assert!(out.contains("systemctl restart orun.service"), "{out}");
    assert!(out.contains("useradd --system"), "{out}");
    assert!(out.contains("(mode 0640, owner root:orun)"), "{out}");
    assert!(is_empty_dir(p), "the dry run wrote into {}", p.display());
}

#[test]
fn ssh_remotes_need_a_deploy_key_and_a_pinned_host_key() {
    let Some(sshd_bin) = test_support::git::sshd() else {
        return;
    };
    let sshd = Sshd::start(&sshd_bin);
    let remote = Remote::new();
    let git_repo = sshd.url(&remote);
    let yaml = node_yaml("sshnode", &sshd.path("client"), &git_repo);
    remote.commit("node", &[("nodes/sshnode.yaml", &yaml)]);
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    let known = format!("UserKnownHostsFile={}", sshd.path("known_hosts").display());
    let port = sshd.daemon.port.to_string();
    let work = remote.work();
    let base = [
        "nodes/sshnode.yaml",
        "--repo-root",
        work.to_str().unwrap(),
        "--prefix",
        p.to_str().unwrap(),
        "--no-systemd",
        "--ssh-port",
        &port,
        "-o",
        &known,
        "--timeout",
        "30s",
    ];

    let o = bootstrap(&base);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("--deploy-key FILE"), "{out}");
    assert!(is_empty_dir(p), "{out}");

    let key = sshd.path("client");
    let mut argv = base.to_vec();
    argv.extend(["--deploy-key", key.to_str().unwrap()]);
    let o = bootstrap(&argv);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    let host_pub = std::fs::read_to_string(sshd.path("host.pub")).unwrap();
    let print =
        node_setup::bootstrap::fingerprint(host_pub.split_whitespace().nth(1).unwrap()).unwrap();
    assert!(
        out.contains(&format!("--accept-git-host-key {print}")),
        "{print} in\n{out}"
    );
    assert!(is_empty_dir(p), "{out}");

    // A known_hosts file without the Git host is refused before connecting.
    let stranger = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(stranger.path(), "other.example ssh-ed25519 AAAA\n").unwrap();
    let mut with_file = argv.clone();
    with_file.extend(["--git-known-hosts", stranger.path().to_str().unwrap()]);
    let o = bootstrap(&with_file);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("has no key for [127.0.0.1]:"), "{out}");
    assert!(is_empty_dir(p), "{out}");

    // A fingerprint the host does not present is refused too.
    let mut wrong = argv.clone();
    wrong.extend([
        "--accept-git-host-key",
        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ]);
    let o = bootstrap(&wrong);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("does not present the key"), "{out}");
    assert!(is_empty_dir(p), "{out}");
    // Key material is never printed.
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret_line = secret.lines().nth(1).unwrap();
    assert!(!out.contains(secret_line), "{out}");

    // The fingerprint the host presents: pinned, and the agent reads the remote through it.
    if !test_support::docker::available() {
        return;
    }
    let agent = AgentGuard {
        pidfile: p.join("run/orun-agent.pid"),
    };
    let status = format!("127.0.0.1:{}", free_port());
    argv.extend(["--accept-git-host-key", &print, "--status-addr", &status]);
    let o = bootstrap(&argv);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains(secret_line), "{out}");
    let pinned = std::fs::read_to_string(p.join("etc/orun/known_hosts")).unwrap();
    assert!(
        pinned.starts_with(&format!("[127.0.0.1]:{port} ssh-ed25519 ")),
        "{pinned}"
    );
    assert_eq!(mode(&p.join("etc/orun/known_hosts")), 0o644);
    assert_eq!(mode(&p.join("etc/orun/deploy_key")), 0o600);
    assert!(out.contains("agent ready"), "{out}");
    drop(agent);
}

/// A data dir that already holds something else (a mistyped `dataDir`) is not taken over:
/// bootstrap stops before changing its mode or owner, and nothing in it changes.
#[test]
fn a_foreign_data_dir_is_refused() {
    let Some(sshd_bin) = test_support::git::sshd() else {
        return;
    };
    let f = Fixture::new(&sshd_bin);
    let _agent = f.agent();
    let data = f.p().join("opt/orun");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("someone-elses.db"), "precious").unwrap();
    let out = f.bootstrap(&[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("refusing to take over"),
        "{}",
        text(&out)
    );
    assert_eq!(mode(&data), 0o755);
    assert_eq!(
        std::fs::read_to_string(data.join("someone-elses.db")).unwrap(),
        "precious"
    );
    assert!(!f.p().join("run/orun-agent.pid").exists());
}

/// A node that updated itself runs a newer binary than the operator's: bootstrap leaves it,
/// so the two never take turns replacing each other.
#[test]
fn a_newer_binary_on_the_node_is_left_alone() {
    let Some((f, agent)) = installed() else {
        return;
    };
    // What a self-update leaves: a newer version at the installed path.
    let installed = f.p().join("var/lib/orun/bin/orun");
    let newer = format!(
        "#!/bin/sh\ncase \"$1\" in --version) echo 'orun 99.0.0' ;; *) exec '{}' \"$@\" ;; esac\n",
        orun().display()
    );
    let tmp = installed.with_extension("tmp");
    std::fs::write(&tmp, &newer).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &installed).unwrap();
    let pid = agent.pid();
    let again = f.bootstrap(&[]);
    let out = text(&again);
    assert!(again.status.success(), "{out}");
    assert!(out.contains("left alone (the node runs 99.0.0"), "{out}");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), newer);
    assert_eq!(agent.pid(), pid, "the agent was restarted:\n{out}");
}

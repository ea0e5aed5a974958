//! `orun doctor` against real components: a real Docker daemon, real Git remotes (`file://`
//! and `sshd` with pinned host keys), age keys and files encrypted by the real `sops`, real
//! listeners on the status port. One healthy node, then each way a node can be broken, each
//! with the fix the doctor gives for it.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use gitsync::{KnownHosts, RemoteOptions, RemoteUrl};
use node_setup::doctor::{self, DoctorInput, Outcome, Report};
use test_support::git::{Remote, Sshd};
use test_support::{free_port, sops};

const NODE: &str = "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n1\nspec:\n  host: 10.0.0.1\n  gitRepo: https://example.com/r.git\n";

/// A Deployment whose `env` sops encrypts in place; the value is a canary no output may hold.
const WEB: &str = "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: nginx:1.27\n  env:\n    INLINE_KEY: canary-inline-0c3d\n";

fn remote_options(url: &str, branch: &str) -> RemoteOptions {
    RemoteOptions::new(RemoteUrl::parse(url, Path::new("/")).unwrap(), branch)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// What the doctor is told for a node whose remote is `url`: the default Docker, no age key
/// given (so `<data>/keys/age.key`), `data` as the data dir, a free status port, no unit.
fn input(url: &str, data: &Path) -> DoctorInput {
    DoctorInput {
        docker_host: None,
        remote: remote_options(url, "main"),
        age_key: None,
        data_dir: data.to_owned(),
        status_addr: loopback(free_port()),
        unit: None,
        min_free_bytes: 1 << 20,
        service_user: None,
    }
}

/// A remote whose `main` holds a Node and a Deployment sops encrypted to a fresh age key.
struct Sealed {
    remote: Remote,
    keys: tempfile::TempDir,
    key: PathBuf,
    recipient: String,
}

fn sealed_repo() -> Option<Sealed> {
    if !sops::available() {
        return None;
    }
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient) = sops::keygen(keys.path(), "node");
    let web = sops::encrypt("web.yaml", WEB, &recipient, &["--encrypted-regex", "^env$"]);
    let remote = Remote::new();
    remote.commit(
        "one",
        &[("nodes/n1.yaml", NODE), ("deployments/web.yaml", &web)],
    );
    Some(Sealed {
        remote,
        keys,
        key,
        recipient,
    })
}

fn outcome<'a>(report: &'a Report, name: &str) -> &'a Outcome {
    report
        .outcome(name)
        .unwrap_or_else(|| panic!("no check {name}:\n{}", report.render()))
}

/// The problem and fix of a failed check, or a panic showing the report.
fn failure<'a>(report: &'a Report, name: &str) -> (&'a str, &'a str) {
    match outcome(report, name) {
        Outcome::Fail { problem, fix } => (problem, fix),
        other => panic!("{name} should fail, got {other:?}:\n{}", report.render()),
    }
}

/// A healthy node passes, with every check Ok: Docker answers (its API version shown), the
/// remote's branch is found at the commit pushed, the age key opens the encrypted
/// Deployment, the data dir is usable, the status port is free. The unit, not given, is
/// skipped. Nothing printed holds the secret key or the encrypted value.
#[tokio::test]
async fn a_healthy_node_passes_every_check() {
    if !test_support::docker::available() {
        return;
    }
    let Some(repo) = sealed_repo() else { return };
    let head = test_support::git::git(&repo.remote.work(), &["rev-parse", "HEAD"]);
    let data = tempfile::tempdir().unwrap();
    let mut given = input(&repo.remote.file_url(), data.path());
    given.age_key = Some(repo.key.clone());

    let report = doctor::run(&given).await;
    let shown = report.render();
    assert!(report.passed(), "{shown}");
    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "docker",
            "git remote",
            "age key",
            "data dir",
            "status port",
            "unit"
        ]
    );
    for check in &report.checks[..5] {
        assert!(matches!(check.outcome, Outcome::Ok(_)), "{shown}");
    }
    assert_eq!(
        outcome(&report, "unit"),
        &Outcome::Skipped("no systemd unit given".to_owned())
    );
    let Outcome::Ok(docker) = outcome(&report, "docker") else {
        unreachable!()
    };
    assert!(docker.contains("(API 1."), "{docker}");
    let Outcome::Ok(git) = outcome(&report, "git remote") else {
        unreachable!()
    };
    assert!(
        git.contains(&format!("branch `main` is at {}", &head[..12])),
        "{git}"
    );
    let Outcome::Ok(age) = outcome(&report, "age key") else {
        unreachable!()
    };
    assert!(age.contains(&repo.recipient), "{age}");
    assert!(age.contains("opens deployments/web.yaml"), "{age}");
    assert!(shown.starts_with("ok   docker: "), "{shown}");
    let secret = std::fs::read_to_string(&repo.key).unwrap();
    let secret = secret
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    assert!(
        !shown.contains(secret) && !shown.contains("canary"),
        "{shown}"
    );
    assert!(!format!("{report:?}").contains(secret));
}

/// A Docker host that names a socket that does not exist fails the Docker check, saying so,
/// with the fix to start Docker or point the agent at it.
#[tokio::test]
async fn a_missing_docker_socket_fails_with_start_docker() {
    let remote = Remote::new();
    remote.commit("one", &[("nodes/n1.yaml", NODE)]);
    let data = tempfile::tempdir().unwrap();
    let mut given = input(&remote.file_url(), data.path());
    given.docker_host = Some("unix:///nonexistent/orun-doctor/docker.sock".to_owned());
    let report = doctor::run(&given).await;
    let (problem, fix) = failure(&report, "docker");
    assert_eq!(
        problem,
        "no Docker socket at unix:///nonexistent/orun-doctor/docker.sock"
    );
    assert!(
        fix.starts_with("start Docker (`systemctl start docker`)"),
        "{fix}"
    );
    assert!(!report.passed());
    // The other checks still ran: one broken part does not hide the rest.
    assert!(matches!(outcome(&report, "git remote"), Outcome::Ok(_)));
    assert!(report.render().contains("FAIL docker: no Docker socket"));
}

/// An ssh remote whose pinned host key is another key fails as a possible attack, with the
/// `ssh-keyscan` command for this host and port and the advice to verify the fingerprint
/// out of band; with no key pinned at all it says how to pin one. With the right host key but
/// a deploy key the server does not accept, the fix is to add the deploy key's public key.
#[tokio::test]
async fn an_ssh_remote_with_the_wrong_host_key_or_deploy_key_fails() {
    let Some(binary) = test_support::git::sshd() else {
        return;
    };
    let sshd = Sshd::start(&binary);
    let remote = Remote::new();
    remote.commit("one", &[("nodes/n1.yaml", NODE)]);
    let port = sshd.daemon.port;
    let stranger = std::fs::read_to_string(sshd.path("stranger.pub")).unwrap();
    let mut f = stranger.split_whitespace();
    let wrong = format!(
        "[127.0.0.1]:{port} {} {}\n",
        f.next().unwrap(),
        f.next().unwrap()
    );
    let pinned = std::fs::read_to_string(sshd.path("known_hosts")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let with = |known: &str, key: &str| {
        let mut given = input(&sshd.url(&remote), data.path());
        given.remote.ssh_key = Some(sshd.path(key));
        given.remote.known_hosts = Some(KnownHosts::parse(known));
        given
    };

    let report = doctor::run(&with(&wrong, "client")).await;
    let (problem, fix) = failure(&report, "git remote");
    assert!(
        problem.contains("ssh host key for [127.0.0.1]") && problem.contains("man-in-the-middle"),
        "{problem}"
    );
    assert!(
        fix.contains(&format!("ssh-keyscan -p {port} 127.0.0.1")) && fix.contains("out of band"),
        "{fix}"
    );

    let report = doctor::run(&with("", "client")).await;
    let (problem, fix) = failure(&report, "git remote");
    assert!(problem.contains("not in the known_hosts file"), "{problem}");
    assert!(
        fix.starts_with("pin the host key")
            && fix.contains(&format!("ssh-keyscan -p {port} 127.0.0.1")),
        "{fix}"
    );

    let report = doctor::run(&with(&pinned, "stranger")).await;
    let (problem, fix) = failure(&report, "git remote");
    assert!(problem.contains("authentication failed"), "{problem}");
    assert!(
        fix.contains(&format!(
            "ssh-keygen -y -f {}",
            sshd.path("stranger").display()
        )),
        "{fix}"
    );

    // And the right pair reaches it: the failures above are the keys', not the setup's.
    let report = doctor::run(&with(&pinned, "client")).await;
    assert!(
        matches!(outcome(&report, "git remote"), Outcome::Ok(_)),
        "{}\n{}",
        report.render(),
        std::fs::read_to_string(sshd.path("sshd.log")).unwrap_or_default()
    );
}

/// A remote that does not exist fails as unreachable, with the fix to check the URL; a
/// branch the remote does not have fails naming it, with the fix to push it or follow
/// another.
#[tokio::test]
async fn a_missing_remote_or_branch_fails() {
    let data = tempfile::tempdir().unwrap();
    let gone = tempfile::tempdir().unwrap();
    let url = format!("file://{}/nothing-here.git", gone.path().display());
    let report = doctor::run(&input(&url, data.path())).await;
    let (problem, fix) = failure(&report, "git remote");
    assert!(problem.contains("remote unreachable"), "{problem}");
    assert!(fix.starts_with("check the URL (--repo)"), "{fix}");

    let remote = Remote::new();
    remote.commit("one", &[("nodes/n1.yaml", NODE)]);
    let mut given = input(&remote.file_url(), data.path());
    given.remote = remote_options(&remote.file_url(), "staging");
    let report = doctor::run(&given).await;
    let (problem, fix) = failure(&report, "git remote");
    assert!(
        problem.contains("branch \"staging\" does not exist"),
        "{problem}"
    );
    assert!(fix.starts_with("push branch `staging`"), "{fix}");
}

/// A branch the remote has but whose revision the agent would refuse is a warning on the
/// remote, naming the first problem, with the fix to validate and push; the age key is then
/// not judged against it.
#[tokio::test]
async fn a_refused_revision_is_a_warning() {
    let remote = Remote::new();
    remote.commit("one", &[("nodes/n1.yaml", "kind: Nonsense\n")]);
    let data = tempfile::tempdir().unwrap();
    let report = doctor::run(&input(&remote.file_url(), data.path())).await;
    match outcome(&report, "git remote") {
        Outcome::Warn { problem, fix } => {
            assert!(
                problem.contains("the revision of `main` at") && problem.contains("nodes/n1.yaml:"),
                "{problem}"
            );
            assert!(
                fix.contains("`orun validate` on a checkout of `main`"),
                "{fix}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(report.passed(), "{}", report.render());
    assert!(
        matches!(outcome(&report, "age key"), Outcome::Skipped(why) if why.contains("unknown")),
        "{}",
        report.render()
    );
}

/// An age key that is not among an encrypted file's recipients fails naming the file, with
/// the fix to add our public recipient to .sops.yaml and run `sops updatekeys` on it; the
/// secret key itself is never shown.
#[tokio::test]
async fn an_age_key_the_files_are_not_encrypted_to_fails_naming_them() {
    let Some(repo) = sealed_repo() else { return };
    let (other, other_recipient) = sops::keygen(repo.keys.path(), "other");
    let data = tempfile::tempdir().unwrap();
    let mut given = input(&repo.remote.file_url(), data.path());
    given.age_key = Some(other.clone());
    let report = doctor::run(&given).await;
    let (problem, fix) = failure(&report, "age key");
    assert_eq!(
        problem,
        format!("deployments/web.yaml: not encrypted to this node's key {other_recipient}")
    );
    assert_eq!(
        fix,
        format!(
            "add {other_recipient} to the age recipients in .sops.yaml, then re-encrypt with `sops updatekeys deployments/web.yaml`"
        )
    );
    let secret = std::fs::read_to_string(&other).unwrap();
    let secret = secret
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    assert!(!report.render().contains(secret));
    assert!(!report.render().contains(&repo.recipient));
}

/// A key file that is missing, a folder, or not an age key fails, each with its fix; with
/// no key given and no encrypted file on the branch, the check is skipped.
#[tokio::test]
async fn a_missing_or_unusable_key_file_fails() {
    let Some(repo) = sealed_repo() else { return };
    let data = tempfile::tempdir().unwrap();
    let mut given = input(&repo.remote.file_url(), data.path());

    let missing = repo.keys.path().join("absent.key");
    given.age_key = Some(missing.clone());
    let report = doctor::run(&given).await;
    let (problem, fix) = failure(&report, "age key");
    assert_eq!(
        problem,
        format!(
            "the age key file {} (from --age-key-path or SOPS_AGE_KEY_FILE) does not exist, and deployments/web.yaml needs it",
            missing.display()
        )
    );
    assert!(
        fix.starts_with(&format!(
            "install the node's age identity at {}",
            missing.display()
        )),
        "{fix}"
    );

    // No key given: the data dir's, which is not there either.
    given.age_key = None;
    let report = doctor::run(&given).await;
    let (problem, _) = failure(&report, "age key");
    assert!(
        problem.contains("keys/age.key (from the data dir) does not exist"),
        "{problem}"
    );

    given.age_key = Some(repo.keys.path().to_owned());
    let report = doctor::run(&given).await;
    let (problem, _) = failure(&report, "age key");
    assert!(
        problem.starts_with("cannot read the age key file"),
        "{problem}"
    );

    let garbage = repo.keys.path().join("garbage.key");
    std::fs::write(&garbage, "not a key\n").unwrap();
    given.age_key = Some(garbage);
    let report = doctor::run(&given).await;
    let (problem, fix) = failure(&report, "age key");
    assert!(
        problem.contains("line 1 is not an age X25519 identity"),
        "{problem}"
    );
    assert!(fix.contains("AGE-SECRET-KEY-1"), "{fix}");

    // A branch without secrets needs no key.
    let plain = Remote::new();
    plain.commit("one", &[("nodes/n1.yaml", NODE)]);
    let report = doctor::run(&input(&plain.file_url(), data.path())).await;
    assert!(
        matches!(outcome(&report, "age key"), Outcome::Skipped(why) if why.contains("no encrypted files")),
        "{}",
        report.render()
    );
}

/// A status port held by a listener that is not an agent fails, with the fix to stop it or
/// move the agent; a port where an orun status server answers `/healthz` is fine.
#[tokio::test]
async fn a_status_port_taken_by_something_else_fails() {
    let remote = Remote::new();
    remote.commit("one", &[("nodes/n1.yaml", NODE)]);
    let data = tempfile::tempdir().unwrap();

    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = squatter.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in squatter.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            );
        }
    });
    let mut given = input(&remote.file_url(), data.path());
    given.status_addr = addr;
    let report = doctor::run(&given).await;
    let (problem, fix) = failure(&report, "status port");
    assert_eq!(
        problem,
        format!(
            "{addr} is taken by something that is not an orun agent: it answers `GET /healthz` with 200"
        )
    );
    assert!(
        fix.contains(&format!("ss -ltnp 'sport = :{}'", addr.port())),
        "{fix}"
    );

    // The agent's own status server answers there: the doctor runs beside a running agent.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    given.status_addr = listener.local_addr().unwrap();
    let status = status_http::Status::new(status_http::Snapshot::default());
    let server = tokio::spawn(status_http::serve(
        listener,
        status,
        status_http::Limits::default(),
        None,
        std::future::pending(),
    ));
    let report = doctor::run(&given).await;
    assert_eq!(
        outcome(&report, "status port"),
        &Outcome::Ok(format!("an orun agent answers on {}", given.status_addr))
    );
    server.abort();
}

/// A data dir whose parent does not exist fails with the `mkdir -p` to make it; one that
/// does not exist yet in a writable folder is fine (the agent creates it); an unknown
/// service user fails; too little free space is a warning with the numbers in binary units.
#[tokio::test]
async fn data_dir_problems_are_found() {
    let remote = Remote::new();
    remote.commit("one", &[("nodes/n1.yaml", NODE)]);
    let data = tempfile::tempdir().unwrap();

    let orphan = data.path().join("no/such/parent/orun");
    let report = doctor::run(&input(&remote.file_url(), &orphan)).await;
    let (problem, fix) = failure(&report, "data dir");
    assert_eq!(
        problem,
        format!(
            "{} does not exist, nor does its parent folder {}",
            orphan.display(),
            orphan.parent().unwrap().display()
        )
    );
    assert!(
        fix.starts_with(&format!("`mkdir -p {}", orphan.display())),
        "{fix}"
    );

    let fresh = data.path().join("orun");
    let report = doctor::run(&input(&remote.file_url(), &fresh)).await;
    assert!(
        matches!(outcome(&report, "data dir"), Outcome::Ok(s) if s.contains("the agent will create it")),
        "{}",
        report.render()
    );

    let mut given = input(&remote.file_url(), data.path());
    given.service_user = Some("orun-doctor-nobody".to_owned());
    let report = doctor::run(&given).await;
    let (problem, fix) = failure(&report, "data dir");
    assert_eq!(
        problem,
        "there is no user `orun-doctor-nobody` on this node (/etc/passwd)"
    );
    assert!(fix.starts_with("create it (`useradd --system"), "{fix}");

    let mut given = input(&remote.file_url(), data.path());
    given.min_free_bytes = u64::MAX;
    let report = doctor::run(&given).await;
    match outcome(&report, "data dir") {
        Outcome::Warn { problem, fix } => {
            assert!(problem.contains("free on the file system of"), "{problem}");
            assert!(problem.ends_with("(want at least 16.0 EiB)"), "{problem}");
            assert!(fix.contains("--data-dir"), "{fix}");
        }
        other => panic!("{other:?}"),
    }
}

/// A data dir owned by another user than the agent's fails with the `chown` that fixes it
/// (run as root only: only root can hand a folder to another user).
#[tokio::test]
async fn a_data_dir_owned_by_someone_else_fails() {
    use std::os::unix::fs::MetadataExt as _;
    let remote = Remote::new();
    remote.commit("one", &[("nodes/n1.yaml", NODE)]);
    let data = tempfile::tempdir().unwrap();
    if std::fs::metadata(data.path()).unwrap().uid() != 0 {
        return;
    }
    std::os::unix::fs::chown(data.path(), Some(65534), None).unwrap();
    let report = doctor::run(&input(&remote.file_url(), data.path())).await;
    let (problem, fix) = failure(&report, "data dir");
    assert!(
        problem.starts_with(&format!("{} is owned by uid 65534", data.path().display())),
        "{problem}"
    );
    assert!(
        fix.starts_with(&format!("`chown -R root: {}", data.path().display())),
        "{fix}"
    );

    // Owned, but with a file an agent run as another user left behind.
    std::os::unix::fs::chown(data.path(), Some(0), None).unwrap();
    std::fs::write(data.path().join("state.json"), "{}").unwrap();
    std::os::unix::fs::chown(data.path().join("state.json"), Some(65534), None).unwrap();
    let report = doctor::run(&input(&remote.file_url(), data.path())).await;
    let (problem, _) = failure(&report, "data dir");
    assert!(
        problem.contains("state.json is not owned by the agent's user"),
        "{problem}"
    );
}

/// A unit named on a host where systemd is not PID 1 is skipped with a note, not failed.
#[tokio::test]
async fn the_unit_is_skipped_without_systemd() {
    if Path::new("/run/systemd/system").exists() {
        return;
    }
    let remote = Remote::new();
    remote.commit("one", &[("nodes/n1.yaml", NODE)]);
    let data = tempfile::tempdir().unwrap();
    let mut given = input(&remote.file_url(), data.path());
    given.unit = Some("orun.service".to_owned());
    let report = doctor::run(&given).await;
    assert_eq!(
        outcome(&report, "unit"),
        &Outcome::Skipped(
            "systemd is not running on this host (/run/systemd/system is absent): orun.service not checked"
                .to_owned()
        )
    );
}

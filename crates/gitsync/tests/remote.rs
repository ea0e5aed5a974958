//! gitsync against real remotes: a bare repo over `file://`, `git daemon`, `sshd` with a
//! pinned host key and a deploy key, and a remote that accepts and then never answers.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gitsync::{
    GitError, KnownHosts, Mirror, RemoteOptions, RemoteUrl, Slot, Synced, Verdict,
    sync_with_deadline,
};
use manifest_model::{EntryKind, ReadError, Source};
use test_support::git::{self as common, Remote, Sshd, git_daemon};
use test_support::wait::wait;
use test_support::{free_port, required};

fn options(url: &str) -> RemoteOptions {
    RemoteOptions::new(RemoteUrl::parse(url, Path::new("/")).unwrap(), "main")
}

fn mirror(data: &tempfile::TempDir, opts: RemoteOptions) -> Mirror {
    Mirror::open(&data.path().join("git"), opts).unwrap()
}

/// The same checks over any transport: missing branch, fetch, no-op, move, force-push.
fn follow_a_branch(remote: &Remote, url: &str) {
    let data = tempfile::tempdir().unwrap();
    let mut m = mirror(&data, options(url));
    // An empty remote has no branch: an error, never an empty desired state.
    assert!(matches!(m.sync(), Err(GitError::BranchMissing { .. })));
    assert_eq!(m.local_head(), None);

    let c1 = remote.commit("one", &[("nodes/a.yaml", "a: 1\n")]);
    assert_eq!(
        m.sync().unwrap(),
        Synced {
            head: c1.clone(),
            fetched: true
        }
    );
    // Nothing moved: the head check answers and no fetch runs.
    assert_eq!(
        m.sync().unwrap(),
        Synced {
            head: c1.clone(),
            fetched: false
        }
    );
    let c2 = remote.commit("two", &[("nodes/a.yaml", "a: 2\n")]);
    assert_eq!(m.sync().unwrap().head, c2);
    assert!(m.descends_from(&c2, &c1));
    let bytes = m.source(&c2).unwrap().read("nodes/a.yaml", 1024).unwrap();
    assert_eq!(bytes, b"a: 2\n");

    // Force-push a different history: followed, and it does not descend from c2.
    common::git(&remote.work(), &["reset", "-q", "--hard", &c1]);
    let c3 = remote.commit_local("three", &[("nodes/b.yaml", "b: 3\n")]);
    remote.push(true);
    assert_eq!(m.sync().unwrap().head, c3);
    assert!(!m.descends_from(&c3, &c2));
    // Back to a commit fetched before: no pack needed, still followed.
    common::git(&remote.work(), &["reset", "-q", "--hard", &c2]);
    remote.push(true);
    assert_eq!(m.sync().unwrap().head, c2);
    assert_eq!(m.local_head().as_deref(), Some(c2.as_str()));

    // The mirror survives a restart of the agent.
    drop(m);
    let m = mirror(&data, options(url));
    assert_eq!(m.local_head().as_deref(), Some(c2.as_str()));
}

#[test]
fn follows_a_branch_over_file_urls() {
    let remote = Remote::new();
    follow_a_branch(&remote, &remote.file_url());
}

#[test]
fn follows_a_branch_over_git_daemon() {
    let remote = Remote::new();
    let daemon = git_daemon(&remote);
    follow_a_branch(&remote, &format!("git://127.0.0.1:{}/m.git", daemon.port));
}

/// The same checks over any transport: the default branch is the one the remote's `HEAD`
/// names (never guessed), and each slot holds the tip of the branch it is given, fetched
/// only when it moved.
fn learn_the_default_branch(remote: &Remote, url: &str) {
    let data = tempfile::tempdir().unwrap();
    let unpinned = || RemoteOptions::without_branch(RemoteUrl::parse(url, Path::new("/")).unwrap());
    let mut m = mirror(&data, unpinned());
    // Options without a branch: the plain sync has nothing to follow.
    assert!(matches!(m.sync(), Err(GitError::Config { .. })));
    // An empty remote names no default branch.
    let l = m.list().unwrap();
    assert!(matches!(l.default_branch(), Err(GitError::NoDefaultBranch)));

    let on_main = remote.commit("one", &[("nodes/n.yaml", "main\n")]);
    let on_staging = remote.commit_local("two", &[("nodes/n.yaml", "staging\n")]);
    let push_to = |branch: &str| {
        common::git(
            &remote.work(),
            &[
                "push",
                "-q",
                &remote.file_url(),
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
    };
    push_to("staging");
    // `aaa` is at `main`'s commit and sorts first: a guess by commit id (libgit2's fallback)
    // would take it for `HEAD`; the symref the remote advertises says `main`.
    common::git(&remote.work(), &["reset", "-q", "--hard", &on_main]);
    push_to("aaa");
    let l = m.list().unwrap();
    assert_eq!(l.default_branch().unwrap(), "main");
    assert_eq!(l.tip("staging").as_deref(), Some(on_staging.as_str()));
    assert_eq!(l.tip("qa"), None);
    let fetched = |head: &str| Synced {
        head: head.to_owned(),
        fetched: true,
    };
    assert_eq!(
        m.hold(&l, "main", Slot::Default).unwrap(),
        fetched(&on_main)
    );
    assert_eq!(
        m.hold(&l, "staging", Slot::Followed).unwrap(),
        fetched(&on_staging)
    );
    assert_eq!(m.local_head().as_deref(), Some(on_staging.as_str()));
    let bytes = m
        .source(&on_main)
        .unwrap()
        .read("nodes/n.yaml", 64)
        .unwrap();
    assert_eq!(bytes, b"main\n");
    // Nothing moved: nothing fetched, in either slot.
    let l = m.list().unwrap();
    assert!(!m.hold(&l, "main", Slot::Default).unwrap().fetched);
    assert!(!m.hold(&l, "staging", Slot::Followed).unwrap().fetched);
    assert!(matches!(
        m.hold(&l, "qa", Slot::Followed),
        Err(GitError::BranchMissing { branch }) if branch == "qa"
    ));
    // The slots are apart: holding `main` as the default leaves the followed tip alone.
    assert_eq!(m.local_head().as_deref(), Some(on_staging.as_str()));

    // The remote's HEAD moves: the next listing says so.
    let bare = remote.bare();
    common::git(&bare, &["symbolic-ref", "HEAD", "refs/heads/staging"]);
    assert_eq!(m.list().unwrap().default_branch().unwrap(), "staging");
    // A detached HEAD names no branch.
    common::git(&bare, &["update-ref", "--no-deref", "HEAD", &on_main]);
    assert!(matches!(
        m.list().unwrap().default_branch(),
        Err(GitError::NoDefaultBranch)
    ));
    common::git(&bare, &["symbolic-ref", "HEAD", "refs/heads/main"]);
}

#[test]
fn learns_the_default_branch_over_file_urls() {
    let remote = Remote::new();
    learn_the_default_branch(&remote, &remote.file_url());
}

#[test]
fn learns_the_default_branch_over_git_daemon() {
    let remote = Remote::new();
    let daemon = git_daemon(&remote);
    learn_the_default_branch(&remote, &format!("git://127.0.0.1:{}/m.git", daemon.port));
}

#[test]
fn reads_revisions_from_objects_refusing_links_and_big_files() {
    let remote = Remote::new();
    std::fs::create_dir_all(remote.work().join("deployments")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", remote.work().join("deployments/evil.yaml")).unwrap();
    std::os::unix::fs::symlink("deployments", remote.work().join("services")).unwrap();
    let c = remote.commit(
        "tree",
        &[
            ("deployments/web.yaml", "kind: Deployment\n"),
            ("nodes/big.yaml", &"x".repeat(5000)),
        ],
    );
    let data = tempfile::tempdir().unwrap();
    let mut m = mirror(&data, options(&remote.file_url()));
    m.sync().unwrap();
    let src = m.source(&c).unwrap();

    let mut listed = src.list("deployments").unwrap().unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(listed[0].name, "evil.yaml");
    // A link is reported, and its target read on demand; the loader refuses one that leaves
    // the tree.
    assert_eq!(listed[0].kind, EntryKind::Link);
    assert_eq!(
        src.read_link("deployments/evil.yaml").unwrap(),
        b"/etc/passwd"
    );
    assert_eq!(
        listed[1].kind,
        EntryKind::File {
            size: 17,
            exec: false
        }
    );
    assert!(matches!(
        src.read("deployments/evil.yaml", 1 << 20),
        Err(ReadError::Refused(_))
    ));
    // A folder replaced by a link is an error, not an empty folder.
    assert!(src.list("services").is_err());
    assert_eq!(src.list("missing").unwrap(), None);
    assert!(matches!(
        src.read("nodes/big.yaml", 4096),
        Err(ReadError::TooLarge { limit: 4096 })
    ));
    assert!(
        m.source("0123456789012345678901234567890123456789")
            .is_err()
    );
}

#[test]
fn a_remote_that_never_answers_hits_the_deadline_and_does_not_pile_up_fetches() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let held = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            held.lock().unwrap().push(stream.unwrap());
        }
    });
    let data = tempfile::tempdir().unwrap();
    let m = Arc::new(Mutex::new(mirror(
        &data,
        options(&format!("git://127.0.0.1:{port}/m.git")),
    )));
    let start = Instant::now();
    let err = sync_with_deadline(&m, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, GitError::Deadline { seconds: 1 }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // The stuck call still holds the mirror: no second fetch starts beside it.
    assert!(matches!(
        sync_with_deadline(&m, Duration::from_secs(1)),
        Err(GitError::Stalled)
    ));
    // The remote hangs up: the stuck call returns and syncing works (and fails) normally again.
    accepted.lock().unwrap().clear();
    let _settled =
        wait("the stuck fetch to return", Duration::from_secs(20)).until(
            || match sync_with_deadline(&m, Duration::from_secs(1)) {
                Err(GitError::Stalled) => None,
                other => Some(other),
            },
        );
}

#[test]
fn unreachable_remote_is_an_error_with_a_reason() {
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let mut m = mirror(&data, options(&format!("git://127.0.0.1:{port}/m.git")));
    let err = m.sync().unwrap_err();
    assert!(matches!(err, GitError::Unreachable { .. }), "{err}");
    let mut m = mirror(&data, options("file:///nonexistent/m.git"));
    assert!(matches!(m.sync(), Err(GitError::Unreachable { .. })));
}

fn ssh_options(sshd: &Sshd, remote: &Remote, key: &str, known_hosts: &str) -> RemoteOptions {
    let mut o = options(&sshd.url(remote));
    o.ssh_key = Some(sshd.path(key));
    o.known_hosts = Some(KnownHosts::parse(known_hosts));
    o.deadline = Duration::from_secs(20);
    o
}

#[test]
fn ssh_with_a_deploy_key_and_a_pinned_host_key() {
    let Some(binary) = common::sshd_binary() else {
        assert!(!required(), "sshd is required (ORUN_REQUIRE_ALL)");
        eprintln!("skipped: sshd is not installed (apt-get install openssh-server)");
        return;
    };
    let sshd = Sshd::start(&binary);
    let remote = Remote::new();
    let c = remote.commit("one", &[("nodes/a.yaml", "a: 1\n")]);
    let pinned = std::fs::read_to_string(sshd.path("known_hosts")).unwrap();
    let data = tempfile::tempdir().unwrap();

    let mut m = Mirror::open(
        &data.path().join("ok"),
        ssh_options(&sshd, &remote, "client", &pinned),
    )
    .unwrap();
    let synced = m.sync();
    assert_eq!(
        synced.as_ref().map(|s| s.head.as_str()).ok(),
        Some(c.as_str()),
        "{synced:?}; sshd log: {}",
        std::fs::read_to_string(sshd.path("sshd.log")).unwrap_or_default()
    );
    assert!(!m.sync().unwrap().fetched);

    // A different key pinned for the host: refused as a possible attack.
    let other = std::fs::read_to_string(sshd.path("stranger.pub")).unwrap();
    let mut f = other.split_whitespace();
    let wrong = format!(
        "[127.0.0.1]:{} {} {}\n",
        sshd.daemon.port,
        f.next().unwrap(),
        f.next().unwrap()
    );
    for (known, verdict) in [(wrong.as_str(), Verdict::Mismatch), ("", Verdict::Unknown)] {
        let mut m = Mirror::open(
            &data.path().join("bad"),
            ssh_options(&sshd, &remote, "client", known),
        )
        .unwrap();
        let err = m.sync().unwrap_err();
        assert!(
            matches!(err, GitError::HostKey { verdict: v, .. } if v == verdict),
            "{err}"
        );
    }
    // A key the server does not accept (a revoked deploy key).
    let mut m = Mirror::open(
        &data.path().join("auth"),
        ssh_options(&sshd, &remote, "stranger", &pinned),
    )
    .unwrap();
    let err = m.sync().unwrap_err();
    assert!(matches!(err, GitError::Auth { .. }), "{err}");
}

#[test]
fn ssh_without_pinned_keys_is_refused_at_open() {
    let data = tempfile::tempdir().unwrap();
    let err = Mirror::open(data.path(), options("ssh://git@127.0.0.1:1/m.git")).unwrap_err();
    assert!(err.to_string().contains("known_hosts"), "{err}");
    let mut o = options("file:///x.git");
    o.branch = Some("-evil".to_owned());
    assert!(Mirror::open(data.path(), o).is_err());
}

/// A sync that has returned has let go of the mirror: the caller reads the new revision at
/// once. The fetch thread used to send its result while still holding the lock, so a caller
/// quick enough found the mirror "busy with a stuck fetch" after a successful sync (seen in
/// CI as an `--once` run that never loaded its revision).
#[test]
fn a_finished_sync_has_released_the_mirror() {
    let remote = Remote::new();
    remote.commit("one", &[("nodes/a.yaml", "a: 1\n")]);
    let data = tempfile::tempdir().unwrap();
    let m = Arc::new(Mutex::new(mirror(&data, options(&remote.file_url()))));
    for round in 0..300 {
        sync_with_deadline(&m, Duration::from_secs(10)).unwrap();
        assert!(m.try_lock().is_ok(), "still held after sync {round}");
    }
}

//! End to end, images built on the node: the real `orun-agent` against real Docker. Over
//! several commits, `build-once`, `on-change` and `always` deployments beside an `image:`
//! one are rebuilt and replaced exactly when their mode says; a Dockerfile that fails
//! leaves the old container serving with the build's last lines in `/status`; and
//! retention leaves only each deployment's current and previous image, never touching an
//! image orun did not bring.
//!
//! Run with `cargo xtask e2e`. Every wait polls with a deadline; containers and images are
//! removed when a test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::collections::BTreeMap;

use support::{docker_ok, node_yaml, spawn_agent};
use test_support::docker::{Guard, docker};
use test_support::free_port;
use test_support::git::Remote;

/// A deployment built from `apps/site` with `mode`, serving its `index.html`.
fn built(node: &str, name: &str, mode: &str, dockerfile: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  build:\n    context: apps/site\n    dockerfile: {dockerfile}\n    buildMode: {mode}\n    args:\n      GREETING: hello\n  nodes: [{node}]\n  rollout:\n    minHealthySeconds: 1\n"
    )
}

fn plain(node: &str, name: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: orun-test/busybox:1\n  nodes: [{node}]\n  command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n"
    )
}

const DOCKERFILE: &str = "FROM orun-test/busybox:1\nARG GREETING\nCOPY index.html /www/index.html\nRUN echo \"$GREETING\" > /www/greeting\nCMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n";
const BROKEN: &str = "FROM orun-test/busybox:1\nRUN echo about to fail && exit 7\n";

/// Removes every image of `repos` on drop (tags and all), so a failed run leaves none.
struct Repos(Vec<String>);

impl Drop for Repos {
    fn drop(&mut self) {
        for repo in &self.0 {
            let ids = docker_ok(&["images", "-q", repo]).unwrap_or_default();
            for id in ids.lines().collect::<std::collections::BTreeSet<_>>() {
                let _ = docker_ok(&["rmi", "-f", id]);
            }
        }
    }
}

/// Container id and image id of each of `names`.
fn running(names: &[&str]) -> BTreeMap<String, (String, String)> {
    names
        .iter()
        .map(|n| {
            let out = docker_ok(&["inspect", "-f", "{{.Id}} {{.Image}}", n]).unwrap();
            let (c, i) = out.split_once(' ').unwrap();
            ((*n).to_owned(), (c.to_owned(), i.to_owned()))
        })
        .collect()
}

/// The image ids tagged in `repo`.
fn tags(repo: &str) -> Vec<String> {
    let out = docker_ok(&["images", "--format", "{{.Tag}} {{.ID}}", repo]).unwrap_or_default();
    let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
    v.sort();
    v
}

fn file_in(container: &str, path: &str) -> String {
    docker_ok(&["exec", container, "cat", path]).unwrap_or_default()
}

#[test]
fn builds_follow_their_mode_over_commits_and_a_failed_build_keeps_the_old_container() {
    let pid = std::process::id();
    let node = format!("im-build-{pid}");
    let (once, change, always, image) = (
        format!("once{pid}"),
        format!("change{pid}"),
        format!("always{pid}"),
        format!("plain{pid}"),
    );
    let _guard = Guard(format!("orun.node={node}"));
    let _images = Repos(
        [&once, &change, &always]
            .iter()
            .map(|d| format!("orun-build/{d}"))
            .collect(),
    );
    // An image orun did not bring, named like the ones it builds: never touched.
    let mine = format!("orun-build/{always}:mine");
    docker(&["tag", "orun-test/busybox:1", &mine]);

    let remote = Remote::new();
    let deployments = |dockerfile_of_change: &str| {
        vec![
            (
                format!("deployments/{once}.yaml"),
                built(&node, &once, "build-once", "Dockerfile"),
            ),
            (
                format!("deployments/{change}.yaml"),
                built(&node, &change, "on-change", dockerfile_of_change),
            ),
            (
                format!("deployments/{always}.yaml"),
                built(&node, &always, "always", "Dockerfile"),
            ),
            (format!("deployments/{image}.yaml"), plain(&node, &image)),
        ]
    };
    let mut files: Vec<(String, String)> = vec![
        ("nodes/n.yaml".into(), node_yaml(&node)),
        ("apps/site/Dockerfile".into(), DOCKERFILE.into()),
        ("apps/site/Dockerfile.broken".into(), BROKEN.into()),
        ("apps/site/index.html".into(), "v1\n".into()),
        ("apps/site/.dockerignore".into(), "*.log\n".into()),
    ];
    files.extend(deployments("Dockerfile"));
    let push = |files: &[(String, String)], msg: &str| {
        let borrowed: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        remote.commit(msg, &borrowed)
    };
    let c1 = push(&files, "four deployments, three built");

    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let agent = spawn_agent(
        &remote.file_url(),
        &node,
        &data.path().join("agent"),
        port,
        &["--image-grace", "0s"],
    );
    let status = agent.converged(&c1);
    let names = [
        once.as_str(),
        change.as_str(),
        always.as_str(),
        image.as_str(),
    ];
    let first = running(&names);
    assert_eq!(file_in(&change, "/www/index.html").trim(), "v1");
    assert_eq!(file_in(&change, "/www/greeting").trim(), "hello");
    assert!(
        status["images"]["count"].as_u64().unwrap() >= 3,
        "{status:#}"
    );
    assert!(status["images"]["disk_bytes"].as_u64().unwrap() > 0);
    let log = agent.logs();
    assert!(log.contains("build: Step 1/"), "the build output is logged");

    // 2: only an ignored file and a file outside the context change: `always` rebuilds
    // (a new commit), the others keep their containers.
    let one = |files: &mut Vec<(String, String)>, path: &str, text: &str| {
        files.retain(|(p, _)| p != path);
        files.push((path.into(), text.into()));
    };
    one(&mut files, "apps/site/debug.log", "noise\n");
    one(&mut files, "README.md", "docs\n");
    let c2 = push(&files, "nothing the builds read");
    agent.converged(&c2);
    let second = running(&names);
    assert_eq!(second[&once], first[&once], "build-once stays");
    assert_eq!(
        second[&change], first[&change],
        "on-change: the context did not change"
    );
    assert_eq!(second[&image], first[&image], "the image: deployment stays");
    assert_ne!(
        second[&always].0, first[&always].0,
        "always: rebuilt and replaced"
    );

    // 3: the context changes: on-change and always replace, build-once does not.
    one(&mut files, "apps/site/index.html", "v2\n");
    let c3 = push(&files, "v2");
    agent.converged(&c3);
    let third = running(&names);
    assert_eq!(third[&once], first[&once], "build-once stays");
    assert_ne!(third[&change].1, second[&change].1, "on-change: rebuilt");
    assert_eq!(file_in(&change, "/www/index.html").trim(), "v2");
    assert_eq!(file_in(&once, "/www/index.html").trim(), "v1");
    assert_ne!(third[&always].0, second[&always].0);
    assert_eq!(third[&image], first[&image]);

    // 4: a Dockerfile that fails: the old container serves, and /status says why with the
    // build's last lines.
    for (p, t) in deployments("Dockerfile.broken") {
        one(&mut files, &p, &t);
    }
    let c4 = push(&files, "broken build");
    let status = agent.wait_status("the failed build in /status", |s| {
        s["node"]["git_head"] == c4.as_str()
            && s["deployments"][change.as_str()]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("about to fail"))
    });
    let error = status["deployments"][change.as_str()]["last_error"]
        .as_str()
        .unwrap();
    assert!(error.contains("building orun-build/"), "{error}");
    assert!(
        error.contains("returned a non-zero code: 7"),
        "the step's exit code: {error}"
    );
    assert_eq!(
        running(&[change.as_str()])[&change],
        third[&change],
        "the old container serves"
    );
    assert_eq!(file_in(&change, "/www/index.html").trim(), "v2");

    // 5: a week of daily deploys of the `always` deployment: only its current and previous
    // image stay, and the image orun did not bring survives.
    for (p, t) in deployments("Dockerfile") {
        one(&mut files, &p, &t);
    }
    let mut last = String::new();
    let mut always_images = Vec::new();
    for day in 1..=7 {
        one(&mut files, "apps/site/index.html", &format!("day {day}\n"));
        last = push(&files, &format!("day {day}"));
        agent.converged(&last);
        always_images.push(running(&[always.as_str()])[&always].1.clone());
    }
    // Docker lists short ids: `sha256:` and the first 12 hex digits of the full one.
    let short = |id: &str| id.trim_start_matches("sha256:")[..12].to_owned();
    let kept = |repo: &str| -> Vec<String> {
        tags(repo)
            .iter()
            .filter(|t| !t.starts_with("mine "))
            .map(|t| t.split(' ').nth(1).unwrap().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let always_repo = format!("orun-build/{always}");
    let mut wanted = vec![short(&always_images[5]), short(&always_images[6])];
    wanted.sort();
    agent
        .wait("retention to leave day 6's and day 7's image of always")
        .until_true(|| kept(&always_repo) == wanted);
    assert!(
        tags(&always_repo).iter().any(|t| t.starts_with("mine ")),
        "an image orun did not bring survives"
    );
    let change_repo = format!("orun-build/{change}");
    agent
        .wait("retention to leave two images of change")
        .until_true(|| kept(&change_repo).len() == 2);
    assert_eq!(
        tags(&format!("orun-build/{once}")).len(),
        1,
        "build-once built once"
    );
    let status = agent.converged(&last);
    assert!(
        status["images"]["removed"].as_u64().unwrap() >= 10,
        "{status:#}"
    );
    docker(&["rmi", &mine]);
}

/// A build runs beside the loop: while a build runs (held until the test lets it finish),
/// `/status` shows it in progress and a commit to another deployment is rolled out; the
/// built deployment follows when its image is there.
#[test]
fn a_slow_build_does_not_hold_up_the_rest_of_the_node() {
    let pid = std::process::id();
    let node = format!("im-slow-{pid}");
    let (slow, other) = (format!("slow{pid}"), format!("other{pid}"));
    let _guard = Guard(format!("orun.node={node}"));
    let _images = Repos(vec![format!("orun-build/{slow}")]);
    let remote = Remote::new();
    // The build's `RUN` waits until the test answers on the host's side of Docker's bridge
    // (busybox `nc`; its static `wget` cannot resolve): the build is held, not timed.
    let gate = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = gate.local_addr().unwrap().port();
    let gateway = docker_ok(&[
        "network",
        "inspect",
        "bridge",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
    ])
    .unwrap();
    let dockerfile = format!(
        "FROM orun-test/busybox:1\nRUN echo slow build starts && until echo go | nc -w 2 {gateway} {port} | grep -q ok; do sleep 0.5; done\nCMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n"
    );
    let other_v = |v: u32| {
        plain(&node, &other).replace(
            "  nodes:",
            &format!(
                "  env:\n    VERSION: \"{v}\"\n  rollout:\n    minHealthySeconds: 1\n  nodes:"
            ),
        )
    };
    let c1 = remote.commit(
        "other only",
        &[
            ("nodes/n.yaml", &node_yaml(&node)),
            (&format!("deployments/{other}.yaml"), &other_v(1)),
        ],
    );
    let data = tempfile::tempdir().unwrap();
    let agent = spawn_agent(
        &remote.file_url(),
        &node,
        &data.path().join("agent"),
        free_port(),
        &[],
    );
    agent.converged(&c1);
    let before = running(&[other.as_str()])[&other].0.clone();

    remote.commit(
        "a slow build",
        &[
            ("apps/site/Dockerfile", dockerfile.as_str()),
            (
                &format!("deployments/{slow}.yaml"),
                &built(&node, &slow, "build-once", "Dockerfile"),
            ),
        ],
    );
    agent.wait_status("the build in progress", |s| {
        s["images"]["in_progress"][slow.as_str()]["kind"] == "build"
    });
    let c3 = remote.commit(
        "other v2",
        &[(&format!("deployments/{other}.yaml"), &other_v(2))],
    );
    // The other deployment is replaced while the build still runs.
    agent
        .wait("the other deployment replaced during the build")
        .until_true(|| {
            // The name moves between containers during the switch: looked up, not unwrapped.
            docker_ok(&["inspect", "-f", "{{.Id}}", &other]).is_some_and(|id| id != before)
                && agent
                    .status()
                    .is_some_and(|s| s["images"]["in_progress"][slow.as_str()]["kind"] == "build")
        });
    // Let the build finish: answer its requests from now on.
    std::thread::spawn(move || {
        for conn in gate.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            let _ = std::io::Write::write_all(
                &mut conn,
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            );
        }
    });
    let status = agent.converged(&c3);
    assert!(
        status["deployments"][slow.as_str()]["state"] == "running",
        "{status:#}"
    );
    assert!(agent.logs().contains("slow build starts"));
}

//! End to end, images from a private registry: the real `orun-agent` against the real
//! Docker and Debian's `docker-registry` with htpasswd. A tag moved in the registry is
//! rolled out without a commit, exactly once, and other deployments are left alone; a
//! refused login keeps the old container serving and names the registry, never the
//! password; a credential helper on the agent's `PATH` gives the login; and the node-local
//! credentials file wins over the Docker config.
//!
//! Run with `cargo xtask e2e`. Every wait polls with a deadline; containers are removed by
//! label and images by name when a test ends, pass or fail. Without `docker-registry` or
//! `htpasswd` a test skips, unless `ORUN_REQUIRE_ALL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Agent, docker_ok, node_yaml, spawn_agent_with_path};
use test_support::docker::{Guard, Images, build};
use test_support::free_port;
use test_support::git::Remote;
use test_support::registry::{Registry, config_file};

/// A test's node name (unique in this process), its cleanup guard and its repository.
fn setup(tag: &str) -> (String, Guard, Remote) {
    let node = format!("rg-{tag}-{}", std::process::id());
    let guard = Guard(format!("orun.node={node}"));
    let remote = Remote::new();
    let file = format!("nodes/{node}.yaml");
    remote.commit("node", &[(&file, &node_yaml(&node))]);
    (node, guard, remote)
}

/// A deployment of `image` that sleeps and stops at once on SIGTERM (a shell as PID 1 would
/// ignore it for the whole stop grace), promoted after a second healthy rather than the
/// default gate: these tests are about images, not rollouts. `extra` is appended to the spec
/// (a pull policy).
fn sleeper(node: &str, name: &str, image: &str, extra: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n  nodes: [{node}]\n  command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 100000 & wait\"]\n  rollout:\n    minHealthySeconds: 1\n    drainSeconds: 0\n{extra}"
    )
}

/// Starts the agent with `path` first on its `PATH` when given, its data dir and log in
/// `dir`, a temporary folder of the test's: a restart in the same `dir` resumes the data and
/// appends to the log.
fn spawn(remote: &Remote, node: &str, dir: &Path, extra: &[&str], path: Option<&Path>) -> Agent {
    let data = dir.join("data");
    spawn_agent_with_path(&remote.file_url(), node, &data, free_port(), extra, path)
}

/// A Docker config with an inline login for `host` as `docker login` writes it: base64 of
/// `user:password`.
fn login_json(host: &str, password: &str) -> String {
    let auth = base64(format!("{}:{password}", Registry::USER).as_bytes());
    format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#)
}

/// Standard base64 with padding; small enough not to need a crate.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(ABC[(n >> (18 - 6 * i) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

/// Builds `tag` from the test busybox with a file holding `marker`: an image of its own id.
fn marked(tag: &str, marker: &str) {
    build(
        tag,
        "FROM orun-test/busybox:1\nCOPY marker /marker\n",
        &[("marker", marker.as_bytes())],
    );
}

/// Moves the tag `reference` (`<host>/<repo>:<tag>`) in the registry to the image `local`,
/// as a push from elsewhere would, and returns the manifest digest. `docker push` itself
/// would tag `reference` on this host for a moment, which the agent would rightly take for a
/// local change: `local` goes up under a staging tag of the same repository, and the
/// registry's API then puts that manifest under `reference` too.
fn move_tag(reg: &Registry, local: &str, reference: &str) -> String {
    let (repo, tag) = reference.rsplit_once(':').unwrap();
    let digest = reg.push(local, &format!("{repo}:staged"));
    let path = repo.strip_prefix(&format!("{}/", reg.host())).unwrap();
    let url = |name: &str| format!("http://{}/v2/{path}/manifests/{name}", reg.host());
    let kind = "application/vnd.docker.distribution.manifest.v2+json";
    let login = format!("{}:{}", Registry::USER, Registry::PASSWORD);
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sSf", "-u", &login])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let manifest = reg.dir().join(format!("manifest-{tag}"));
    std::fs::write(
        &manifest,
        curl(&["-H", &format!("Accept: {kind}"), &url("staged")]),
    )
    .unwrap();
    let data = format!("@{}", manifest.display());
    let content_type = format!("Content-Type: {kind}");
    curl(&[
        "-X",
        "PUT",
        "-H",
        &content_type,
        "--data-binary",
        &data,
        &url(tag),
    ]);
    digest
}

fn image_id(reference: &str) -> Option<String> {
    docker_ok(&["image", "inspect", "-f", "{{.Id}}", reference])
}

/// The id and image id of the running container `name`.
fn running(name: &str) -> Option<(String, String)> {
    let out = docker_ok(&[
        "inspect",
        "-f",
        "{{.Id}} {{.Image}} {{.State.Running}}",
        name,
    ])?;
    let mut f = out.split_whitespace();
    let (id, image) = (f.next()?.to_owned(), f.next()?.to_owned());
    (f.next()? == "true").then_some((id, image))
}

/// The rollouts `deployment` started: `replace` steps begun.
fn replaces(agent: &Agent, deployment: &str) -> usize {
    agent
        .events(deployment)
        .iter()
        .filter(|e| e["step"] == "replace" && e["outcome"] == "started")
        .count()
}

/// `pull: always` against a tag pushed again: the agent's moved-tag check (every second
/// here) sees the registry's new digest, pulls and replaces the container once, with no
/// commit; later checks find nothing moved, and a deployment of another image is untouched.
#[test]
fn a_tag_moved_in_the_registry_is_rolled_out_once_without_a_commit() {
    if !Registry::available() {
        return;
    }
    let reg = Registry::start();
    let pid = std::process::id();
    let image = format!("{}/orun-test/moved:1", reg.host());
    let (v1, v2) = (
        format!("orun-test/reg-moved-v1:{pid}"),
        format!("orun-test/reg-moved-v2:{pid}"),
    );
    let _images = Images(vec![image.clone(), v1.clone(), v2.clone()]);
    marked(&v1, &format!("v1 {pid}"));
    marked(&v2, &format!("v2 {pid}"));
    let (v1_id, v2_id) = (image_id(&v1).unwrap(), image_id(&v2).unwrap());
    assert_ne!(v1_id, v2_id);
    reg.push(&v1, &image);

    let (node, _guard, remote) = setup("moved");
    let (app, other) = (format!("reg-moved-{pid}"), format!("reg-steady-{pid}"));
    let head = remote.commit(
        "v1",
        &[
            (
                &format!("deployments/{app}.yaml"),
                &sleeper(&node, &app, &image, "  pull: always\n"),
            ),
            (
                &format!("deployments/{other}.yaml"),
                &sleeper(&node, &other, "orun-test/busybox:1", ""),
            ),
        ],
    );
    let config = reg.login_config().join("config.json");
    let dir = tempfile::tempdir().unwrap();
    let agent = spawn(
        &remote,
        &node,
        dir.path(),
        &[
            "--registry-config",
            config.to_str().unwrap(),
            "--pull-check-interval",
            "1s",
        ],
        None,
    );
    agent.converged(&head);
    let (first, first_image) = running(&app).unwrap();
    assert_eq!(first_image, v1_id, "the container runs what was pushed");
    let steady = support::container(&other).unwrap();
    assert_eq!(replaces(&agent, &app), 0, "{:#?}", agent.events(&app));

    // The same tag, another image; nothing is committed.
    let digest = move_tag(&reg, &v2, &image);
    let moved = Instant::now();
    let (second, _) = agent
        .wait("the container replaced by one of v2")
        .until(|| running(&app).filter(|(_, image)| *image == v2_id));
    let took = moved.elapsed();
    println!("the moved tag was serving after {took:?}");
    // A check a second, a pull of one layer and a one-second gate: far inside the default
    // interval of a minute, so the flag is what made the agent look.
    assert!(took < Duration::from_secs(30), "picked up after {took:?}");
    assert_ne!(second, first);
    // Pulled from the registry: the image carries the digest the tag moved to.
    let pulled = docker_ok(&["image", "inspect", "-f", "{{json .RepoDigests}}", &v2_id]);
    let (repo, _) = image.rsplit_once(':').unwrap();
    assert!(
        pulled
            .as_deref()
            .is_some_and(|p| p.contains(&format!("{repo}@{digest}"))),
        "{pulled:?}"
    );
    assert_eq!(agent.status().unwrap()["node"]["git_head"], head.as_str());

    // Several more checks find the tag where it is: no second pull, no flapping.
    let before = agent.passes();
    agent
        .wait("five more passes")
        .until_true(|| agent.passes() >= before + 5);
    let status = agent.converged(&head);
    assert_eq!(running(&app), Some((second, v2_id)));
    let history = agent.events(&app);
    let count = |step: &str, outcome: &str| {
        history
            .iter()
            .filter(|e| e["step"] == step && e["outcome"] == outcome)
            .count()
    };
    assert_eq!(count("replace", "started"), 1, "{history:#?}");
    assert_eq!(
        count("promote", "ok"),
        2,
        "the create and the replace: {history:#?}"
    );
    assert_eq!(status["deployments"][&app]["state"], "running", "{status}");
    assert!(
        status["deployments"][&app]["last_error"].is_null(),
        "{status}"
    );
    assert_eq!(support::container(&other), Some(steady), "untouched");
    assert_eq!(replaces(&agent, &other), 0, "{:#?}", agent.events(&other));
}

/// A login the registry refuses (the agent restarted with a wrong password, the tag then
/// moved): the check cannot run, the old container keeps serving, and `/status` names the
/// registry while neither it nor the log holds a password.
#[test]
fn a_refused_login_keeps_the_old_container_and_names_the_registry() {
    if !Registry::available() {
        return;
    }
    let reg = Registry::start();
    let host = reg.host();
    let pid = std::process::id();
    let image = format!("{host}/orun-test/refused:1");
    let v2 = format!("orun-test/reg-refused-v2:{pid}");
    let _images = Images(vec![image.clone(), v2.clone()]);
    reg.push("orun-test/busybox:1", &image);

    let (node, _guard, remote) = setup("refused");
    let app = format!("reg-refused-{pid}");
    let head = remote.commit(
        "v1",
        &[(
            &format!("deployments/{app}.yaml"),
            &sleeper(&node, &app, &image, "  pull: always\n"),
        )],
    );
    let good = reg.login_config().join("config.json");
    let dir = tempfile::tempdir().unwrap();
    let check = ["--pull-check-interval", "1s"];
    let agent = spawn(
        &remote,
        &node,
        dir.path(),
        &[&["--registry-config", good.to_str().unwrap()][..], &check].concat(),
        None,
    );
    agent.converged(&head);
    let (serving, _) = running(&app).unwrap();
    drop(agent);

    let wrong_password = format!("not-the-pass-{pid}");
    let wrong = config_file(reg.dir(), "wrong", &login_json(&host, &wrong_password));
    let agent = spawn(
        &remote,
        &node,
        dir.path(),
        &[&["--registry-config", wrong.to_str().unwrap()][..], &check].concat(),
        None,
    );
    marked(&v2, &format!("v2 {pid}"));
    move_tag(&reg, &v2, &image);
    let status = agent.wait_status("the refusal in /status", |s| {
        s["deployments"][&app]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused"))
    });
    let error = status["deployments"][&app]["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("registry {host} refused")),
        "{error}"
    );
    for secret in [wrong_password.as_str(), Registry::PASSWORD] {
        assert!(!status.to_string().contains(secret), "{status}");
    }
    // A few more passes: still refused, still the old container.
    let before = agent.passes();
    agent
        .wait("five more passes")
        .until_true(|| agent.passes() >= before + 5);
    assert_eq!(running(&app).map(|(id, _)| id), Some(serving));
    assert_eq!(replaces(&agent, &app), 0, "{:#?}", agent.events(&app));
    let log = agent.logs();
    assert!(log.contains(&host), "the log names the registry");
    for secret in [
        wrong_password.clone(),
        Registry::PASSWORD.to_owned(),
        base64(format!("{}:{wrong_password}", Registry::USER).as_bytes()),
        base64(format!("{}:{}", Registry::USER, Registry::PASSWORD).as_bytes()),
    ] {
        assert!(!log.contains(&secret), "the agent log holds {secret}");
    }
}

/// A `credHelpers` entry: the agent runs `docker-credential-<name> get` from its own `PATH`
/// when it pulls, and the login it answers pulls an image the host does not have.
#[test]
fn a_credential_helper_on_the_agents_path_gives_the_login() {
    if !Registry::available() {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let reg = Registry::start();
    let host = reg.host();
    let pid = std::process::id();
    let image = format!("{host}/orun-test/helped:1");
    let _images = Images(vec![image.clone()]);
    reg.push("orun-test/busybox:1", &image);
    assert_eq!(image_id(&image), None, "only the registry has it");

    let helpers = reg.dir().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let script = helpers.join("docker-credential-orunfake");
    let asked = reg.dir().join("asked");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nread server\necho \"$1 $server\" >> '{asked}'\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{pass}\"}}' \"$server\"\n",
            asked = asked.display(),
            user = Registry::USER,
            pass = Registry::PASSWORD,
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = config_file(
        reg.dir(),
        "helped",
        &format!(r#"{{"credHelpers": {{"{host}": "orunfake"}}}}"#),
    );

    let (node, _guard, remote) = setup("helper");
    let app = format!("reg-helped-{pid}");
    let head = remote.commit(
        "v1",
        &[(
            &format!("deployments/{app}.yaml"),
            &sleeper(&node, &app, &image, ""),
        )],
    );
    let dir = tempfile::tempdir().unwrap();
    let agent = spawn(
        &remote,
        &node,
        dir.path(),
        &["--registry-config", config.to_str().unwrap()],
        Some(&helpers),
    );
    agent.converged(&head);
    assert_eq!(
        running(&app).map(|(_, image)| image),
        image_id("orun-test/busybox:1")
    );
    let asked = std::fs::read_to_string(&asked).unwrap();
    assert!(asked.lines().any(|l| l == format!("get {host}")), "{asked}");
    assert!(!agent.logs().contains(Registry::PASSWORD));
}

/// `--registry-credentials` is asked before `--registry-config`: its right password wins
/// over the config's wrong one.
#[test]
fn the_node_local_credentials_file_wins_over_the_docker_config() {
    if !Registry::available() {
        return;
    }
    let reg = Registry::start();
    let host = reg.host();
    let pid = std::process::id();
    let image = format!("{host}/orun-test/local:1");
    let _images = Images(vec![image.clone()]);
    reg.push("orun-test/busybox:1", &image);
    let wrong_password = format!("not-the-pass-{pid}");
    let wrong = config_file(reg.dir(), "wrong", &login_json(&host, &wrong_password));
    let right = config_file(reg.dir(), "right", &login_json(&host, Registry::PASSWORD));

    let (node, _guard, remote) = setup("local");
    let app = format!("reg-local-{pid}");
    let head = remote.commit(
        "v1",
        &[(
            &format!("deployments/{app}.yaml"),
            &sleeper(&node, &app, &image, ""),
        )],
    );
    let dir = tempfile::tempdir().unwrap();
    let agent = spawn(
        &remote,
        &node,
        dir.path(),
        &[
            "--registry-config",
            wrong.to_str().unwrap(),
            "--registry-credentials",
            right.to_str().unwrap(),
        ],
        None,
    );
    let status = agent.converged(&head);
    assert_eq!(status["deployments"][&app]["state"], "running", "{status}");
    assert!(
        status["deployments"][&app]["last_error"].is_null(),
        "{status}"
    );
    assert_eq!(
        running(&app).map(|(_, image)| image),
        image_id("orun-test/busybox:1")
    );
    let log = agent.logs();
    assert!(!log.contains(Registry::PASSWORD) && !log.contains(&wrong_password));
}

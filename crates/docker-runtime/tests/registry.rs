//! The registry side of images against a real `docker-registry` with htpasswd auth: the digest
//! a tag points at now against the local image's, logins from credential helpers and a
//! node-local file, refusals that name the registry, and pull progress.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use docker_runtime::{Docker, PullProgress, RegistryAuth, RuntimeError, head_digest, moved};
use test_support::docker::{Images, build, docker as docker_cli, noise};
use test_support::registry::{Registry, config_file};

/// Writes an executable `docker-credential-<name>` shell script into `dir`.
fn helper(dir: &Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&path, format!("#!/bin/sh\n{script}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The helper folder first, then the test's own `PATH` (for `sleep` and friends): given to
/// [`RegistryAuth::with_helper_path`], so the process environment is left alone.
fn helper_path(dir: &Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

#[tokio::test]
async fn the_registry_digest_follows_the_tag_and_moved_says_when_to_pull() {
    if !Registry::available() {
        return;
    }
    let reg = Registry::start();
    let auth = RegistryAuth::load(&reg.login_config().join("config.json")).unwrap();
    let docker = Docker::connect(None).await.unwrap();
    let image = format!("{}/orun-test/digest:1", reg.host());
    let other = format!("orun-test/digest-other:{}", std::process::id());
    let _images = Images(vec![image.clone(), other.clone()]);

    let first = reg.push("orun-test/busybox:1", &image);
    assert!(first.starts_with("sha256:"), "{first}");
    assert_eq!(docker.registry_digest(&image, &auth).await.unwrap(), first);
    assert_eq!(
        docker.local_digests(&image).await.unwrap(),
        Vec::<String>::new()
    );
    docker.pull(&image, &auth).await.unwrap();
    let local = docker.local_digests(&image).await.unwrap();
    assert!(
        local.contains(&format!("{}/orun-test/digest@{first}", reg.host())),
        "{local:?}"
    );
    assert!(!moved(&first, &local));

    // Another image pushed to the same tag: the registry moves, the host has not yet.
    build(
        &other,
        "FROM orun-test/busybox:1\nCOPY marker /marker\n",
        &[("marker", format!("{}", std::process::id()).as_bytes())],
    );
    let second = reg.push(&other, &image);
    assert_ne!(second, first);
    let now = docker.registry_digest(&image, &auth).await.unwrap();
    assert_eq!(now, second);
    // The check the agent makes is the registry's own `HEAD` (Basic login), and it agrees
    // with dockerd's `/distribution` answer.
    assert_eq!(head_digest(&image, &auth).await.unwrap(), second);
    assert_eq!(
        docker.distribution_digest(&image, &auth).await.unwrap(),
        second
    );
    let local = docker.local_digests(&image).await.unwrap();
    assert!(!local.is_empty(), "the host still has the first image");
    assert!(moved(&now, &local), "{now} against {local:?}");
    docker.pull(&image, &auth).await.unwrap();
    let local = docker.local_digests(&image).await.unwrap();
    assert!(!moved(&now, &local), "{now} against {local:?}");

    // A tag the registry does not have, and an image the host does not have.
    let missing = format!("{}/orun-test/digest:missing", reg.host());
    let err = docker.registry_digest(&missing, &auth).await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::NotFound(m) if m.contains(&missing)),
        "a missing tag is not a refused login, and is named: {err}"
    );
    assert_eq!(
        docker.local_digests(&missing).await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn credential_helpers_give_the_login_when_a_registry_is_contacted() {
    if !Registry::available() {
        return;
    }
    let reg = Registry::start();
    let host = reg.host();
    let docker = Docker::connect(None).await.unwrap();
    let image = format!("{host}/orun-test/helped:1");
    let _images = Images(vec![image.clone()]);
    reg.push("orun-test/busybox:1", &image);
    let helpers = reg.dir().join("helpers");
    let load = |name: &str, text: &str| {
        RegistryAuth::load(&config_file(reg.dir(), name, text))
            .unwrap()
            .with_helper_path(helper_path(&helpers))
    };

    // Loaded before the helper exists: helpers are run at pull time, not at load.
    let per_registry = load(
        "per-registry",
        &format!(r#"{{"credHelpers": {{"{host}": "orunfake"}}}}"#),
    );
    let store = load("store", r#"{"credsStore": "orunfake"}"#);
    helper(
        &helpers,
        "orunfake",
        &format!(
            "read server\n\
             echo \"$server\" >> \"$(dirname \"$0\")/asked\"\n\
             if [ \"$server\" = {host} ]; then\n\
               printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{pass}\"}}' \"$server\"\n\
             else\n\
               echo 'credentials not found in native keychain'; exit 1\n\
             fi\n",
            user = Registry::USER,
            pass = Registry::PASSWORD,
        ),
    );
    docker.pull(&image, &per_registry).await.unwrap();
    docker_cli(&["rmi", &image]);
    docker.pull(&image, &store).await.unwrap();
    docker_cli(&["rmi", &image]);
    let asked = std::fs::read_to_string(helpers.join("asked")).unwrap();
    assert_eq!(
        asked,
        format!("{host}\n{host}\n"),
        "the server address on stdin"
    );

    // "Not found" is no login: the registry refuses the anonymous pull, and is named.
    helper(
        &helpers,
        "orunnone",
        "echo 'credentials not found in native keychain'\nexit 1\n",
    );
    let none = load(
        "none",
        &format!(r#"{{"credHelpers": {{"{host}": "orunnone"}}}}"#),
    );
    let err = docker.pull(&image, &none).await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::RegistryAuth { registry, .. } if *registry == host),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("registry {host} refused")),
        "{err}"
    );

    // Another failure names the helper and the registry, and never what it wrote.
    helper(
        &helpers,
        "orunbroken",
        "echo 'leaked-secret-value'\nexit 2\n",
    );
    let broken = load(
        "broken",
        &format!(r#"{{"credHelpers": {{"{host}": "orunbroken"}}}}"#),
    );
    let err = docker.pull(&image, &broken).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::CredentialHelper { .. }),
        "{err}"
    );
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("docker-credential-orunbroken") && shown.contains(&host),
        "{shown}"
    );
    assert!(!shown.contains("leaked-secret-value"), "{shown}");
    let missing = load(
        "missing",
        &format!(r#"{{"credHelpers": {{"{host}": "orunabsent"}}}}"#),
    );
    let err = docker.pull(&image, &missing).await.unwrap_err();
    assert!(err.to_string().contains("not on the search path"), "{err}");

    // A helper that hangs is killed at the timeout, and is gone when the error comes back.
    let pid_file = helpers.join("hang.pid");
    helper(
        &helpers,
        "orunhang",
        &format!("echo $$ > {}\nexec sleep 300\n", pid_file.display()),
    );
    let hang = load(
        "hang",
        &format!(r#"{{"credHelpers": {{"{host}": "orunhang"}}}}"#),
    )
    .with_helper_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let err = docker.pull(&image, &hang).await.unwrap_err();
    let took = started.elapsed();
    assert!(err.to_string().contains("was killed"), "{err}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
    assert!(!proc.exists(), "the helper {} still runs", pid.trim());
}

#[tokio::test]
async fn a_wrong_password_is_refused_naming_the_registry_and_never_shown() {
    if !Registry::available() {
        return;
    }
    let reg = Registry::start();
    let host = reg.host();
    let docker = Docker::connect(None).await.unwrap();
    let image = format!("{host}/orun-test/refused:1");
    let _images = Images(vec![image.clone()]);
    reg.push("orun-test/busybox:1", &image);
    let wrong = RegistryAuth::load(&config_file(
        reg.dir(),
        "wrong",
        &format!(
            r#"{{"auths": {{"{host}": {{"username": "orun", "password": "wrong-pass-4711"}}}}}}"#
        ),
    ))
    .unwrap();
    assert!(!format!("{wrong:?}").contains("wrong-pass-4711"));

    let err = docker.pull(&image, &wrong).await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::RegistryAuth { registry, image: i, .. }
            if *registry == host && *i == image),
        "{err}"
    );
    let shown = format!("{err} {err:?}");
    assert!(shown.contains(&host), "{shown}");
    assert!(!shown.contains("wrong-pass-4711"), "{shown}");

    // The registry's own check gets no answer with the wrong login, and dockerd's, asked
    // then, says who refused.
    let err = head_digest(&image, &wrong).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 401"), "{err}");
    assert!(!format!("{err} {err:?}").contains("wrong-pass-4711"));
    let err = docker.registry_digest(&image, &wrong).await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::RegistryAuth { registry, .. } if *registry == host),
        "{err}"
    );
    assert!(!format!("{err} {err:?}").contains("wrong-pass-4711"));
}

#[tokio::test]
async fn the_node_local_login_wins_over_the_docker_config() {
    if !Registry::available() {
        return;
    }
    let reg = Registry::start();
    let host = reg.host();
    let docker = Docker::connect(None).await.unwrap();
    let image = format!("{host}/orun-test/local:1");
    let _images = Images(vec![image.clone()]);
    reg.push("orun-test/busybox:1", &image);
    let right = reg.login_config().join("config.json");
    let wrong = config_file(
        reg.dir(),
        "wrong",
        &format!(r#"{{"auths": {{"{host}": {{"username": "orun", "password": "nope"}}}}}}"#),
    );
    let elsewhere = config_file(
        reg.dir(),
        "elsewhere",
        r#"{"auths": {"reg.invalid": {"username": "u", "password": "p"}}}"#,
    );

    let auth = RegistryAuth::load_with(Some(&wrong), Some(&right)).unwrap();
    docker.pull(&image, &auth).await.unwrap();
    docker_cli(&["rmi", &image]);

    // The other way round the wrong one wins, which shows the order is the files' roles.
    let auth = RegistryAuth::load_with(Some(&right), Some(&wrong)).unwrap();
    let err = docker.pull(&image, &auth).await.unwrap_err();
    assert!(matches!(err, RuntimeError::RegistryAuth { .. }), "{err}");

    // A node-local file without a login for this registry leaves it to the Docker config.
    let auth = RegistryAuth::load_with(Some(&right), Some(&elsewhere)).unwrap();
    docker.pull(&image, &auth).await.unwrap();
    docker_cli(&["rmi", &image]);

    // No files at all, or missing ones, are no logins.
    let gone = reg.dir().join("no-such/config.json");
    let auth = RegistryAuth::load_with(Some(&gone), None).unwrap();
    assert_eq!(auth.hosts().count(), 0);
}

#[tokio::test]
async fn pull_progress_counts_every_layer_and_the_bytes_of_a_fresh_pull() {
    if !Registry::available() {
        return;
    }
    let reg = Registry::start();
    let auth = RegistryAuth::load(&reg.login_config().join("config.json")).unwrap();
    let docker = Docker::connect(None).await.unwrap();
    let built = format!("orun-test/progress:{}", std::process::id());
    let image = format!("{}/orun-test/progress:1", reg.host());
    let _images = Images(vec![image.clone(), built.clone()]);
    const LAYER: usize = 512 * 1024;
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
    build(
        &built,
        "FROM orun-test/busybox:1\nCOPY blob /blob\n",
        &[("blob", &noise(LAYER, seed))],
    );
    reg.push(&built, &image);
    // Only the registry has the new layer now.
    docker_cli(&["rmi", &built]);

    let mut seen: Vec<PullProgress> = Vec::new();
    let started = Instant::now();
    docker
        .pull_with(&image, &auth, &mut |p| seen.push(p))
        .await
        .unwrap();
    let took = started.elapsed();
    let last = *seen.last().expect("at least the final progress");
    assert!(last.layers_total >= 2, "{last:?}");
    assert_eq!(last.layers_done, last.layers_total, "{seen:?}");
    assert!(last.bytes_total >= LAYER as u64, "{last:?}");
    assert_eq!(last.bytes_done, last.bytes_total, "{seen:?}");
    // Not a call per stream message: a layer completion each, one per 250 ms, and the end.
    let bound = last.layers_total + (took.as_millis() / 250) as usize + 2;
    assert!(
        seen.len() <= bound,
        "{} calls in {took:?}: {seen:?}",
        seen.len()
    );
    for pair in seen.windows(2) {
        assert!(
            pair[1].layers_done >= pair[0].layers_done && pair[1].bytes_done >= pair[0].bytes_done,
            "progress went back: {seen:?}"
        );
    }
}

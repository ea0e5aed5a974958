//! Observation against a real Docker daemon (`cargo xtask test` starts one and builds the
//! `orun-test/busybox:1` image offline). Containers are made with the docker CLI, carry a
//! per-test label, and are removed by that label even when the test fails.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use docker_runtime::Docker;
use reconcile_core::{ContainerState, HealthStatus};

const IMAGE: &str = "orun-test/busybox:1";

use test_support::docker::{Guard, docker};

fn guard(test: &str) -> Guard {
    Guard(format!("orun.test={test}-{}", std::process::id()))
}

#[tokio::test]
async fn observes_labels_states_and_exit_codes() {
    let g = guard("observe");
    let tag = g.0.clone();
    let name = |s: &str| format!("orun-test-{}-{s}", std::process::id());
    // A running managed container, a created one, and one that exited with a code.
    let running = docker(&[
        "run",
        "-d",
        "--name",
        &name("run"),
        "--label",
        &tag,
        "--label",
        "orun.node=t1",
        "--label",
        "orun.environment=e1",
        "--label",
        "orun.deployment=web",
        "--label",
        "orun.spec-hash=0f1e2d",
        IMAGE,
        "sleep",
        "300",
    ]);
    let created = docker(&[
        "create",
        "--name",
        &name("new"),
        "--label",
        &tag,
        IMAGE,
        "true",
    ]);
    let exited = docker(&[
        "run",
        "-d",
        "--name",
        &name("exit"),
        "--label",
        &tag,
        IMAGE,
        "sh",
        "-c",
        "exit 3",
    ]);
    // Wait for the exit with a deadline, not a sleep.
    docker(&["wait", &exited]);

    let docker = Docker::connect(None).await.unwrap();
    assert!(
        docker.api_version().starts_with("1."),
        "{}",
        docker.api_version()
    );
    let actual = docker.observe().await.unwrap();
    let find = |id: &str| {
        actual
            .containers
            .iter()
            .find(|c| c.id == id)
            .unwrap()
            .clone()
    };

    let r = find(&running);
    assert_eq!(r.name, name("run"));
    assert_eq!(r.state, ContainerState::Running);
    assert!(r.managed_by("t1", "e1") && !r.managed_by("t2", "e1") && !r.managed_by("t1", "e2"));
    assert_eq!(r.deployment(), Some("web"));
    assert!(r.image_id.starts_with("sha256:"), "{}", r.image_id);
    assert_eq!(find(&created).state, ContainerState::Created);
    assert_eq!(find(&exited).state, ContainerState::Exited { code: 3 });

    // Image lookup: present gives the same id the container runs; absent is None, not an error.
    assert_eq!(
        docker.image_id(IMAGE).await.unwrap(),
        Some(r.image_id.clone())
    );
    assert_eq!(
        docker.image_id("orun-test/never-built:0").await.unwrap(),
        None
    );
}

/// A container with a HEALTHCHECK is observed starting, then healthy (polled with a deadline).
#[tokio::test]
async fn observes_healthcheck_status() {
    let g = guard("health");
    let tag = g.0.clone();
    let name = format!("orun-test-{}-health", std::process::id());
    let id = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        &tag,
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        IMAGE,
        "sleep",
        "300",
    ]);
    let docker = Docker::connect(None).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let actual = docker.observe().await.unwrap();
        let health = actual
            .containers
            .iter()
            .find(|c| c.id == id)
            .unwrap()
            .health;
        if health == Some(HealthStatus::Healthy) {
            break;
        }
        assert!(matches!(health, Some(HealthStatus::Starting)), "{health:?}");
        assert!(std::time::Instant::now() < deadline, "never became healthy");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn unreachable_daemon_is_a_transient_connect_error() {
    let err = Docker::connect(Some("unix:///nonexistent/docker.sock"))
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert!(
        err.to_string().contains("/nonexistent/docker.sock"),
        "{err}"
    );
}

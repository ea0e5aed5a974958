//! Applying against a real Docker daemon: a container created from a manifest carries every
//! field of its spec, serves, and then plans as converged; drift (paused, stopped) is planned
//! and repaired through the same API. Containers are removed by a per-test label even when the
//! test fails.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use docker_runtime::{Docker, Owner, RuntimeError};
use manifest_model::{Limits, MemSource, load, resolve};
use reconcile_core::{Action, Desired, History, RenderedEnv, Timestamp, plan};

use test_support::docker::{Guard, docker as docker_cli};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path`, retried for `limit`: the container needs a moment to listen.
fn get(port: u16, path: &str, limit: Duration) -> String {
    test_support::wait::wait("an HTTP answer", limit)
        .every(Duration::from_millis(100))
        .until(|| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
            let mut body = String::new();
            s.read_to_string(&mut body).ok()?;
            body.starts_with("HTTP/1.").then_some(body)
        })
}

fn desired(node: &str, port: u16, data: &str, guard: &str) -> Desired {
    let src = MemSource::new()
        .with(
            format!("nodes/{node}.yaml"),
            format!("apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: {node}\nspec:\n  host: 127.0.0.1\n  gitRepo: /srv/repo.git\n  gitBranch: {node}\n"),
        )
        .with(
            "deployments/hello.yaml",
            format!(
                "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: hello\nspec:\n  image: orun-example/hello:1\n\
                 \x20 ports:\n    - containerPort: 80\n      port: {port}\n      hostIP: 127.0.0.1\n\
                 \x20 env:\n    MODE: blue\n\
                 \x20 volumes:\n    - hostPath: {data}\n      containerPath: /data\n      readOnly: true\n\
                 \x20 resources:\n    memory: 64Mi\n    cpus: 0.5\n\
                 \x20 restart: on-failure\n\
                 \x20 labels:\n    orun-test-guard: \"{guard}\"\n"
            ),
        );
    let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
    let node = resolve(&rev, node, None).unwrap();
    Desired::from_node(&node, Some("abc123".into()), |_| None, &Default::default())
}

async fn replan(docker: &Docker, d: &Desired) -> reconcile_core::Plan {
    let mut actual = docker.observe().await.unwrap();
    let mut d = d.clone();
    for dep in &mut d.deployments {
        dep.image_id = docker.image_id(&dep.spec.image).await.unwrap();
    }
    actual
        .containers
        .retain(|c| c.name.starts_with(&d.environment));
    plan(&d, &actual, &History::default(), Timestamp(0))
}

#[tokio::test]
async fn created_containers_carry_their_spec_and_converge() {
    let pid = std::process::id();
    let node = format!("a{pid}");
    let guard_value = format!("apply-{pid}");
    let _guard = Guard(format!("orun-test-guard={guard_value}"));
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = desired(
        &node,
        port,
        &data.path().display().to_string(),
        &guard_value,
    );
    let dep = &d.deployments[0];
    // The node allows exactly the test's folder: the default policy binds nothing.
    let allowed = std::fs::canonicalize(data.path()).unwrap();
    let guard = docker_runtime::policy::Guard {
        host: manifest_model::HostPolicy {
            all: manifest_model::Allowance {
                bind: vec![allowed.display().to_string()],
                volumes: Vec::new(),
            },
            ..Default::default()
        },
        protected: Vec::new(),
    };
    let docker = Docker::connect(None).await.unwrap().with_guard(guard);

    // The fresh node plans one create; apply it as the agent would.
    let p = replan(&docker, &d).await;
    assert_eq!(p.counts(), (1, 0, 0, 0), "{p}");
    let owner = Owner {
        node: &node,
        environment: &d.environment,
        deployment: &dep.name,
        commit: d.commit.as_deref(),
    };
    let id = docker
        .create(&dep.spec.container_name, &dep.spec, owner, &BTreeMap::new())
        .await
        .unwrap();
    docker.start(&id).await.unwrap();
    let body = get(port, "/health", Duration::from_secs(20));
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    assert!(body.trim_end().ends_with("ok"), "{body}");

    // Every field reached Docker.
    let inspect: Vec<serde_json::Value> =
        serde_json::from_str(&docker_cli(&["inspect", &id])).unwrap();
    let c = &inspect[0];
    assert_eq!(c["Name"], format!("/{node}.hello"));
    assert!(
        c["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "MODE=blue")
    );
    assert_eq!(c["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(c["HostConfig"]["NanoCpus"], 500_000_000);
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(
        c["HostConfig"]["Binds"][0],
        format!("{}:/data:ro", data.path().display())
    );
    assert_eq!(
        c["HostConfig"]["PortBindings"]["80/tcp"][0]["HostIp"],
        "127.0.0.1"
    );
    assert_eq!(c["Config"]["Labels"]["orun.environment"], node.as_str());
    assert_eq!(
        c["Config"]["Labels"]["orun.spec-hash"],
        dep.spec_hash.as_str()
    );
    assert_eq!(c["Config"]["Labels"]["orun.commit"], "abc123");

    // Observed again, it is exactly the desired generation: nothing to do.
    let p = replan(&docker, &d).await;
    assert!(p.is_empty(), "{p}");

    // Drift: paused by hand is planned as unpause, and repaired.
    docker_cli(&["pause", &id]);
    let p = replan(&docker, &d).await;
    assert!(
        matches!(&p.steps[..], [s] if matches!(s.action, Action::Unpause { .. })),
        "{p}"
    );
    docker.unpause(&id).await.unwrap();
    assert!(replan(&docker, &d).await.is_empty());

    // Stopped: planned as start, repaired.
    docker.stop(&id, 1).await.unwrap();
    let p = replan(&docker, &d).await;
    assert!(
        matches!(&p.steps[..], [s] if matches!(s.action, Action::Start { .. })),
        "{p}"
    );
    docker.start(&id).await.unwrap();
    assert!(replan(&docker, &d).await.is_empty());

    // Removed (twice: the second is a no-op, not an error); the node plans a create again.
    docker.remove(&id).await.unwrap();
    docker.remove(&id).await.unwrap();
    assert_eq!(replan(&docker, &d).await.counts(), (1, 0, 0, 0));
}

/// A secret the spec needs must be supplied; the error names the key only.
#[tokio::test]
async fn missing_secret_is_refused_before_docker_sees_anything() {
    let d = desired("m1", free_port(), "/tmp", "unused");
    let mut spec = d.deployments[0].spec.clone();
    spec.env.insert(
        "DB_PASSWORD".into(),
        RenderedEnv::Secret("sha256:00".into()),
    );
    let docker = Docker::connect(None).await.unwrap();
    let owner = Owner {
        node: "m1",
        environment: "m1",
        deployment: "hello",
        commit: None,
    };
    let err = docker
        .create("never-created", &spec, owner, &BTreeMap::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::MissingSecret(k) if k == "DB_PASSWORD"),
        "{err}"
    );
    assert!(
        Command::new("docker")
            .args(["inspect", "never-created"])
            .output()
            .unwrap()
            .status
            .code()
            != Some(0)
    );
}

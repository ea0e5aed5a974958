//! Pulls from a real `docker-registry` with htpasswd auth (logins read from a Docker config
//! file), and the event stream reporting a managed container's death.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use docker_runtime::{Docker, RegistryAuth, RuntimeError, WatchEvent};
use test_support::docker::{Guard, docker as docker_cli};
use test_support::registry::Registry;

#[tokio::test]
async fn pulls_with_logins_from_the_docker_config_and_reports_why_it_cannot() {
    if !Registry::available() {
        return;
    }
    let reg = Registry::start();
    let config = reg.login_config();
    let host = reg.host();
    let image = format!("{host}/orun-test/pulled:1");
    reg.push("orun-test/busybox:1", &image);

    let docker = Docker::connect(None).await.unwrap();
    assert_eq!(docker.image_id(&image).await.unwrap(), None);

    // Without a login the registry's refusal comes back naming it.
    let err = docker
        .pull(&image, &RegistryAuth::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::RegistryAuth { registry, .. } if *registry == host),
        "{err}"
    );
    assert!(!err.to_string().contains(Registry::PASSWORD));

    let auth = RegistryAuth::load(&config.join("config.json")).unwrap();
    assert!(auth.hosts().any(|h| h == host), "{auth:?}");
    let id = docker.pull(&image, &auth).await.unwrap();
    let expected = docker
        .image_id("orun-test/busybox:1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, expected);
    docker_cli(&["rmi", &image]);

    // A tag that does not exist.
    let err = docker
        .pull(&format!("{host}/orun-test/pulled:missing"), &auth)
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Pull { .. }), "{err}");
    assert!(!format!("{err} {err:?}").contains(Registry::PASSWORD));
}

// Single-threaded on purpose: the watcher connects only after the events happened, and must
// still see them (it asks Docker for events since the watch began).
#[tokio::test]
async fn the_event_stream_reports_a_managed_container_dying() {
    let node = format!("events-{}", std::process::id());
    let _guard = Guard(format!("orun.node={node}"));
    let docker = Docker::connect(None).await.unwrap();
    let mut events = docker.watch(&node);
    let id = docker_cli(&[
        "run",
        "-d",
        "--label",
        &format!("orun.node={node}"),
        "--label",
        "orun.deployment=web",
        "orun-test/busybox:1",
        "sleep",
        "600",
    ]);
    // An unrelated container's events are filtered out by Docker.
    let other_node = format!("other-{}", std::process::id());
    let _other_guard = Guard(format!("orun.node={other_node}"));
    docker_cli(&[
        "run",
        "--rm",
        "--label",
        &format!("orun.node={other_node}"),
        "orun-test/busybox:1",
        "true",
    ]);
    docker_cli(&["kill", &id]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = HashMap::new();
    while !seen.contains_key("die") {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .expect("a die event before the deadline")
            .unwrap();
        if let WatchEvent::Container {
            action,
            id: eid,
            deployment,
        } = event
        {
            assert_eq!(eid, id, "only this node's container is reported");
            assert_eq!(deployment.as_deref(), Some("web"));
            seen.insert(action, ());
        }
    }
}

// The agent keeps its picture of the host from these: a container named by an event is
// looked at alone (a removed one is simply not in the answer), and an image change is seen
// even though images carry no node label.
#[tokio::test]
async fn named_containers_are_listed_alone_and_image_changes_are_watched() {
    let node = format!("picture-{}", std::process::id());
    let _guard = Guard(format!("orun.node={node}"));
    let docker = Docker::connect(None).await.unwrap();
    let mut events = docker.watch(&node);
    let run = || {
        docker_cli(&[
            "run",
            "-d",
            "--label",
            &format!("orun.node={node}"),
            "orun-test/busybox:1",
            "sleep",
            "600",
        ])
    };
    let (kept, gone) = (run(), run());
    docker_cli(&["rm", "-f", &gone]);
    let found = docker
        .observe_ids(&[kept.clone(), gone.clone()])
        .await
        .unwrap();
    let ids: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [kept.as_str()]);
    // Docker matches the id filter as a pattern; a part of an id is not an answer.
    let part = docker.observe_ids(&[kept[..12].to_owned()]).await.unwrap();
    assert!(part.is_empty(), "{part:?}");
    assert!(docker.observe_ids(&[]).await.unwrap().is_empty());

    let tag = format!("orun-test/busybox:picture-{}", std::process::id());
    docker_cli(&["tag", "orun-test/busybox:1", &tag]);
    docker_cli(&["rmi", &tag]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut actions = Vec::new();
    while !actions.iter().any(|a| a == "untag") {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .unwrap_or_else(|_| panic!("image events before the deadline; saw {actions:?}"))
            .unwrap();
        if let WatchEvent::Image { action } = event {
            actions.push(action);
        }
    }
    assert!(actions.iter().any(|a| a == "tag"), "{actions:?}");
}

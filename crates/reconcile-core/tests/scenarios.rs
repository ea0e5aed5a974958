//! Planner scenarios from real manifests, with the plan as `orun plan` prints it.
//!
//! Each case builds the desired state from manifest YAML, the actual state from containers
//! "created by an earlier revision" (labels as the agent writes them) plus strangers, and
//! snapshots the rendered plan.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::BTreeMap;

use expect_test::{Expect, expect};
use manifest_model::{Limits, MemSource, load, resolve};
use reconcile_core::*;

const NODE: &str = "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n1\nspec:\n  host: n1.internal\n  gitRepo: /srv/repo.git\n";

/// The desired state of node n1 for deployments given as `(name, spec body)`.
fn desired(deployments: &[(&str, &str)]) -> Desired {
    let mut src = MemSource::new().with("nodes/n1.yaml", NODE);
    for (name, body) in deployments {
        src.insert(
            format!("deployments/{name}.yaml"),
            format!("apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n{body}"),
        );
    }
    let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
    let node = resolve(&rev, "n1", None).unwrap();
    // Image ids as Docker shows them: a digest, here derived from the reference.
    Desired::from_node(
        &node,
        Some("9f8e7d6c5b4a".into()),
        |image| Some(secret_digest(image.as_bytes())),
        &Default::default(),
    )
}

/// A running container exactly as the agent would have created it for `d`.
fn created(d: &DesiredDeployment, id: &str) -> ObservedContainer {
    ObservedContainer::from(ObservedFields {
        id: id.to_owned(),
        name: d.spec.container_name.clone(),
        image_id: d.image_id.clone().unwrap(),
        state: ContainerState::Running,
        health: None,
        labels: BTreeMap::from([
            (LABEL_NODE.to_owned(), "n1".to_owned()),
            (LABEL_ENVIRONMENT.to_owned(), "main".to_owned()),
            (LABEL_DEPLOYMENT.to_owned(), d.name.clone()),
            (LABEL_SPEC_HASH.to_owned(), d.spec_hash.clone()),
            (LABEL_SPEC.to_owned(), d.spec.canonical_json()),
        ]),
    })
}

fn stranger(id: &str, name: &str, labels: &[(&str, &str)]) -> ObservedContainer {
    ObservedContainer::from(ObservedFields {
        id: id.to_owned(),
        name: name.to_owned(),
        image_id: "sha256:other".to_owned(),
        state: ContainerState::Running,
        health: None,
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    })
}

fn check(desired: &Desired, actual: Vec<ObservedContainer>, history: &History, expect: Expect) {
    let p = plan(
        desired,
        &Actual {
            images: Default::default(),
            containers: actual,
        },
        history,
        Timestamp(1_000),
    );
    expect.assert_eq(&format!("{p}\n"));
}

const WEB: &str = "  image: nginx:1.27\n  ports:\n    - containerPort: 80\n      port: 8080\n  env:\n    MODE: blue\n";
const API: &str = "  image: org/api:1\n";

#[test]
fn fresh_node_creates_everything() {
    let mut d = desired(&[("web", WEB), ("api", API)]);
    d.deployments[0].image_id = None; // api's image is not on the host yet
    check(
        &d,
        vec![],
        &History::default(),
        expect![[r#"
        + api: create api (not running on this node, image to fetch) [9f8e7d6c5b4a]
        + web: create web (not running on this node) [9f8e7d6c5b4a]
        Plan: 2 to create, 0 to replace, 0 to start, 0 to remove.
    "#]],
    );
}

#[test]
fn converged_node_has_nothing_to_do() {
    let d = desired(&[("web", WEB), ("api", API)]);
    let actual = d
        .deployments
        .iter()
        .enumerate()
        .map(|(i, x)| created(x, &format!("c{i}")))
        .collect();
    check(
        &d,
        actual,
        &History::default(),
        expect![[r#"
        Plan: 0 to create, 0 to replace, 0 to start, 0 to remove.
    "#]],
    );
}

/// A changed image and env: replace with the field diff; env values are never shown.
/// Host ports make it stop-first.
#[test]
fn changed_fields_are_listed() {
    let old = desired(&[("web", WEB)]);
    let new = desired(&[(
        "web",
        &WEB.replace("nginx:1.27", "nginx:1.28")
            .replace("blue", "hunter2"),
    )]);
    let p = plan(
        &new,
        &Actual {
            images: Default::default(),
            containers: vec![created(&old.deployments[0], "c1")],
        },
        &History::default(),
        Timestamp(0),
    );
    assert!(
        !format!("{p}").contains("hunter2")
            && !serde_json::to_string(&p).unwrap().contains("hunter2")
    );
    check(
        &new,
        vec![created(&old.deployments[0], "c1")],
        &History::default(),
        expect![[r#"
            ~ web: replace web (stop-first) [9f8e7d6c5b4a]
                env.MODE: *** -> ***
                image: nginx:1.27 -> nginx:1.28
            Plan: 0 to create, 1 to replace, 0 to start, 0 to remove.
        "#]],
    );
}

/// The same tag now names another image (re-tagged upstream): that is a change too.
#[test]
fn retagged_image_is_a_change() {
    let d = desired(&[("api", API)]);
    let mut c = created(&d.deployments[0], "c1");
    c.image_id =
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_owned();
    check(
        &d,
        vec![c],
        &History::default(),
        expect![[r#"
            ~ api: replace api (start-first) [9f8e7d6c5b4a]
                image id: 0123456789ab -> b3696655fe1b
            Plan: 0 to create, 1 to replace, 0 to start, 0 to remove.
        "#]],
    );
}

/// Drift: stopped or renamed by hand is repaired; a deployment gone from Git is removed.
#[test]
fn drift_and_removal() {
    let d = desired(&[("web", WEB), ("api", API)]);
    // Deployments are sorted by name: [api, web].
    let mut stopped = created(&d.deployments[1], "c1");
    stopped.state = ContainerState::Exited { code: 137 };
    let mut renamed = created(&d.deployments[0], "c2");
    renamed.name = "api-by-hand".to_owned();
    let gone = desired(&[("old", API)]);
    check(
        &d,
        vec![stopped, renamed, created(&gone.deployments[0], "c3")],
        &History::default(),
        expect![[r#"
            - old: remove old (deployment is no longer in the repository for this node) [9f8e7d6c5b4a]
            > web: start web (container is stopped (exit code 137))
            ~ api: rename api-by-hand to api (it runs the current spec under another name)
            Plan: 0 to create, 1 to replace, 1 to start, 1 to remove.
        "#]],
    );
}

/// Strangers are never touched: a same-named unmanaged container blocks the create, and a
/// look-alike carrying another node's labels is left alone.
#[test]
fn strangers_are_left_alone() {
    let d = desired(&[("web", WEB), ("api", API)]);
    let lookalike = stranger(
        "s2",
        "api-copy",
        &[(LABEL_NODE, "n2"), (LABEL_DEPLOYMENT, "api")],
    );
    check(
        &d,
        vec![
            stranger("s1", "web", &[]),
            lookalike,
            created(&d.deployments[0], "c1"),
        ],
        &History::default(),
        expect![[r#"
            ! web: name web is taken by container s1, which is left alone
            Plan: 0 to create, 0 to replace, 0 to start, 0 to remove.
        "#]],
    );
}

#[test]
fn suspended_and_backing_off() {
    let d = desired(&[("web", &format!("{WEB}  suspend: true\n")), ("api", API)]);
    let mut h = History::default();
    h.failures.insert(
        "api".to_owned(),
        Failure {
            spec_hash: d.deployments[0].spec_hash.clone(),
            attempts: 2,
            last_failed: Timestamp(990),
            reason: "readiness probe failed".into(),
        },
    );
    check(
        &d,
        vec![],
        &h,
        expect![[r#"
        ! api: failed before (readiness probe failed); next attempt at 1110
        ! web: suspended; left as it runs
        Plan: 0 to create, 0 to replace, 0 to start, 0 to remove.
    "#]],
    );
}

#[test]
fn removing_everything_is_refused() {
    let old = desired(&[("web", WEB), ("api", API)]);
    let none = Desired {
        node: "n1".into(),
        environment: "main".into(),
        commit: Some("abc".into()),
        deployments: vec![],
        allow_empty: false,
    };
    let actual: Vec<_> = old
        .deployments
        .iter()
        .enumerate()
        .map(|(i, x)| created(x, &format!("c{i}")))
        .collect();
    check(
        &none,
        actual.clone(),
        &History::default(),
        expect![[r#"
        ! refusing to remove all 2 managed container(s): the node would run nothing; allow it in the node-local config
        Plan: 0 to create, 0 to replace, 0 to start, 0 to remove.
    "#]],
    );
    let allowed = Desired {
        allow_empty: true,
        ..none
    };
    check(
        &allowed,
        actual,
        &History::default(),
        expect![[r#"
        - api: remove api (deployment is no longer in the repository for this node) [abc]
        - web: remove web (deployment is no longer in the repository for this node) [abc]
        Plan: 0 to create, 0 to replace, 0 to start, 2 to remove.
    "#]],
    );
}

/// The JSON form is stable: its shape is documented in docs/plan.md.
#[test]
fn json_shape() {
    let old = desired(&[("web", WEB)]);
    let new = desired(&[
        ("web", &WEB.replace("nginx:1.27", "nginx:1.28")),
        ("api", API),
    ]);
    let p = plan(
        &new,
        &Actual {
            images: Default::default(),
            containers: vec![created(&old.deployments[0], "c1")],
        },
        &History::default(),
        Timestamp(0),
    );
    expect![[r#"
        {
          "steps": [
            {
              "deployment": "web",
              "action": "replace",
              "old_id": "c1",
              "old_name": "web",
              "container_name": "web",
              "spec_hash": "ad85520b97122a3068e37699988a2c9b311ad551821d88bbf6ea4a29ddd661e2",
              "strategy": "stop-first",
              "needs_image": false,
              "reason": {
                "summary": "image changed",
                "changes": [
                  {
                    "field": "image",
                    "old": "nginx:1.27",
                    "new": "nginx:1.28"
                  }
                ],
                "commit": "9f8e7d6c5b4a"
              }
            },
            {
              "deployment": "api",
              "action": "create",
              "container_name": "api",
              "spec_hash": "f23ed6c32254a8bd32cc7b10eebeb20e206f9bc5974a09549278b93b194a2c8e",
              "needs_image": false,
              "reason": {
                "summary": "not running on this node",
                "commit": "9f8e7d6c5b4a"
              }
            }
          ],
          "diagnostics": []
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(&p).unwrap());
}

/// Drift Docker would refuse to `start`: paused is unpaused, dead is replaced.
#[test]
fn paused_and_dead_containers() {
    let d = desired(&[("web", WEB), ("api", API)]);
    let mut dead = created(&d.deployments[0], "c1");
    dead.state = ContainerState::Dead;
    let mut paused = created(&d.deployments[1], "c2");
    paused.state = ContainerState::Paused;
    check(
        &d,
        vec![dead, paused],
        &History::default(),
        expect![[r#"
            > web: unpause web (container is paused)
            ~ api: replace api (start-first) [9f8e7d6c5b4a]
                container is dead
            Plan: 0 to create, 1 to replace, 1 to start, 0 to remove.
        "#]],
    );
}

/// The same node's agent for another branch, and a container with a copied `orun.node` but
/// not orun's other labels, are not ours: never removed, only names they hold are respected.
#[test]
fn other_environments_and_partial_labels_are_not_ours() {
    let d = desired(&[("api", API)]);
    let mut staging = created(&desired(&[("web", WEB)]).deployments[0], "c1");
    staging.set_label(LABEL_ENVIRONMENT.to_owned(), "staging".to_owned());
    staging.name = "staging.web".to_owned();
    let partial = stranger("s1", "my-db", &[(LABEL_NODE, "n1")]);
    check(
        &d,
        vec![staging, partial, created(&d.deployments[0], "c2")],
        &History::default(),
        expect![[r#"
            Plan: 0 to create, 0 to replace, 0 to start, 0 to remove.
        "#]],
    );
}

/// Two of our containers hold each other's names (renamed by hand): the cycle is reported
/// against the container that holds each name, and left to a human.
#[test]
fn swapped_names_name_the_holder() {
    let d = desired(&[("web", WEB), ("api", API)]);
    let mut a = created(&d.deployments[0], "aaaa00000001");
    a.name = "web".to_owned();
    let mut w = created(&d.deployments[1], "bbbb00000002");
    w.name = "api".to_owned();
    check(
        &d,
        vec![a, w],
        &History::default(),
        expect![[r#"
        ! api: name api is taken by container bbbb00000002, which is left alone
        ! web: name web is taken by container aaaa00000001, which is left alone
        Plan: 0 to create, 0 to replace, 0 to start, 0 to remove.
    "#]],
    );
}

/// A value rotated in `secrets.yaml` changes the spec of every deployment it is offered to,
/// and the diff shows the key, never the value or a digest of it. A value re-encrypted but
/// unchanged (new ciphertext, same fingerprint) changes nothing.
#[test]
fn rotated_secrets_file_value_rolls_the_deployment() {
    let secrets = |data: &str| {
        format!(
            "DB_PASSWORD: ENC[AES256_GCM,data:{data},iv:O6r4yGD+odLEhDsc0y7aYGb1j/UC83ipBPfiQ69Vvic=,tag:JrZvo0ZQNag1D+nGnwDf1A==,type:str]\n\
             sops:\n    age:\n        - recipient: age1x\n          enc: x\n    lastmodified: \"2022-03-15T22:11:15Z\"\n\
             \x20   mac: ENC[AES256_GCM,data:ZXhhbXBsZQ==,iv:9Y2ASpFstcE8ZgwzOvb3oMQsd30Rukd7gvOb7lMvV1o=,tag:qXQosmzw6UoOXFI+8IvtXg==,type:str]\n"
        )
    };
    let desired_with = |data: &str, fingerprint: &str| {
        let src = MemSource::new()
            .with("nodes/n1.yaml", NODE)
            .with("deployments/api.yaml", format!("apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: api\nspec:\n{API}"))
            .with("secrets.yaml", secrets(data));
        let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
        let mut fps = manifest_model::Fingerprints::default();
        fps.file.insert("DB_PASSWORD".into(), fingerprint.into());
        Desired::from_node(
            &resolve(&rev, "n1", None).unwrap(),
            None,
            |i| Some(secret_digest(i.as_bytes())),
            &fps,
        )
    };
    let old = desired_with("DywXZc/D+Q==", "hmac-sha256:01");
    let reencrypted = desired_with("aGVsbG8hIQ==", "hmac-sha256:01");
    assert_eq!(
        old.deployments[0].spec_hash,
        reencrypted.deployments[0].spec_hash
    );
    let new = desired_with("aGVsbG8hIQ==", "hmac-sha256:02");
    assert_ne!(old.deployments[0].spec_hash, new.deployments[0].spec_hash);
    check(
        &new,
        vec![created(&old.deployments[0], "c1")],
        &History::default(),
        expect![[r#"
            ~ api: replace api (start-first)
                env.(secrets.yaml): *** -> ***
            Plan: 0 to create, 1 to replace, 0 to start, 0 to remove.
        "#]],
    );
}

//! Fuzz target: any observations (a snapshot `orun plan --actual` may be handed) plan safely.
//!
//! Issue 12, classes 5 and 8: containers of arbitrary names, ids (repeated ones included) and
//! ownership labels, from this node's agent, another branch's with the same environment id,
//! another node's, or nobody's. Checked: no step acts on a container this agent does not
//! own, nor on an id listed twice; no two steps remove or replace one container; and the
//! plan does not depend on the order of the observations.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use reconcile_core::*;

const NODE: &str = "n1";
const BRANCH: &str = "feature/x";

fn spec(name: &str, image: &str) -> RenderedSpec {
    RenderedSpec {
        container_name: name.to_owned(),
        image: image.to_owned(),
        command: None,
        args: None,
        env: BTreeMap::new(),
        ports: Vec::new(),
        volumes: Vec::new(),
        restart: "always".to_owned(),
        memory: None,
        millicpus: None,
        labels: BTreeMap::new(),
        probes: BTreeMap::new(),
        offered_secrets: None,
        network: None,
    }
}

const NAMES: [&str; 6] = ["feature-x.a", "feature-x.b", "feature-x.c", "a", "b", "c"];
const DEPLOYMENTS: [&str; 3] = ["a", "b", "c"];

fuzz_target!(|data: &[u8]| {
    let desired = Desired {
        node: NODE.to_owned(),
        environment: BRANCH.to_owned(),
        commit: None,
        deployments: DEPLOYMENTS
            .iter()
            .enumerate()
            .filter(|(i, _)| data.first().is_none_or(|b| b & (1 << i) != 0))
            .map(|(_, d)| {
                DesiredDeployment::new(*d, spec(&format!("feature-x.{d}"), "img:1"), None, ReplaceStrategy::StartFirst, false)
            })
            .collect(),
        allow_empty: data.get(1).is_some_and(|b| b & 1 == 1),
    };
    let mut containers = Vec::new();
    for chunk in data.get(2..).unwrap_or_default().chunks(4).take(64) {
        let &[id, name, owner, state] = chunk else { break };
        let d = DEPLOYMENTS[usize::from(owner >> 4) % 3];
        let mut labels = BTreeMap::new();
        let env = match owner % 4 {
            0 => Some(BRANCH),
            1 => Some("feature_x"),
            2 => Some("feature-x"),
            _ => None,
        };
        if let Some(env) = env {
            labels.insert(LABEL_NODE.to_owned(), if owner & 8 == 0 { NODE } else { "n2" }.to_owned());
            labels.insert(LABEL_ENVIRONMENT.to_owned(), env.to_owned());
            labels.insert(LABEL_DEPLOYMENT.to_owned(), d.to_owned());
            let s = spec(&format!("feature-x.{d}"), if state & 1 == 0 { "img:1" } else { "img:0" });
            labels.insert(LABEL_SPEC_HASH.to_owned(), s.hash());
            labels.insert(LABEL_SPEC.to_owned(), s.canonical_json());
        }
        containers.push(ObservedContainer::from(ObservedFields {
            id: format!("id{}", id % 16),
            name: NAMES[usize::from(name) % NAMES.len()].to_owned(),
            image_id: "sha256:i".to_owned(),
            state: match state >> 1 & 3 {
                0 => ContainerState::Running,
                1 => ContainerState::Exited { code: 1 },
                2 => ContainerState::Paused,
                _ => ContainerState::Created,
            },
            health: None,
            labels,
        }));
    }
    let actual = Actual { containers, images: BTreeMap::new() };
    let p = plan(&desired, &actual, &History::default(), Timestamp(0));
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &actual.containers {
        *count.entry(c.id.as_str()).or_default() += 1;
    }
    let mut acted = Vec::new();
    for s in &p.steps {
        let id = match &s.action {
            Action::Replace { old_id, .. } => old_id,
            Action::Start { container_id, .. }
            | Action::Rename { container_id, .. }
            | Action::Unpause { container_id, .. }
            | Action::Remove { container_id, .. } => container_id,
            Action::Create { .. } => continue,
        };
        assert_eq!(count[id.as_str()], 1, "a step on an id listed twice:\n{p}");
        let c = actual.containers.iter().find(|c| c.id == *id).unwrap();
        assert!(c.managed_by(NODE, BRANCH), "a step on a container not ours:\n{p}");
        assert!(!acted.contains(id), "two steps on one container:\n{p}");
        acted.push(id.clone());
    }
    let mut reversed = actual.clone();
    reversed.containers.reverse();
    assert_eq!(p, plan(&desired, &reversed, &History::default(), Timestamp(0)));
});

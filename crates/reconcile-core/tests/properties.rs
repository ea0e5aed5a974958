//! Property tests of the planner against an in-memory fake Docker: convergence, ownership,
//! order independence, stability, and the refusal to remove everything.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

mod common;

use std::collections::BTreeMap;

use common::step_containers;
use proptest::prelude::*;
use proptest::sample::Index;
use reconcile_core::*;

const NODE: &str = "n1";
const ENV: &str = "main";
const NAMES: [&str; 6] = ["api", "db", "web", "cache", "queue", "mail"];

fn spec(name: &str, image: &str, env: &str, restart: &str) -> RenderedSpec {
    RenderedSpec {
        container_name: name.to_owned(),
        image: image.to_owned(),
        command: None,
        args: None,
        env: BTreeMap::from([("MODE".to_owned(), RenderedEnv::Plain(env.to_owned()))]),
        ports: Vec::new(),
        volumes: Vec::new(),
        restart: restart.to_owned(),
        memory: None,
        millicpus: None,
        labels: BTreeMap::new(),
        probes: BTreeMap::new(),
        offered_secrets: None,
        network: None,
    }
}

fn desired_deployment() -> impl Strategy<Value = DesiredDeployment> {
    (
        0..NAMES.len(),
        prop_oneof![Just("img:1"), Just("img:2")],
        prop_oneof![Just("a"), Just("b")],
        prop_oneof![Just("always"), Just("on-failure"), Just("never")],
        proptest::option::of(prop_oneof![Just("sha256:i1"), Just("sha256:i2")]),
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(n, image, env, restart, id, stop_first, suspend)| {
            let strategy = if stop_first {
                reconcile_core::ReplaceStrategy::StopFirst
            } else {
                reconcile_core::ReplaceStrategy::StartFirst
            };
            DesiredDeployment::new(
                NAMES[n],
                spec(NAMES[n], image, env, restart),
                id.map(str::to_owned),
                strategy,
                suspend,
            )
        })
}

fn desired() -> impl Strategy<Value = Desired> {
    (
        proptest::collection::vec(desired_deployment(), 0..6),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(mut ds, allow_empty)| {
            ds.sort_by(|a, b| a.name.cmp(&b.name));
            ds.dedup_by(|a, b| a.name == b.name);
            Desired {
                node: NODE.to_owned(),
                environment: ENV.to_owned(),
                commit: Some("c0ffee".to_owned()),
                deployments: ds,
                allow_empty,
            }
        })
}

fn state() -> impl Strategy<Value = ContainerState> {
    prop_oneof![
        4 => Just(ContainerState::Running),
        1 => Just(ContainerState::Created),
        1 => Just(ContainerState::Paused),
        1 => (0i64..3).prop_map(|code| ContainerState::Exited { code }),
        1 => prop_oneof![
            Just(ContainerState::Dead),
            Just(ContainerState::Restarting),
            Just(ContainerState::Removing),
            Just(ContainerState::Stopping),
        ],
    ]
}

/// Containers as they may be found: ours (current, stale, duplicated, orphaned), the same
/// node's agent for another branch, another node's, a copied `orun.node` alone, and
/// unmanaged ones, some with names a deployment wants, in every state Docker reports.
fn observed(i: usize) -> impl Strategy<Value = ObservedContainer> {
    (
        0..4usize,
        0..NAMES.len(),
        0..NAMES.len(),
        prop_oneof![Just("img:1"), Just("img:2")],
        prop_oneof![Just("a"), Just("b")],
        prop_oneof![Just("sha256:i1"), Just("sha256:i2")],
        state(),
        any::<bool>(),
    )
        .prop_map(
            move |(owner, dep, name, image, env, image_id, state, suffix)| {
                let mut labels = BTreeMap::new();
                let s = spec(NAMES[dep], image, env, "always");
                match owner {
                    // Ours (0), or the same node's agent for another branch (1): both carry
                    // every ownership label, so only the environment tells them apart.
                    0 | 1 => {
                        labels.insert(LABEL_NODE.to_owned(), NODE.to_owned());
                        labels.insert(
                            LABEL_ENVIRONMENT.to_owned(),
                            if owner == 0 { ENV } else { "staging" }.to_owned(),
                        );
                        labels.insert(LABEL_DEPLOYMENT.to_owned(), NAMES[dep].to_owned());
                        labels.insert(LABEL_SPEC_HASH.to_owned(), s.hash());
                        labels.insert(LABEL_SPEC.to_owned(), s.canonical_json());
                    }
                    // Look-alike: another node's labels, copied.
                    2 => {
                        labels.insert(LABEL_NODE.to_owned(), "n2".to_owned());
                        labels.insert(LABEL_ENVIRONMENT.to_owned(), ENV.to_owned());
                        labels.insert(LABEL_DEPLOYMENT.to_owned(), NAMES[dep].to_owned());
                        labels.insert(LABEL_SPEC_HASH.to_owned(), s.hash());
                    }
                    // Only our node label, copied by hand: not ours either.
                    _ if suffix => {
                        labels.insert(LABEL_NODE.to_owned(), NODE.to_owned());
                    }
                    _ => {}
                }
                // Ours are usually named after their deployment, but may carry another deployment's
                // name (renamed by hand); others take any name, sometimes one a deployment wants.
                let name = match (owner, suffix) {
                    (0, false) => NAMES[dep].to_owned(),
                    (0, true) => NAMES[name].to_owned(),
                    (_, true) => format!("{}-{i}", NAMES[name]),
                    (_, false) => NAMES[name].to_owned(),
                };
                ObservedContainer::from(ObservedFields {
                    id: format!("id{i:02}"),
                    name,
                    image_id: image_id.to_owned(),
                    state,
                    health: None,
                    labels,
                })
            },
        )
}

fn actual() -> impl Strategy<Value = Actual> {
    (0..8usize).prop_flat_map(|n| {
        let parts: Vec<_> = (0..n).map(observed).collect();
        parts.prop_map(|mut cs| {
            // Docker names are unique: drop later duplicates.
            let mut seen = std::collections::BTreeSet::new();
            cs.retain(|c| seen.insert(c.name.clone()));
            Actual {
                images: Default::default(),
                containers: cs,
            }
        })
    })
}

fn history(d: &Desired, pick: Index, failed: bool, attempts: u32, at: u64) -> History {
    let mut h = History::default();
    if failed && !d.deployments.is_empty() {
        let dep = pick.get(&d.deployments);
        h.failures.insert(
            dep.name.clone(),
            Failure {
                spec_hash: dep.spec_hash.clone(),
                attempts,
                last_failed: Timestamp(at),
                reason: "unhealthy".to_owned(),
            },
        );
    }
    h
}

/// The fake Docker: applies steps as the agent would, pulling missing images first.
fn apply(plan: &Plan, desired: &Desired, actual: &Actual) -> (Actual, Desired) {
    let mut cs = actual.containers.clone();
    let mut d2 = desired.clone();
    let mut next = 0;
    for step in &plan.steps {
        let want = |name: &str| desired.deployments.iter().find(|d| d.name == name).unwrap();
        match &step.action {
            Action::Remove { container_id, .. } => cs.retain(|c| c.id != *container_id),
            // Docker refuses to start a paused or dead container, and to unpause anything
            // but a paused one: the fake does too.
            Action::Start { container_id, .. } => {
                let c = cs.iter_mut().find(|c| c.id == *container_id).unwrap();
                assert!(
                    !matches!(c.state, ContainerState::Paused | ContainerState::Dead),
                    "docker refuses to start {:?}\n{plan}",
                    c.state
                );
                c.state = ContainerState::Running;
            }
            // Docker refuses a name in use: the fake does too.
            Action::Rename {
                container_id,
                to,
                start,
                ..
            } => {
                assert!(
                    cs.iter().all(|c| c.name != *to),
                    "name already taken: {to}\n{plan}"
                );
                let c = cs.iter_mut().find(|c| c.id == *container_id).unwrap();
                c.name.clone_from(to);
                if *start {
                    c.state = ContainerState::Running;
                }
            }
            Action::Unpause { container_id, .. } => {
                let c = cs.iter_mut().find(|c| c.id == *container_id).unwrap();
                assert_eq!(
                    c.state,
                    ContainerState::Paused,
                    "docker refuses to unpause\n{plan}"
                );
                c.state = ContainerState::Running;
            }
            Action::Create { .. } | Action::Replace { .. } => {
                if let Action::Replace { old_id, .. } = &step.action {
                    cs.retain(|c| c.id != *old_id);
                }
                let d = want(&step.deployment);
                let image_id = d
                    .image_id
                    .clone()
                    .unwrap_or_else(|| format!("sha256:pulled-{}", d.spec.image));
                // After a pull the shell knows the image id: plan again with it.
                d2.deployments
                    .iter_mut()
                    .find(|x| x.name == d.name)
                    .unwrap()
                    .image_id = Some(image_id.clone());
                assert!(
                    cs.iter().all(|c| c.name != d.spec.container_name),
                    "name already taken: {}\nplan:\n{plan}\nactual: {:?}",
                    d.spec.container_name,
                    actual
                        .containers
                        .iter()
                        .map(|c| (
                            &c.id,
                            &c.name,
                            c.labels().get(LABEL_NODE),
                            c.deployment(),
                            c.spec_hash().map(|h| &h[..6])
                        ))
                        .collect::<Vec<_>>()
                );
                next += 1;
                cs.push(ObservedContainer::from(ObservedFields {
                    id: format!("new{next}"),
                    name: d.spec.container_name.clone(),
                    image_id,
                    state: ContainerState::Running,
                    health: None,
                    labels: BTreeMap::from([
                        (LABEL_NODE.to_owned(), NODE.to_owned()),
                        (LABEL_ENVIRONMENT.to_owned(), ENV.to_owned()),
                        (LABEL_DEPLOYMENT.to_owned(), d.name.clone()),
                        (LABEL_SPEC_HASH.to_owned(), d.spec_hash.clone()),
                        (LABEL_SPEC.to_owned(), d.spec.canonical_json()),
                    ]),
                }));
            }
        }
    }
    (
        Actual {
            images: Default::default(),
            containers: cs,
        },
        d2,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Applying a plan and planning again gives no steps: convergence in one pass, idempotence.
    #[test]
    fn apply_then_replan_is_empty(d in desired(), a in actual(), pick in any::<Index>(), failed in any::<bool>(), attempts in 1u32..5, at in 0u64..10_000, now in 0u64..20_000) {
        let h = history(&d, pick, failed, attempts, at);
        let p1 = plan(&d, &a, &h, Timestamp(now));
        let (a2, d2) = apply(&p1, &d, &a);
        let p2 = plan(&d2, &a2, &h, Timestamp(now));
        prop_assert!(p2.steps.is_empty(), "first plan:\n{p1}\nsecond plan:\n{p2}\nactual after: {a2:#?}");
    }

        /// A container not labelled for this node is never in a step, and nothing is created
    /// under its name (RELIABILITY E13: look-alikes by name or by another node's labels).
    #[test]
    fn unmanaged_containers_are_never_touched(d in desired(), a in actual(), now in 0u64..20_000) {
        let p = plan(&d, &a, &History::default(), Timestamp(now));
        let unmanaged: Vec<&ObservedContainer> = a.containers.iter().filter(|c| !c.managed_by(NODE, ENV)).collect();
        for id in step_containers(&p) {
            prop_assert!(unmanaged.iter().all(|c| c.id != id), "step touches unmanaged {id}:\n{p}");
        }
        let (a2, _) = apply(&p, &d, &a);
        for c in unmanaged {
            prop_assert!(a2.containers.contains(c), "unmanaged {} changed:\n{p}", c.id);
        }
    }

    /// The plan does not depend on the order of its inputs.
    #[test]
    fn input_order_does_not_matter(d in desired(), a in actual(), seed in any::<u64>()) {
        let p1 = plan(&d, &a, &History::default(), Timestamp(0));
        let (mut d2, mut a2) = (d.clone(), a.clone());
        let rot = |n: usize| if n == 0 { 0 } else { (seed as usize) % n };
        let k = rot(d2.deployments.len());
        d2.deployments.rotate_left(k);
        d2.deployments.reverse();
        let k = rot(a2.containers.len());
        a2.containers.rotate_left(k);
        a2.containers.reverse();
        prop_assert_eq!(p1, plan(&d2, &a2, &History::default(), Timestamp(0)));
    }

    /// A deployment whose one container runs its current spec gets no step.
    #[test]
    fn unchanged_deployments_get_no_step(d in desired(), a in actual()) {
        let p = plan(&d, &a, &History::default(), Timestamp(0));
        for dep in &d.deployments {
            let mine: Vec<&ObservedContainer> = a.containers.iter().filter(|c| c.managed_by(NODE, ENV) && c.deployment() == Some(dep.name.as_str())).collect();
            let current = mine.len() == 1
                && mine[0].state == ContainerState::Running
                && mine[0].name == dep.spec.container_name
                && mine[0].spec_hash() == Some(dep.spec_hash.as_str())
                && dep.image_id.as_ref().is_none_or(|id| *id == mine[0].image_id);
            if current {
                prop_assert!(p.steps.iter().all(|s| s.deployment != dep.name), "{} is current but planned:\n{p}", dep.name);
            }
        }
    }

        /// With nothing desired, the managed containers are kept unless the node allows it
    /// (RELIABILITY A11).
    #[test]
    fn removing_everything_is_refused_unless_allowed(a in actual(), allow in any::<bool>()) {
        let d = Desired { node: NODE.to_owned(), environment: ENV.to_owned(), commit: None, deployments: Vec::new(), allow_empty: allow };
        let p = plan(&d, &a, &History::default(), Timestamp(0));
        let managed = a.containers.iter().filter(|c| c.managed_by(NODE, ENV)).count();
        if allow {
            prop_assert_eq!(p.counts().3, managed);
        } else {
            prop_assert!(p.steps.is_empty());
            prop_assert_eq!(managed > 0, p.diagnostics.iter().any(|x| matches!(x, Diagnostic::RefusedRemoveAll { .. })));
        }
    }

        /// A failed spec is not planned before its backoff ends, and is planned after; a new spec
    /// is tried at once (RELIABILITY E3: never retry a failing spec in a tight loop).
    #[test]
    fn failed_specs_wait_for_backoff(d in desired(), attempts in 1u32..8, at in 0u64..10_000) {
        let Some(dep) = d.deployments.iter().find(|x| !x.suspend) else { return Ok(()) };
        let mut h = History::default();
        h.failures.insert(dep.name.clone(), Failure { spec_hash: dep.spec_hash.clone(), attempts, last_failed: Timestamp(at), reason: "x".into() });
        let until = next_attempt(&h.failures[&dep.name], &Backoff::default(), Timestamp(at));
        let before = plan(&d, &Actual::default(), &h, Timestamp(until.0 - 1));
        prop_assert!(before.steps.iter().all(|s| s.deployment != dep.name));
        prop_assert_eq!(before.wake_at, Some(until));
        let after = plan(&d, &Actual::default(), &h, until);
        prop_assert!(after.steps.iter().any(|s| s.deployment == dep.name));
        // A new spec (a new commit) is tried at once.
        h.failures.get_mut(&dep.name).unwrap().spec_hash = "other".into();
        let changed = plan(&d, &Actual::default(), &h, Timestamp(at));
        prop_assert!(changed.steps.iter().any(|s| s.deployment == dep.name));
    }
}

#[test]
fn backoff_doubles_to_a_cap() {
    let b = Backoff::default();
    let delays: Vec<u64> = (1..=8).map(|n| b.delay(n)).collect();
    assert_eq!(delays, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    assert_eq!(b.delay(u32::MAX), 3600);
}

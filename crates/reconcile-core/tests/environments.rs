//! Environments never cross, and hostile snapshots plan safely (issue 12).
//!
//! Branches whose environment ids fold to the same DNS label (`MAIN` and `main`,
//! `feature/x`, `feature_x` and `feature-x`) are distinct environments: their agents never
//! plan a step on each other's containers. Snapshots with repeated container ids, and chains
//! of blocked names, plan without touching what they cannot tell apart.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use manifest_model::{Limits, MemSource, load, resolve};
use proptest::prelude::*;
use reconcile_core::*;

const NODE: &str = "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n1\nspec:\n  host: n1.internal\n  gitRepo: /srv/repo.git\n";

fn repo(deployments: &[&str]) -> manifest_model::Revision {
    repo_with(deployments, "nginx:1")
}

/// Two branches hold different manifests (that is why they are branches): the same
/// deployments with another image.
fn repo_with(deployments: &[&str], image: &str) -> manifest_model::Revision {
    let mut src = MemSource::new().with("nodes/n1.yaml", NODE);
    for d in deployments {
        src.insert(
            format!("deployments/{d}.yaml"),
            format!("apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {d}\nspec:\n  image: {image}\n"),
        );
    }
    load(&src, &Limits::default()).into_result().unwrap().0
}

/// What an agent tracking `branch` wants on node `n1`, from `rev` as that branch holds it:
/// there the node's manifest names `branch` (a manifest naming another is refused).
fn desired(rev: &manifest_model::Revision, branch: &str) -> Desired {
    let mut rev = rev.clone();
    if let Some(n) = rev.nodes.get_mut("n1") {
        n.spec.git_branch = branch.to_owned();
    }
    Desired::from_node(
        &resolve(&rev, "n1", Some(branch)).unwrap(),
        None,
        |_| Some("sha256:img".to_owned()),
        &Default::default(),
    )
}

/// The containers `d`'s agent creates, labelled as docker-runtime labels them.
fn created(d: &Desired, prefix: &str) -> Vec<ObservedContainer> {
    d.deployments
        .iter()
        .enumerate()
        .map(|(i, dep)| {
            ObservedContainer::from(ObservedFields {
                id: format!("{prefix}{i}"),
                name: dep.spec.container_name.clone(),
                image_id: "sha256:img".to_owned(),
                state: ContainerState::Running,
                health: None,
                labels: BTreeMap::from([
                    (LABEL_NODE.to_owned(), d.node.clone()),
                    (LABEL_ENVIRONMENT.to_owned(), d.environment.clone()),
                    (LABEL_DEPLOYMENT.to_owned(), dep.name.clone()),
                    (LABEL_SPEC_HASH.to_owned(), dep.spec_hash.clone()),
                    (LABEL_SPEC.to_owned(), dep.spec.canonical_json()),
                ]),
            })
        })
        .collect()
}

/// The ids of existing containers a plan's steps act on.
fn touched(p: &Plan) -> BTreeSet<&str> {
    common::step_containers(p).into_iter().collect()
}

/// A branch name and variants of it that fold to the same environment id.
fn colliding_branches() -> impl Strategy<Value = (String, String)> {
    let base = "[a-z][a-z0-9]{0,5}(/[a-z][a-z0-9]{0,4})?";
    (
        base,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(b, i, j)| {
            let variants = [
                b.clone(),
                b.to_uppercase(),
                b.replace('/', "_"),
                b.replace('/', "-"),
                b.replace('/', "."),
                format!("{b}-"),
                format!("{}{}", b[..1].to_uppercase(), &b[1..]),
            ];
            (i.get(&variants).clone(), j.get(&variants).clone())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Agents of two distinct branches never plan a step on each other's containers, even
    /// when the branches share an environment id (and so container names).
    #[test]
    fn distinct_branches_never_touch_each_others_containers((a, b) in colliding_branches(), also_main in any::<bool>()) {
        prop_assume!(a != b);
        let rev = repo(&["web", "api"]);
        let (da, db) = (desired(&rev, &a), desired(&repo_with(&["web", "api"], "nginx:2"), &b));
        let mut containers = created(&da, "a");
        if also_main && a != "main" && b != "main" {
            containers.extend(created(&desired(&rev, "main"), "m"));
        }
        let actual = Actual { containers, images: BTreeMap::new() };
        let theirs: BTreeSet<&str> = actual.containers.iter().map(|c| c.id.as_str()).collect();
        let p = plan(&db, &actual, &History::default(), Timestamp(0));
        let hit: Vec<&str> = touched(&p).intersection(&theirs).copied().collect();
        prop_assert!(hit.is_empty(), "{b} plans on {a}'s containers {hit:?}:\n{p}");
        // And the other way round: A's own plan is empty, whatever B wants.
        prop_assert!(plan(&da, &actual, &History::default(), Timestamp(0)).steps.is_empty());
    }
}

/// The reported case: `orun plan --branch MAIN` against a snapshot of `main`'s containers
/// proposed `replace hello-world as main.hello-world`. Now it creates its own container and
/// leaves `main`'s alone; where the names collide (`feature/x` and `feature_x`), the clash
/// names the other branch.
#[test]
fn branch_variants_are_distinct_environments() {
    let rev = repo(&["hello-world"]);
    let main = desired(&rev, "main");
    let actual = Actual {
        containers: created(&main, "m"),
        images: BTreeMap::new(),
    };
    let p = plan(
        &desired(&rev, "MAIN"),
        &actual,
        &History::default(),
        Timestamp(0),
    );
    assert_eq!(
        p.to_string(),
        "+ hello-world: create main.hello-world (not running on this node)\nPlan: 1 to create, 0 to replace, 0 to start, 0 to remove."
    );

    let slash = desired(&rev, "feature/x");
    let actual = Actual {
        containers: created(&slash, "f"),
        images: BTreeMap::new(),
    };
    let p = plan(
        &desired(&rev, "feature_x"),
        &actual,
        &History::default(),
        Timestamp(0),
    );
    assert_eq!(
        p.to_string(),
        "! hello-world: name feature-x.hello-world is taken by container f0, labelled for this node and environment `feature/x`: another branch's agent (branches with one environment id cannot share a host) or an older orun's; it is left alone\nPlan: 0 to create, 0 to replace, 0 to start, 0 to remove."
    );
}

/// A snapshot listing one container twice: the planner cannot tell the copies apart, so it
/// neither keeps one and removes the other (removing what it keeps) nor creates over its
/// name.
#[test]
fn a_container_listed_twice_is_left_alone() {
    let rev = repo(&["web"]);
    let d = desired(&rev, "main");
    let mut containers = created(&d, "c");
    containers.push(containers[0].clone());
    let mut stale = containers[0].clone();
    stale.set_label(LABEL_SPEC_HASH.to_owned(), "old".to_owned());
    containers.push(stale);
    let actual = Actual {
        containers,
        images: BTreeMap::new(),
    };
    let p = plan(&d, &actual, &History::default(), Timestamp(0));
    assert_eq!(
        p.to_string(),
        "! container c0 is listed more than once in the observations; it is left alone\n! web: name web is taken by container c0, which is left alone\nPlan: 0 to create, 0 to replace, 0 to start, 0 to remove."
    );
}

/// A planted chain: an unmanaged container holds the first deployment's name, so its
/// replace is refused and its old container keeps the name the second one wants, and so on.
/// Every link is blocked, nothing is touched; the worklist finds it in one pass over the
/// chain (this took 16 s at 6 000 links when each link cost a pass over every container).
#[test]
fn a_chain_of_blocked_names_blocks_every_link() {
    let n = 3_000;
    let names: Vec<String> = (0..n).map(|i| format!("d{i:04}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let rev = repo(&name_refs);
    let d = desired(&rev, "main");
    let mut containers = vec![ObservedContainer::from(ObservedFields {
        id: "stranger".to_owned(),
        name: names[0].clone(),
        image_id: "sha256:x".to_owned(),
        state: ContainerState::Running,
        health: None,
        labels: BTreeMap::new(),
    })];
    // d_i's container is stale and sits under the name d_{i+1} wants.
    for (i, mut c) in created(&d, "c").into_iter().enumerate() {
        c.set_label(LABEL_SPEC_HASH.to_owned(), "stale".to_owned());
        c.name = format!("d{:04}", i + 1);
        containers.push(c);
    }
    let actual = Actual {
        containers,
        images: BTreeMap::new(),
    };
    let p = plan(&d, &actual, &History::default(), Timestamp(0));
    assert!(p.steps.is_empty(), "{p}");
    let clashes = p
        .diagnostics
        .iter()
        .filter(|x| matches!(x, Diagnostic::NameClash { .. }))
        .count();
    assert_eq!(clashes, n);
}

/// Swapped names make cycles; many of them are found in one walk, and each member is
/// refused with the holder named.
#[test]
fn many_swapped_pairs_are_all_left_to_a_human() {
    let n = 500;
    let names: Vec<String> = (0..2 * n).map(|i| format!("d{i:04}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let rev = repo(&name_refs);
    let d = desired(&rev, "main");
    let mut containers = created(&d, "c");
    for pair in containers.chunks_mut(2) {
        let (a, b) = pair.split_at_mut(1);
        std::mem::swap(&mut a[0].name, &mut b[0].name);
        a[0].set_label(LABEL_SPEC_HASH.to_owned(), "stale".to_owned());
        b[0].set_label(LABEL_SPEC_HASH.to_owned(), "stale".to_owned());
    }
    let actual = Actual {
        containers,
        images: BTreeMap::new(),
    };
    let p = plan(&d, &actual, &History::default(), Timestamp(0));
    assert!(p.steps.is_empty(), "{p}");
    assert_eq!(p.diagnostics.len(), 2 * n);
}

/// Fuzzing found (plan_actual): a snapshot repeating a name, or an id with other labels,
/// named a different holder depending on the order of the observations (and on hashing).
/// Every order now gives one plan.
#[test]
fn repeated_names_and_ids_plan_the_same_in_any_order() {
    let rev = repo(&["web", "api"]);
    let d = desired(&rev, "feature/x");
    let mut ours = created(&d, "c");
    ours[0].set_label(LABEL_SPEC_HASH.to_owned(), "stale".to_owned());
    let stranger = |id: &str, name: &str, env: Option<&str>| {
        let mut labels = BTreeMap::new();
        if let Some(env) = env {
            labels.insert(LABEL_NODE.to_owned(), "n1".to_owned());
            labels.insert(LABEL_ENVIRONMENT.to_owned(), env.to_owned());
        }
        ObservedContainer::from(ObservedFields {
            id: id.to_owned(),
            name: name.to_owned(),
            image_id: "sha256:x".to_owned(),
            state: ContainerState::Running,
            health: None,
            labels,
        })
    };
    let mut all = ours.clone();
    all.push(stranger("z1", "feature-x.api", Some("feature_x")));
    all.push(stranger("a1", "feature-x.api", None));
    all.push(stranger("c0", "feature-x.web", Some("feature-x")));
    // Every rotation of every reversal: the plan must not change.
    let first = plan(
        &d,
        &Actual {
            containers: all.clone(),
            images: BTreeMap::new(),
        },
        &History::default(),
        Timestamp(0),
    );
    for k in 0..all.len() {
        for reverse in [false, true] {
            let mut cs = all.clone();
            cs.rotate_left(k);
            if reverse {
                cs.reverse();
            }
            let actual = Actual {
                containers: cs,
                images: BTreeMap::new(),
            };
            for _ in 0..8 {
                assert_eq!(plan(&d, &actual, &History::default(), Timestamp(0)), first);
            }
        }
    }
    assert!(touched(&first).is_empty(), "{first}");
}

/// Fuzzing found (plan_actual): an id listed twice, once as our stale container whose
/// replace is blocked, once as a stranger holding the name another deployment wants. The
/// planner tracked what goes by id, so keeping our container made the stranger's name look
/// taken or free depending on the order names were looked at. It tracks entries now.
#[test]
fn one_id_twice_blocks_the_same_way_in_any_order() {
    let rev = repo(&["bb", "cc"]);
    let d = desired(&rev, "feature/x");
    let mut stale = created(&d, "x")[0].clone();
    stale.id = "dup".to_owned();
    stale.name = "bb".to_owned();
    stale.set_label(LABEL_SPEC_HASH.to_owned(), "old".to_owned());
    let stranger = |id: &str, name: &str, node: Option<&str>| {
        let mut labels = BTreeMap::new();
        if let Some(n) = node {
            labels.insert(LABEL_NODE.to_owned(), n.to_owned());
        }
        ObservedContainer::from(ObservedFields {
            id: id.to_owned(),
            name: name.to_owned(),
            image_id: "sha256:x".to_owned(),
            state: ContainerState::Running,
            health: None,
            labels,
        })
    };
    let all = vec![
        stale,
        stranger("holder", "feature-x.bb", None),
        stranger("dup", "feature-x.cc", Some("n2")),
    ];
    let mut plans = Vec::new();
    for k in 0..all.len() {
        for reverse in [false, true] {
            let mut cs = all.clone();
            cs.rotate_left(k);
            if reverse {
                cs.reverse();
            }
            let actual = Actual {
                containers: cs,
                images: BTreeMap::new(),
            };
            plans.push(plan(&d, &actual, &History::default(), Timestamp(0)));
        }
    }
    assert!(plans.iter().all(|p| *p == plans[0]), "{plans:#?}");
    assert!(plans[0].steps.is_empty(), "{}", plans[0]);
}

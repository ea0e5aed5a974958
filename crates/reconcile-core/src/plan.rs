//! `plan()`: the pure function from (desired, actual, history, now) to an explained plan.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use crate::actual::{
    Actual, ContainerState, LABEL_ENVIRONMENT, LABEL_NODE, LABEL_SPEC, ObservedContainer,
};
use crate::desired::{Desired, DesiredDeployment, RenderedSpec, ReplaceStrategy};
use crate::history::{Backoff, History, Timestamp, next_attempt};

/// An ordered list of steps, each explained, plus what the planner noticed but will not act on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Steps in the order to apply them.
    pub steps: Vec<Step>,
    /// Things that need a human, or explain why something is not done.
    pub diagnostics: Vec<Diagnostic>,
    /// The earliest time a backed-off deployment may be tried again: plan again then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<Timestamp>,
}

impl Plan {
    /// Whether the plan changes anything.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Counts of steps by kind: (create, replace or rename, start, remove).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for s in &self.steps {
            match s.action {
                Action::Create { .. } => c.0 += 1,
                Action::Replace { .. } | Action::Rename { .. } => c.1 += 1,
                Action::Start { .. } | Action::Unpause { .. } => c.2 += 1,
                Action::Remove { .. } => c.3 += 1,
            }
        }
        c
    }
}

/// One change to one deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The Deployment it concerns.
    pub deployment: String,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
    /// Why.
    pub reason: Reason,
}

impl Step {
    /// The name its container has when it is done.
    pub fn target_name(&self) -> &str {
        match &self.action {
            Action::Create { container_name, .. }
            | Action::Replace { container_name, .. }
            | Action::Start { container_name, .. }
            | Action::Unpause { container_name, .. }
            | Action::Remove { container_name, .. } => container_name,
            Action::Rename { to, .. } => to,
        }
    }

    /// The name it frees for another step to take: a replaced container's, a renamed one's.
    pub fn frees(&self) -> Option<&str> {
        match &self.action {
            Action::Replace { old_name, .. } => Some(old_name),
            Action::Rename { from, .. } => Some(from),
            _ => None,
        }
    }
}

/// Groups `steps` (in the plan's order) into waves that may run at once: a step that takes a
/// name a step of the current wave frees starts the next wave, so it runs only once that
/// wave has landed. The plan orders such steps after the ones they wait for, so one walk
/// finds every wave.
pub fn waves<'a>(steps: impl IntoIterator<Item = &'a Step>) -> Vec<Vec<&'a Step>> {
    let mut waves: Vec<Vec<&Step>> = Vec::new();
    for step in steps {
        let target = step.target_name();
        match waves.last_mut() {
            Some(w) if !w.iter().any(|s| s.frees() == Some(target)) => w.push(step),
            _ => waves.push(vec![step]),
        }
    }
    waves
}

/// What a step does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Create and start a container that does not exist.
    Create {
        /// Its name.
        container_name: String,
        /// Its spec hash, for the `orun.spec-hash` label.
        spec_hash: String,
        /// The image must be pulled (or built) first.
        needs_image: bool,
    },
    /// Replace a container whose spec or image changed.
    Replace {
        /// The container being replaced.
        old_id: String,
        /// Its name.
        old_name: String,
        /// The new container's name.
        container_name: String,
        /// The new spec hash.
        spec_hash: String,
        /// How old and new overlap.
        strategy: ReplaceStrategy,
        /// The image must be pulled (or built) first.
        needs_image: bool,
    },
    /// Give a container that runs the current spec under another name (a temporary name
    /// left by an interrupted rollout, or a rename by hand) its name back.
    Rename {
        /// The container.
        container_id: String,
        /// The name it has.
        from: String,
        /// The name it should have.
        to: String,
        /// It is stopped and its restart policy wants it running: start it after renaming.
        start: bool,
    },
    /// Unpause a managed container that was paused by hand.
    Unpause {
        /// The container.
        container_id: String,
        /// Its name.
        container_name: String,
    },
    /// Start a managed container that is stopped although its spec is current.
    Start {
        /// The container.
        container_id: String,
        /// Its name.
        container_name: String,
    },
    /// Remove a managed container no deployment wants.
    Remove {
        /// The container.
        container_id: String,
        /// Its name.
        container_name: String,
    },
}

/// Why a step is planned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// One line for humans.
    pub summary: String,
    /// Fields that differ, old → new (env values as digests only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    /// The commit the desired state comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// One changed field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// Field path, e.g. `image` or `env.DB_URL`.
    pub field: String,
    /// Old value; `None` when the field was not set.
    pub old: Option<String>,
    /// New value; `None` when the field is removed.
    pub new: Option<String>,
}

/// Something noticed and not acted on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Diagnostic {
    /// The container name is held by a container that stays (one orun does not manage, or
    /// one of another deployment); nothing is created or renamed over it.
    NameClash {
        /// The deployment that wants the name.
        deployment: String,
        /// The name.
        container_name: String,
        /// The other container.
        container_id: String,
        /// When the holder carries this node's label and another environment's (this node's
        /// agent for another branch with the same environment id, or an older orun, which
        /// labelled by the id): that environment, as its label says.
        #[serde(skip_serializing_if = "Option::is_none")]
        other_branch: Option<String>,
    },
    /// The deployment is suspended: whatever runs is left as it is.
    Suspended {
        /// The deployment.
        deployment: String,
    },
    /// The spec failed before; it is not tried again until `until`.
    BackingOff {
        /// The deployment.
        deployment: String,
        /// When it may be tried again.
        until: Timestamp,
        /// The last failure's reason.
        reason: String,
    },
    /// The plan would remove every deployment of the node; refused without `allow_empty`.
    RefusedRemoveAll {
        /// How many containers would have gone.
        containers: usize,
    },
    /// The observations list one container id more than once (a snapshot edited by hand):
    /// that container is in no step.
    DuplicateId {
        /// The id.
        container_id: String,
    },
    /// A managed container exited and its restart policy says to leave it.
    Exited {
        /// The deployment.
        deployment: String,
        /// The exit code.
        code: i64,
    },
}

/// What `orun plan` shows for a resolved node: the plan from `actual`, as an agent without
/// history would make it, and the secret values it could not check (their fingerprints are
/// not in `fps`, and are taken from the running containers: see
/// [`Desired::assume_unchecked`]).
pub fn preview(
    node: &manifest_model::DesiredNode,
    actual: &Actual,
    fps: &manifest_model::Fingerprints,
    now: Timestamp,
) -> (Plan, Vec<crate::Unchecked>) {
    let mut desired =
        Desired::from_node(node, None, |image| actual.images.get(image).cloned(), fps);
    let unchecked = desired.assume_unchecked(actual);
    (plan(&desired, actual, &History::default(), now), unchecked)
}

/// Computes the plan that takes `actual` to `desired`.
///
/// # Guarantees
/// - Pure: the same inputs give the same plan, whatever the order of the input lists.
/// - A container not labelled `orun.node=<desired.node>` appears in no step, only in
///   diagnostics.
/// - Applying the plan and planning again gives no steps (unless time or history changed).
/// - Steps are ordered: removals, starts and unpauses, then replacements and creations (a
///   step that takes a name runs after the step that frees it; otherwise replacements
///   before creations), each group by deployment name.
pub fn plan(desired: &Desired, actual: &Actual, history: &History, now: Timestamp) -> Plan {
    plan_with(desired, actual, history, now, &Backoff::default())
}

/// [`plan`] with an explicit backoff policy.
pub fn plan_with(
    desired: &Desired,
    actual: &Actual,
    history: &History,
    now: Timestamp,
    backoff: &Backoff,
) -> Plan {
    // An id seen twice (only a hand-made snapshot can say so) names a container the planner
    // cannot tell apart from itself: keeping one copy and removing the other would remove
    // what it keeps. Such a container is never in a step; its name still counts as taken.
    // Copies under one deployment are found beside each other in the planner's own sorted
    // walk; copies elsewhere (one ours, one a stranger's) are counted only when the plan has
    // steps that could act on them, so the steady state pays nothing for them, and since the
    // first plan does not depend on the order of its inputs, neither does that choice.
    let first = plan_excluding(desired, actual, history, now, backoff, &BTreeSet::new());
    if first.steps.is_empty() {
        return first;
    }
    let mut seen = HashSet::with_capacity(actual.containers.len());
    let twice: BTreeSet<&str> = actual
        .containers
        .iter()
        .filter(|c| !seen.insert(c.id.as_str()))
        .map(|c| c.id.as_str())
        .collect();
    if twice.is_empty() {
        return first;
    }
    let mut out = plan_excluding(desired, actual, history, now, backoff, &twice);
    out.diagnostics
        .extend(twice.iter().map(|id| Diagnostic::DuplicateId {
            container_id: (*id).to_owned(),
        }));
    out.diagnostics.sort_by_cached_key(ToString::to_string);
    out
}

/// [`plan_with`], leaving the containers of `excluded` ids out of every step: the two passes,
/// then the steps in their order.
fn plan_excluding(
    desired: &Desired,
    actual: &Actual,
    history: &History,
    now: Timestamp,
    backoff: &Backoff,
    excluded: &BTreeSet<&str>,
) -> Plan {
    let mut out = Plan::default();
    let Decided {
        mut removes,
        mut starts,
        gone,
        changes,
    } = decide(desired, actual, history, now, backoff, excluded, &mut out);
    let ordered = sequence(desired, actual, changes, gone, &mut out);
    let by_name =
        |a: &Step, b: &Step| (&a.deployment, step_id(a)).cmp(&(&b.deployment, step_id(b)));
    for group in [&mut removes, &mut starts] {
        group.sort_by(by_name);
    }
    // Moved, not cloned (`concat` would clone every step and its strings).
    let mut steps = removes;
    steps.reserve(starts.len() + ordered.len());
    steps.extend(starts);
    steps.extend(ordered);
    out.steps = steps;
    out.diagnostics.sort_by_cached_key(ToString::to_string);
    out
}

/// What pass 1 decided, per deployment.
struct Decided<'a> {
    /// Leftovers and orphans to remove.
    removes: Vec<Step>,
    /// Current containers to start or unpause.
    starts: Vec<Step>,
    /// The containers the plan removes so far, by identity.
    gone: Gone,
    /// Deployments that need a new container (or a rename), with the one they keep now.
    changes: Vec<Change<'a>>,
}

/// Pass 1: decides, per deployment, which container stays, which go, and what to do; the
/// backoff, suspension and restart-policy verdicts go into `out`'s diagnostics.
fn decide<'a>(
    desired: &'a Desired,
    actual: &'a Actual,
    history: &History,
    now: Timestamp,
    backoff: &Backoff,
    excluded: &BTreeSet<&str>,
    out: &mut Plan,
) -> Decided<'a> {
    let commit = desired.commit.clone();

    // Our containers sorted by deployment, walked beside the deployments sorted by name (a
    // merge join). A map of one vector per deployment cost an allocation and a tree walk
    // each, which at 10 000 deployments was most of a steady-state plan.
    // (deployment, spec hash, container): the hash is kept from the one walk over its labels,
    // which would otherwise be searched again, long after they left the cache.
    let mut ours: Vec<(&str, &str, &ObservedContainer)> = actual
        .containers
        .iter()
        .filter_map(|c| {
            let (deployment, hash) = c.ownership(&desired.node, &desired.environment)?;
            Some((deployment, hash, c))
        })
        .collect();
    if !excluded.is_empty() {
        ours.retain(|(_, _, c)| !excluded.contains(c.id.as_str()));
    }
    // By deployment, then id (a tie-break only: each deployment has one container, or a
    // few), so copies of one id under one deployment sit side by side.
    ours.sort_by(|a, b| (a.0, &a.2.id).cmp(&(b.0, &b.2.id)));
    let copied: BTreeSet<&str> = ours
        .windows(2)
        .filter(|w| w[0].0 == w[1].0 && w[0].2.id == w[1].2.id)
        .map(|w| w[0].2.id.as_str())
        .collect();
    if !copied.is_empty() {
        ours.retain(|(_, _, c)| !copied.contains(c.id.as_str()));
        out.diagnostics
            .extend(copied.iter().map(|id| Diagnostic::DuplicateId {
                container_id: (*id).to_owned(),
            }));
    }
    let mut wanted: Vec<&DesiredDeployment> = desired.deployments.iter().collect();
    wanted.sort_by(|a, b| a.name.cmp(&b.name));
    // Containers of deployments nobody wants; `next` is where the walk through `ours` is.
    let mut orphans: Vec<(&str, &ObservedContainer)> = Vec::new();
    let mut next = 0;

    let (mut removes, mut starts) = (Vec::new(), Vec::new());
    // The containers this plan removes or replaces, by identity (an id may be listed twice
    // in a snapshot: removing one entry must not make the other's name look free).
    let mut gone: Gone = BTreeSet::new();
    let mut changes_wanted: Vec<(&DesiredDeployment, Option<&ObservedContainer>)> = Vec::new();
    for d in &wanted {
        while next < ours.len() && ours[next].0 < d.name.as_str() {
            orphans.push((ours[next].0, ours[next].2));
            next += 1;
        }
        let first = next;
        while next < ours.len() && ours[next].0 == d.name.as_str() {
            next += 1;
        }
        let existing = &mut ours[first..next];
        if d.suspend {
            out.diagnostics.push(Diagnostic::Suspended {
                deployment: d.name.clone(),
            });
            continue;
        }
        if let Some(f) = history
            .failures
            .get(&d.name)
            .filter(|f| f.spec_hash == d.spec_hash)
        {
            let until = next_attempt(f, backoff, now);
            // Only a running current container makes the backoff moot; a stopped one is the
            // failed spec itself and must not be started again early.
            let running_current = existing
                .iter()
                .any(|&(_, h, c)| is_current(c, h, d) && c.state == ContainerState::Running);
            if now < until && !running_current {
                out.diagnostics.push(Diagnostic::BackingOff {
                    deployment: d.name.clone(),
                    until,
                    reason: f.reason.clone(),
                });
                out.wake_at = Some(out.wake_at.map_or(until, |w| w.min(until)));
                continue;
            }
        }
        // Keep the best container (the deployment's own name first, then the current spec,
        // then running, then by id); any other container of the same deployment is a leftover
        // to remove. The name comes first because the container under it is the one serving:
        // a current-spec container under a temporary name never passed its health gate (or
        // the intent journal would have promoted it), so it must not displace the old one.
        existing.sort_by_key(|&(_, h, c)| {
            (
                c.name != d.spec.container_name,
                !is_current(c, h, d),
                !matches!(c.state, ContainerState::Running),
                c.id.as_str(),
            )
        });
        let mut rest = existing.iter().map(|&(_, h, c)| (c, h));
        let keep = rest.next();
        for (extra, _) in rest {
            gone.insert(entry(extra));
            removes.push(remove_step(
                d.name.clone(),
                extra,
                "another container of this deployment".to_owned(),
                commit.clone(),
            ));
        }
        match keep {
            Some((c, h)) if is_current(c, h, d) => match c.state {
                ContainerState::Running
                | ContainerState::Restarting
                | ContainerState::Removing
                | ContainerState::Stopping => {}
                // Docker refuses to start a paused container: it must be unpaused.
                ContainerState::Paused => starts.push(Step {
                    deployment: d.name.clone(),
                    action: Action::Unpause {
                        container_id: c.id.clone(),
                        container_name: c.name.clone(),
                    },
                    reason: Reason {
                        summary: "container is paused".to_owned(),
                        changes: Vec::new(),
                        commit: None,
                    },
                }),
                // A dead container cannot be started either: it is replaced.
                ContainerState::Dead => changes_wanted.push((d, Some(c))),
                ContainerState::Exited { code } if !should_restart(&d.spec.restart, code) => {
                    out.diagnostics.push(Diagnostic::Exited {
                        deployment: d.name.clone(),
                        code,
                    });
                }
                state => starts.push(Step {
                    deployment: d.name.clone(),
                    action: Action::Start {
                        container_id: c.id.clone(),
                        container_name: c.name.clone(),
                    },
                    reason: Reason {
                        summary: format!("container is {}", state_word(state)),
                        changes: Vec::new(),
                        commit: None,
                    },
                }),
            },
            keep => changes_wanted.push((d, keep.map(|(c, _)| c))),
        }
    }

    // What is left is ours and wanted by nobody.
    orphans.extend(ours[next..].iter().map(|&(dep, _, c)| (dep, c)));
    if wanted.is_empty() && !orphans.is_empty() && !desired.allow_empty {
        out.diagnostics.push(Diagnostic::RefusedRemoveAll {
            containers: orphans.len(),
        });
    } else {
        for (dep, c) in orphans {
            let summary = "deployment is no longer in the repository for this node".to_owned();
            gone.insert(entry(c));
            removes.push(remove_step(dep.to_owned(), c, summary, commit.clone()));
        }
    }
    Decided {
        removes,
        starts,
        gone,
        changes: changes_wanted,
    }
}

/// Pass 2: gives each change a name no surviving container holds, managed or not, and orders
/// the changes so a step that takes a name runs after the step that frees it. Clashes go into
/// `out`'s diagnostics; the steps come back in the order they run.
fn sequence<'a>(
    desired: &'a Desired,
    actual: &'a Actual,
    changes_wanted: Vec<Change<'a>>,
    mut gone: Gone,
    out: &mut Plan,
) -> Vec<Step> {
    // A new or renamed container needs a name no surviving container holds, managed
    // or not. A replaced container's own name is free, since it goes; but a replace refused
    // for a clash leaves its old container, and so its name, in place, which can block
    // another deployment in turn: blocks spread by a worklist over names, each change blocked
    // at most once, so a chain of n costs n steps, not n².
    for (_, keep) in &changes_wanted {
        if let Some(c) = keep {
            gone.insert(entry(c));
        }
    }
    let mut blocked: BTreeMap<&str, &ObservedContainer> = BTreeMap::new();
    // Every container by name; built only when something is to be created or renamed (the
    // steady state has nothing to clash with, and listing every name is a tenth of its pass).
    let names = if changes_wanted.is_empty() {
        Names::default()
    } else {
        Names::of(actual)
    };
    block_clashes(&names, &changes_wanted, &mut gone, &mut blocked, None);
    let depth = loop {
        // A change may take a name that another change's old container still holds: it must
        // run after that one. Each name has one holder, so these dependencies form chains;
        // a cycle (names swapped by hand) cannot be ordered and is left to a human. Blocking
        // a cycle's members removes them from the graph, which cannot make a new cycle, so
        // this loop runs at most twice.
        match order_changes(&changes_wanted, &blocked) {
            Ok(depth) => break depth,
            Err(cycles) => {
                // Members of a cycle hold each other's names: name the container that holds
                // the one each member wants.
                for &i in &cycles {
                    if let Some(c) = changes_wanted[i].1 {
                        gone.remove(&entry(c));
                    }
                }
                for &i in &cycles {
                    let d = changes_wanted[i].0;
                    if let Some(holder) = names.holder(&d.spec.container_name, &BTreeSet::new()) {
                        blocked.insert(&d.name, holder);
                    }
                }
                // Their old containers stay, and their names may block others in turn.
                let freed: Vec<&str> = cycles
                    .iter()
                    .filter_map(|&i| changes_wanted[i].1.map(|c| c.name.as_str()))
                    .collect();
                block_clashes(
                    &names,
                    &changes_wanted,
                    &mut gone,
                    &mut blocked,
                    Some(freed),
                );
            }
        }
    };
    // Which of several containers holding one name (only a snapshot can repeat a name) a
    // block names depended on the order names were looked at; named again against the final
    // set of survivors, it does not.
    for (d, _) in &changes_wanted {
        if let Some(holder) = blocked.get_mut(d.name.as_str())
            && let Some(h) = names.holder(&d.spec.container_name, &gone)
        {
            *holder = h;
        }
    }
    // (depth, step); `changes_wanted` is in name order already.
    let mut ordered: Vec<(usize, Step)> = Vec::with_capacity(changes_wanted.len());
    for (i, (d, keep)) in changes_wanted.into_iter().enumerate() {
        if let Some(other) = blocked.get(d.name.as_str()) {
            out.diagnostics.push(name_clash(desired, d, other));
            continue;
        }
        ordered.push((depth[i], change_step(desired, d, keep)));
    }
    // Replacements before creations, by name, except where a name must be freed first.
    // The sort is stable, so name order holds within each (depth, kind).
    ordered.sort_by_key(|(depth, s)| (*depth, matches!(s.action, Action::Create { .. })));
    ordered.into_iter().map(|(_, s)| s).collect()
}

/// The step that gives `d` its container: a creation, a rename of a current container under
/// another name, or a replacement of `keep`.
fn change_step(desired: &Desired, d: &DesiredDeployment, keep: Option<&ObservedContainer>) -> Step {
    let commit = desired.commit.clone();
    let (action, summary, changes) = match keep {
        None => (
            Action::Create {
                container_name: d.spec.container_name.clone(),
                spec_hash: d.spec_hash.clone(),
                needs_image: d.image_id.is_none(),
            },
            "not running on this node".to_owned(),
            Vec::new(),
        ),
        Some(c)
            if same_generation(c, d)
                && matches!(
                    c.state,
                    ContainerState::Running
                        | ContainerState::Created
                        | ContainerState::Exited { .. }
                ) =>
        {
            let start = match c.state {
                ContainerState::Running => false,
                ContainerState::Exited { code } => should_restart(&d.spec.restart, code),
                _ => true,
            };
            (
                Action::Rename {
                    container_id: c.id.clone(),
                    from: c.name.clone(),
                    to: d.spec.container_name.clone(),
                    start,
                },
                "it runs the current spec under another name".to_owned(),
                Vec::new(),
            )
        }
        Some(c) => {
            let changes = changes(c, d);
            let summary = if matches!(c.state, ContainerState::Dead) && changes.is_empty() {
                "container is dead".to_owned()
            } else if changes.is_empty() {
                "spec changed".to_owned()
            } else {
                format!(
                    "{} changed",
                    changes
                        .iter()
                        .map(|c| c.field.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            (
                Action::Replace {
                    old_id: c.id.clone(),
                    old_name: c.name.clone(),
                    container_name: d.spec.container_name.clone(),
                    spec_hash: d.spec_hash.clone(),
                    strategy: d.strategy,
                    needs_image: d.image_id.is_none(),
                },
                summary,
                changes,
            )
        }
    };
    Step {
        deployment: d.name.clone(),
        action,
        reason: Reason {
            summary,
            changes,
            commit,
        },
    }
}

type Change<'a> = (&'a DesiredDeployment, Option<&'a ObservedContainer>);

/// Observed containers by identity: where each entry sits in the observations.
type Gone = BTreeSet<usize>;

/// An observed container's identity within one call: its address, stable while `actual`
/// is borrowed.
fn entry(c: &ObservedContainer) -> usize {
    std::ptr::from_ref(c) as usize
}

/// Every observed container by name (a snapshot may repeat a name; Docker never does).
#[derive(Default)]
struct Names<'a>(HashMap<&'a str, Vec<&'a ObservedContainer>>);

impl<'a> Names<'a> {
    fn of(actual: &'a Actual) -> Self {
        let mut map: HashMap<&str, Vec<&ObservedContainer>> = HashMap::new();
        for c in &actual.containers {
            map.entry(c.name.as_str()).or_default().push(c);
        }
        // Holders of a repeated name in id order, so which one is named does not depend on
        // the order of the observations.
        for holders in map.values_mut().filter(|h| h.len() > 1) {
            holders.sort_by(|a, b| {
                (&a.id, a.labels(), &a.image_id).cmp(&(&b.id, b.labels(), &b.image_id))
            });
        }
        Self(map)
    }

    /// The container that holds `name` and stays (is not in `gone`).
    fn holder(&self, name: &str, gone: &Gone) -> Option<&'a ObservedContainer> {
        self.0
            .get(name)?
            .iter()
            .copied()
            .find(|c| !gone.contains(&entry(c)))
    }
}

/// Blocks every change whose target name a surviving container holds, to a fixpoint: a
/// blocked replace keeps its old container, whose name may block another change in turn.
///
/// `only`: the names to start from (those just taken again); `None` checks every change.
/// Each change is blocked at most once and each name looked at once per time it is taken,
/// so the work is linear in the changes.
fn block_clashes<'a>(
    names: &Names<'a>,
    changes: &[Change<'a>],
    gone: &mut Gone,
    blocked: &mut BTreeMap<&'a str, &'a ObservedContainer>,
    only: Option<Vec<&'a str>>,
) {
    if changes.is_empty() {
        return;
    }
    let mut wanting: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (d, _)) in changes.iter().enumerate() {
        wanting
            .entry(d.spec.container_name.as_str())
            .or_default()
            .push(i);
    }
    let mut work: Vec<&str> = match only {
        Some(names) => names,
        None => wanting.keys().copied().collect(),
    };
    while let Some(name) = work.pop() {
        let Some(holder) = names.holder(name, gone) else {
            continue;
        };
        for &i in wanting.get(name).map_or(&[][..], Vec::as_slice) {
            let (d, keep) = changes[i];
            if blocked.contains_key(d.name.as_str()) {
                continue;
            }
            blocked.insert(&d.name, holder);
            if let Some(c) = keep
                && gone.remove(&entry(c))
            {
                // Its old container stays after all: its name is taken again.
                work.push(&c.name);
            }
        }
    }
}

/// For each unblocked change, how many changes must run before it (the chain of old
/// containers holding the names wanted); `Err` with the members of every cycle.
///
/// The "runs after" relation gives each change at most one successor, so depths are found
/// by walking each chain once and remembering what was found: linear in the changes.
fn order_changes<'a>(
    changes: &[Change<'a>],
    blocked: &BTreeMap<&str, &ObservedContainer>,
) -> Result<Vec<usize>, Vec<usize>> {
    let active = |i: usize| !blocked.contains_key(changes[i].0.name.as_str());
    // The change whose old container holds the name change `i` wants (names are unique).
    let by_old_name: HashMap<&str, usize> = (0..changes.len())
        .filter(|&j| active(j))
        .filter_map(|j| changes[j].1.map(|c| (c.name.as_str(), j)))
        .collect();
    let holder = |i: usize| -> Option<usize> {
        by_old_name
            .get(changes[i].0.spec.container_name.as_str())
            .copied()
            .filter(|j| *j != i)
    };
    const UNSEEN: usize = usize::MAX;
    let mut depth = vec![UNSEEN; changes.len()];
    // Where a change sits on the walk in progress, to tell a cycle from a known chain.
    let mut on_walk: HashMap<usize, usize> = HashMap::new();
    let mut cycles = Vec::new();
    for start in (0..changes.len()).filter(|&i| active(i)) {
        if depth[start] != UNSEEN {
            continue;
        }
        let found_before = cycles.len();
        let mut walk = vec![start];
        on_walk.clear();
        on_walk.insert(start, 0);
        // Follow holders until a known depth, the chain's end, or a change already on the walk.
        let base = loop {
            let at = walk[walk.len() - 1];
            match holder(at) {
                None => break 0,
                Some(next) if depth[next] != UNSEEN => break depth[next] + 1,
                Some(next) => {
                    if let Some(&p) = on_walk.get(&next) {
                        cycles.extend_from_slice(&walk[p..]);
                        // What leads into a cycle waits on it; its depth does not matter,
                        // since the cycle's members are blocked and the order recomputed.
                        walk.truncate(p);
                        break 0;
                    }
                    on_walk.insert(next, walk.len());
                    walk.push(next);
                }
            }
        };
        for (k, &i) in walk.iter().rev().enumerate() {
            depth[i] = base + k;
        }
        for &i in &cycles[found_before..] {
            depth[i] = 0;
        }
    }
    if cycles.is_empty() {
        for d in &mut depth {
            if *d == UNSEEN {
                *d = 0;
            }
        }
        Ok(depth)
    } else {
        cycles.sort_unstable();
        cycles.dedup();
        Err(cycles)
    }
}

fn step_id(s: &Step) -> &str {
    match &s.action {
        Action::Create { container_name, .. } => container_name,
        Action::Replace { old_id, .. } => old_id,
        Action::Start { container_id, .. }
        | Action::Rename { container_id, .. }
        | Action::Unpause { container_id, .. }
        | Action::Remove { container_id, .. } => container_id,
    }
}

/// Whether `c` runs exactly the desired generation: same spec hash, same name (a container
/// renamed by hand is drift) and, when the desired image is on the host, the same image id
/// (a re-tagged image is a change).
/// `spec_hash` is `c`'s, read with its ownership.
fn is_current(c: &ObservedContainer, spec_hash: &str, d: &DesiredDeployment) -> bool {
    c.name == d.spec.container_name
        && spec_hash == d.spec_hash
        && d.image_id.as_ref().is_none_or(|id| *id == c.image_id)
}

/// Whether `c` runs the desired spec and image, whatever its name.
/// Whether `c` runs `d`'s current spec: its spec hash and, when the image is here, its image.
pub fn same_generation(c: &ObservedContainer, d: &DesiredDeployment) -> bool {
    c.spec_hash() == Some(d.spec_hash.as_str())
        && d.image_id.as_ref().is_none_or(|id| *id == c.image_id)
}

fn should_restart(policy: &str, code: i64) -> bool {
    match policy {
        "never" => false,
        "on-failure" => code != 0,
        _ => true,
    }
}

fn state_word(s: ContainerState) -> String {
    match s {
        ContainerState::Created => "created but not started".to_owned(),
        ContainerState::Running => "running".to_owned(),
        ContainerState::Paused => "paused".to_owned(),
        ContainerState::Restarting => "restarting".to_owned(),
        ContainerState::Removing => "being removed".to_owned(),
        ContainerState::Exited { code } => format!("stopped (exit code {code})"),
        ContainerState::Dead => "dead".to_owned(),
        ContainerState::Stopping => "stopping".to_owned(),
    }
}

fn name_clash(desired: &Desired, d: &DesiredDeployment, other: &ObservedContainer) -> Diagnostic {
    let other_branch = (other.labels().get(LABEL_NODE) == Some(&desired.node))
        .then(|| other.labels().get(LABEL_ENVIRONMENT))
        .flatten()
        .filter(|b| **b != desired.environment)
        .cloned();
    Diagnostic::NameClash {
        deployment: d.name.clone(),
        container_name: d.spec.container_name.clone(),
        container_id: other.id.clone(),
        other_branch,
    }
}

fn remove_step(
    deployment: String,
    c: &ObservedContainer,
    summary: String,
    commit: Option<String>,
) -> Step {
    Step {
        deployment,
        action: Action::Remove {
            container_id: c.id.clone(),
            container_name: c.name.clone(),
        },
        reason: Reason {
            summary,
            changes: Vec::new(),
            commit,
        },
    }
}

/// The fields that differ between a container's recorded spec and the desired one.
fn changes(c: &ObservedContainer, d: &DesiredDeployment) -> Vec<FieldChange> {
    let old: Option<RenderedSpec> = c
        .labels()
        .get(LABEL_SPEC)
        .and_then(|j| serde_json::from_str(j).ok());
    let mut out = Vec::new();
    if let Some(old) = old {
        let (a, b) = (old.fields(), d.spec.fields());
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let (o, n) = (a.get(k), b.get(k));
            if o != n {
                // Env values are compared by digest and never shown, not even as a digest: a
                // plan lands in CI logs, and a short unsalted hash of a weak password is a
                // dictionary lookup away (RELIABILITY A15).
                let shown = |v: Option<&String>| {
                    v.map(|v| {
                        if k.starts_with("env.") {
                            "***".to_owned()
                        } else {
                            v.clone()
                        }
                    })
                };
                out.push(FieldChange {
                    field: k.clone(),
                    old: shown(o),
                    new: shown(n),
                });
            }
        }
    }
    if c.name != d.spec.container_name && out.iter().all(|f| f.field != "containerName") {
        out.push(FieldChange {
            field: "containerName".to_owned(),
            old: Some(c.name.clone()),
            new: Some(d.spec.container_name.clone()),
        });
    }
    if let Some(id) = &d.image_id
        && *id != c.image_id
        && out.iter().all(|f| f.field != "image")
    {
        out.push(FieldChange {
            field: "image id".to_owned(),
            old: Some(short_id(&c.image_id)),
            new: Some(short_id(id)),
        });
    }
    out
}

fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// The plan as `orun plan` prints it (without colour).
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            let commit = s
                .reason
                .commit
                .as_deref()
                .map(|c| format!(" [{}]", &c[..c.len().min(12)]))
                .unwrap_or_default();
            match &s.action {
                Action::Create {
                    container_name,
                    needs_image,
                    ..
                } => {
                    let pull = if *needs_image { ", image to fetch" } else { "" };
                    writeln!(
                        f,
                        "+ {}: create {container_name} ({}{pull}){commit}",
                        s.deployment, s.reason.summary
                    )?;
                }
                Action::Replace {
                    old_name,
                    container_name,
                    strategy,
                    needs_image,
                    ..
                } => {
                    let pull = if *needs_image { ", image to fetch" } else { "" };
                    let strategy = match strategy {
                        ReplaceStrategy::StartFirst => "start-first",
                        ReplaceStrategy::StopFirst => "stop-first",
                    };
                    let rename = if old_name == container_name {
                        String::new()
                    } else {
                        format!(" as {container_name}")
                    };
                    writeln!(
                        f,
                        "~ {}: replace {old_name}{rename} ({strategy}{pull}){commit}",
                        s.deployment
                    )?;
                    for c in &s.reason.changes {
                        writeln!(
                            f,
                            "    {}: {} -> {}",
                            c.field,
                            c.old.as_deref().unwrap_or("(unset)"),
                            c.new.as_deref().unwrap_or("(unset)")
                        )?;
                    }
                    if s.reason.changes.is_empty() {
                        writeln!(f, "    {}", s.reason.summary)?;
                    }
                }
                Action::Rename { from, to, .. } => {
                    writeln!(
                        f,
                        "~ {}: rename {from} to {to} ({})",
                        s.deployment, s.reason.summary
                    )?;
                }
                Action::Unpause { container_name, .. } => {
                    writeln!(
                        f,
                        "> {}: unpause {container_name} ({})",
                        s.deployment, s.reason.summary
                    )?;
                }
                Action::Start { container_name, .. } => {
                    writeln!(
                        f,
                        "> {}: start {container_name} ({})",
                        s.deployment, s.reason.summary
                    )?;
                }
                Action::Remove { container_name, .. } => {
                    let dep = if s.deployment.is_empty() {
                        "(unlabelled)"
                    } else {
                        &s.deployment
                    };
                    writeln!(
                        f,
                        "- {dep}: remove {container_name} ({}){commit}",
                        s.reason.summary
                    )?;
                }
            }
        }
        for d in &self.diagnostics {
            writeln!(f, "! {d}")?;
        }
        let (c, r, st, rm) = self.counts();
        write!(
            f,
            "Plan: {c} to create, {r} to replace, {st} to start, {rm} to remove."
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diagnostic::NameClash {
                deployment,
                container_name,
                container_id,
                other_branch: None,
            } => write!(
                f,
                "{deployment}: name {container_name} is taken by container {}, which is left alone",
                short_id(container_id)
            ),
            Diagnostic::NameClash {
                deployment,
                container_name,
                container_id,
                other_branch: Some(branch),
            } => write!(
                f,
                "{deployment}: name {container_name} is taken by container {}, labelled for this node and environment `{}`: another branch's agent (branches with one environment id cannot share a host) or an older orun's; it is left alone",
                short_id(container_id),
                // A label any container may carry: shown on one line, unable to forge output.
                manifest_model::escape_file_name(branch)
            ),
            Diagnostic::Suspended { deployment } => {
                write!(f, "{deployment}: suspended; left as it runs")
            }
            Diagnostic::BackingOff {
                deployment,
                until,
                reason,
            } => {
                write!(
                    f,
                    "{deployment}: failed before ({reason}); next attempt at {}",
                    until.0
                )
            }
            Diagnostic::RefusedRemoveAll { containers } => write!(
                f,
                "refusing to remove all {containers} managed container(s): the node would run nothing; allow it in the node-local config"
            ),
            Diagnostic::DuplicateId { container_id } => write!(
                f,
                "container {} is listed more than once in the observations; it is left alone",
                short_id(container_id)
            ),
            Diagnostic::Exited { deployment, code } => {
                write!(
                    f,
                    "{deployment}: exited with code {code}; its restart policy leaves it stopped"
                )
            }
        }
    }
}

/// A step of `deployment` with an empty reason, for tests.
#[cfg(test)]
pub(crate) fn test_step(deployment: &str, action: Action) -> Step {
    Step {
        deployment: deployment.to_owned(),
        action,
        reason: Reason {
            summary: String::new(),
            changes: Vec::new(),
            commit: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_step as step;

    fn create(name: &str) -> Step {
        step(
            name,
            Action::Create {
                container_name: name.to_owned(),
                spec_hash: "h".to_owned(),
                needs_image: false,
            },
        )
    }

    fn replace(name: &str, old_name: &str) -> Step {
        step(
            name,
            Action::Replace {
                old_id: format!("id-{old_name}"),
                old_name: old_name.to_owned(),
                container_name: name.to_owned(),
                spec_hash: "h".to_owned(),
                strategy: ReplaceStrategy::StartFirst,
                needs_image: false,
            },
        )
    }

    fn rename(dep: &str, from: &str, to: &str) -> Step {
        step(
            dep,
            Action::Rename {
                container_id: format!("id-{from}"),
                from: from.to_owned(),
                to: to.to_owned(),
                start: false,
            },
        )
    }

    #[test]
    fn a_step_waits_for_the_wave_that_frees_its_name() {
        type Waves = Vec<Vec<&'static str>>;
        let cases: Vec<(&str, Vec<Step>, Waves)> = vec![
            ("nothing", vec![], vec![]),
            (
                "independent steps run at once",
                vec![replace("a", "a"), create("b"), create("c")],
                vec![vec!["a", "b", "c"]],
            ),
            (
                "a creation taking a name a rename frees waits",
                vec![rename("web", "api", "web2"), create("api")],
                vec![vec!["web"], vec!["api"]],
            ),
            (
                "a chain of three is three waves",
                vec![rename("x", "b", "a"), rename("y", "c", "b"), create("c")],
                vec![vec!["x"], vec!["y"], vec!["c"]],
            ),
            (
                "a replacement freeing its own name does not split",
                vec![replace("a", "a"), replace("b", "b")],
                vec![vec!["a", "b"]],
            ),
        ];
        for (what, steps, want) in cases {
            let got: Vec<Vec<&str>> = waves(&steps)
                .iter()
                .map(|w| w.iter().map(|s| s.deployment.as_str()).collect())
                .collect();
            assert_eq!(got, want, "{what}");
        }
    }
}

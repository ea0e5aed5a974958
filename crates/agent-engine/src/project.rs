//! The `/status` snapshot as a pure projection of the engine's state at the end of a pass:
//! what the revision wants, what Docker runs, what the planner and the rollouts said. No IO,
//! so each state a deployment can be shown in is table-tested.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use manifest_model::DesiredNode;
use reconcile_core::{
    Actual, ContainerState, Desired, Diagnostic, HealthStatus, History, ObservedContainer, Plan,
    same_generation,
};
use status_http::{
    ContainerPhase, DeploymentState, DeploymentStatus, Metrics, NodeStatus, ServiceStatus,
    Snapshot, short_container_id,
};

/// What the projection reads.
pub(crate) struct View<'a> {
    /// The node's own line (Git, times).
    pub(crate) node: NodeStatus,
    /// The revision being converged, as resolved and as rendered; `None` before any.
    pub(crate) revision: Option<(&'a DesiredNode, &'a Desired)>,
    /// What Docker runs.
    pub(crate) actual: &'a Actual,
    /// The plan made after this pass's steps: steps left mean not converged.
    pub(crate) plan: &'a Plan,
    /// This pass's errors, by deployment.
    pub(crate) errors: &'a BTreeMap<String, String>,
    /// Failed specs.
    pub(crate) history: &'a History,
    /// Deployments with a rollout in flight, and the spec hash each rolls out.
    pub(crate) in_flight: &'a BTreeMap<String, String>,
    /// The snapshot published before: a rollout in flight keeps its entry's container,
    /// address and progress from it.
    pub(crate) previous: &'a Snapshot,
    /// Docker's restart count, the address and the last start of containers, by id.
    pub(crate) inspected: &'a BTreeMap<String, (u64, Option<String>, Option<String>)>,
    /// The counters.
    pub(crate) metrics: &'a Metrics,
    /// Each Service's route, as the ingress last saw it.
    pub(crate) services: BTreeMap<String, ServiceStatus>,
}

/// The snapshot `/status` serves for `v`.
pub(crate) fn snapshot(v: &View<'_>) -> Snapshot {
    let mut deployments = BTreeMap::new();
    let mut services = BTreeMap::new();
    let mut ready = v.revision.is_some();
    if let Some((revision, desired)) = v.revision {
        // Ours by deployment, and the planner's notes by deployment, each gathered in one
        // pass: a lookup per deployment over every container was quadratic in the node.
        let mut ours: BTreeMap<&str, Vec<&ObservedContainer>> = BTreeMap::new();
        for o in &v.actual.containers {
            if let Some((deployment, _)) = o.ownership(&desired.node, &desired.environment) {
                ours.entry(deployment).or_default().push(o);
            }
        }
        let mut notes: BTreeMap<&str, &Diagnostic> = BTreeMap::new();
        for d in &v.plan.diagnostics {
            if let Diagnostic::NameClash { deployment, .. }
            | Diagnostic::BackingOff { deployment, .. }
            | Diagnostic::Exited { deployment, .. } = d
            {
                notes.entry(deployment.as_str()).or_insert(d);
            }
        }
        for (c, d) in revision.containers.iter().zip(&desired.deployments) {
            let image = d.spec.image.clone();
            let spec_hash = d.spec_hash.clone();
            let mine = ours
                .get(c.deployment.as_str())
                .map_or(&[][..], Vec::as_slice);
            let observed = mine
                .iter()
                .find(|o| o.name == c.container_name)
                .or_else(|| mine.first());
            let diag_error = notes.get(c.deployment.as_str()).and_then(|d| match d {
                Diagnostic::NameClash {
                    container_name,
                    other_branch: None,
                    ..
                } => Some(format!(
                    "the name {container_name} is taken by a container orun does not manage"
                )),
                Diagnostic::NameClash {
                    container_name,
                    other_branch: Some(branch),
                    ..
                } => Some(format!(
                    "the name {container_name} is taken by a container labelled for this node and environment `{}`: another branch's agent (branches with one environment id cannot share a host) or an older orun's; left alone",
                    manifest_model::escape_file_name(branch)
                )),
                Diagnostic::BackingOff { until, reason, .. } => Some(format!(
                    "{reason} (next attempt at {})",
                    rfc3339(UNIX_EPOCH + Duration::from_secs(until.0))
                )),
                Diagnostic::Exited { code, .. } => Some(format!(
                    "exited with code {code}; restart policy leaves it stopped"
                )),
                _ => None,
            });
            let last_error = v.errors.get(&c.deployment).cloned().or(diag_error);
            // The planner's test: the spec and, when the image is here, its id.
            let current = observed.is_some_and(|o| same_generation(o, d));
            let failed_spec = v
                .history
                .failures
                .get(&c.deployment)
                .is_some_and(|f| f.spec_hash == spec_hash);
            let state = if c.spec.suspend {
                DeploymentState::Suspended
            } else if failed_spec && !current {
                match observed {
                    Some(o) if o.state == ContainerState::Running => {
                        DeploymentState::FailedRolledBack
                    }
                    _ => DeploymentState::Failed,
                }
            } else if last_error.is_some() && !current {
                DeploymentState::Failed
            } else {
                match observed {
                    None => DeploymentState::Missing,
                    Some(o) if !current => DeploymentState::Outdated(phase(o.state)),
                    Some(o) => DeploymentState::Current(phase(o.state)),
                }
            };
            let health = observed.and_then(|o| o.health).map(|h| match h {
                HealthStatus::Starting => "starting".to_owned(),
                HealthStatus::Healthy => "healthy".to_owned(),
                HealthStatus::Unhealthy => "unhealthy".to_owned(),
            });
            let healthy = observed.is_some_and(|o| {
                o.state == ContainerState::Running
                    && !matches!(
                        o.health,
                        Some(HealthStatus::Starting | HealthStatus::Unhealthy)
                    )
            });
            // A rollout in flight owns its entry: its progress, and (after a start-first
            // switch) the new container's id and address, which clients follow while the
            // old one drains.
            let flying = v.in_flight.contains_key(&c.deployment);
            let before = flying
                .then(|| v.previous.deployments.get(&c.deployment).cloned())
                .flatten();
            let (state, rollout) = if flying {
                (
                    DeploymentState::RollingOut,
                    before.as_ref().and_then(|d| d.rollout.clone()),
                )
            } else {
                (state, None)
            };
            let container_id = match &before {
                Some(d) => d.container_id_full.clone(),
                None => observed.map(|o| o.id.clone()),
            };
            let address = match &before {
                Some(d) => d.address.clone(),
                None => observed
                    .and_then(|o| v.inspected.get(&o.id))
                    .and_then(|(_, a, _)| a.clone()),
            };
            // The age shown is the serving container's, as Docker reported it to supervision;
            // one supervision no longer inspects (during a rollout, after a rollback) keeps
            // the start it was last shown with.
            let started_at = match &before {
                Some(d) => d.started_at.clone(),
                None => observed.and_then(|o| {
                    v.inspected
                        .get(&o.id)
                        .and_then(|(_, _, t)| t.clone())
                        .or_else(|| {
                            v.previous
                                .deployments
                                .get(&c.deployment)
                                .filter(|p| p.container_id_full.as_deref() == Some(o.id.as_str()))
                                .and_then(|p| p.started_at.clone())
                        })
                }),
            };
            if flying || !(c.spec.suspend || current && healthy) {
                ready = false;
            }
            deployments.insert(
                c.deployment.clone(),
                DeploymentStatus {
                    name: c.deployment.clone(),
                    image,
                    container_id: container_id.as_deref().map(short_container_id),
                    container_id_full: container_id,
                    state,
                    health,
                    spec_hash: Some(spec_hash),
                    last_error,
                    restarts: v.metrics.restarts.get(&c.deployment).copied().unwrap_or(0),
                    address,
                    rollout,
                    started_at,
                },
            );
        }
        for s in &revision.services {
            let status = v
                .services
                .get(&s.name)
                .cloned()
                .unwrap_or_else(|| ServiceStatus {
                    name: s.name.clone(),
                    deployment: s.deployment.clone(),
                    domain: s.domain.clone(),
                    ..ServiceStatus::default()
                });
            services.insert(s.name.clone(), status);
        }
    }
    if !v.plan.steps.is_empty() || !v.errors.is_empty() {
        ready = false;
    }
    Snapshot {
        node: v.node.clone(),
        deployments,
        services,
        // The agent fills these in from its own record (retention), after projecting.
        images: v.previous.images.clone(),
        // The daemon's part: `Status::publish` lays it over.
        self_update: None,
        ready,
        metrics: v.metrics.clone(),
    }
}

/// A container's state as `/status` names it.
fn phase(s: ContainerState) -> ContainerPhase {
    match s {
        ContainerState::Created => ContainerPhase::Created,
        ContainerState::Running => ContainerPhase::Running,
        ContainerState::Paused => ContainerPhase::Paused,
        ContainerState::Restarting => ContainerPhase::Restarting,
        ContainerState::Removing => ContainerPhase::Removing,
        ContainerState::Exited { code } => ContainerPhase::Exited(code),
        ContainerState::Dead => ContainerPhase::Dead,
        ContainerState::Stopping => ContainerPhase::Stopping,
    }
}

/// `2026-11-22T10:00:00Z`, UTC, second precision (times before 1970 show as 1970).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let ts = i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Docker's RFC 3339 time (`2026-11-22T10:00:00.123456789Z`, or with an offset) at second
/// precision in UTC, as `/status` writes times; `None` when it does not parse.
pub(crate) fn second(docker_time: &str) -> Option<String> {
    let ts: jiff::Timestamp = docker_time.parse().ok()?;
    Some(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

#[cfg(test)]
mod tests {
    use docker_runtime::Owner;
    use manifest_model::MemSource;
    use reconcile_core::{LABEL_SPEC_HASH, ObservedFields, Timestamp};

    use super::*;

    const NODE: &str = "n1";

    fn revision() -> (DesiredNode, Desired) {
        let mut src = MemSource::new();
        src.insert(
            "nodes/n1.yaml",
            "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n1\nspec:\n  host: 127.0.0.1\n  gitRepo: /srv/m.git\n",
        );
        src.insert(
            "deployments/web.yaml",
            "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: web:1\n  nodes: [n1]\n",
        );
        let (node, _) = crate::seams::judge(&src, None, NODE, "main", &Default::default()).unwrap();
        let desired =
            Desired::from_node(&node, Some("c1".to_owned()), |_| None, &Default::default());
        (node, desired)
    }

    /// Container ids as Docker writes them: 64 hex digits.
    const WEB_ID: &str = "4f1c2a9e8b7d60531f2e3d4c5b6a798877665544332211000ffeeddccbbaa998";
    const NEW_ID: &str = "9a8b7c6d5e4f30211f2e3d4c5b6a798877665544332211000ffeeddccbbaa001";

    /// A container of `web` as Docker would list it; `hash` overrides its spec hash.
    fn web(desired: &Desired, state: ContainerState, hash: Option<&str>) -> ObservedContainer {
        let d = &desired.deployments[0];
        let owner = Owner {
            node: NODE,
            environment: &desired.environment,
            deployment: "web",
            commit: None,
        };
        let mut c = ObservedContainer::from(ObservedFields {
            id: WEB_ID.to_owned(),
            name: d.spec.container_name.clone(),
            image_id: "sha256:web".to_owned(),
            state,
            health: None,
            labels: docker_runtime::labels(&d.spec, owner),
        });
        if let Some(h) = hash {
            c.set_label(LABEL_SPEC_HASH, h);
        }
        c
    }

    /// The inputs a case changes; the rest are empty.
    #[derive(Default)]
    struct Case {
        containers: Vec<ObservedContainer>,
        errors: BTreeMap<String, String>,
        history: History,
        in_flight: BTreeMap<String, String>,
        previous: Snapshot,
        diagnostics: Vec<Diagnostic>,
    }

    fn project(case: &Case, with_revision: bool) -> Snapshot {
        let (node, desired) = revision();
        let actual = Actual {
            containers: case.containers.clone(),
            images: BTreeMap::new(),
        };
        let plan = Plan {
            diagnostics: case.diagnostics.clone(),
            ..Plan::default()
        };
        snapshot(&View {
            node: NodeStatus::default(),
            revision: with_revision.then_some((&node, &desired)),
            actual: &actual,
            plan: &plan,
            errors: &case.errors,
            history: &case.history,
            in_flight: &case.in_flight,
            previous: &case.previous,
            inspected: &BTreeMap::new(),
            metrics: &Metrics::default(),
            services: BTreeMap::new(),
        })
    }

    #[test]
    fn before_any_revision_nothing_is_ready() {
        let snap = project(&Case::default(), false);
        assert!(!snap.ready);
        assert!(snap.deployments.is_empty());
    }

    #[test]
    fn each_state_a_deployment_is_shown_in() {
        let (_, desired) = revision();
        let hash = desired.deployments[0].spec_hash.clone();
        let running = || web(&desired, ContainerState::Running, None);
        let old = || web(&desired, ContainerState::Running, Some("old"));
        let mut failed = History::default();
        failed.record_failure("web", &hash, "unhealthy", Timestamp(1));
        let mut previous = Snapshot::default();
        previous.deployments.insert(
            "web".to_owned(),
            DeploymentStatus {
                container_id: Some(short_container_id(NEW_ID)),
                container_id_full: Some(NEW_ID.to_owned()),
                rollout: Some("waiting for health".to_owned()),
                ..DeploymentStatus::default()
            },
        );
        // (what, inputs, state, ready, last error contains, container id)
        type Row = (
            &'static str,
            Case,
            DeploymentState,
            bool,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: Vec<Row> = vec![
            (
                "current and running",
                Case {
                    containers: vec![running()],
                    ..Case::default()
                },
                DeploymentState::Current(ContainerPhase::Running),
                true,
                None,
                Some(WEB_ID),
            ),
            (
                "current but exited",
                Case {
                    containers: vec![web(&desired, ContainerState::Exited { code: 3 }, None)],
                    ..Case::default()
                },
                DeploymentState::Current(ContainerPhase::Exited(3)),
                false,
                None,
                Some(WEB_ID),
            ),
            (
                "an earlier spec runs",
                Case {
                    containers: vec![old()],
                    ..Case::default()
                },
                DeploymentState::Outdated(ContainerPhase::Running),
                false,
                None,
                Some(WEB_ID),
            ),
            (
                "nothing runs",
                Case::default(),
                DeploymentState::Missing,
                false,
                None,
                None,
            ),
            (
                "the spec failed and the old one serves again",
                Case {
                    containers: vec![old()],
                    history: failed.clone(),
                    ..Case::default()
                },
                DeploymentState::FailedRolledBack,
                false,
                None,
                Some(WEB_ID),
            ),
            (
                "the spec failed with nothing to go back to",
                Case {
                    history: failed.clone(),
                    ..Case::default()
                },
                DeploymentState::Failed,
                false,
                None,
                None,
            ),
            (
                "this pass's error is shown",
                Case {
                    containers: vec![old()],
                    errors: BTreeMap::from([("web".to_owned(), "pull failed".to_owned())]),
                    ..Case::default()
                },
                DeploymentState::Failed,
                false,
                Some("pull failed"),
                Some(WEB_ID),
            ),
            (
                "a name held by a stranger",
                Case {
                    diagnostics: vec![Diagnostic::NameClash {
                        deployment: "web".to_owned(),
                        container_name: "web".to_owned(),
                        other_branch: None,
                        container_id: "id-x".to_owned(),
                    }],
                    ..Case::default()
                },
                DeploymentState::Failed,
                false,
                Some("orun does not manage"),
                None,
            ),
            (
                "a rollout in flight keeps what it showed",
                Case {
                    containers: vec![old()],
                    in_flight: BTreeMap::from([("web".to_owned(), hash.clone())]),
                    previous: previous.clone(),
                    ..Case::default()
                },
                DeploymentState::RollingOut,
                false,
                None,
                Some(NEW_ID),
            ),
        ];
        for (what, case, state, ready, error, id) in cases {
            let snap = project(&case, true);
            let d = &snap.deployments["web"];
            assert_eq!(d.state, state, "{what}");
            assert_eq!(snap.ready, ready, "{what}");
            match error {
                Some(e) => assert!(
                    d.last_error.as_deref().is_some_and(|l| l.contains(e)),
                    "{what}: {:?}",
                    d.last_error
                ),
                None => assert_eq!(d.last_error, None, "{what}"),
            }
            // `/status` shows the short id, as `docker ps` does, and the full one beside it.
            assert_eq!(d.container_id_full.as_deref(), id, "{what}");
            assert_eq!(d.container_id.as_deref(), id.map(|i| &i[..12]), "{what}");
            if !case.in_flight.is_empty() {
                assert_eq!(d.rollout.as_deref(), Some("waiting for health"), "{what}");
            }
        }
    }

    /// A deployment's age is its serving container's start as Docker reported it; once
    /// supervision stops inspecting that container (rolled back to), the start shown before
    /// is kept, but never lent to another container.
    #[test]
    fn the_serving_container_start_is_shown() {
        let (node, desired) = revision();
        let running = web(&desired, ContainerState::Running, None);
        let actual = Actual {
            containers: vec![running],
            images: BTreeMap::new(),
        };
        let started = "2026-11-22T10:00:00Z".to_owned();
        let view = |inspected: &BTreeMap<String, (u64, Option<String>, Option<String>)>,
                    previous: &Snapshot| {
            snapshot(&View {
                node: NodeStatus::default(),
                revision: Some((&node, &desired)),
                actual: &actual,
                plan: &Plan::default(),
                errors: &BTreeMap::new(),
                history: &History::default(),
                in_flight: &BTreeMap::new(),
                previous,
                inspected,
                metrics: &Metrics::default(),
                services: BTreeMap::new(),
            })
            .deployments["web"]
                .started_at
                .clone()
        };
        let inspected = BTreeMap::from([(WEB_ID.to_owned(), (0, None, Some(started.clone())))]);
        let shown = Snapshot {
            deployments: BTreeMap::from([(
                "web".to_owned(),
                DeploymentStatus {
                    container_id_full: Some(WEB_ID.to_owned()),
                    started_at: Some(started.clone()),
                    ..DeploymentStatus::default()
                },
            )]),
            ..Snapshot::default()
        };
        let mut other = shown.clone();
        other.deployments.get_mut("web").unwrap().container_id_full = Some(NEW_ID.to_owned());
        assert_eq!(
            view(&inspected, &Snapshot::default()),
            Some(started.clone())
        );
        assert_eq!(view(&BTreeMap::new(), &shown), Some(started));
        assert_eq!(view(&BTreeMap::new(), &other), None);
    }

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_350_896), "2026-11-22T12:34:56Z");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(
            second("2026-11-22T12:34:56.987654321Z").as_deref(),
            Some("2026-11-22T12:34:56Z")
        );
        assert_eq!(
            second("2026-11-22T13:34:56+01:00").as_deref(),
            Some("2026-11-22T12:34:56Z")
        );
        assert_eq!(second("yesterday"), None);
    }
}

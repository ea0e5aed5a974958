//! Supervision of promoted containers: liveness probes and Docker's HEALTHCHECK verdict
//! restart a container that stops answering, with backoff (1 s doubling to 5 min), forever;
//! and the restart counts `/status` and `/metrics` show (Docker's restart policy plus orun's
//! own restarts).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use manifest_model::ProbeTarget;
use reconcile_core::{
    Actual, ContainerState, Desired, HealthStatus, Millis, ProbePolicy, ProbeTrack, restart_delay,
};
use status_http::EventOutcome;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Agent, Loaded};
use crate::rollout::STOP_GRACE;
use crate::seams::{Probe as _, Runtime as _, World};

/// How long a restarted container must do well before its restart backoff is forgotten.
const CALM: Millis = 60_000;

/// A promoted container with a liveness probe.
#[derive(Debug)]
pub(super) struct Watch {
    container_id: String,
    target: ProbeTarget,
    track: ProbeTrack,
}

/// Restarts in a row of one deployment, and when the next may come.
#[derive(Debug, Default)]
pub(super) struct RestartBackoff {
    in_row: u32,
    not_before: Millis,
}

/// What supervision keeps between passes.
#[derive(Debug, Default)]
pub(super) struct Supervision {
    /// Supervision restarts in a row, by deployment.
    pub(super) backoffs: BTreeMap<String, RestartBackoff>,
    /// Liveness probes of promoted containers, by deployment.
    pub(super) watches: BTreeMap<String, Watch>,
    /// Docker's restart count, the address and the last start (RFC 3339, seconds) of each
    /// current container, by id; read again when it dies.
    pub(super) inspected: BTreeMap<String, (u64, Option<String>, Option<String>)>,
    /// Containers Docker reported dying since the last pass.
    pub(super) dirty: BTreeSet<String>,
}

impl<W: World> Agent<W> {
    pub(super) fn now_ms(&self) -> Millis {
        crate::rollout::millis(self.shared.epoch.elapsed())
    }

    /// After a pass: which containers are promoted and running, their restart counts, the
    /// liveness probes to run, and a restart for any Docker reports unhealthy.
    pub(super) async fn supervise(&mut self, loaded: &Loaded, desired: &Desired, actual: &Actual) {
        let now = self.now_ms();
        let mut promoted: BTreeSet<String> = BTreeSet::new();
        let mut counts = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for (c, d) in loaded.node.containers.iter().zip(&desired.deployments) {
            // A deployment with a rollout in flight is the rollout's to look after.
            if c.spec.suspend || self.in_flight.contains_key(&d.name) {
                continue;
            }
            let Some(o) = actual.containers.iter().find(|o| {
                o.name == d.spec.container_name
                    && o.managed_by(&desired.node, &desired.environment)
                    && o.spec_hash() == Some(d.spec_hash.as_str())
            }) else {
                continue;
            };
            ids.insert(o.id.clone());
            // Restart counts and addresses are for `/status` and `/metrics`, which `--once`
            // does not serve: one inspect per container would double its no-op pass.
            let details = !self.cfg.once;
            if details
                && (!self.supervision.inspected.contains_key(&o.id)
                    || self.supervision.dirty.contains(&o.id))
            {
                match self.shared.docker.inspect(&o.id).await {
                    Ok(info) => {
                        let address = info.address.map(|a| a.to_string());
                        let started = info.started_at.as_deref().and_then(crate::project::second);
                        self.supervision
                            .inspected
                            .insert(o.id.clone(), (info.restart_count, address, started));
                    }
                    Err(e) => debug!(container = %o.id, error = %e, "cannot inspect"),
                }
            }
            let total = self
                .supervision
                .inspected
                .get(&o.id)
                .map_or(0, |(n, _, _)| *n)
                + self.store.state.restarts.get(&o.id).copied().unwrap_or(0);
            counts.insert(d.name.clone(), total);
            if o.state != ContainerState::Running {
                continue;
            }
            promoted.insert(d.name.clone());
            match (
                &c.spec.health.liveness,
                self.supervision.watches.get(&d.name),
            ) {
                (Some(_), Some(w)) if w.container_id == o.id => {}
                (Some(p), _) => {
                    let policy = reconcile_core::GatePolicy::of(&c.spec).liveness;
                    if let Some(policy) = policy {
                        self.supervision
                            .watches
                            .insert(d.name.clone(), new_watch(&o.id, &p.http, policy, now));
                    }
                }
                (None, _) => {
                    self.supervision.watches.remove(&d.name);
                }
            }
            match o.health {
                Some(HealthStatus::Unhealthy) if c.spec.health.liveness.is_none() => {
                    let why = "Docker's HEALTHCHECK reports it unhealthy".to_owned();
                    self.restart(&d.name, &o.id, &why).await;
                }
                Some(HealthStatus::Healthy) => self.calm_down(&d.name, now),
                _ => {}
            }
        }
        self.supervision
            .watches
            .retain(|dep, _| promoted.contains(dep));
        self.supervision.dirty.clear();
        self.supervision.inspected.retain(|id, _| ids.contains(id));
        let before = self.store.state.restarts.len();
        self.store.state.restarts.retain(|id, _| ids.contains(id));
        if self.store.state.restarts.len() != before {
            self.save_state();
        }
        self.metrics.restarts = counts;
    }

    /// When the next liveness probe is due.
    pub(super) fn next_liveness(&self) -> Option<Instant> {
        let due = self
            .supervision
            .watches
            .values()
            .map(|w| w.track.next_due())
            .min()?;
        Some(self.shared.epoch + Duration::from_millis(due))
    }

    /// Runs the liveness probes that are due; restarts a container whose probe failed its
    /// threshold.
    pub(super) async fn check_liveness(&mut self) {
        let now = self.now_ms();
        let due: Vec<String> = self
            .supervision
            .watches
            .iter()
            .filter(|(_, w)| w.track.due(now))
            .map(|(d, _)| d.clone())
            .collect();
        for dep in due {
            let Some(w) = self.supervision.watches.get(&dep) else {
                continue;
            };
            let (id, target, timeout) = (
                w.container_id.clone(),
                w.target.clone(),
                Duration::from_millis(w.track.timeout()),
            );
            let info = match self.shared.docker.inspect(&id).await {
                Ok(i) if i.state == ContainerState::Running => i,
                // Not running: Docker's restart policy or the next pass deals with it.
                _ => {
                    let now = self.now_ms();
                    if let Some(w) = self.supervision.watches.get_mut(&dep) {
                        w.track.defer(now);
                    }
                    continue;
                }
            };
            let (ok, detail) = self.shared.probe.http(&target, &info, timeout).await;
            // The answer's body is the container's words, which may quote its env.
            let detail = self.secrets.redactor.mask(&detail);
            let now = self.now_ms();
            let Some(w) = self.supervision.watches.get_mut(&dep) else {
                continue;
            };
            let failed = w.track.record(now, ok, detail.clone());
            let failures = w.track.failures();
            if ok {
                self.calm_down(&dep, now);
            } else if failed {
                w.track.reset(now);
                let why =
                    format!("the liveness probe failed {failures} time(s) in a row: {detail}");
                self.restart(&dep, &id, &why).await;
            }
        }
    }

    /// Forgets the restarts in a row once the container has answered well for a minute past
    /// its backoff: one good answer after each restart must not keep the delay at 1 s.
    fn calm_down(&mut self, dep: &str, now: Millis) {
        if self
            .supervision
            .backoffs
            .get(dep)
            .is_some_and(|b| now >= b.not_before.saturating_add(CALM))
        {
            self.supervision.backoffs.remove(dep);
        }
    }

    /// Restarts a promoted container unless its backoff says wait.
    async fn restart(&mut self, dep: &str, id: &str, why: &str) {
        let now = self.now_ms();
        let b = self.supervision.backoffs.entry(dep.to_owned()).or_default();
        if now < b.not_before {
            debug!(deployment = %dep, "restart backing off");
            return;
        }
        b.in_row = b.in_row.saturating_add(1);
        b.not_before = now + restart_delay(b.in_row);
        warn!(deployment = %dep, reason = %why, "restarting");
        match self.shared.docker.restart(id, STOP_GRACE).await {
            Ok(()) => {
                *self.store.state.restarts.entry(id.to_owned()).or_default() += 1;
                *self.metrics.restarts.entry(dep.to_owned()).or_default() += 1;
                self.save_state();
                self.event(Some(dep), "restart", why, EventOutcome::Ok);
            }
            Err(e) => {
                self.event(
                    Some(dep),
                    "restart",
                    &format!("{why}; the restart failed: {e}"),
                    EventOutcome::Failed,
                );
            }
        }
    }
}

fn new_watch(id: &str, target: &ProbeTarget, policy: ProbePolicy, now: Millis) -> Watch {
    Watch {
        container_id: id.to_owned(),
        target: target.clone(),
        track: ProbeTrack::new(policy, now),
    }
}

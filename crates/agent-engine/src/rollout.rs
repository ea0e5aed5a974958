//! Rollouts: create or replace one deployment's container, hold the new container to its
//! promotion gate, then promote it or put the previous one back; and resolving the rollouts a
//! crash interrupted, from the intent journal.
//!
//! The order of every rollout (docs/rollouts.md):
//! - create: journal, create, start, gate; on failure remove the new container.
//! - start-first: journal, create `<name>.orun-next` beside the old one, start, gate; on
//!   success stop and remove the old one and rename the new; on failure remove the new one.
//!   The old container serves throughout.
//! - stop-first: journal, stop the old one and rename it `<name>.orun-old`, create the new one
//!   under its name, start, gate; on success remove the old one; on failure remove the new
//!   one, rename the old one back and start it.
//!
//! Every step is preceded by a journal write naming it, so a crash at any moment leaves
//! either a rollout to undo (any phase before `promoting`) or one to finish.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use docker_runtime::{ContainerInfo, Owner, RuntimeError};
use manifest_model::{DesiredNode, ProbeTarget, Secret, Unlocked};
use reconcile_core::rollout::{Answer, Do, Look, ProbeKind, Rollout};
use reconcile_core::{Desired, DesiredDeployment, GatePolicy, Millis, Seen, Step};
use status_http::{DeploymentState, EventOutcome, Status};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::{EngineError, report};
use crate::eventlog::EventLog;
use crate::journal::{Intent, Journal, Phase};
use crate::redact::Redactor;
use crate::seams::{Clock as _, Probe as _, Runtime, World};

/// Seconds a container gets to stop before it is killed.
pub(crate) const STOP_GRACE: i32 = 10;
/// Log lines quoted in a failure report.
const LOG_LINES: usize = 5;

/// What the engine shares with the rollouts it runs: the seams, the journal, the history and
/// the status. Rollouts run concurrently on the engine's one thread; the mutexes are never
/// held across an await.
pub(crate) struct Shared<W: World> {
    pub(crate) docker: W::Runtime,
    pub(crate) probe: W::Probe,
    pub(crate) clock: W::Clock,
    pub(crate) journal: Mutex<Journal>,
    pub(crate) events: Mutex<EventLog>,
    pub(crate) status: Status,
    pub(crate) shutdown: Arc<AtomicBool>,
    /// Bounds concurrent creates and starts: the daemon is slower with many at once.
    pub(crate) slots: tokio::sync::Semaphore,
    /// Zero of the monotonic clock gates and probes use.
    pub(crate) epoch: Instant,
    /// Deployments whose rollout in flight a newer revision has superseded: their gate ends
    /// at its next look, and the rollout is undone.
    pub(crate) superseded: std::cell::RefCell<BTreeSet<String>>,
    /// The node's ingress, which a start-first promotion switches before the old container
    /// drains.
    pub(crate) ingress: crate::ingress::Ingress,
}

/// What one rollout needs: the shared parts and the revision it rolls out. It owns both, so
/// a rollout is not tied to the pass that started it.
pub(crate) struct Ctx<W: World> {
    pub(crate) shared: Rc<Shared<W>>,
    pub(crate) desired: Rc<Desired>,
    /// The revision's secret values and what masks them.
    pub(crate) secrets: Rc<Secrets>,
}

impl<W: World> Clone for Ctx<W> {
    fn clone(&self) -> Self {
        Self {
            shared: Rc::clone(&self.shared),
            desired: Rc::clone(&self.desired),
            secrets: Rc::clone(&self.secrets),
        }
    }
}

/// One revision's decrypted secret values: what each container gets at its create, and what
/// masks them in everything a rollout writes.
#[derive(Debug, Default)]
pub(crate) struct Secrets {
    node: Option<Rc<DesiredNode>>,
    unlocked: Unlocked,
    pub(crate) redactor: Redactor,
}

impl Secrets {
    /// `previous` is the revision this one follows: its values are masked too, since its
    /// containers may still run (and print) them while this revision rolls out.
    pub(crate) fn new(node: Rc<DesiredNode>, unlocked: Unlocked, previous: &Secrets) -> Self {
        let redactor = Redactor::new(unlocked.values().chain(previous.unlocked.values()));
        Self {
            node: Some(node),
            unlocked,
            redactor,
        }
    }

    /// The plaintext env `deployment`'s container gets beyond its plain values.
    fn env(&self, deployment: &str) -> BTreeMap<String, Secret> {
        let Some(node) = &self.node else {
            return BTreeMap::new();
        };
        // Containers are ordered by deployment name.
        match node
            .containers
            .binary_search_by(|c| c.deployment.as_str().cmp(deployment))
        {
            Ok(i) => self
                .unlocked
                .env_for(&node.containers[i], node.node.spec.offer_secrets),
            Err(_) => BTreeMap::new(),
        }
    }
}

impl<W: World> std::ops::Deref for Ctx<W> {
    type Target = Shared<W>;
    fn deref(&self) -> &Shared<W> {
        &self.shared
    }
}

/// What the gate checks for one deployment.
#[derive(Clone, Debug)]
pub(crate) struct Checks {
    pub(crate) policy: GatePolicy,
    pub(crate) readiness: Option<ProbeTarget>,
    pub(crate) liveness: Option<ProbeTarget>,
    /// Start-first: how long the old container keeps serving after the switch.
    pub(crate) drain: Duration,
}

impl Checks {
    /// What the gate checks for a deployment of `spec`.
    pub(crate) fn of(spec: &manifest_model::DeploymentSpec) -> Self {
        Self {
            policy: GatePolicy::of(spec),
            readiness: spec.health.readiness.as_ref().map(|p| p.http.clone()),
            liveness: spec.health.liveness.as_ref().map(|p| p.http.clone()),
            drain: Duration::from_secs(spec.rollout.drain_seconds.into()),
        }
    }
}

pub(crate) use reconcile_core::rollout::Outcome;

impl<W: World> Ctx<W> {
    fn now(&self) -> Millis {
        millis(self.epoch.elapsed())
    }

    fn journal(&self, deployment: &str, intent: &Intent) -> Result<(), EngineError> {
        lock(&self.journal).set(deployment, intent.clone())
    }

    fn forget(&self, deployment: &str) -> Result<(), EngineError> {
        lock(&self.journal).clear(deployment)
    }

    fn event(&self, deployment: &str, step: &str, reason: &str, outcome: EventOutcome) {
        let reason = &self.secrets.redactor.mask(reason);
        lock(&self.events).record(
            self.clock.wall(),
            self.desired.commit.as_deref(),
            Some(deployment),
            step,
            reason,
            outcome,
        );
    }

    /// Start-first promotion: `/status` names the new container and its address, so clients
    /// that follow it move over while the old one still serves.
    async fn switch(&self, deployment: &str, new_id: &str) {
        let ip = match self.docker.inspect(new_id).await {
            Ok(i) => i.address,
            Err(_) => None,
        };
        // The route moves first: the old container drains only once the ingress sends
        // nothing new to it.
        if let Some(Err(e)) = self.ingress.switch(deployment, new_id, ip).await {
            warn!(%deployment, error = %e, "the ingress kept the old route; the old container drains anyway");
        }
        let address = ip.map(|a| a.to_string());
        let mut snap = (*self.status.get()).clone();
        if let Some(d) = snap.deployments.get_mut(deployment) {
            d.set_container(Some(new_id.to_owned()));
            d.address = address;
            d.rollout = Some("promoted; the old container drains".to_owned());
            self.status.publish(snap);
        }
    }

    /// Shows the rollout's progress in `/status` between passes.
    fn progress(&self, deployment: &str, text: String) {
        let text = self.secrets.redactor.mask(&text);
        let mut snap = (*self.status.get()).clone();
        if let Some(d) = snap.deployments.get_mut(deployment) {
            d.rollout = Some(text);
            d.state = DeploymentState::RollingOut;
            snap.ready = false;
            self.status.publish(snap);
        }
    }
}

/// Locks a mutex; a panic elsewhere while holding it leaves plain data, still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs a `Create` or `Replace` step as a gated rollout. `Err` means Docker failed part-way
/// in a way that could not be undone now: the journal keeps the rollout, and the next pass
/// resolves it first.
pub(crate) async fn run<W: World>(
    ctx: &Ctx<W>,
    step: &Step,
    d: &DesiredDeployment,
    checks: &Checks,
) -> Result<Outcome, EngineError> {
    let started = ctx.clock.now();
    // `/readyz` turns 503 from the first step: a stop-first replace has the service down
    // before any probe has run, and a gate that passes at once never reports progress.
    ctx.progress(&d.name, "starting the new container".to_owned());
    let Some(intent) = Intent::for_step(step, ctx.desired.commit.clone()) else {
        return Err(EngineError::Internal(format!(
            "not a rollout: {:?}",
            step.action
        )));
    };
    let machine = Rollout::new(intent, checks.policy, millis(checks.drain));
    let outcome = drive(ctx, &d.name, Some((d, checks)), machine).await?;
    say(ctx, d, started, &outcome);
    Ok(outcome)
}

/// Resumes a rollout that a crash interrupted while its new container was in its gate: the
/// container is adopted, not replaced (an agent restart alone restarts nothing), and its gate
/// starts again from now; then it is promoted or rolled back as the rollout would have been.
pub(crate) async fn resume<W: World>(
    ctx: &Ctx<W>,
    d: &DesiredDeployment,
    intent: Intent,
    checks: &Checks,
) -> Result<Outcome, EngineError> {
    let started = ctx.clock.now();
    let id = intent.new_id.clone().unwrap_or_default();
    let Some(machine) = Rollout::resume(intent, checks.policy, millis(checks.drain)) else {
        return Err(EngineError::Internal(
            "an adopted rollout names no new container".to_owned(),
        ));
    };
    ctx.progress(
        &d.name,
        "adopted after a restart; waiting for health".to_owned(),
    );
    ctx.event(
        &d.name,
        "resume",
        &format!(
            "adopted the new container {} after a restart; its gate starts again",
            short(&id)
        ),
        EventOutcome::Started,
    );
    let outcome = drive(ctx, &d.name, Some((d, checks)), machine).await?;
    say(ctx, d, started, &outcome);
    Ok(outcome)
}

/// The one loop around a rollout's state machine: does what it asks and hands back what
/// happened. Every Docker call, probe, journal write and wait of a rollout is made here; every
/// decision is the machine's.
/// `work`: the deployment and its checks, for a rollout that creates and gates (a recovery
/// does neither).
async fn drive<W: World>(
    ctx: &Ctx<W>,
    deployment: &str,
    work: Option<(&DesiredDeployment, &Checks)>,
    mut machine: Rollout,
) -> Result<Outcome, EngineError> {
    let owner = Owner {
        node: &ctx.desired.node,
        environment: &ctx.desired.environment,
        deployment,
        commit: ctx.desired.commit.as_deref(),
    };
    // Decrypted in memory at load; they go to Docker's create call and nowhere else.
    let secrets = ctx.secrets.env(deployment);
    let mask = &ctx.secrets.redactor;
    // What made the machine stop, when it does: the error is reported whole.
    let mut cause: Option<EngineError> = None;
    // The new container as the gate last saw it: probes go to its address.
    let mut seen: Option<ContainerInfo> = None;
    let mut slot = None;
    let mut answer = Answer::Begin;
    loop {
        let next = machine.next(ctx.now(), answer);
        // A create slot is held from the create until its start is done.
        if !matches!(next, Do::Journal(_) | Do::Start(_)) {
            drop(slot.take());
        }
        answer = match next {
            Do::Finish(outcome) => return Ok(outcome),
            Do::Abort => {
                return Err(cause.take().unwrap_or_else(|| {
                    EngineError::Internal(format!(
                        "the rollout of {deployment} stopped on an answer out of turn"
                    ))
                }));
            }
            Do::Inspect(id) => match ctx.docker.inspect(&id).await {
                Ok(info) => Answer::Seen(look(&info, mask)),
                Err(e) => failed(mask, &mut cause, e, None),
            },
            Do::Look(id) => {
                if ctx.shutdown.load(Ordering::SeqCst) {
                    Answer::Cancelled
                } else if ctx.superseded.borrow().contains(deployment) {
                    Answer::Superseded
                } else {
                    match ctx.docker.inspect(&id).await {
                        Ok(info) => {
                            let answer = Answer::Seen(look(&info, mask));
                            seen = Some(info);
                            answer
                        }
                        Err(e) => failed(mask, &mut cause, e, None),
                    }
                }
            }
            Do::Holder(name) => match ctx.docker.observe().await {
                Ok(actual) => {
                    Answer::Holder(actual.containers.iter().find(|c| c.name == name).map(|c| {
                        let ours = c.managed_by(&ctx.desired.node, &ctx.desired.environment);
                        (c.id.clone(), ours)
                    }))
                }
                Err(e) => failed(mask, &mut cause, e, None),
            },
            Do::Orphan {
                name,
                spec_hash,
                except,
            } => match ctx.docker.observe().await {
                Ok(actual) => Answer::Holder(
                    actual
                        .containers
                        .iter()
                        .find(|c| {
                            c.name == name
                                && c.managed_by(&ctx.desired.node, &ctx.desired.environment)
                                && c.spec_hash() == Some(spec_hash.as_str())
                                && except.as_deref() != Some(c.id.as_str())
                        })
                        .map(|c| (c.id.clone(), true)),
                ),
                Err(e) => failed(mask, &mut cause, e, None),
            },
            Do::NameOf(id) => match ctx.docker.observe().await {
                Ok(actual) => Answer::Named(
                    actual
                        .containers
                        .iter()
                        .find(|c| c.id == id)
                        .map(|c| c.name.clone()),
                ),
                Err(e) => failed(mask, &mut cause, e, None),
            },
            Do::Journal(intent) => done(&mut cause, ctx.journal(deployment, &intent)),
            Do::Forget => done(&mut cause, ctx.forget(deployment)),
            Do::Create(name) => {
                let Some((d, _)) = work else {
                    return Err(EngineError::Internal(
                        "a recovery asked to create a container".to_owned(),
                    ));
                };
                slot = Some(ctx.slots.acquire().await);
                match ctx.docker.create(&name, &d.spec, owner, &secrets).await {
                    Ok(id) => Answer::Created(id),
                    Err(e) => failed(mask, &mut cause, e, None),
                }
            }
            Do::Start(id) => called(mask, &mut cause, ctx.docker.start(&id).await, None),
            Do::Stop(id) => called(
                mask,
                &mut cause,
                ctx.docker.stop(&id, STOP_GRACE).await,
                None,
            ),
            Do::Remove(id) => called(mask, &mut cause, ctx.docker.remove(&id).await, None),
            Do::Rename { id, to, why } => called(
                mask,
                &mut cause,
                ctx.docker.rename(&id, &to).await,
                Some(why),
            ),
            Do::Started(id) => {
                ctx.event(
                    deployment,
                    "start",
                    &format!("new container {} started; waiting for health", short(&id)),
                    EventOutcome::Started,
                );
                Answer::Done
            }
            Do::Probe { kind, timeout } => {
                let target = work.and_then(|(_, checks)| match kind {
                    ProbeKind::Readiness => checks.readiness.as_ref(),
                    ProbeKind::Liveness => checks.liveness.as_ref(),
                });
                match (target, seen.as_ref()) {
                    (Some(target), Some(info)) => {
                        let (ok, detail) = ctx
                            .probe
                            .http(target, info, Duration::from_millis(timeout))
                            .await;
                        Answer::Probed {
                            ok,
                            detail: mask.mask(&detail),
                        }
                    }
                    _ => Answer::Probed {
                        ok: false,
                        detail: "nothing to probe".to_owned(),
                    },
                }
            }
            // A container may print its own env: what it says is masked before any of it
            // can reach a failure reason, an event, a log line or `/status`.
            Do::Logs(id) => Answer::Logs(
                ctx.docker
                    .logs_tail(&id, LOG_LINES)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|line| mask.mask(&line))
                    .collect(),
            ),
            Do::Progress(text) => {
                ctx.progress(deployment, text);
                Answer::Done
            }
            Do::Warn(text) => {
                warn!(%deployment, "{text}");
                Answer::Done
            }
            Do::Sleep(until) => {
                let left = until.saturating_sub(ctx.now());
                tokio::time::sleep(Duration::from_millis(left)).await;
                Answer::Done
            }
            Do::Switch(id) => {
                ctx.switch(deployment, &id).await;
                Answer::Done
            }
            Do::Drain(until) => {
                // A shutdown cuts the drain short: the promotion itself must still finish.
                while ctx.now() < until && !ctx.shutdown.load(Ordering::SeqCst) {
                    let left = until.saturating_sub(ctx.now()).min(100);
                    tokio::time::sleep(Duration::from_millis(left)).await;
                }
                Answer::Done
            }
        };
    }
}

/// What a rollout reads of an inspection.
/// Health-check output and Docker's error are the container's words: masked.
fn look(info: &ContainerInfo, mask: &Redactor) -> Look {
    Look {
        seen: Seen {
            state: info.state,
            health: info.health,
            health_output: info.health_output.as_deref().map(|o| mask.mask(o)),
            restart_count: info.restart_count,
        },
        last_exit_code: info.last_exit_code,
        oom_killed: info.oom_killed,
        error: info.error.as_deref().map(|e| mask.mask(e)),
    }
}

/// A failed Docker call as the machine reads it; the error itself is kept as the cause.
fn failed(
    mask: &Redactor,
    cause: &mut Option<EngineError>,
    e: RuntimeError,
    why: Option<&'static str>,
) -> Answer {
    // Docker's message may quote the request it refused, env included.
    let answer = Answer::Failed {
        reason: mask.mask(&e.to_string()),
        unreachable: e.is_unreachable(),
        gone: matches!(e, RuntimeError::NotFound(_)),
    };
    *cause = Some(match why {
        Some(what) => EngineError::docker(what)(e),
        None => e.into(),
    });
    answer
}

fn called(
    mask: &Redactor,
    cause: &mut Option<EngineError>,
    result: Result<(), RuntimeError>,
    why: Option<&'static str>,
) -> Answer {
    match result {
        Ok(()) => Answer::Done,
        Err(e) => failed(mask, cause, e, why),
    }
}

/// A journal write as the machine reads it: it cannot go on without one.
fn done(cause: &mut Option<EngineError>, result: Result<(), EngineError>) -> Answer {
    match result {
        Ok(()) => Answer::Done,
        Err(e) => {
            let answer = Answer::Failed {
                reason: report(&e),
                unreachable: false,
                gone: false,
            };
            *cause = Some(e);
            answer
        }
    }
}

pub(crate) fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Logs and records how a rollout ended.
fn say<W: World>(ctx: &Ctx<W>, d: &DesiredDeployment, started: Instant, outcome: &Outcome) {
    let secs = started.elapsed().as_secs_f32();
    match &outcome {
        Outcome::Promoted => {
            info!(deployment = %d.name, seconds = secs, "promoted");
            ctx.event(
                &d.name,
                "promote",
                &format!("healthy; promoted after {secs:.1}s"),
                EventOutcome::Ok,
            );
        }
        Outcome::RolledBack(why) => {
            warn!(deployment = %d.name, reason = %why, "failed, rolled back");
            ctx.event(&d.name, "rollback", why, EventOutcome::RolledBack);
        }
        Outcome::Failed(why) => {
            warn!(deployment = %d.name, reason = %why, "failed; nothing to roll back to");
            ctx.event(&d.name, "rollback", why, EventOutcome::Failed);
        }
        Outcome::Superseded => {
            info!(deployment = %d.name, "rollout superseded by a newer revision; undone");
            ctx.event(
                &d.name,
                "rollback",
                "a newer revision changes this deployment; the rollout was undone for it",
                EventOutcome::Superseded,
            );
        }
        Outcome::Cancelled => {
            info!(deployment = %d.name, "rollout cancelled by shutdown; undone");
            ctx.event(
                &d.name,
                "rollback",
                "the agent is shutting down; the rollout was undone",
                EventOutcome::Cancelled,
            );
        }
    }
}

/// Resolves the rollouts a crash (or a Docker failure) left in the journal, through the same
/// machine ([`Rollout::recover`]): a promotion is finished, anything earlier is undone, so the
/// old container serves and the next plan starts the rollout over. `skip`: rollouts in flight
/// or adopted, which are nobody's to resolve.
pub(crate) async fn recover<W: World>(
    ctx: &Ctx<W>,
    skip: &BTreeSet<String>,
) -> Result<(), EngineError> {
    let entries = lock(&ctx.journal).entries().clone();
    for (deployment, intent) in entries {
        if skip.contains(&deployment) {
            continue;
        }
        let what = if intent.phase == Phase::Promoting {
            "finished an interrupted promotion"
        } else {
            "undid an interrupted rollout; it starts over"
        };
        let record = |reason: &str, outcome| {
            lock(&ctx.events).record(
                ctx.clock.wall(),
                intent.commit.as_deref(),
                Some(&deployment),
                "recover",
                reason,
                outcome,
            );
        };
        // A start-first promotion the crash interrupted may not have moved its routes yet:
        // they move before the old container is stopped.
        if intent.phase == Phase::Promoting
            && intent.kind == reconcile_core::Kind::StartFirst
            && let Some(new_id) = &intent.new_id
        {
            ctx.switch(&deployment, new_id).await;
        }
        match drive(ctx, &deployment, None, Rollout::recover(intent.clone())).await {
            Ok(_) => {
                info!(%deployment, phase = ?intent.phase, "{what}");
                record(
                    &format!("{what} (it was {:?})", intent.phase).to_lowercase(),
                    EventOutcome::Ok,
                );
            }
            // Docker is away: try again on the next pass, entry kept.
            Err(e) if e.is_unreachable() => return Err(e),
            // Anything else would fail the same way forever and hold up every deployment:
            // say so and let the planner take this one from what it observes.
            Err(e) => {
                let why = ctx.secrets.redactor.mask(&report(&e));
                warn!(%deployment, error = %why, "cannot resolve an interrupted rollout; the planner takes over");
                record(
                    &format!("could not resolve an interrupted rollout: {why}"),
                    EventOutcome::Failed,
                );
            }
        }
        lock(&ctx.journal).clear(&deployment)?;
    }
    Ok(())
}

/// Stops a container; one that is already gone counts as stopped.
pub(crate) async fn stop_gone_ok(docker: &impl Runtime, id: &str) -> Result<(), EngineError> {
    match docker.stop(id, STOP_GRACE).await {
        Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

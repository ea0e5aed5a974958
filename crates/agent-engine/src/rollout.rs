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

use docker_runtime::{Owner, RuntimeError};
use manifest_model::ProbeTarget;
use reconcile_core::{
    Action, ContainerState, Desired, DesiredDeployment, Gate, GatePolicy, Millis, ProbeTrack, Seen,
    Step, Verdict,
};
use status_http::{DeploymentState, EventOutcome, Status};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::{EngineError, report};
use crate::eventlog::EventLog;
use crate::journal::{Intent, Journal, Kind, Phase};
use crate::seams::{Clock as _, Probe as _, Runtime, World};

/// Seconds a container gets to stop before it is killed.
pub(crate) const STOP_GRACE: i32 = 10;
/// How often a new container is looked at while it waits for its gate.
const GATE_POLL: Duration = Duration::from_millis(500);
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
}

/// What one rollout needs: the shared parts and the revision it rolls out. It owns both, so
/// a rollout is not tied to the pass that started it.
pub(crate) struct Ctx<W: World> {
    pub(crate) shared: Rc<Shared<W>>,
    pub(crate) desired: Rc<Desired>,
}

impl<W: World> Clone for Ctx<W> {
    fn clone(&self) -> Self {
        Self {
            shared: Rc::clone(&self.shared),
            desired: Rc::clone(&self.desired),
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

/// How a rollout ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The new container passed its gate and serves.
    Promoted,
    /// The new container failed; the previous one serves again.
    RolledBack(String),
    /// The new container failed and there was nothing to roll back to.
    Failed(String),
    /// Shutdown came first: undone, and not the spec's fault.
    Cancelled,
    /// A newer revision changes the deployment: undone, and the newer spec rolls out next.
    Superseded,
}

/// Why a new container is not promoted.
enum Fail {
    Reason(String),
    Cancelled,
    Superseded,
}

impl Fail {
    /// The rollout's outcome: `failed` for a failure, or cancelled.
    fn into_outcome(self, failed: fn(String) -> Outcome) -> Outcome {
        match self {
            Fail::Reason(r) => failed(r),
            Fail::Cancelled => Outcome::Cancelled,
            Fail::Superseded => Outcome::Superseded,
        }
    }
}

impl<W: World> Ctx<W> {
    fn now(&self) -> Millis {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn journal(&self, deployment: &str, intent: &Intent) -> Result<(), EngineError> {
        lock(&self.journal).set(deployment, intent.clone())
    }

    fn forget(&self, deployment: &str) -> Result<(), EngineError> {
        lock(&self.journal).clear(deployment)
    }

    fn event(&self, deployment: &str, step: &str, reason: &str, outcome: EventOutcome) {
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
        let address = match self.docker.inspect(new_id).await {
            Ok(i) => i.address.map(|a| a.to_string()),
            Err(_) => None,
        };
        let mut snap = (*self.status.get()).clone();
        if let Some(d) = snap.deployments.get_mut(deployment) {
            d.container_id = Some(new_id.to_owned());
            d.address = address;
            d.rollout = Some("promoted; the old container drains".to_owned());
            self.status.publish(snap);
        }
    }

    /// Shows the rollout's progress in `/status` between passes.
    fn progress(&self, deployment: &str, text: String) {
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
    // An error here must not be taken for "it was stopped": a rollback would then leave the
    // serving container down.
    let old_running = match &step.action {
        Action::Replace { old_id, .. } => {
            ctx.docker.inspect(old_id).await?.state == ContainerState::Running
        }
        _ => false,
    };
    let Some(intent) = Intent::for_step(step, ctx.desired.commit.clone(), old_running) else {
        return Err(EngineError::Internal(format!(
            "not a rollout: {:?}",
            step.action
        )));
    };
    let outcome = match intent.kind {
        Kind::Create => create(ctx, d, intent, checks).await?,
        Kind::StartFirst => start_first(ctx, d, intent, checks).await?,
        Kind::StopFirst => stop_first(ctx, d, intent, checks).await?,
    };
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
    let Some(id) = intent.new_id.clone() else {
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
    let verdict = match ctx.docker.inspect(&id).await {
        // The crash came between create and start: start it, as the rollout would have.
        Ok(info) if info.state == ContainerState::Created => match ctx.docker.start(&id).await {
            Ok(()) => gate(ctx, d, &id, checks).await?,
            Err(e) if e.is_unreachable() => return Err(e.into()),
            Err(e) => Err(Fail::Reason(format!("cannot start the new container: {e}"))),
        },
        Ok(_) => gate(ctx, d, &id, checks).await?,
        Err(RuntimeError::NotFound(_)) => Err(Fail::Reason(
            "the new container was removed by someone else".to_owned(),
        )),
        Err(e) => return Err(e.into()),
    };
    let outcome = conclude(ctx, d, intent, checks, verdict).await?;
    say(ctx, d, started, &outcome);
    Ok(outcome)
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

async fn create<W: World>(
    ctx: &Ctx<W>,
    d: &DesiredDeployment,
    mut intent: Intent,
    checks: &Checks,
) -> Result<Outcome, EngineError> {
    let verdict = start_and_gate(ctx, d, &mut intent, checks).await?;
    conclude(ctx, d, intent, checks, verdict).await
}

/// Ends a rollout whose new container has its gate's verdict: promotes it, or rolls back,
/// each the way its kind does.
async fn conclude<W: World>(
    ctx: &Ctx<W>,
    d: &DesiredDeployment,
    mut intent: Intent,
    checks: &Checks,
    verdict: Result<(), Fail>,
) -> Result<Outcome, EngineError> {
    let fail = match verdict {
        Ok(()) => {
            // Written down before anything is retired: a crash from here on finishes the
            // promotion rather than undoing it.
            intent.phase = Phase::Promoting;
            ctx.journal(&d.name, &intent)?;
            match intent.kind {
                Kind::Create => {}
                Kind::StartFirst => {
                    if let Some(new) = &intent.new_id {
                        ctx.switch(&d.name, new).await;
                    }
                    // A shutdown cuts the drain short: the promotion itself must still finish.
                    let drain_until = ctx.clock.now() + checks.drain;
                    while ctx.clock.now() < drain_until && !ctx.shutdown.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(100).min(checks.drain)).await;
                    }
                    finish_start_first(&ctx.docker, &intent).await?;
                }
                Kind::StopFirst => {
                    if let Some(old) = &intent.old_id {
                        ctx.docker.remove(old).await?;
                    }
                }
            }
            ctx.forget(&d.name)?;
            return Ok(Outcome::Promoted);
        }
        Err(f) => f,
    };
    match intent.kind {
        Kind::Create => {
            discard_new(ctx, d, intent).await?;
            Ok(fail.into_outcome(Outcome::Failed))
        }
        Kind::StartFirst => {
            discard_new(ctx, d, intent).await?;
            Ok(fail.into_outcome(Outcome::RolledBack))
        }
        Kind::StopFirst => {
            intent.phase = Phase::RollingBack;
            ctx.journal(&d.name, &intent)?;
            undo(&ctx.docker, &intent, None).await?;
            ctx.forget(&d.name)?;
            Ok(fail.into_outcome(Outcome::RolledBack))
        }
    }
}

async fn start_first<W: World>(
    ctx: &Ctx<W>,
    d: &DesiredDeployment,
    mut intent: Intent,
    checks: &Checks,
) -> Result<Outcome, EngineError> {
    let old_id = intent.old_id.clone().unwrap_or_default();
    if let Err(why) = clear_leftover(ctx, &intent.new_name, &old_id).await? {
        return Ok(Outcome::RolledBack(why));
    }
    let verdict = start_and_gate(ctx, d, &mut intent, checks).await?;
    conclude(ctx, d, intent, checks, verdict).await
}

/// Rolls back a rollout whose old container was never touched: the new one goes.
async fn discard_new<W: World>(
    ctx: &Ctx<W>,
    d: &DesiredDeployment,
    mut intent: Intent,
) -> Result<(), EngineError> {
    intent.phase = Phase::RollingBack;
    ctx.journal(&d.name, &intent)?;
    if let Some(id) = &intent.new_id {
        ctx.docker.remove(id).await?;
    }
    ctx.forget(&d.name)
}

async fn stop_first<W: World>(
    ctx: &Ctx<W>,
    d: &DesiredDeployment,
    mut intent: Intent,
    checks: &Checks,
) -> Result<Outcome, EngineError> {
    let old_id = intent.old_id.clone().unwrap_or_default();
    let old_name = intent.old_name.clone().unwrap_or_default();
    let aside = intent.aside.clone().unwrap_or_default();
    if aside != old_name
        && let Err(why) = clear_leftover(ctx, &aside, &old_id).await?
    {
        return Ok(Outcome::RolledBack(why));
    }
    intent.phase = Phase::StoppingOld;
    ctx.journal(&d.name, &intent)?;
    stop_gone_ok(&ctx.docker, &old_id).await?;
    if aside != old_name {
        ctx.docker.rename(&old_id, &aside).await?;
    }
    let verdict = start_and_gate(ctx, d, &mut intent, checks).await?;
    conclude(ctx, d, intent, checks, verdict).await
}

/// Creates and starts the new container, then holds it to its gate. The outer `Err` is a
/// Docker failure the caller cannot judge; the inner one is the new container's failure.
async fn start_and_gate<W: World>(
    ctx: &Ctx<W>,
    d: &DesiredDeployment,
    intent: &mut Intent,
    checks: &Checks,
) -> Result<Result<(), Fail>, EngineError> {
    intent.phase = Phase::Starting;
    ctx.journal(&d.name, intent)?;
    let owner = Owner {
        node: &ctx.desired.node,
        environment: &ctx.desired.environment,
        deployment: &d.name,
        commit: ctx.desired.commit.as_deref(),
    };
    // SOPS values are not decrypted by this agent yet: `create` refuses a spec whose secret
    // has no value, naming the key, before Docker sees anything.
    let secrets = BTreeMap::new();
    let id = {
        let _slot = ctx.slots.acquire().await;
        let id = match ctx
            .docker
            .create(&intent.new_name, &d.spec, owner, &secrets)
            .await
        {
            Ok(id) => id,
            Err(e) if e.is_unreachable() => return Err(e.into()),
            Err(e) => {
                return Ok(Err(Fail::Reason(format!(
                    "cannot create the new container: {e}"
                ))));
            }
        };
        intent.new_id = Some(id.clone());
        intent.phase = Phase::Verifying;
        ctx.journal(&d.name, intent)?;
        match ctx.docker.start(&id).await {
            Ok(()) => {}
            Err(e) if e.is_unreachable() => return Err(e.into()),
            // A host port taken by someone else (E5), a missing mount source...
            Err(e) => {
                return Ok(Err(Fail::Reason(format!(
                    "cannot start the new container: {e}"
                ))));
            }
        }
        id
    };
    ctx.event(
        &d.name,
        "start",
        &format!("new container {} started; waiting for health", short(&id)),
        EventOutcome::Started,
    );
    gate(ctx, d, &id, checks).await
}

/// Watches the new container until its gate decides.
async fn gate<W: World>(
    ctx: &Ctx<W>,
    d: &DesiredDeployment,
    id: &str,
    checks: &Checks,
) -> Result<Result<(), Fail>, EngineError> {
    let started = ctx.now();
    let mut gate = Gate::new(checks.policy, started);
    // A fresh container has never been restarted: a crash before the first look counts.
    gate.expect_restarts(0);
    loop {
        if ctx.shutdown.load(Ordering::SeqCst) {
            return Ok(Err(Fail::Cancelled));
        }
        if ctx.superseded.borrow().contains(&d.name) {
            return Ok(Err(Fail::Superseded));
        }
        let info = match ctx.docker.inspect(id).await {
            Ok(i) => i,
            Err(RuntimeError::NotFound(_)) => {
                return Ok(Err(Fail::Reason(
                    "the new container was removed by someone else".to_owned(),
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if info.state == ContainerState::Running {
            for (target, track) in [
                (checks.readiness.as_ref(), gate.readiness.as_mut()),
                (checks.liveness.as_ref(), gate.liveness.as_mut()),
            ] {
                if let (Some(target), Some(track)) = (target, track) {
                    probe_if_due(ctx, target, track, &info).await;
                }
            }
        }
        let seen = Seen {
            state: info.state,
            health: info.health,
            health_output: info.health_output.clone(),
            restart_count: info.restart_count,
        };
        let now = ctx.now();
        match gate.judge(now, seen) {
            Verdict::Promote => return Ok(Ok(())),
            Verdict::Fail(f) => {
                let mut reason = f.to_string();
                if matches!(f, reconcile_core::GateFailure::Restarted { .. })
                    && let Some(code) = exit_code(ctx, id, info.last_exit_code).await
                {
                    reason.push_str(&format!("; it exited with code {code}"));
                }
                if let Some(err) = &info.error {
                    reason.push_str(&format!("; docker: {err}"));
                }
                if info.oom_killed {
                    reason.push_str("; it ran out of memory (OOM-killed)");
                }
                reason.push_str(&log_lines(&ctx.docker, id).await);
                return Ok(Err(Fail::Reason(reason)));
            }
            Verdict::Wait { until } => {
                let waited = (now - started) / 1000;
                let text = match gate.healthy_since() {
                    Some(since) => format!(
                        "healthy for {}s of minHealthySeconds {}",
                        (now - since) / 1000,
                        checks.policy.min_healthy / 1000
                    ),
                    None => format!(
                        "waiting for health ({waited}s of healthyDeadlineSeconds {}): {}",
                        checks.policy.deadline / 1000,
                        gate.last_seen()
                            .map(|s| gate.obstacle(s))
                            .unwrap_or_default()
                    ),
                };
                ctx.progress(&d.name, text);
                let pause = Duration::from_millis(until.saturating_sub(now).clamp(50, 500));
                tokio::time::sleep(pause.min(GATE_POLL)).await;
            }
        }
    }
}

/// The exit code of a container that Docker keeps restarting. Docker shows it only between
/// runs, so a look that found it running again waits a little for the next exit (two
/// seconds at most) rather than report the crash without its code.
async fn exit_code<W: World>(ctx: &Ctx<W>, id: &str, seen: Option<i64>) -> Option<i64> {
    if seen.is_some() {
        return seen;
    }
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match ctx.docker.inspect(id).await {
            Ok(info) if info.last_exit_code.is_some() => return info.last_exit_code,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Runs a probe if it is due, recording its result.
async fn probe_if_due<W: World>(
    ctx: &Ctx<W>,
    target: &ProbeTarget,
    track: &mut ProbeTrack,
    info: &docker_runtime::ContainerInfo,
) {
    if track.due(ctx.now()) {
        let (ok, detail) = ctx
            .probe
            .http(target, info, Duration::from_millis(track.timeout()))
            .await;
        track.record(ctx.now(), ok, detail);
    }
}

/// `; last log lines: a | b` for a failure report, or nothing.
async fn log_lines(docker: &impl Runtime, id: &str) -> String {
    match docker.logs_tail(id, LOG_LINES).await {
        Ok(lines) if !lines.is_empty() => format!("; last log lines: {}", lines.join(" | ")),
        _ => String::new(),
    }
}

/// Removes a container orun left under `name` by an interrupted rollout, so the name is free.
/// `Ok(Err)` when the name is held by something orun must not touch.
async fn clear_leftover<W: World>(
    ctx: &Ctx<W>,
    name: &str,
    keep: &str,
) -> Result<Result<(), String>, EngineError> {
    let actual = ctx.docker.observe().await?;
    if let Some(c) = actual.containers.iter().find(|c| c.name == name) {
        if c.id == keep {
            return Ok(Err(format!(
                "the container being replaced holds the temporary name {name}"
            )));
        }
        if !c.managed_by(&ctx.desired.node, &ctx.desired.environment) {
            return Ok(Err(format!(
                "the temporary name {name} is taken by a container orun does not manage"
            )));
        }
        ctx.docker.remove(&c.id).await?;
    }
    Ok(Ok(()))
}

/// Start-first promotion: the old container goes, the new one takes the name.
async fn finish_start_first(docker: &impl Runtime, intent: &Intent) -> Result<(), EngineError> {
    if let Some(old) = &intent.old_id {
        stop_gone_ok(docker, old).await?;
        docker.remove(old).await?;
    }
    if let Some(new) = &intent.new_id {
        let actual = docker.observe().await?;
        // It may have its name already: the crash came after the rename.
        if let Some(c) = actual.containers.iter().find(|c| c.id == *new)
            && c.name != intent.name
        {
            docker
                .rename(new, &intent.name)
                .await
                .map_err(EngineError::docker(
                    "cannot give the new container its name",
                ))?;
        }
    }
    Ok(())
}

/// Undoes a rollout: removes the new container (`found`, or the one the intent names) and
/// puts the old one back under its name, running if it ran.
async fn undo(
    docker: &impl Runtime,
    intent: &Intent,
    found: Option<&str>,
) -> Result<(), EngineError> {
    if let Some(new) = found.or(intent.new_id.as_deref()) {
        docker.remove(new).await?;
    }
    let (Some(old), Some(old_name)) = (&intent.old_id, &intent.old_name) else {
        return Ok(());
    };
    let info = match docker.inspect(old).await {
        Ok(i) => i,
        Err(RuntimeError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let actual = docker.observe().await?;
    let name_now = actual
        .containers
        .iter()
        .find(|c| c.id == *old)
        .map(|c| c.name.clone());
    if name_now.as_deref() != Some(old_name.as_str()) {
        docker
            .rename(old, old_name)
            .await
            .map_err(EngineError::docker(
                "cannot give the previous container its name back",
            ))?;
    }
    if intent.old_running
        && info.state != ContainerState::Running
        && let Err(e) = docker.start(old).await
    {
        if e.is_unreachable() {
            return Err(e.into());
        }
        // It is back under its name; the planner starts it (or reports why not).
        warn!(container = %old, error = %e, "cannot start the previous container again");
    }
    Ok(())
}

/// Resolves the rollouts a crash (or a Docker failure) left in the journal: a promotion is
/// finished, anything earlier is undone, so the old container serves and the next plan
/// starts the rollout over.
pub(crate) async fn recover(
    docker: &impl Runtime,
    clock: &impl crate::seams::Clock,
    node: &str,
    environment: &str,
    journal: &Mutex<Journal>,
    events: &Mutex<EventLog>,
    skip: &BTreeSet<String>,
) -> Result<(), EngineError> {
    let entries = lock(journal).entries().clone();
    for (deployment, intent) in entries {
        if skip.contains(&deployment) {
            continue;
        }
        match resolve(docker, node, environment, &intent).await {
            Ok(what) => {
                info!(%deployment, phase = ?intent.phase, "{what}");
                lock(events).record(
                    clock.wall(),
                    intent.commit.as_deref(),
                    Some(&deployment),
                    "recover",
                    &format!("{what} (it was {:?})", intent.phase).to_lowercase(),
                    EventOutcome::Ok,
                );
            }
            // Docker is away: try again on the next pass, entry kept.
            Err(e) if e.is_unreachable() => {
                return Err(e);
            }
            // Anything else would fail the same way forever and hold up every deployment:
            // say so and let the planner take this one from what it observes.
            Err(e) => {
                let why = report(&e);
                warn!(%deployment, error = %why, "cannot resolve an interrupted rollout; the planner takes over");
                lock(events).record(
                    clock.wall(),
                    intent.commit.as_deref(),
                    Some(&deployment),
                    "recover",
                    &format!("could not resolve an interrupted rollout: {why}"),
                    EventOutcome::Failed,
                );
            }
        }
        lock(journal).clear(&deployment)?;
    }
    Ok(())
}

/// Finishes or undoes one interrupted rollout; says which.
async fn resolve(
    docker: &impl Runtime,
    node: &str,
    environment: &str,
    intent: &Intent,
) -> Result<&'static str, EngineError> {
    let actual = docker.observe().await?;
    // The new container: by id when it was written down, else by name, ownership and spec
    // hash (a crash between create and the journal write, RELIABILITY E9).
    let new = match &intent.new_id {
        Some(id) => actual.containers.iter().find(|c| c.id == *id),
        None => actual.containers.iter().find(|c| {
            c.name == intent.new_name
                && c.managed_by(node, environment)
                && c.spec_hash() == Some(intent.spec_hash.as_str())
                && intent.old_id.as_deref() != Some(c.id.as_str())
        }),
    }
    .map(|c| c.id.clone());
    if intent.phase == Phase::Promoting {
        match intent.kind {
            Kind::StartFirst => finish_start_first(docker, intent).await?,
            Kind::StopFirst => {
                if let Some(old) = &intent.old_id {
                    docker.remove(old).await?;
                }
            }
            Kind::Create => {}
        }
        Ok("finished an interrupted promotion")
    } else {
        undo(docker, intent, new.as_deref()).await?;
        Ok("undid an interrupted rollout; it starts over")
    }
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

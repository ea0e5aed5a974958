//! The reconcile loop: fetch → load → resolve for this node → observe → plan → apply → record,
//! on every poll tick, on Docker events, and when a backed-off deployment may be retried.
//!
//! The rules it keeps (REFERENCE §3, RELIABILITY C and E rows): a revision that fails to load,
//! validate or resolve is refused whole and the last good one keeps running; a fetch failure
//! changes nothing on the host; drift is repaired on every pass, whether Git moved or not;
//! images are pulled before anything is stopped; failed steps back off through the planner's
//! history, which is saved with the state file, so a restart does not turn into a hot loop.

mod images;
mod supervise;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use docker_runtime::{Docker, RegistryAuth, WatchEvent};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use gitsync::Schedule;
use manifest_model::{DesiredNode, Unlocked};
use reconcile_core::{Action, Actual, ContainerState, Desired, Diagnostic, Plan, Step, Timestamp};
use status_http::{EventOutcome, Metrics, NodeStatus, Status};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{Instrument as _, debug, error, info, info_span, warn};

use crate::apply;
use crate::error::{EngineError, report};
use crate::eventlog::EventLog;
use crate::journal::{self, Journal};
use crate::keys::{KeyStamp, Keys};
use crate::picture::{Ask, Picture};
use crate::project::{self, rfc3339};
use crate::rollout::{self, lock};
use crate::seams::{
    Clock as _, Git as _, Head, HttpProbe, LOGGED_PROBLEMS, MirrorGit, Parts, Real, Refusal,
    Runtime as _, SystemClock, World,
};
use crate::settings::Settings;
use crate::state::{DataDir, State};

/// The shortest poll a manifest may ask for (a flag may go lower, down to 100 ms): one commit
/// must not turn a fleet into a flood of requests to its Git host.
const MIN_MANIFEST_POLL: Duration = Duration::from_millis(500);
/// Events arriving within this window after the first one are handled by one pass.
const EVENT_DEBOUNCE: Duration = Duration::from_millis(200);

/// A revision that loaded, validated and resolved for this node.
struct Loaded {
    commit: String,
    /// The branch it was read from (and that its Node manifest names).
    branch: String,
    /// Its commit's subject, for the status page.
    subject: Option<String>,
    node: Rc<DesiredNode>,
    /// Its secret values, decrypted, and what masks them.
    secrets: Rc<rollout::Secrets>,
    /// `node` rendered for the planner, without image ids. A revision never changes, so its
    /// specs are rendered and hashed once here, not on every pass; each pass only fills in
    /// the local image ids.
    desired: Desired,
}

/// What one pass found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The host matches the revision and nothing is failing or waiting.
    pub converged: bool,
    /// When the planner wants to look again (a backoff ends).
    wake_at: Option<Timestamp>,
}

/// One node's agent: the Git mirror it follows, the Docker host it converges, and what it
/// remembers across passes and restarts.
pub struct Agent<W: World = Real> {
    cfg: Settings,
    /// The data dir and the state file: what survives a restart.
    store: Store,
    /// The remote, the revision followed, and how the last syncs went.
    tracking: Tracking<W::Git>,
    /// The seams, the journal, the history and the status, shared with rollouts in flight.
    shared: Rc<rollout::Shared<W>>,
    auth: RegistryAuth,
    started_at: SystemTime,
    /// The age key's place and the fingerprint key.
    keys: Keys,
    /// The secret values of the revision loaded last, whose redactor masks what the agent
    /// writes outside a rollout (a rollout masks with its own revision's).
    secrets: Rc<rollout::Secrets>,
    metrics: Metrics,
    /// Liveness probes, restart backoffs and restart counts of promoted containers.
    supervision: supervise::Supervision,
    /// The commit being applied, for events.
    current_commit: Option<String>,
    /// Rollouts running beside the loop.
    flights: FuturesUnordered<Pending<Landed>>,
    /// The deployments with a rollout in flight, and the spec hash each rolls out.
    in_flight: BTreeMap<String, String>,
    /// Errors of rollouts that landed since the last pass, for its `/status`.
    landed_errors: BTreeMap<String, String>,
    /// Docker's events for this node, unless the agent runs `--once`.
    docker_events: Option<tokio::sync::mpsc::Receiver<WatchEvent>>,
    /// The host as the last pass saw it, kept current by those events.
    picture: Picture,
    /// Registry checks and retention between passes.
    images_memory: images::ImageMemory,
    /// Builds running beside the loop.
    builds: FuturesUnordered<Pending<images::Built>>,
}

/// What survives a restart: the locked data dir and the state file in it.
struct Store {
    dir: DataDir,
    state: State,
}

/// Git tracking: the remote, its poll timer, the revision being converged, and how the last
/// syncs and loads went.
struct Tracking<G> {
    git: G,
    schedule: Schedule,
    /// The branch followed: the one the agent was told, else the one the last sync found
    /// named (or, before it, the one the last run followed).
    branch: Option<String>,
    current: Option<Loaded>,
    /// The head refused last, so it is not loaded and logged again on every tick; with the
    /// age key file's state when it was refused for want of a key, so a key installed later
    /// is tried at the next tick.
    refused: Option<(Head, Option<KeyStamp>)>,
    sync_error: Option<String>,
    load_error: Option<String>,
    stale_since: Option<SystemTime>,
    last_sync: Option<SystemTime>,
    /// When Git is next polled.
    next_poll: Option<Instant>,
}

/// Creates and starts at once. Docker does the work of each container mostly under its own
/// locks: 30 containers with host ports took ≈ 170 ms each 2-way and ≈ 145 ms 4- to 8-way
/// here (docs/BENCHMARKS.md, the daemon's floor), and 16-way was far worse (INFRA).
const CREATE_SLOTS: usize = 6;

impl Agent<Real> {
    /// Locks the data dir, connects to Docker, opens the Git mirror, reads what the last run
    /// left and resumes the revision that was running. `status` is where the engine
    /// publishes its picture; `shutdown` stops it between steps.
    pub async fn start(
        cfg: Settings,
        status: Status,
        shutdown: Arc<AtomicBool>,
    ) -> Result<Self, EngineError> {
        let dir = DataDir::lock(&cfg.data_dir)?;
        let guard = cfg.guard().settled(&docker_runtime::policy::RealHost);
        let runtime = Docker::connect(cfg.docker_host.as_deref())
            .await
            .map_err(EngineError::docker("cannot start without Docker"))?
            .with_guard(guard.clone());
        // After Docker: libgit2 has been initialising meanwhile (gitsync::warm_up).
        let git = MirrorGit::open(dir.git_dir(), cfg.remote.clone(), &cfg.node)?
            .with_guard(guard)
            .with_commit_rules(cfg.commit_rules()?);
        let docker_config = cfg
            .registry_config
            .clone()
            .or_else(RegistryAuth::default_path);
        let auth = RegistryAuth::load_with(
            docker_config.as_deref(),
            cfg.registry_credentials.as_deref(),
        )?;
        let parts = Parts {
            runtime,
            git,
            probe: HttpProbe,
            clock: SystemClock,
            auth,
        };
        Self::assemble(cfg, dir, parts, status, shutdown).await
    }
}

impl<W: World> Agent<W> {
    /// An engine on the given seams: locks the data dir, reads what the last run left there
    /// and resumes the revision that was running.
    pub async fn with_parts(
        cfg: Settings,
        parts: Parts<W>,
        status: Status,
        shutdown: Arc<AtomicBool>,
    ) -> Result<Self, EngineError> {
        let dir = DataDir::lock(&cfg.data_dir)?;
        Self::assemble(cfg, dir, parts, status, shutdown).await
    }

    async fn assemble(
        cfg: Settings,
        dir: DataDir,
        parts: Parts<W>,
        status: Status,
        shutdown: Arc<AtomicBool>,
    ) -> Result<Self, EngineError> {
        let state = dir.load_state()?;
        let keys = Keys::open(&cfg.data_dir, cfg.age_key.as_deref())?;
        let journal = match Journal::load(dir.path("intents.json")) {
            Ok(j) => j,
            Err(e) => {
                // Without it, leftovers are still found by their labels and temporary names.
                error!(error = %report(&e), "the intent journal is damaged; moving it aside");
                let damaged = dir.path("intents.json");
                let _ = std::fs::rename(&damaged, dir.path("intents.json.damaged"));
                Journal::load(damaged)?
            }
        };
        let events = EventLog::open(dir.path("events.jsonl"), status.clone());
        let Parts {
            runtime,
            git,
            probe,
            clock,
            auth,
        } = parts;
        let wall = clock.wall();
        // Agents restarted together must not draw the same jitter; a simulation fixes it.
        let seed = cfg.jitter_seed.unwrap_or_else(|| {
            u64::from(std::process::id())
                ^ wall
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos().into())
        });
        let schedule = Schedule::new(cfg.poll_interval.unwrap_or(Duration::from_secs(5)), seed);
        info!(
            node = %cfg.node,
            repo = %cfg.remote.url,
            branch = cfg
                .remote
                .branch
                .as_deref()
                .unwrap_or("the one its manifest on the remote's default branch names"),
            docker_api = %runtime.api_version(),
            data_dir = %cfg.data_dir.display(),
            "orun-agent starting"
        );
        let epoch = clock.now();
        let shared = Rc::new(rollout::Shared {
            docker: runtime,
            probe,
            clock,
            journal: Mutex::new(journal),
            events: Mutex::new(events),
            status,
            shutdown,
            slots: tokio::sync::Semaphore::new(CREATE_SLOTS),
            epoch,
            superseded: std::cell::RefCell::new(BTreeSet::new()),
            ingress: crate::ingress::Ingress::new(
                cfg.ingress.clone(),
                cfg.node.clone(),
                cfg.data_dir.clone(),
            ),
        });
        // The branch the resumed revision is of: the one the agent is told, else the one the
        // last run followed.
        let branch = cfg.remote.branch.clone().or_else(|| state.branch.clone());
        let mut agent = Self {
            cfg,
            store: Store { dir, state },
            tracking: Tracking {
                git,
                schedule,
                branch,
                current: None,
                refused: None,
                sync_error: None,
                load_error: None,
                stale_since: None,
                last_sync: None,
                next_poll: None,
            },
            shared,
            auth,
            started_at: wall,
            keys,
            secrets: Rc::default(),
            metrics: Metrics::default(),
            supervision: supervise::Supervision::default(),
            current_commit: None,
            flights: FuturesUnordered::new(),
            in_flight: BTreeMap::new(),
            landed_errors: BTreeMap::new(),
            docker_events: None,
            picture: Picture::default(),
            images_memory: images::ImageMemory::default(),
            builds: FuturesUnordered::new(),
        };
        // Watched from before the first listing, so no change after it goes unseen.
        if !agent.cfg.once {
            agent.docker_events = Some(agent.shared.docker.watch(&agent.cfg.node));
            agent.picture.set_live(true);
        }
        // Resume from the revision that was running, so a restart with the remote down still
        // keeps (and repairs) the last good state.
        match (
            agent.store.state.current.clone(),
            agent.tracking.branch.clone(),
        ) {
            (Some(commit), Some(branch)) => agent.load(&Head { branch, commit }, "resuming").await,
            (Some(_), None) => info!(
                "the last run did not record its branch; nothing is changed until the first poll finds it"
            ),
            (None, _) => {}
        }
        Ok(agent)
    }

    /// Runs passes until shutdown.
    pub async fn run(mut self, wake: Arc<Notify>) -> Result<(), EngineError> {
        self.run_until(&wake, None).await;
        info!("orun-agent stopping; containers keep running");
        Ok(())
    }

    /// The loop: a pass on every poll tick, Docker event, rollout ending, backoff ending or
    /// `wake`, until shutdown or, when given, until `stop`. Rollouts run beside it, so Git is
    /// polled while they wait for their gates and a newer revision never waits behind one.
    /// Rollouts still in flight at `stop` stay in flight (a simulation resumes the loop);
    /// at shutdown they are cancelled (undone) before it returns.
    pub async fn run_until(&mut self, wake: &Notify, stop: Option<Instant>) {
        // A node that resumed a revision repairs its host at once but polls Git only after a
        // random part of one interval, so a fleet restarted together does not poll its Git
        // host in the same instant (docs/SCALING.md). A node with nothing to run polls now.
        let mut next_poll = match self.tracking.next_poll {
            Some(at) => at,
            None if self.tracking.current.is_some() => {
                self.shared.clock.now() + self.tracking.schedule.splay()
            }
            None => self.shared.clock.now(),
        };
        loop {
            if stop.is_some_and(|s| self.shared.clock.now() >= s) {
                break;
            }
            let git_due = self.shared.clock.now() >= next_poll;
            let outcome = self.tick_beside_flights(git_due).await;
            if git_due {
                next_poll = self.shared.clock.now() + self.tracking.schedule.next_delay();
            }
            self.tracking.next_poll = Some(next_poll);
            if self.shared.shutdown.load(Ordering::SeqCst) {
                break;
            }
            let mut until = next_poll;
            if let Some(at) = outcome.wake_at {
                let secs = at.0.saturating_sub(self.now_ts().0);
                until = until.min(self.shared.clock.now() + Duration::from_secs(secs));
            }
            if let Some(stop) = stop {
                until = until.min(stop);
            }
            // Wait for the next reason to pass; liveness probes run while waiting, and
            // rollouts go on.
            loop {
                let liveness = self.next_liveness();
                let flying = !self.flights.is_empty();
                let building = !self.builds.is_empty();
                let watching = self.docker_events.is_some();
                let (flights, builds, events) =
                    (&mut self.flights, &mut self.builds, &mut self.docker_events);
                let woke = tokio::select! {
                    // In this order, so a simulation with the same inputs takes the same branch.
                    biased;
                    () = wake.notified() => Woke::Now,
                    Some(landed) = flights.next(), if flying => Woke::Landed(landed),
                    Some(built) = builds.next(), if building => Woke::Built(built),
                    () = tokio::time::sleep_until(until) => Woke::Now,
                    () = tokio::time::sleep_until(liveness.unwrap_or(until)), if liveness.is_some() => Woke::Liveness,
                    event = async { events.as_mut()?.recv().await }, if watching => Woke::Event(event),
                };
                match woke {
                    Woke::Now => break,
                    Woke::Landed((dep, action, result)) => {
                        // A rollout ended: plan again at once (its deployment may have a
                        // newer spec waiting, and its outcome belongs in `/status`). One that
                        // failed on Docker waits for the next poll, so a daemon refusing the
                        // same request cannot spin the loop.
                        let docker_failed = result.is_err();
                        self.land(&dep, action, result);
                        if !docker_failed {
                            break;
                        }
                    }
                    Woke::Built(built) => {
                        // Plan again at once: the deployment's image is here, or its failure
                        // belongs in `/status`.
                        self.land_build(built);
                        break;
                    }
                    Woke::Liveness => {
                        // A restart it makes is seen as Docker events, which wake a pass.
                        self.check_liveness().await;
                        if self.shared.shutdown.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                    Woke::Event(None) => {
                        // The watcher ended: keep polling rather than spin on a closed channel.
                        warn!("docker event watch ended; relying on polls");
                        self.docker_events = None;
                        self.picture.set_live(false);
                    }
                    Woke::Event(Some(event)) => {
                        self.note_event(&event);
                        // Our own steps cause events too; let a burst settle into one pass.
                        tokio::time::sleep(EVENT_DEBOUNCE).await;
                        self.take_events();
                        break;
                    }
                }
            }
            if self.shared.shutdown.load(Ordering::SeqCst) {
                break;
            }
        }
        if self.shared.shutdown.load(Ordering::SeqCst) {
            // Rollouts see the flag between their steps and undo themselves.
            self.drain().await;
            self.save_state();
        }
    }

    /// One pass of the loop, with the rollouts in flight polled beside it: a pass may wait a
    /// long time (a fetch up to its deadline, a pull up to ten minutes), and a gate that is
    /// not looked at meanwhile would judge a healthy container late, past its deadline.
    /// Rollouts that end during the pass land after it.
    async fn tick_beside_flights(&mut self, git_due: bool) -> Outcome {
        let mut flights = std::mem::take(&mut self.flights);
        let mut builds = std::mem::take(&mut self.builds);
        let mut landed = Vec::new();
        let mut built = Vec::new();
        let outcome = {
            let tick = self.tick(git_due, false);
            tokio::pin!(tick);
            loop {
                let flying = !flights.is_empty();
                let building = !builds.is_empty();
                tokio::select! {
                    biased;
                    o = &mut tick => break o,
                    Some(l) = flights.next(), if flying => landed.push(l),
                    Some(b) = builds.next(), if building => built.push(b),
                }
            }
        };
        // The pass launched its own rollouts and builds into fresh sets; the older ones
        // join them.
        let launched = std::mem::replace(&mut self.flights, flights);
        self.flights.extend(launched);
        let started = std::mem::replace(&mut self.builds, builds);
        self.builds.extend(started);
        for (dep, action, result) in landed {
            self.land(&dep, action, result);
        }
        for b in built {
            self.land_build(b);
        }
        outcome
    }

    /// Waits for every rollout in flight to end, and records how each did; how many
    /// succeeded.
    async fn drain(&mut self) -> usize {
        let mut ok = 0;
        while let Some((dep, action, result)) = self.flights.next().await {
            if self.land(&dep, action, result) {
                ok += 1;
            }
        }
        ok
    }

    /// Records how a rollout in flight ended; whether it succeeded.
    fn land(&mut self, dep: &str, action: &'static str, result: StepResult) -> bool {
        let hash = self.in_flight.remove(dep).unwrap_or_default();
        self.shared.superseded.borrow_mut().remove(dep);
        self.picture.changed();
        let mut errors = std::mem::take(&mut self.landed_errors);
        let ok = self.settle(dep, &hash, action, result, &mut errors);
        self.landed_errors = errors;
        // A crash later must not forget a failure (and retry at once).
        self.save_state();
        ok
    }

    /// Starts a rollout (or a step of its wave) in flight.
    fn launch(&mut self, dep: &str, hash: &str, action: &'static str, work: Pending<StepResult>) {
        self.in_flight.insert(dep.to_owned(), hash.to_owned());
        let dep = dep.to_owned();
        self.flights
            .push(Box::pin(async move { (dep, action, work.await) }));
    }

    /// One pass, and every rollout it starts runs to its end before it returns, as `--once`
    /// and a simulation's step want. `git_due`: check the remote first.
    pub async fn pass(&mut self, git_due: bool) -> Outcome {
        self.tick(git_due, true).await
    }

    /// One pass. `git_due`: check the remote first; `wait`: let the rollouts it starts run
    /// to their end before returning, else leave them in flight.
    async fn tick(&mut self, git_due: bool, wait: bool) -> Outcome {
        if wait {
            // Rollouts and builds a loop left in flight land first: this pass plans from
            // their end.
            self.drain().await;
            while let Some(b) = self.builds.next().await {
                self.land_build(b);
            }
        }
        // Events from beside the engine (the daemon's self-update) join the durable history.
        for note in self.shared.status.take_notes() {
            self.event(None, &note.step, &note.reason, note.outcome);
        }
        self.metrics.passes_total += 1;
        let span = info_span!("pass", n = self.metrics.passes_total, git = git_due);
        async {
            let started = self.shared.clock.now();
            if git_due {
                self.sync().await;
            }
            let outcome = match self.converge(wait).await {
                Ok(o) => o,
                Err(e) => {
                    let why = self.secrets.redactor.mask(&report(&e));
                    error!(error = %why, "pass failed");
                    // What a failed pass left behind is not known: look at everything next.
                    self.picture.forget();
                    self.publish_error(&why);
                    Outcome::default()
                }
            };
            if outcome.converged {
                self.metrics.last_success_unix = Some(
                    self.shared
                        .clock
                        .wall()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64()),
                );
            } else if self.in_flight.is_empty() {
                // A pass with rollouts still in flight is not converged yet, not failed.
                self.metrics.pass_failures_total += 1;
            }
            debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                converged = outcome.converged,
                "pass done"
            );
            outcome
        }
        .instrument(span)
        .await
    }

    async fn sync(&mut self) {
        let started = self.shared.clock.now();
        let result = self.tracking.git.sync().await;
        self.metrics.fetch_duration_seconds = Some(started.elapsed().as_secs_f64());
        match result {
            Ok(head) => {
                self.tracking.schedule.record(true);
                self.tracking.last_sync = Some(self.shared.clock.wall());
                self.tracking.stale_since = None;
                self.tracking.sync_error = None;
                if self.tracking.branch.as_deref() != Some(head.branch.as_str()) {
                    // Only without --branch: the node's manifest on the default branch names
                    // a branch (first poll) or another one than before.
                    match &self.tracking.branch {
                        Some(from) => {
                            info!(from = %from, to = %head.branch, "the node's manifest on the remote's default branch names another branch: following it");
                        }
                        None => {
                            info!(branch = %head.branch, "following the branch the node's manifest on the remote's default branch names");
                        }
                    }
                    self.tracking.branch = Some(head.branch.clone());
                }
                let known = self
                    .tracking
                    .current
                    .as_ref()
                    .is_some_and(|c| c.commit == head.commit && c.branch == head.branch)
                    || self.tracking.refused.as_ref().is_some_and(|(h, stamp)| {
                        *h == head && stamp.as_ref().is_none_or(|s| *s == self.keys.stamp())
                    });
                if !known {
                    self.load(&head, "fetched").await;
                }
            }
            Err(e) => {
                self.tracking.schedule.record(false);
                let wall = self.shared.clock.wall();
                self.tracking.stale_since.get_or_insert(wall);
                let retry = gitsync::backoff(
                    self.tracking.schedule.interval(),
                    self.tracking.schedule.failures(),
                );
                // A failure to learn the branch is retried as a failed fetch is: the host
                // keeps what it runs, and the poll backs off.
                let fetch = matches!(e, EngineError::Git(_));
                let e = report(&e);
                if fetch {
                    warn!(error = %e, failures = self.tracking.schedule.failures(), retry_in = ?retry, "fetch failed; keeping the current revision");
                    self.tracking.sync_error = Some(format!("fetch failed: {e}"));
                } else {
                    warn!(error = %e, failures = self.tracking.schedule.failures(), retry_in = ?retry, "no branch to follow; keeping the current revision");
                    self.tracking.sync_error = Some(e);
                }
            }
        }
    }

    /// Loads `head` (a commit of a branch) from the mirror; on success it becomes current,
    /// otherwise it is refused.
    ///
    /// Reading, parsing and resolving a revision runs on the blocking pool, never on the
    /// runtime's thread: a large (or hostile) revision may take a while, and meanwhile
    /// `/healthz` and Docker events must still be served.
    async fn load(&mut self, head: &Head, why: &str) {
        let Head { branch, commit } = head;
        let short = commit[..commit.len().min(12)].to_owned();
        // The last commit accepted, as persisted: after a restart, and after a refusal, it
        // is still what a new tip must descend from when the node requires signed commits
        // (a tip of another branch included: switching is a jump like a force-push).
        let current = self.store.state.current.clone();
        let read = self
            .tracking
            .git
            .read(commit, current.as_deref(), &self.cfg.node, branch)
            .await;
        let Some(result) = read else {
            warn!("the mirror is busy with a stuck fetch; loading later");
            return;
        };
        let result = result.map(|(node, warnings)| {
            for w in &warnings.shown {
                warn!(commit = %short, "{w}");
            }
            if warnings.more > 0 {
                warn!(commit = %short, more = warnings.more, "more warnings not shown");
            }
            node
        });
        // Secret values are decrypted before the revision is accepted: one that does not
        // decrypt (no key, a wrong key, a tampered value, a bad MAC) refuses it whole.
        let mut key_stamp = None;
        let clash = result
            .as_ref()
            .ok()
            .and_then(|node| self.shared.ingress.clash(node));
        let result = match result {
            Ok(_) if let Some(problem) = clash => Err(Refusal {
                permanent: true,
                problems: vec![problem],
                total: 1,
            }),
            Ok(node) => {
                let stamp = self.keys.stamp();
                match self.unlock(node).await {
                    Ok(ok) => Ok(ok),
                    Err(refusal) => {
                        key_stamp = Some(stamp);
                        Err(refusal)
                    }
                }
            }
            Err(refusal) => Err(refusal),
        };
        match result {
            Ok((node, unlocked)) => {
                info!(commit = %short, branch = %branch, why, deployments = node.containers.len(), "revision accepted");
                if self.cfg.poll_interval.is_none() {
                    let wanted = node.node.spec.poll_interval;
                    if wanted < MIN_MANIFEST_POLL {
                        warn!(?wanted, floor = ?MIN_MANIFEST_POLL, "pollInterval is too short; using the floor");
                    }
                    self.tracking
                        .schedule
                        .set_interval(wanted.max(MIN_MANIFEST_POLL));
                }
                let mut desired = Desired::from_node(
                    &node,
                    Some(commit.to_owned()),
                    |_| None,
                    &unlocked.fingerprints,
                );
                desired.allow_empty = self.cfg.allow_remove_all;
                // A rollout in flight of a spec this revision no longer wants is superseded:
                // it is undone at its gate's next look, and the newer spec follows at once.
                for (dep, hash) in &self.in_flight {
                    let wanted = desired
                        .deployments
                        .iter()
                        .any(|d| d.name == *dep && d.spec_hash == *hash);
                    let mut superseded = self.shared.superseded.borrow_mut();
                    if wanted {
                        // A revert back to the spec in flight before its gate looked.
                        superseded.remove(dep);
                    } else if superseded.insert(dep.clone()) {
                        info!(deployment = %dep, commit = %short, "a newer revision changes it: superseding its rollout");
                    }
                }
                self.current_commit = Some(commit.to_owned());
                let node = Rc::new(node);
                let secrets = Rc::new(rollout::Secrets::new(
                    Rc::clone(&node),
                    unlocked,
                    &self.secrets,
                ));
                self.secrets = Rc::clone(&secrets);
                let subject = self.tracking.git.subject(commit).await;
                self.tracking.current = Some(Loaded {
                    commit: commit.to_owned(),
                    branch: branch.to_owned(),
                    subject,
                    node,
                    secrets,
                    desired,
                });
                self.tracking.refused = None;
                self.tracking.load_error = None;
                if self.store.state.current.as_deref() != Some(commit)
                    || self.store.state.branch.as_deref() != Some(branch)
                {
                    self.store.state.current = Some(commit.to_owned());
                    self.store.state.branch = Some(branch.to_owned());
                    self.save_state();
                }
            }
            Err(Refusal {
                permanent,
                problems,
                total,
            }) => {
                // The log gets the first few; a revision wrong a million times must not
                // write a million lines (`orun validate` shows them all, capped too).
                for p in problems.iter().take(LOGGED_PROBLEMS) {
                    error!(commit = %short, "{p}");
                }
                let mut shown: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
                let more = total.saturating_sub(shown.len());
                let tail = format!("and {more} more");
                if more > 0 {
                    shown.push(&tail);
                }
                if self.tracking.current.is_some() {
                    error!(commit = %short, errors = total, "revision refused; the previous one keeps running");
                } else {
                    error!(commit = %short, errors = total, "revision refused; no revision is running yet");
                }
                self.tracking.load_error =
                    Some(format!("revision {short} refused: {}", shown.join("; ")));
                // A commit's content never changes: a revision refused for what it says stays
                // refused until the branch moves. A read failure is tried again.
                if permanent {
                    self.tracking.refused = Some((head.clone(), key_stamp));
                }
            }
        }
    }

    /// Decrypts the secret values `node` needs with the node's age key, on the blocking pool
    /// (a hostile file costs CPU linear in its size, but not on the runtime's thread).
    async fn unlock(&self, node: DesiredNode) -> Result<(DesiredNode, Unlocked), Refusal> {
        if manifest_model::unlock::needs(&node).is_empty() {
            return Ok((node, Unlocked::default()));
        }
        let ids = match self.keys.identities() {
            Ok(ids) => ids,
            Err(e) => {
                return Err(Refusal {
                    permanent: true,
                    problems: vec![e.to_string()],
                    total: 1,
                });
            }
        };
        let fingerprinter = self.keys.fingerprinter.clone();
        let where_ = self.keys.where_();
        let opened = tokio::task::spawn_blocking(move || {
            let result = manifest_model::unlock(&node, ids.as_ref(), &fingerprinter);
            (node, result, ids.is_none())
        })
        .await;
        match opened {
            Ok((node, Ok(unlocked), _)) => Ok((node, unlocked)),
            Ok((_, Err(diagnostics), no_key)) => {
                let mut problems: Vec<String> =
                    diagnostics.iter().map(ToString::to_string).collect();
                if no_key {
                    problems.push(format!(
                        "no age key at {where_}: install the node's key there (or give --age-key-path)"
                    ));
                }
                let total = problems.len();
                Err(Refusal {
                    permanent: true,
                    problems,
                    total,
                })
            }
            Err(e) => Err(Refusal {
                permanent: false,
                problems: vec![format!("decrypting the revision's secrets failed: {e}")],
                total: 1,
            }),
        }
    }

    async fn converge(&mut self, wait: bool) -> Result<Outcome, EngineError> {
        let Some(loaded) = self.tracking.current.take() else {
            self.publish(None, &Actual::default(), &Plan::default(), &BTreeMap::new());
            return Ok(Outcome::default());
        };
        let result = self.converge_to(&loaded, wait).await;
        self.tracking.current = Some(loaded);
        result
    }

    async fn converge_to(&mut self, loaded: &Loaded, wait: bool) -> Result<Outcome, EngineError> {
        let node = &loaded.node;
        let mut errors: BTreeMap<String, String> = BTreeMap::new();
        // Before any rollout of this revision (or a recovery) switches a route.
        self.shared.ingress.prime(node);
        // Rollouts a crash or a Docker failure left half-done are resolved before anything
        // is planned: the plan must see each deployment with one container again. One whose
        // new container was in its gate, and is still what the revision wants, is adopted
        // and its gate resumed; the others are finished or undone.
        if !lock(&self.shared.journal).entries().is_empty() {
            let adopted = self
                .adoptable(loaded)
                .await
                .map_err(|e| EngineError::Recover(Box::new(e)))?;
            // Rollouts in flight are journaled too, and are nobody's to resolve.
            let skip: BTreeSet<String> = adopted
                .keys()
                .chain(self.in_flight.keys())
                .cloned()
                .collect();
            // Only a real leftover costs anything: while rollouts are in flight the journal
            // holds them on every pass.
            let leftovers = lock(&self.shared.journal)
                .entries()
                .keys()
                .any(|d| !skip.contains(d));
            if leftovers {
                let ctx = rollout::Ctx::<W> {
                    shared: Rc::clone(&self.shared),
                    desired: Rc::new(loaded.desired.clone()),
                    secrets: Rc::clone(&loaded.secrets),
                };
                rollout::recover(&ctx, &skip)
                    .await
                    .map_err(|e| EngineError::Recover(Box::new(e)))?;
                // What the recovery changed is listed, not waited for as events.
                self.picture.changed();
            }
            if !adopted.is_empty() {
                self.resume(loaded, adopted);
                if wait {
                    self.drain().await;
                    errors.extend(std::mem::take(&mut self.landed_errors));
                }
            }
        }
        let mut desired = loaded.desired.clone();
        let refs: Vec<String> = desired
            .deployments
            .iter()
            .map(|d| d.spec.image.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (actual, mut images) = self.look(&refs).await?;

        // Pull or build before planning, so nothing is stopped for an image that cannot be
        // had (E1).
        if !self
            .acquire(loaded, &desired, &mut images, &mut errors, wait)
            .await
        {
            return Ok(Outcome::default());
        }
        let now = self.now_ts();
        self.picture.set_images(&refs, &images);
        for d in &mut desired.deployments {
            d.image_id = images.get(&d.spec.image).cloned();
        }
        let desired = Rc::new(desired);
        let mut plan = reconcile_core::plan(&desired, &actual, &self.store.state.history, now);
        // A deployment with a rollout in flight is that rollout's until it lands.
        self.leave_to_flights(&mut plan, &actual, &desired);
        for d in &plan.diagnostics {
            match d {
                Diagnostic::Suspended { .. } | Diagnostic::BackingOff { .. } => debug!("{d:?}"),
                _ => warn!("{d:?}"),
            }
        }
        self.shared
            .ingress
            .prepare_network(&self.shared.docker, &loaded.node)
            .await;
        let applied = self
            .apply(loaded, &desired, &plan, &mut errors, wait)
            .await?;

        let (actual, replan) = if plan.steps.is_empty() {
            (actual, plan)
        } else {
            // The steps changed the host: list it whole rather than wait for their events.
            let actual = self.observe().await?;
            self.picture.listed(&actual, self.shared.clock.now());
            let mut replan =
                reconcile_core::plan(&desired, &actual, &self.store.state.history, self.now_ts());
            self.leave_to_flights(&mut replan, &actual, &desired);
            (actual, replan)
        };
        // A name held by a container this node does not manage: its events are not watched
        // (they carry no label of this node), so the holder is looked at again each pass.
        for d in &replan.diagnostics {
            if let Diagnostic::NameClash { container_id, .. } = d {
                self.picture.recheck(container_id);
            }
        }
        let blocked = replan.diagnostics.iter().any(|d| {
            matches!(
                d,
                Diagnostic::NameClash { .. }
                    | Diagnostic::BackingOff { .. }
                    | Diagnostic::RefusedRemoveAll { .. }
            )
        });
        // Outcomes of rollouts that landed since the last pass, for `/status` (taken only
        // now, so a pass that failed early leaves them for the next).
        for (dep, e) in std::mem::take(&mut self.landed_errors) {
            errors.entry(dep).or_insert(e);
        }
        if !errors.is_empty() {
            // A create may have failed for want of the network (removed by hand): look again.
            self.shared.ingress.forget_network();
        }
        let converged = replan.steps.is_empty()
            && errors.is_empty()
            && !blocked
            && self.in_flight.is_empty()
            // Not `builds`: the loop holds that set aside while a pass runs.
            && self.images_memory.building.is_empty();
        if converged && self.store.state.last_applied.as_deref() != Some(loaded.commit.as_str()) {
            info!(commit = %&loaded.commit[..12.min(loaded.commit.len())], applied, "converged");
            self.store.state.last_applied = Some(loaded.commit.clone());
            self.save_state();
        } else if applied > 0 || !errors.is_empty() {
            self.save_state();
        }
        self.supervise(loaded, &desired, &actual).await;
        self.sweep(&desired, &actual).await;
        self.shared
            .ingress
            .sync(
                &self.shared.docker,
                &self.auth,
                &loaded.node,
                &actual,
                &self.in_flight,
            )
            .await;
        self.publish(Some((loaded, &desired)), &actual, &replan, &errors);
        Ok(Outcome {
            converged,
            wake_at: replan.wake_at,
        })
    }

    /// Applies a plan: the single-call steps (remove, start, unpause) in order, then the
    /// rollouts and renames in waves (one that takes a name waits for the wave that frees it),
    /// each wave's members concurrently. Returns how many steps succeeded.
    async fn apply(
        &mut self,
        loaded: &Loaded,
        desired: &Rc<Desired>,
        plan: &Plan,
        errors: &mut BTreeMap<String, String>,
        wait: bool,
    ) -> Result<usize, EngineError> {
        let mut applied = 0;
        let (quick, changes): (Vec<&Step>, Vec<&Step>) = plan.steps.iter().partition(|s| {
            matches!(
                s.action,
                Action::Start { .. } | Action::Unpause { .. } | Action::Remove { .. }
            )
        });
        for step in quick {
            if self.shared.shutdown.load(Ordering::SeqCst) {
                info!("shutdown requested: stopping before the next step");
                return Ok(applied);
            }
            let action = apply::name(&step.action);
            let summary = &step.reason.summary;
            info!(deployment = %step.deployment, action, reason = %summary, "applying");
            match apply::step(&self.shared.docker, step).await {
                Ok(()) => {
                    applied += 1;
                    if let Action::Start { container_id, .. } = &step.action {
                        // Starting a stopped current container is supervision: counted.
                        *self
                            .store
                            .state
                            .restarts
                            .entry(container_id.clone())
                            .or_default() += 1;
                    }
                    self.event(Some(&step.deployment), action, summary, EventOutcome::Ok);
                }
                Err(e) => {
                    let reason = self.secrets.redactor.mask(&report(&e));
                    error!(deployment = %step.deployment, error = %reason, "step failed");
                    self.event(
                        Some(&step.deployment),
                        action,
                        &reason,
                        EventOutcome::Failed,
                    );
                    errors.insert(step.deployment.clone(), reason);
                }
            }
        }

        for (i, wave) in reconcile_core::waves(changes).into_iter().enumerate() {
            if self.shared.shutdown.load(Ordering::SeqCst) {
                info!("shutdown requested: starting no more rollouts");
                break;
            }
            // A later wave takes a name this one frees: when the loop runs on, it is planned
            // again once this wave has landed.
            if i > 0 && !wait {
                break;
            }
            for step in &wave {
                let action = apply::name(&step.action);
                let mut reason = step.reason.summary.clone();
                for c in &step.reason.changes {
                    reason.push_str(&format!(
                        "; {}: {} -> {}",
                        c.field,
                        c.old.as_deref().unwrap_or("(unset)"),
                        c.new.as_deref().unwrap_or("(unset)")
                    ));
                }
                info!(deployment = %step.deployment, action, reason = %step.reason.summary, "applying");
                let outcome = if apply::is_rollout(&step.action) {
                    EventOutcome::Started
                } else {
                    EventOutcome::Ok
                };
                self.event(Some(&step.deployment), action, &reason, outcome);
            }
            let ctx = rollout::Ctx::<W> {
                shared: Rc::clone(&self.shared),
                desired: Rc::clone(desired),
                secrets: Rc::clone(&loaded.secrets),
            };
            for step in &wave {
                let (ctx, step) = (ctx.clone(), (*step).clone());
                let dep = step.deployment.clone();
                let action = apply::name(&step.action);
                // `desired.deployments` is `loaded.node.containers` rendered, in order.
                let wanted = desired
                    .deployments
                    .iter()
                    .zip(&loaded.node.containers)
                    .find(|(d, _)| d.name == dep);
                let hash = wanted.map(|(d, _)| d.spec_hash.clone()).unwrap_or_default();
                let work: Pending<StepResult> = if apply::is_rollout(&step.action) {
                    let target = wanted.map(|(d, c)| (d.clone(), rollout::Checks::of(&c.spec)));
                    Box::pin(async move {
                        let (d, checks) = target.ok_or_else(not_desired)?;
                        rollout::run(&ctx, &step, &d, &checks).await.map(Some)
                    })
                } else {
                    Box::pin(async move { apply::step(&ctx.docker, &step).await.map(|()| None) })
                };
                self.launch(&dep, &hash, action, work);
            }
            if wait {
                applied += self.drain().await;
                errors.extend(std::mem::take(&mut self.landed_errors));
            }
        }
        Ok(applied)
    }

    /// Records how a step or rollout of `dep` ended: metrics, the failure history, and the
    /// pass's errors. Whether it succeeded.
    fn settle(
        &mut self,
        dep: &str,
        hash: &str,
        action: &str,
        result: StepResult,
        errors: &mut BTreeMap<String, String>,
    ) -> bool {
        let count = |m: &mut Metrics, outcome: &str| {
            *m.rollouts.entry(outcome.to_owned()).or_default() += 1;
        };
        match result {
            Ok(None) => true,
            Ok(Some(rollout::Outcome::Promoted)) => {
                count(&mut self.metrics, "promoted");
                self.clear_failure(dep);
                self.supervision.backoffs.remove(dep);
                true
            }
            Ok(Some(rollout::Outcome::RolledBack(why))) => {
                count(&mut self.metrics, "rolled-back");
                // The backoff runs from the failure, not from the pass's start: a gate may
                // have taken minutes.
                self.record_failure(dep, hash, &why, self.now_ts());
                errors.insert(dep.to_owned(), format!("failed, rolled back: {why}"));
                false
            }
            Ok(Some(rollout::Outcome::Failed(why))) => {
                count(&mut self.metrics, "failed");
                self.record_failure(dep, hash, &why, self.now_ts());
                errors.insert(dep.to_owned(), format!("failed: {why}"));
                false
            }
            Ok(Some(rollout::Outcome::Cancelled)) => false,
            // A newer revision changes it: not the spec's fault, and the next pass rolls out
            // the newer spec at once.
            Ok(Some(rollout::Outcome::Superseded)) => {
                count(&mut self.metrics, "superseded");
                false
            }
            Err(e) => {
                // Docker failed part-way: the journal keeps the rollout and the next pass
                // resolves it before planning again.
                let reason = self.secrets.redactor.mask(&report(&e));
                error!(deployment = %dep, error = %reason, "step failed");
                self.event(Some(dep), action, &reason, EventOutcome::Failed);
                errors.insert(dep.to_owned(), reason);
                false
            }
        }
    }

    /// The journal's rollouts whose new container was in its gate when the last run ended
    /// and is still there, for a deployment the revision still wants exactly so: these are
    /// adopted rather than undone.
    async fn adoptable(
        &self,
        loaded: &Loaded,
    ) -> Result<BTreeMap<String, journal::Intent>, EngineError> {
        let entries = lock(&self.shared.journal).entries().clone();
        let candidates: Vec<(String, journal::Intent)> = entries
            .into_iter()
            .filter(|(dep, intent)| {
                // A rollout in flight is journaled too; it is not a leftover to adopt.
                !self.in_flight.contains_key(dep)
                    && intent.phase == journal::Phase::Verifying
                    && intent.new_id.is_some()
                    && loaded
                        .node
                        .containers
                        .iter()
                        .zip(&loaded.desired.deployments)
                        .any(|(c, d)| {
                            d.name == *dep
                                && !c.spec.suspend
                                && d.spec_hash == intent.spec_hash
                                && d.spec.container_name == intent.name
                        })
            })
            .collect();
        if candidates.is_empty() {
            return Ok(BTreeMap::new());
        }
        let actual = self.observe().await?;
        Ok(candidates
            .into_iter()
            .filter(|(_, intent)| {
                actual.containers.iter().any(|c| {
                    Some(&c.id) == intent.new_id.as_ref()
                        && matches!(c.state, ContainerState::Running | ContainerState::Created)
                })
            })
            .collect())
    }

    /// Resumes the gates of adopted rollouts, in flight like any other rollout.
    fn resume(&mut self, loaded: &Loaded, adopted: BTreeMap<String, journal::Intent>) {
        let desired = &loaded.desired;
        let ctx = rollout::Ctx::<W> {
            shared: Rc::clone(&self.shared),
            desired: Rc::new(desired.clone()),
            secrets: Rc::clone(&loaded.secrets),
        };
        for (dep, intent) in adopted {
            let Some((d, c)) = desired
                .deployments
                .iter()
                .zip(&loaded.node.containers)
                .find(|(d, _)| d.name == dep)
            else {
                continue;
            };
            let (ctx, d, checks) = (ctx.clone(), d.clone(), rollout::Checks::of(&c.spec));
            let hash = d.spec_hash.clone();
            self.launch(
                &dep,
                &hash,
                "resume",
                Box::pin(async move { rollout::resume(&ctx, &d, intent, &checks).await.map(Some) }),
            );
        }
    }

    fn event(&self, deployment: Option<&str>, step: &str, reason: &str, outcome: EventOutcome) {
        let commit = self.current_commit.clone();
        let reason = &self.secrets.redactor.mask(reason);
        lock(&self.shared.events).record(
            self.shared.clock.wall(),
            commit.as_deref(),
            deployment,
            step,
            reason,
            outcome,
        );
    }

    fn backing_off(&self, deployment: &str, spec_hash: &str, now: Timestamp) -> bool {
        let backoff = reconcile_core::Backoff::default();
        self.store
            .state
            .history
            .backing_off(deployment, spec_hash, &backoff, now)
    }

    fn record_failure(&mut self, deployment: &str, spec_hash: &str, reason: &str, now: Timestamp) {
        self.store
            .state
            .history
            .record_failure(deployment, spec_hash, reason, now);
    }

    fn clear_failure(&mut self, deployment: &str) {
        self.store.state.history.clear(deployment);
    }

    fn save_state(&self) {
        if let Err(e) = self.store.dir.save_state(&self.store.state) {
            // The host keeps running; only the memory of this pass is at risk (E8).
            error!(error = %report(&e), "cannot save state");
        }
    }

    fn node_status(&self) -> NodeStatus {
        let sync_error = match (&self.tracking.sync_error, &self.tracking.load_error) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        NodeStatus {
            name: self.cfg.node.clone(),
            started_at: rfc3339(self.started_at),
            last_sync_time: self.tracking.last_sync.map(rfc3339),
            git_head: self.tracking.current.as_ref().map(|c| c.commit.clone()),
            branch: self
                .tracking
                .current
                .as_ref()
                .map(|c| c.branch.clone())
                .or_else(|| self.tracking.branch.clone()),
            git_subject: self
                .tracking
                .current
                .as_ref()
                .and_then(|c| c.subject.clone()),
            agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            sync_error,
            stale_since: self.tracking.stale_since.map(rfc3339),
        }
    }

    fn publish_error(&self, error: &str) {
        let mut snap = (*self.shared.status.get()).clone();
        snap.node = self.node_status();
        let docker = format!("docker: {error}");
        snap.node.sync_error = Some(match snap.node.sync_error {
            Some(s) => format!("{s}; {docker}"),
            None => docker,
        });
        snap.ready = false;
        snap.metrics = self.metrics.clone();
        self.shared.status.publish(snap);
    }

    fn publish(
        &self,
        loaded: Option<(&Loaded, &Desired)>,
        actual: &Actual,
        plan: &Plan,
        errors: &BTreeMap<String, String>,
    ) {
        let mut node = self.node_status();
        if let Some((l, _)) = loaded {
            node.git_head = Some(l.commit.clone());
            node.branch = Some(l.branch.clone());
            node.git_subject.clone_from(&l.subject);
        }
        let previous = self.shared.status.get();
        let snapshot = project::snapshot(&project::View {
            node,
            revision: loaded.map(|(l, d)| (&*l.node, d)),
            actual,
            plan,
            errors,
            history: &self.store.state.history,
            in_flight: &self.in_flight,
            previous: &previous,
            inspected: &self.supervision.inspected,
            metrics: &self.metrics,
            services: self.shared.ingress.services(),
        });
        let mut snapshot = snapshot;
        snapshot.images = status_http::ImagesStatus {
            in_progress: std::mem::take(&mut snapshot.images.in_progress),
            ..self.images_memory.status.clone()
        };
        self.shared.status.publish(snapshot);
    }
}

/// A future of one rollout or step, owning what it needs.
type Pending<T> = Pin<Box<dyn Future<Output = T>>>;
/// How a rollout or step ended: `None` for a single-call step.
type StepResult = Result<Option<rollout::Outcome>, EngineError>;
/// A rollout that landed: its deployment, its action, how it ended.
type Landed = (String, &'static str, StepResult);

/// Why the loop stopped waiting.
enum Woke {
    /// A poll, a backoff's end, or a wake-up: pass now.
    Now,
    /// A rollout ended.
    Landed(Landed),
    /// A build beside the loop ended.
    Built(images::Built),
    /// A liveness probe is due.
    Liveness,
    /// A Docker event, or `None` when the watch ended.
    Event(Option<WatchEvent>),
}

/// A step names a deployment the plan was made from; not finding it is a bug.
fn not_desired() -> EngineError {
    EngineError::Internal("the step's deployment is not desired".to_owned())
}

impl<W: World> Agent<W> {
    /// Leaves out of `plan` what belongs to rollouts in flight: their deployments' steps, and
    /// any step that takes a name one of them holds or will hold (it was ordered after the
    /// rollout that frees the name, and waits for it to land).
    fn leave_to_flights(&self, plan: &mut Plan, actual: &Actual, desired: &Desired) {
        // A deployment whose image is being built beside the loop is left as it runs.
        plan.steps.retain(|s| !self.building(&s.deployment));
        if self.in_flight.is_empty() {
            return;
        }
        let mut held: BTreeSet<&str> = BTreeSet::new();
        for c in &actual.containers {
            if let Some((dep, _)) = c.ownership(&desired.node, &desired.environment)
                && self.in_flight.contains_key(dep)
            {
                held.insert(c.name.as_str());
            }
        }
        for d in &desired.deployments {
            if self.in_flight.contains_key(&d.name) {
                held.insert(d.spec.container_name.as_str());
            }
        }
        plan.steps.retain(|s| {
            !self.in_flight.contains_key(&s.deployment) && !held.contains(s.target_name())
        });
    }

    /// The host's containers and the local ids of `refs`, from the picture where it is
    /// current; an idle node asks dockerd nothing.
    async fn look(
        &mut self,
        refs: &[String],
    ) -> Result<(Actual, BTreeMap<String, String>), EngineError> {
        // Events the loop has not read yet (a pass run by `pass()`, or a burst cut short).
        self.take_events();
        let now = self.shared.clock.now();
        let ask = self.picture.wants(now);
        let known_images = self.picture.images(refs).cloned();
        let docker = &self.shared.docker;
        // Both at once: dockerd answers them in parallel, and a pass that must ask is
        // mostly waiting for these two answers.
        let (listed, images) = tokio::join!(
            async {
                match &ask {
                    Ask::Everything => docker.observe().await.map(|a| (Some(a), Vec::new())),
                    Ask::Only(ids) => docker.observe_ids(ids).await.map(|found| (None, found)),
                    Ask::Nothing => Ok((None, Vec::new())),
                }
            },
            async {
                match known_images {
                    Some(ids) => Ok(ids),
                    None => docker.image_ids(refs).await,
                }
            }
        );
        let listed = listed.map_err(EngineError::docker("cannot observe Docker"))?;
        let images = images.map_err(EngineError::docker("cannot list images"))?;
        let (listed, found) = listed;
        if let Ask::Only(ids) = &ask {
            self.picture.looked(ids, found);
        }
        let actual = match listed {
            Some(actual) => {
                self.picture.listed(&actual, now);
                actual
            }
            None => self.picture.actual().cloned().ok_or_else(|| {
                EngineError::Internal("the picture of the host was lost mid-pass".to_owned())
            })?,
        };
        Ok((actual, images))
    }

    async fn observe(&self) -> Result<Actual, EngineError> {
        self.shared
            .docker
            .observe()
            .await
            .map_err(EngineError::docker("cannot observe Docker"))
    }

    /// The wall clock in whole seconds, as the planner and the history count.
    fn now_ts(&self) -> Timestamp {
        Timestamp(
            self.shared
                .clock
                .wall()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }

    /// Notes every event already waiting, without waiting for more.
    fn take_events(&mut self) {
        let Some(rx) = self.docker_events.as_mut() else {
            return;
        };
        let mut pending = Vec::new();
        while let Ok(event) = rx.try_recv() {
            pending.push(event);
        }
        for event in &pending {
            self.note_event(event);
        }
    }

    /// Logs a Docker event, folds it into the picture, and remembers containers that died,
    /// whose restart counts must be read again.
    fn note_event(&mut self, event: &WatchEvent) {
        self.picture.note(event);
        match event {
            WatchEvent::Container {
                action,
                id,
                deployment,
            } => {
                debug!(action = %action, deployment = deployment.as_deref().unwrap_or(""), "docker event");
                if action == "die" {
                    self.supervision.dirty.insert(id.clone());
                }
            }
            WatchEvent::Image { action } => {
                debug!(action = %action, "docker image event");
            }
            WatchEvent::Reconnected => {
                info!("docker event stream reconnected; re-observing");
                // Deaths may have been missed while the stream was down.
                self.supervision.inspected.clear();
            }
        }
    }
}

//! One seeded scenario: a node with a few deployments and a few containers that are not
//! orun's, then a random run of commits (good, refused, force-pushed), Docker and Git
//! outages, passes, agent crashes at any await point and clean restarts, then a calm end
//! where the faults stop and the node must converge. The invariants are checked after every
//! step; the first one broken ends the scenario with a [`Failure`] that names its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_engine::{Agent, Clock, Parts, Settings, World};
use docker_runtime::RegistryAuth;
use gitsync::{RemoteOptions, RemoteUrl};
use status_http::{Snapshot, Status};
use tokio::time::Instant;

use crate::host::{Behaviour, Host, SimProbe, SimRuntime};
use crate::remote::{Remote, SimGit};

const NODE: &str = "n1";
const IMAGE: &str = "sim/app:1";
/// Passes the calm end may take to converge once every fault has stopped.
const CALM_PASSES: usize = 12;
/// Deployments every good revision keeps (a working container of one may never be removed
/// without a working replacement); others come and go.
const KEPT: usize = 2;

/// What a scenario did, when every invariant held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Steps taken before the calm end.
    pub steps: usize,
    /// Passes run, the calm end's included.
    pub passes: usize,
    /// Agent crashes at an await point.
    pub crashes: usize,
    /// Mutating Docker calls the engine made.
    pub ops: usize,
    /// A hash of every Docker call made, in order (FNV-1a): equal runs made equal calls.
    pub fingerprint: u64,
}

/// A broken invariant: the seed that replays it, and what happened up to it.
#[derive(Debug)]
pub struct Failure {
    /// The scenario's seed.
    pub seed: u64,
    /// The invariant and how it broke.
    pub what: String,
    /// The steps taken, in order.
    pub steps: Vec<String>,
    /// The engine's last log lines.
    pub log: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulation seed {} failed: {}", self.seed, self.what)?;
        writeln!(f, "replay it: cargo xtask sim --seed {}", self.seed)?;
        writeln!(f, "steps:")?;
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "  {i:>3}. {s}")?;
        }
        writeln!(f, "the engine's last log lines:")?;
        for l in &self.log {
            writeln!(f, "  | {l}")?;
        }
        Ok(())
    }
}

/// The simulated world's seams.
#[derive(Debug)]
pub struct Sim;

impl World for Sim {
    type Runtime = SimRuntime;
    type Git = SimGit;
    type Probe = SimProbe;
    type Clock = SimClock;
}

/// Wall time that moves with tokio's (paused) clock from a fixed start.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    origin: Instant,
}

impl Clock for SimClock {
    fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_790_000_000) + self.origin.elapsed()
    }
}

/// One deployment as the scenario writes it.
#[derive(Clone, Debug)]
struct Dep {
    strategy: &'static str,
    behaviour: Behaviour,
    version: u32,
    /// `healthyDeadlineSeconds`: short, so a failing release is rolled back soon; long for a
    /// release the supersede step must not wait for.
    deadline: u32,
}

fn node_yaml() -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: {NODE}\nspec:\n  host: 127.0.0.1\n  gitRepo: git@example.invalid:org/manifests.git\n  gitBranch: main\n  pollInterval: 5s\n"
    )
}

fn deployment_yaml(name: &str, d: &Dep, extra_env: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: {IMAGE}\n  nodes: [{NODE}]\n  env:\n    SIM: {behaviour}\n    VERSION: \"{version}\"\n{extra_env}  health:\n    readiness:\n      http: localhost:80/health\n      periodSeconds: 1\n      timeoutSeconds: 1\n      failureThreshold: 1\n  rollout:\n    strategy: {strategy}\n    minHealthySeconds: 1\n    healthyDeadlineSeconds: {deadline}\n    drainSeconds: 0\n",
        behaviour = d.behaviour.word(),
        version = d.version,
        strategy = d.strategy,
        deadline = d.deadline,
    )
}

fn tree(deps: &BTreeMap<String, Dep>) -> BTreeMap<String, String> {
    let mut files = BTreeMap::from([("nodes/n1.yaml".to_owned(), node_yaml())]);
    for (name, d) in deps {
        files.insert(
            format!("deployments/{name}.yaml"),
            deployment_yaml(name, d, ""),
        );
    }
    files
}

/// A buffer the scenario's log lines go to, to look for the canary in.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

/// Where the data dirs go: memory when the machine has it, so the engine's fsyncs are cheap.
fn scratch() -> std::io::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::Builder::new().prefix("orun-sim").tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix("orun-sim").tempdir()
    }
}

/// Runs the scenario of `seed`.
///
/// # Errors
/// The first invariant broken, with the steps that led to it.
pub fn run(seed: u64) -> Result<Summary, Failure> {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(if std::env::var_os("ORUN_SIM_FULL_LOG").is_some() {
            tracing::Level::DEBUG
        } else {
            tracing::Level::INFO
        })
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| Failure {
            seed,
            what: format!("cannot start a runtime: {e}"),
            steps: Vec::new(),
            log: Vec::new(),
        })?;
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let mut s = Scenario::new(seed, logs).await?;
            s.play().await.map_err(|what| s.failure(what))?;
            Ok(s.summary)
        })
    })
}

struct Scenario {
    seed: u64,
    rng: fastrand::Rng,
    host: Host,
    remote: Remote,
    clock: SimClock,
    status: Status,
    data: tempfile::TempDir,
    agent: Option<Agent<Sim>>,
    deps: BTreeMap<String, Dep>,
    /// Deployments of every good commit so far.
    always: BTreeSet<String>,
    /// Which pushed commits were good.
    good: Vec<bool>,
    strangers: BTreeMap<String, (String, bool)>,
    canary: String,
    logs: Logs,
    steps: Vec<String>,
    summary: Summary,
    /// The last pass converged and nothing changed since: a restart must change nothing.
    settled: bool,
    /// When the Git remote last came back: the agent's polls back off after failures (up to
    /// five minutes), so a poll may be that far away.
    git_back_at: Option<Instant>,
}

impl Scenario {
    async fn new(seed: u64, logs: Logs) -> Result<Self, Failure> {
        let fail = |what: String| Failure {
            seed,
            what,
            steps: Vec::new(),
            log: Vec::new(),
        };
        let mut rng = fastrand::Rng::with_seed(seed);
        let poison = format!("poison-{:016x}", rng.u64(..));
        let canary = format!("canary{:016x}", rng.u64(..));
        let host = Host::new(&[(IMAGE, "sha256:app1")], poison);
        let data = scratch().map_err(|e| fail(format!("no scratch dir: {e}")))?;
        let journal = data.path().join("intents.json");
        host.change(|h| h.journal = Some(journal));
        let mut s = Self {
            seed,
            rng,
            host,
            remote: Remote::default(),
            clock: SimClock {
                origin: Instant::now(),
            },
            status: Status::new(Snapshot::default()),
            data,
            agent: None,
            deps: BTreeMap::new(),
            always: BTreeSet::new(),
            good: Vec::new(),
            strangers: BTreeMap::new(),
            canary,
            logs,
            steps: Vec::new(),
            summary: Summary::default(),
            settled: false,
            git_back_at: None,
        };
        // Containers orun does not own: a stranger, and look-alikes with some of its labels.
        let look_alikes: [(&str, &[(&str, &str)]); 3] = [
            ("stranger", &[]),
            (
                "d0-lookalike",
                &[("orun.node", NODE), ("orun.deployment", "d0")],
            ),
            (
                "other-branch",
                &[
                    ("orun.node", NODE),
                    ("orun.environment", "MAIN"),
                    ("orun.deployment", "d1"),
                    ("orun.spec-hash", "0"),
                ],
            ),
        ];
        let count = 1 + s.rng.usize(..look_alikes.len());
        for (name, labels) in &look_alikes[..count] {
            let id = s.host.add_stranger(name, labels);
            s.strangers.insert(id, ((*name).to_owned(), true));
        }
        for i in 0..KEPT + s.rng.usize(..2) {
            let dep = s.new_dep(Behaviour::Good);
            s.deps.insert(format!("d{i}"), dep);
        }
        s.push_good("first commit");
        s.start_agent().await.map_err(|what| s.failure(what))?;
        Ok(s)
    }

    fn new_dep(&mut self, behaviour: Behaviour) -> Dep {
        Dep {
            strategy: if self.rng.bool() {
                "start-first"
            } else {
                "stop-first"
            },
            behaviour,
            version: 1,
            deadline: 4,
        }
    }

    fn failure(&self, what: String) -> Failure {
        let mut text = self.logs.text();
        // The Docker calls the engine made last, among its log lines.
        let ops = self.host.with(|h| h.ops.clone());
        for op in &ops[ops.len().saturating_sub(30)..] {
            text.push_str(&format!(
                "docker call: {} {} ({})\n",
                op.call,
                op.name,
                &op.id[op.id.len().saturating_sub(8)..]
            ));
        }
        let lines: Vec<&str> = text.lines().collect();
        Failure {
            seed: self.seed,
            what,
            steps: self.steps.clone(),
            log: lines[lines.len().saturating_sub(
                if std::env::var_os("ORUN_SIM_FULL_LOG").is_some() {
                    usize::MAX
                } else {
                    40
                },
            )..]
                .iter()
                .map(|l| (*l).to_owned())
                .collect(),
        }
    }

    fn note(&mut self, step: String) {
        self.steps.push(step);
    }

    fn settings(&self) -> Result<Settings, String> {
        let url = RemoteUrl::parse("/sim/manifests.git", Path::new("/"))
            .map_err(|e| format!("remote URL: {e}"))?;
        let mut settings = Settings::new(
            NODE.to_owned(),
            self.data.path().to_owned(),
            RemoteOptions::new(url, "main"),
        );
        settings.poll_interval = Some(Duration::from_secs(1));
        settings.jitter_seed = Some(self.seed);
        Ok(settings)
    }

    async fn start_agent(&mut self) -> Result<(), String> {
        let settings = self.settings()?;
        self.start_agent_with(settings).await
    }

    async fn start_agent_with(&mut self, settings: Settings) -> Result<(), String> {
        self.host.change(|h| {
            h.dead = false;
            h.crash_in = None;
        });
        let parts = Parts {
            runtime: SimRuntime(self.host.clone()),
            git: SimGit {
                remote: self.remote.clone(),
                host: self.host.clone(),
            },
            probe: SimProbe(self.host.clone()),
            clock: self.clock,
            auth: RegistryAuth::default(),
        };
        let agent = Agent::with_parts(
            settings,
            parts,
            self.status.clone(),
            Arc::new(AtomicBool::new(false)),
        )
        .await
        .map_err(|e| format!("the engine did not start: {}", agent_engine::report(&e)))?;
        self.agent = Some(agent);
        Ok(())
    }

    fn push_good(&mut self, why: &str) {
        let id = self.remote.push(tree(&self.deps));
        self.good.push(true);
        let names: BTreeSet<String> = self.deps.keys().cloned().collect();
        self.always = if self.good.iter().filter(|g| **g).count() == 1 {
            names
        } else {
            self.always.intersection(&names).cloned().collect()
        };
        let always = self.always.clone();
        self.host.change(|h| h.wanted = always);
        self.settled = false;
        self.note(format!("push {} (good: {why})", &id[..8]));
    }

    fn push_bad(&mut self) {
        let mut files = tree(&self.deps);
        let poison = self.host.with(|h| h.poison.clone());
        if let Some((name, d)) = self.deps.iter().next() {
            files.insert(
                format!("deployments/{name}.yaml"),
                deployment_yaml(name, d, &format!("    VALUE: \"{poison}\"\n")),
            );
        }
        let canary = &self.canary;
        files.insert(
            "deployments/broken.yaml".to_owned(),
            format!(
                "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: broken\nspec:\n  image: {IMAGE}\n  {canary}: \"{canary}\"\n"
            ),
        );
        let id = self.remote.push(files);
        self.good.push(false);
        self.settled = false;
        self.note(format!(
            "push {} (refused: an unknown field, a poisoned env value)",
            &id[..8]
        ));
    }

    fn behaviour(&mut self) -> Behaviour {
        match self.rng.u8(..20) {
            0..=13 => Behaviour::Good,
            14..=16 => Behaviour::NeverReady,
            _ => Behaviour::Crash,
        }
    }

    fn change_manifests(&mut self) {
        let extra: Vec<String> = self.deps.keys().skip(KEPT).cloned().collect();
        match self.rng.u8(..10) {
            0 if self.deps.len() < 4 => {
                let name = (KEPT..6)
                    .map(|i| format!("d{i}"))
                    .find(|n| !self.deps.contains_key(n))
                    .unwrap_or_else(|| "d5".to_owned());
                let b = self.behaviour();
                let dep = self.new_dep(b);
                self.deps.insert(name.clone(), dep);
                self.push_good(&format!("add {name}"));
            }
            1 if !extra.is_empty() => {
                let name = extra[self.rng.usize(..extra.len())].clone();
                self.deps.remove(&name);
                self.push_good(&format!("remove {name}"));
            }
            _ => {
                let names: Vec<String> = self.deps.keys().cloned().collect();
                let name = names[self.rng.usize(..names.len())].clone();
                let b = self.behaviour();
                if let Some(d) = self.deps.get_mut(&name) {
                    d.version += 1;
                    d.behaviour = b;
                }
                self.push_good(&format!("{name} v-next, {}", b.word()));
            }
        }
    }

    /// Runs one pass, or the part of it before a planned crash. `Ok(Some(converged))` when
    /// it ran to the end, `Ok(None)` when the agent crashed.
    async fn pass(&mut self) -> Result<Option<bool>, String> {
        let Some(agent) = self.agent.as_mut() else {
            return Err("no agent is running".to_owned());
        };
        self.summary.passes += 1;
        let host = self.host.clone();
        let out = tokio::select! {
            biased;
            () = host.crashed() => None,
            o = agent.pass(true) => Some(o.converged),
        };
        self.host.change(|h| h.crash_in = None);
        if out.is_none() {
            // The process died: its memory is gone, its data dir and the host stay.
            self.agent = None;
            self.summary.crashes += 1;
            self.start_agent().await?;
        }
        self.check()?;
        Ok(out)
    }

    /// The invariants that hold at every moment.
    fn check(&self) -> Result<(), String> {
        if let Some(v) = self.host.with(|h| h.violations.first().cloned()) {
            return Err(v);
        }
        // The containers orun does not own are exactly as they were.
        let now: BTreeMap<String, (String, bool)> = self.host.with(|h| {
            h.containers
                .values()
                .filter(|c| c.stranger)
                .map(|c| (c.id.clone(), (c.name.clone(), c.running)))
                .collect()
        });
        if now != self.strangers {
            return Err(format!(
                "containers orun does not manage changed: {:?} became {now:?}",
                self.strangers
            ));
        }
        // Nothing the manifests or secrets hold beyond names leaks into what the agent says.
        let status = serde_json::to_string(&*self.status.get()).unwrap_or_default();
        let events =
            std::fs::read_to_string(self.data.path().join("events.jsonl")).unwrap_or_default();
        for (what, text) in [
            ("the log", self.logs.text()),
            ("/status", status),
            ("the event history", events),
        ] {
            if text.contains(&self.canary) {
                return Err(format!(
                    "{what} quotes a refused revision's text (the canary)"
                ));
            }
        }
        Ok(())
    }

    async fn play(&mut self) -> Result<(), String> {
        let steps = 6 + self.rng.usize(..10);
        for _ in 0..steps {
            self.summary.steps += 1;
            match self.rng.u8(..100) {
                0..=24 => self.change_manifests(),
                25..=31 => self.push_bad(),
                32..=35 => {
                    let n = self.good.len();
                    let to = self.rng.usize(..n);
                    self.remote.reset(to);
                    self.settled = false;
                    self.note(format!("force-push back to commit {to}"));
                }
                36..=43 => {
                    let down = self.host.change(|h| {
                        h.set_down(!h.down);
                        h.down
                    });
                    self.settled = false;
                    self.note(format!("docker {}", if down { "down" } else { "up" }));
                }
                44..=49 => {
                    let down = self.remote.change(|r| {
                        r.down = !r.down;
                        r.down
                    });
                    if !down {
                        self.git_back_at = Some(Instant::now());
                    }
                    self.settled = false;
                    self.note(format!("git remote {}", if down { "down" } else { "up" }));
                }
                50..=69 => {
                    let ops = self.host.with(|h| h.ops.len());
                    let out = self.pass().await?;
                    let made = self.host.with(|h| h.ops.len()) - ops;
                    self.note(format!("pass: converged {out:?}, {made} docker change(s)"));
                    let calm = self.host.with(|h| !h.down) && !self.remote.change(|r| r.down);
                    self.settled = out == Some(true) && calm;
                }
                70..=81 => {
                    let at = self.rng.u32(..80);
                    self.host.change(|h| h.crash_in = Some(at));
                    let out = self.pass().await?;
                    self.note(match out {
                        None => format!("pass, crashed at await point {at}; restarted"),
                        Some(c) => format!("pass (converged {c}) ended before await point {at}"),
                    });
                    self.settled = false;
                    if out.is_none() {
                        self.after_crash().await?;
                    }
                }
                82..=85 => self.supersede().await?,
                94..=96 => self.slow_remote().await?,
                86..=89 => {
                    let secs = self.rng.u64(..4);
                    self.run_loop(Duration::from_millis(500 + secs * 1000))
                        .await?;
                    self.settled = false;
                    self.note(format!("the loop ran {}.5s", secs));
                }
                90..=93 => {
                    // A clean restart: the agent stops between passes and starts again.
                    self.agent = None;
                    self.start_agent().await?;
                    let settled = self.settled;
                    let ops = self.host.with(|h| h.ops.len());
                    let out = self.pass().await?;
                    let made = self.host.with(|h| h.ops.len()) - ops;
                    self.note(format!("restart, then a pass: {made} docker change(s)"));
                    if settled && made > 0 {
                        let last = self.host.with(|h| h.ops[ops..].to_vec());
                        return Err(format!(
                            "a restart alone changed containers on a converged node: {last:?}"
                        ));
                    }
                    self.settled = settled && out == Some(true);
                }
                _ => {
                    let secs = self.rng.u64(..90);
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    self.note(format!("{secs}s pass"));
                }
            }
            self.check()?;
        }
        self.calm_end().await
    }

    /// Runs the agent's own loop for `span` of virtual time; rollouts still in flight at its
    /// end stay in flight.
    async fn run_loop(&mut self, span: Duration) -> Result<(), String> {
        let Some(agent) = self.agent.as_mut() else {
            return Err("no agent is running".to_owned());
        };
        let wake = tokio::sync::Notify::new();
        agent.run_until(&wake, Some(Instant::now() + span)).await;
        self.check()
    }

    /// The next version of `name`, behaving so, with this `healthyDeadlineSeconds`.
    fn bump(&mut self, name: &str, behaviour: Behaviour, deadline: u32) -> u32 {
        self.deps.get_mut(name).map_or(0, |d| {
            d.version += 1;
            d.behaviour = behaviour;
            d.deadline = deadline;
            d.version
        })
    }

    /// Whether a fault may hold the agent back now: Docker or Git down, or the agent's
    /// polls still backing off (up to five minutes) after the remote came back.
    fn faulty(&self) -> bool {
        let backing_off = self
            .git_back_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(6 * 60));
        self.host.with(|h| h.down) || self.remote.change(|r| r.down) || backing_off
    }

    /// Whether `version` of `name` runs and answers its readiness probe.
    fn serves(&self, name: &str, version: u32) -> bool {
        let version = version.to_string();
        self.host.with(|h| {
            let now = Instant::now();
            h.containers.values().any(|c| {
                !c.stranger
                    && c.deployment() == Some(name)
                    && c.version.as_deref() == Some(version.as_str())
                    && c.ready(now)
            })
        })
    }

    /// After a run of the loop: `version` of `name` serves, unless a fault (`faults`) may have
    /// held the agent back; `what` names the run in the steps, `late` says why it failed.
    fn expect_serving(
        &mut self,
        name: &str,
        version: u32,
        faults: bool,
        what: &str,
        late: &str,
    ) -> Result<(), String> {
        self.settled = false;
        let serving = self.serves(name, version);
        self.note(format!("{what} serves: {serving}"));
        if !faults && !serving {
            return Err(format!("{name} v{version} does not serve {late}"));
        }
        Ok(())
    }

    /// A release that never turns ready (its deadline 30 s away) is fixed by the next commit
    /// while the loop runs: the fix serves within a poll interval plus its own gate, not
    /// after the broken release's deadline.
    async fn supersede(&mut self) -> Result<(), String> {
        let names: Vec<String> = self.deps.keys().take(KEPT).cloned().collect();
        let name = names[self.rng.usize(..names.len())].clone();
        self.bump(&name, Behaviour::NeverReady, 30);
        self.push_good(&format!("{name} v-next, never-ready"));
        self.run_loop(Duration::from_millis(2500)).await?;
        let fixed = self.bump(&name, Behaviour::Good, 4);
        self.push_good(&format!("{name} v-next, good: the fix"));
        let faults = self.faulty();
        // Within one poll (1 s), the broken rollout's undoing, and the fix's own gate
        // (readiness after 200 ms, probed every second, 1 s healthy).
        self.run_loop(Duration::from_secs(6)).await?;
        self.expect_serving(
            &name,
            fixed,
            faults,
            &format!("the loop ran 2.5s, then {name}'s fix was pushed and it ran 6s: the fix"),
            "6s after it was pushed over a release that never turns ready: it waited behind the rollout",
        )
    }

    /// A remote that takes 30 s to answer each poll: the gate of a rollout in flight keeps
    /// looking meanwhile, so a release that turns ready after 3 s (its deadline 10 s) is
    /// promoted, not first seen healthy after its deadline and rolled back.
    async fn slow_remote(&mut self) -> Result<(), String> {
        let names: Vec<String> = self.deps.keys().take(KEPT).cloned().collect();
        let name = names[self.rng.usize(..names.len())].clone();
        let version = self.bump(&name, Behaviour::SlowStart, 10);
        self.push_good(&format!("{name} v-next, slow to start, over a slow remote"));
        self.remote
            .change(|r| r.slow = Some(Duration::from_secs(30)));
        // Three polls: one may be under way, one fetches the release (a rollout of the
        // same deployment in flight then waits for it), one plans it; its gate runs beside
        // the next.
        self.run_loop(Duration::from_secs(100)).await?;
        self.remote.change(|r| r.slow = None);
        let faults = self.faulty();
        self.expect_serving(
            &name,
            version,
            faults,
            &format!("the loop ran 100s over a remote taking 30s a poll: {name}'s release"),
            "after 100s over a slow remote: its gate was not looked at while a poll waited",
        )
    }

    /// Right after a crash, before anything else changes: a healthy new container the dead
    /// agent was holding to its gate is adopted by the next pass, not replaced.
    async fn after_crash(&mut self) -> Result<(), String> {
        // Only a rollout of the branch's head is still wanted for sure: a newer commit the
        // dead agent had not fetched may change it, and then it is undone, rightly.
        let head = self
            .remote
            .change(|r| r.head.map(|i| r.commits[i].id.clone()))
            .unwrap_or_default();
        let in_gate: Vec<(String, String)> = self.host.with(|h| {
            let Some(path) = &h.journal else {
                return Vec::new();
            };
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let intents: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            intents
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, i)| {
                    i["phase"].as_str() == Some("verifying") && i["commit"].as_str() == Some(&head)
                })
                .filter_map(|(_, i)| i["new_id"].as_str().map(str::to_owned))
                .filter_map(|id| {
                    let c = h.containers.get(&id)?;
                    (c.running && c.behaviour == Behaviour::Good).then(|| (id, c.name.clone()))
                })
                .collect()
        });
        let out = self.pass().await?;
        self.note(format!("pass after the crash: converged {out:?}"));
        for (id, name) in in_gate {
            if self.host.with(|h| !h.containers.contains_key(&id)) {
                return Err(format!(
                    "the healthy container {name}, in its gate when the agent died, was removed instead of adopted"
                ));
            }
        }
        Ok(())
    }

    /// Every fault stops and a last good commit lands: the node must converge within
    /// [`CALM_PASSES`] passes, its journal empty, nothing left under a temporary name.
    async fn calm_end(&mut self) -> Result<(), String> {
        self.host.change(|h| h.set_down(false));
        self.remote.change(|r| r.down = false);
        let names: Vec<String> = self.deps.keys().cloned().collect();
        for name in &names {
            if let Some(d) = self.deps.get_mut(name) {
                d.version += 1;
                d.behaviour = Behaviour::Good;
            }
        }
        self.push_good("the calm end: every deployment healthy");
        let mut converged = false;
        for _ in 0..CALM_PASSES {
            if self.pass().await? == Some(true) {
                converged = true;
                break;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        self.summary.ops = self.host.with(|h| h.ops.len());
        self.summary.fingerprint = self.host.with(|h| {
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for op in &h.ops {
                for b in op.call.bytes().chain(op.name.bytes()).chain(op.id.bytes()) {
                    hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
            }
            hash
        });
        if !converged {
            return Err(format!(
                "the node did not converge within {CALM_PASSES} passes once the faults stopped: {}",
                serde_json::to_string(&*self.status.get()).unwrap_or_default()
            ));
        }
        let journal = self.data.path().join("intents.json");
        let left = std::fs::read_to_string(&journal).unwrap_or_default();
        if !(left.is_empty() || left.trim() == "{}") {
            return Err(format!("the journal did not resolve: {left}"));
        }
        let containers = self.host.with(|h| {
            h.containers
                .values()
                .filter(|c| !c.stranger)
                .map(|c| (c.name.clone(), c.running, c.behaviour))
                .collect::<Vec<_>>()
        });
        let mut want: Vec<(String, bool, Behaviour)> = names
            .iter()
            .map(|n| (n.clone(), true, Behaviour::Good))
            .collect();
        let mut got = containers;
        want.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        if got != want {
            return Err(format!(
                "converged, but the host holds {got:?} where it should hold {want:?}"
            ));
        }
        self.quiet_passes().await
    }

    /// Cheap when nothing changed: on the converged node a pass of the running engine, and
    /// one of a fresh engine run as `--once` would be (no event stream, a full listing),
    /// change nothing and probe nothing; what was promoted is not gated again.
    async fn quiet_passes(&mut self) -> Result<(), String> {
        for who in ["the running engine", "a fresh engine run --once"] {
            if who.contains("--once") {
                self.agent = None;
                let mut settings = self.settings()?;
                settings.once = true;
                self.start_agent_with(settings).await?;
            }
            let before = self.host.with(|h| (h.ops.len(), h.probes));
            let converged = self.pass().await?;
            let after = self.host.with(|h| (h.ops.len(), h.probes));
            if converged != Some(true) || after != before {
                return Err(format!(
                    "{who}: a pass on the converged node ended converged={converged:?} with {} docker changes and {} probes",
                    after.0 - before.0,
                    after.1 - before.1
                ));
            }
        }
        Ok(())
    }
}

/// Runs `count` scenarios from `first` on `threads` threads; the failures, by seed, and the
/// summaries' totals.
pub fn run_many(first: u64, count: u64, threads: usize) -> (Vec<Failure>, Summary) {
    let threads = threads.max(1) as u64;
    let results: Vec<(Vec<Failure>, Summary)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    let mut total = Summary::default();
                    let mut seed = first + t;
                    while seed < first + count {
                        match run(seed) {
                            Ok(s) => {
                                total.steps += s.steps;
                                total.passes += s.passes;
                                total.crashes += s.crashes;
                                total.ops += s.ops;
                            }
                            Err(f) => failures.push(f),
                        }
                        seed += threads;
                    }
                    (failures, total)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| (Vec::new(), Summary::default()))
            })
            .collect()
    });
    let mut failures = Vec::new();
    let mut total = Summary::default();
    for (f, s) in results {
        failures.extend(f);
        total.steps += s.steps;
        total.passes += s.passes;
        total.crashes += s.crashes;
        total.ops += s.ops;
    }
    failures.sort_by_key(|f| f.seed);
    (failures, total)
}

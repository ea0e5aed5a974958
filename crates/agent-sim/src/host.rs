//! The simulated Docker host: containers whose behaviour the scenario scripts (healthy, never
//! ready, crash-looping), daemon outages, and the record of every mutating call that the
//! invariants are checked against. One host outlives the engines a scenario starts and kills,
//! as a real host outlives its agent.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::Duration;

use agent_engine::{Probe, Runtime};
use docker_runtime::{ContainerInfo, Owner, RegistryAuth, RuntimeError, WatchEvent};
use manifest_model::ProbeTarget;
use reconcile_core::{
    Actual, ContainerState, LABEL_DEPLOYMENT, ObservedContainer, ObservedFields, RenderedEnv,
    RenderedSpec,
};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// The env var of a deployment that scripts how its containers behave.
pub const BEHAVIOUR_ENV: &str = "SIM";
/// How long a healthy container takes to answer its readiness probe.
const READY_AFTER: Duration = Duration::from_millis(200);
/// How long a slow starter takes to answer its readiness probe.
const SLOW_READY_AFTER: Duration = Duration::from_secs(3);
/// How often a crash-looping container dies and Docker restarts it.
const CRASH_EVERY: Duration = Duration::from_millis(300);

/// How a container behaves once started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers its probes shortly after it starts.
    Good,
    /// Runs, but its readiness probe never passes.
    NeverReady,
    /// Exits soon after each start; Docker's restart policy starts it again.
    Crash,
    /// Answers its probes, but only three seconds after it starts.
    SlowStart,
}

impl Behaviour {
    /// The value of [`BEHAVIOUR_ENV`] that scripts it.
    pub fn word(self) -> &'static str {
        match self {
            Behaviour::Good => "good",
            Behaviour::NeverReady => "never-ready",
            Behaviour::Crash => "crash",
            Behaviour::SlowStart => "slow-start",
        }
    }

    fn of(spec: &RenderedSpec) -> Self {
        match spec.env.get(BEHAVIOUR_ENV) {
            Some(RenderedEnv::Plain(w)) if w == "never-ready" => Behaviour::NeverReady,
            Some(RenderedEnv::Plain(w)) if w == "crash" => Behaviour::Crash,
            Some(RenderedEnv::Plain(w)) if w == "slow-start" => Behaviour::SlowStart,
            _ => Behaviour::Good,
        }
    }
}

/// One simulated container.
#[derive(Clone, Debug)]
pub struct Container {
    /// Docker's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The image id it runs.
    pub image_id: String,
    /// Every label.
    pub labels: BTreeMap<String, String>,
    /// How it behaves.
    pub behaviour: Behaviour,
    /// Started and not stopped since.
    pub running: bool,
    /// When it was last started.
    pub started: Option<Instant>,
    /// Restarts before the current run (orun's and Docker's).
    pub restarts: u64,
    /// Put there by the scenario, not by the engine: never to be touched.
    pub stranger: bool,
    /// The `VERSION` env var it was created with.
    pub version: Option<String>,
}

impl Container {
    /// The deployment its labels name.
    pub fn deployment(&self) -> Option<&str> {
        self.labels.get(LABEL_DEPLOYMENT).map(String::as_str)
    }

    fn crash_cycles(&self, now: Instant) -> u64 {
        match (self.behaviour, self.running, self.started) {
            (Behaviour::Crash, true, Some(at)) => {
                let ran = now.saturating_duration_since(at).as_millis();
                u64::try_from(ran / CRASH_EVERY.as_millis()).unwrap_or(u64::MAX)
            }
            _ => 0,
        }
    }

    /// Whether its readiness probe passes now.
    pub fn ready(&self, now: Instant) -> bool {
        let after = match self.behaviour {
            Behaviour::Good => READY_AFTER,
            Behaviour::SlowStart => SLOW_READY_AFTER,
            Behaviour::NeverReady | Behaviour::Crash => return false,
        };
        self.running
            && self
                .started
                .is_some_and(|at| now.saturating_duration_since(at) >= after)
    }

    fn state(&self) -> ContainerState {
        if self.running {
            ContainerState::Running
        } else if self.started.is_some() {
            ContainerState::Exited { code: 0 }
        } else {
            ContainerState::Created
        }
    }
}

/// A mutating call the engine made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// `create`, `start`, `stop`, `rename`, `remove`, `restart`, `unpause`.
    pub call: &'static str,
    /// The container's name when the call was made.
    pub name: String,
    /// The container's id.
    pub id: String,
}

/// Everything on the host, and what the scenario watches.
#[derive(Debug)]
pub struct HostState {
    /// Containers by id.
    pub containers: BTreeMap<String, Container>,
    /// Local images: reference → id.
    pub images: BTreeMap<String, String>,
    /// The daemon does not answer.
    pub down: bool,
    /// Every mutating call, in order.
    pub ops: Vec<Op>,
    /// Probes the engine ran.
    pub probes: u64,
    /// Broken invariants, noticed as they happened.
    pub violations: Vec<String>,
    /// Deployments the newest good revision wants; a working container of one of these may
    /// only be removed when a working replacement runs.
    pub wanted: BTreeSet<String>,
    /// A value only refused revisions hold: no container may ever be created with it.
    pub poison: String,
    /// Await points left before the agent "crashes"; `None`: no crash planned.
    pub crash_in: Option<u32>,
    /// The agent crashed: its remaining calls never return.
    pub dead: bool,
    /// The engine's intent journal: a container a rollout still holds to its gate has not
    /// been promoted, so it does not serve yet.
    pub journal: Option<std::path::PathBuf>,
    next_id: u64,
    events: Vec<mpsc::Sender<WatchEvent>>,
}

/// The host, shared by the runtime, the probes and the scenario.
#[derive(Clone, Debug)]
pub struct Host {
    state: Rc<RefCell<HostState>>,
    crashed: Rc<Notify>,
}

fn outage() -> RuntimeError {
    RuntimeError::Transport {
        source: Box::new(std::io::Error::other("the simulated daemon is down")),
    }
}

impl Host {
    /// An empty host with `images` pulled and `poison` never to be created.
    pub fn new(images: &[(&str, &str)], poison: String) -> Self {
        Self {
            state: Rc::new(RefCell::new(HostState {
                containers: BTreeMap::new(),
                images: images
                    .iter()
                    .map(|(r, id)| ((*r).to_owned(), (*id).to_owned()))
                    .collect(),
                down: false,
                ops: Vec::new(),
                probes: 0,
                violations: Vec::new(),
                wanted: BTreeSet::new(),
                poison,
                crash_in: None,
                dead: false,
                journal: None,
                next_id: 1,
                events: Vec::new(),
            })),
            crashed: Rc::new(Notify::new()),
        }
    }

    /// Reads the host.
    pub fn with<T>(&self, f: impl FnOnce(&HostState) -> T) -> T {
        f(&self.state.borrow())
    }

    /// Changes the host (the scenario's hand: outages, strangers, crash plans).
    pub fn change<T>(&self, f: impl FnOnce(&mut HostState) -> T) -> T {
        f(&mut self.state.borrow_mut())
    }

    /// Resolves when a planned crash has happened.
    pub async fn crashed(&self) {
        self.crashed.notified().await;
    }

    /// Adds a container the engine does not own; returns its id.
    pub fn add_stranger(&self, name: &str, labels: &[(&str, &str)]) -> String {
        self.change(|h| {
            let id = h.new_id();
            h.containers.insert(
                id.clone(),
                Container {
                    id: id.clone(),
                    name: name.to_owned(),
                    image_id: "sha256:stranger".to_owned(),
                    labels: labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    behaviour: Behaviour::Good,
                    running: true,
                    started: Some(Instant::now()),
                    restarts: 0,
                    stranger: true,
                    version: None,
                },
            );
            id
        })
    }

    /// An await point of the agent: where a planned crash strikes. Every call yields here
    /// before and after its effect, so a crash may fall between a call's effect and the
    /// agent learning of it.
    pub(crate) async fn point(&self) {
        // (dead, just died): only the moment of death is announced, once; a permit left by
        // a second announcement would end the next engine's first pass at once.
        let (dead, died) = self.change(|h| match &mut h.crash_in {
            _ if h.dead => (true, false),
            Some(0) => {
                h.crash_in = None;
                h.dead = true;
                (true, true)
            }
            Some(n) => {
                *n -= 1;
                (false, false)
            }
            None => (false, false),
        });
        if died {
            self.crashed.notify_one();
        }
        if dead {
            std::future::pending::<()>().await;
        }
        tokio::task::yield_now().await;
    }

    /// The call's first await point, then the daemon's availability.
    async fn enter(&self) -> Result<(), RuntimeError> {
        self.point().await;
        if self.with(|h| h.down) {
            return Err(outage());
        }
        Ok(())
    }

    fn touch(&self, call: &'static str, id: &str) -> Result<(), RuntimeError> {
        self.change(|h| {
            let Some(c) = h.containers.get(id) else {
                tracing::debug!(target: "sim", "docker {call} of a missing container ({})", &id[id.len().saturating_sub(8)..]);
                return Err(RuntimeError::NotFound(format!("no such container: {id}")));
            };
            if c.stranger {
                let name = c.name.clone();
                h.violations.push(format!(
                    "{call} on {name}, a container orun does not manage"
                ));
            }
            let name = c.name.clone();
            tracing::debug!(target: "sim", "docker {call} {name} ({})", &id[id.len() - 8..]);
            h.ops.push(Op {
                call,
                name,
                id: id.to_owned(),
            });
            h.emit(call, id);
            Ok(())
        })
    }
}

impl HostState {
    /// Tells every engine watching what happened to `id`, as dockerd's event stream would:
    /// only for containers with a node label, which is what the engine's watch filters on.
    fn emit(&mut self, action: &str, id: &str) {
        let Some(c) = self.containers.get(id) else {
            return;
        };
        if !c.labels.contains_key(reconcile_core::LABEL_NODE) {
            return;
        }
        let event = WatchEvent::Container {
            action: action.to_owned(),
            id: id.to_owned(),
            deployment: c.deployment().map(str::to_owned),
        };
        self.send(&event);
    }

    fn send(&mut self, event: &WatchEvent) {
        // A crashed engine's receiver is gone; its sender goes with it.
        self.events.retain(|tx| !tx.is_closed());
        for tx in &self.events {
            if tx.try_send(event.clone()).is_err() {
                self.violations.push(
                    "the simulated event stream overflowed (the engine stopped reading it)"
                        .to_owned(),
                );
            }
        }
    }

    /// Takes the daemon down or brings it back; a watcher reconnects when it is back, and
    /// says so, as `docker_runtime`'s does.
    pub fn set_down(&mut self, down: bool) {
        let was = std::mem::replace(&mut self.down, down);
        if was && !down {
            self.send(&WatchEvent::Reconnected);
        }
    }

    fn new_id(&mut self) -> String {
        let id = format!("{:064x}", self.next_id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        self.next_id += 1;
        id
    }

    /// Whether a rollout in the journal still holds `id` to its gate.
    fn in_gate(&self, id: &str) -> bool {
        let Some(path) = &self.journal else {
            return false;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        let intents: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        intents.as_object().into_iter().flatten().any(|(_, i)| {
            i["new_id"].as_str() == Some(id) && i["phase"].as_str() != Some("promoting")
        })
    }

    fn name_taken(&self, name: &str, except: &str) -> bool {
        self.containers
            .values()
            .any(|c| c.name == name && c.id != except)
    }

    /// The host as `docker ps -a` lists it.
    pub fn observe(&self) -> Actual {
        Actual {
            containers: self
                .containers
                .values()
                .map(|c| {
                    ObservedContainer::from(ObservedFields {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        image_id: c.image_id.clone(),
                        state: c.state(),
                        health: None,
                        labels: c.labels.clone(),
                    })
                })
                .collect(),
            images: BTreeMap::new(),
        }
    }
}

/// The engine's container runtime in the simulation.
#[derive(Clone, Debug)]
pub struct SimRuntime(pub Host);

impl Runtime for SimRuntime {
    fn api_version(&self) -> String {
        "sim".to_owned()
    }

    async fn observe(&self) -> Result<Actual, RuntimeError> {
        self.0.enter().await?;
        let actual = self.0.with(HostState::observe);
        self.0.point().await;
        Ok(actual)
    }

    async fn image_ids(
        &self,
        references: &[String],
    ) -> Result<BTreeMap<String, String>, RuntimeError> {
        self.0.enter().await?;
        let ids = self.0.with(|h| {
            references
                .iter()
                .filter_map(|r| h.images.get(r).map(|id| (r.clone(), id.clone())))
                .collect()
        });
        self.0.point().await;
        Ok(ids)
    }

    async fn pull(&self, reference: &str, _auth: &RegistryAuth) -> Result<String, RuntimeError> {
        self.0.enter().await?;
        let id = self.0.with(|h| h.images.get(reference).cloned());
        self.0.point().await;
        id.ok_or_else(|| RuntimeError::Pull {
            image: reference.to_owned(),
            message: "no such image in the simulated registry".to_owned(),
        })
    }

    async fn create(
        &self,
        name: &str,
        spec: &RenderedSpec,
        owner: Owner<'_>,
        _secrets: &BTreeMap<String, reconcile_core::Secret>,
    ) -> Result<String, RuntimeError> {
        self.0.enter().await?;
        let created = self.0.change(|h| {
            let poisoned = spec
                .env
                .values()
                .any(|v| matches!(v, RenderedEnv::Plain(p) if *p == h.poison));
            if poisoned {
                h.violations.push(format!(
                    "created {name} from a refused revision (its poisoned env value)"
                ));
            }
            if h.name_taken(name, "") {
                return Err(RuntimeError::Conflict(format!("the name {name} is in use")));
            }
            let id = h.new_id();
            tracing::debug!(target: "sim", "docker create {name} ({})", &id[id.len() - 8..]);
            h.ops.push(Op {
                call: "create",
                name: name.to_owned(),
                id: id.clone(),
            });
            h.containers.insert(
                id.clone(),
                Container {
                    id: id.clone(),
                    name: name.to_owned(),
                    image_id: h
                        .images
                        .get(&spec.image)
                        .cloned()
                        .unwrap_or_else(|| "sha256:missing".to_owned()),
                    labels: docker_runtime::labels(spec, owner),
                    behaviour: Behaviour::of(spec),
                    running: false,
                    started: None,
                    restarts: 0,
                    stranger: false,
                    version: match spec.env.get("VERSION") {
                        Some(RenderedEnv::Plain(v)) => Some(v.clone()),
                        _ => None,
                    },
                },
            );
            h.emit("create", &id);
            Ok(id)
        });
        self.0.point().await;
        created
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.0.enter().await?;
        self.0.touch("start", id)?;
        self.0.change(|h| {
            if let Some(c) = h.containers.get_mut(id)
                && !c.running
            {
                c.running = true;
                c.started = Some(Instant::now());
            }
        });
        self.0.point().await;
        Ok(())
    }

    async fn stop(&self, id: &str, _grace_seconds: i32) -> Result<(), RuntimeError> {
        self.0.enter().await?;
        self.0.touch("stop", id)?;
        self.0.change(|h| {
            let now = Instant::now();
            if let Some(c) = h.containers.get_mut(id) {
                c.restarts += c.crash_cycles(now);
                c.running = false;
            }
        });
        self.0.point().await;
        Ok(())
    }

    async fn unpause(&self, id: &str) -> Result<(), RuntimeError> {
        self.0.enter().await?;
        self.0.touch("unpause", id)?;
        self.0.point().await;
        Ok(())
    }

    async fn rename(&self, id: &str, name: &str) -> Result<(), RuntimeError> {
        self.0.enter().await?;
        self.0.touch("rename", id)?;
        let renamed = self.0.change(|h| {
            if h.name_taken(name, id) {
                return Err(RuntimeError::Conflict(format!("the name {name} is in use")));
            }
            if let Some(c) = h.containers.get_mut(id) {
                c.name = name.to_owned();
            }
            Ok(())
        });
        self.0.point().await;
        renamed
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.0.enter().await?;
        self.0.touch("remove", id)?;
        self.0.change(|h| {
            let now = Instant::now();
            let Some(gone) = h.containers.remove(id) else {
                return;
            };
            // A serving container (promoted, and answering) of a wanted deployment goes
            // only when a working replacement runs: a removal never leaves the service
            // without one.
            if let Some(dep) = gone.deployment()
                && h.wanted.contains(dep)
                && gone.ready(now)
                && !gone.stranger
                && !h.in_gate(&gone.id)
            {
                let replaced = h
                    .containers
                    .values()
                    .any(|c| !c.stranger && c.deployment() == Some(dep) && c.ready(now));
                if !replaced {
                    h.violations.push(format!(
                        "removed {}, a working container of {dep}, with no working replacement",
                        gone.name
                    ));
                }
            }
        });
        self.0.point().await;
        Ok(())
    }

    async fn restart(&self, id: &str, _grace_seconds: i32) -> Result<(), RuntimeError> {
        self.0.enter().await?;
        self.0.touch("restart", id)?;
        self.0.change(|h| {
            let now = Instant::now();
            if let Some(c) = h.containers.get_mut(id) {
                c.restarts += c.crash_cycles(now) + 1;
                c.running = true;
                c.started = Some(now);
            }
        });
        self.0.point().await;
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        self.0.enter().await?;
        let now = Instant::now();
        let info = self.0.with(|h| {
            let Some(c) = h.containers.get(id) else {
                tracing::debug!(target: "sim", "docker inspect of a missing container ({})", &id[id.len().saturating_sub(8)..]);
                return Err(RuntimeError::NotFound(format!("no such container: {id}")));
            };
            let cycles = c.crash_cycles(now);
            Ok(ContainerInfo {
                id: c.id.clone(),
                state: c.state(),
                health: None,
                health_output: None,
                last_exit_code: (cycles > 0).then_some(1),
                restart_count: c.restarts + cycles,
                oom_killed: false,
                error: None,
                address: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
                host_network: false,
                started_at: None,
            })
        });
        self.0.point().await;
        info
    }

    async fn logs_tail(&self, id: &str, _lines: usize) -> Result<Vec<String>, RuntimeError> {
        self.0.enter().await?;
        let known = self.0.with(|h| h.containers.contains_key(id));
        self.0.point().await;
        if known {
            Ok(vec!["a simulated log line".to_owned()])
        } else {
            Err(RuntimeError::NotFound(format!("no such container: {id}")))
        }
    }

    async fn observe_ids(&self, ids: &[String]) -> Result<Vec<ObservedContainer>, RuntimeError> {
        self.0.enter().await?;
        let found = self.0.with(|h| {
            h.observe()
                .containers
                .into_iter()
                .filter(|c| ids.contains(&c.id))
                .collect()
        });
        self.0.point().await;
        Ok(found)
    }

    fn watch(&self, _node: &str) -> mpsc::Receiver<WatchEvent> {
        // Roomy: the simulated host cannot wait for the engine to read, as dockerd would.
        let (tx, rx) = mpsc::channel(1 << 16);
        self.0.change(|h| h.events.push(tx));
        rx
    }
}

/// The engine's probes in the simulation: a container answers by its behaviour.
#[derive(Clone, Debug)]
pub struct SimProbe(pub Host);

impl Probe for SimProbe {
    async fn http(
        &self,
        _target: &ProbeTarget,
        container: &ContainerInfo,
        _timeout: Duration,
    ) -> (bool, String) {
        self.0.point().await;
        let now = Instant::now();
        self.0.change(|h| h.probes += 1);
        let ready = self.0.with(|h| {
            h.containers
                .get(&container.id)
                .is_some_and(|c| c.ready(now))
        });
        if ready {
            (true, "HTTP 200".to_owned())
        } else {
            (false, "HTTP 503".to_owned())
        }
    }
}

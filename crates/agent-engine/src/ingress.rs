//! The node's ingress: Caddy, given the whole of its config through its admin API, routing each
//! Service's domain to the container that serves its Deployment.
//!
//! The route of a deployment names a container only once it is promoted: the running container
//! under the deployment's own name (not a new one still in its first gate), or, during a
//! start-first rollout, the new container from the moment the rollout switches to it until the
//! old one is gone and the new one has the name. The switch loads Caddy's config before the old
//! container drains, so no request goes to a container that is stopping.
//!
//! Ingress failures never fail a pass: containers converge whatever Caddy does, and the
//! route's last error shows in `/status`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use docker_runtime::{IngressContainer, IngressFound, RegistryAuth};
use manifest_model::DesiredNode;
use reconcile_core::{Actual, ContainerState};
use status_http::{CertificateStatus, RouteState, ServiceStatus};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::seams::Runtime;

/// How long one admin API call may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a Caddy container just started has to answer on its admin API.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// How often a served certificate is read again once known.
const CERT_RECHECK: Duration = Duration::from_secs(300);
/// How often a certificate not yet served is looked for.
const CERT_PENDING_RECHECK: Duration = Duration::from_secs(2);
/// Where Caddy's container reads the agent's initial config (the admin block alone).
const INIT_IN_CONTAINER: &str = "/etc/orun/caddy.json";

/// Where Caddy comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngressMode {
    /// No ingress: Services are validated and shown, never routed.
    Off,
    /// The agent runs Caddy itself as a container from this image (host networking, a
    /// volume for certificates).
    Container {
        /// The image, e.g. `caddy:2`.
        image: String,
    },
    /// Caddy runs as a host service (the `caddy` Debian package); the agent only configures
    /// it through its admin API.
    Host,
}

/// The node-local settings of the ingress.
#[derive(Clone, Debug)]
pub struct IngressSettings {
    /// Where Caddy comes from.
    pub mode: IngressMode,
    /// Its admin address, ports and certificate issuer.
    pub caddy: ingress::Settings,
}

impl Default for IngressSettings {
    fn default() -> Self {
        Self {
            mode: IngressMode::Off,
            caddy: ingress::Settings::default(),
        }
    }
}

/// One Service's route as of the last pass.
#[derive(Clone, Debug)]
struct Wanted {
    service: String,
    deployment: String,
    domain: String,
    ssl: bool,
    /// The container port routed to.
    port: u16,
    /// The promoted container under the deployment's name: name, id, address.
    upstream: Option<(String, String, IpAddr)>,
}

#[derive(Debug, Default)]
struct State {
    /// The routes of the last pass.
    wanted: Vec<Wanted>,
    /// Services without a domain on this node, shown as not routed.
    unrouted: Vec<(String, String)>,
    /// Deployments whose start-first rollout switched to a new container not yet under the
    /// deployment's name: deployment → (container id, address).
    switched: BTreeMap<String, (String, IpAddr)>,
    /// The config Caddy last took from us.
    loaded: Option<serde_json::Value>,
    /// Why the ingress does not serve as wanted.
    error: Option<String>,
    /// Certificates served, by domain, and when each was last looked for.
    certs: BTreeMap<String, CertificateStatus>,
    cert_checked: BTreeMap<String, Instant>,
    /// The ingress network known to exist.
    network: Option<String>,
}

/// The node's ingress, shared by the loop and the rollouts it runs.
pub(crate) struct Ingress {
    settings: IngressSettings,
    node: String,
    data_dir: PathBuf,
    state: RefCell<State>,
    /// One config load at a time, so two switches cannot land out of order.
    loading: tokio::sync::Mutex<()>,
}

impl Ingress {
    pub(crate) fn new(settings: IngressSettings, node: String, data_dir: PathBuf) -> Self {
        Self {
            settings,
            node,
            data_dir,
            state: RefCell::default(),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    fn caddy(&self) -> ingress::Caddy {
        ingress::Caddy::new(self.settings.caddy.admin, ADMIN_TIMEOUT)
    }

    /// Makes the ingress network before any container that joins it is created. Needed
    /// whatever the mode: a container's network is part of its spec, as `orun plan` shows.
    pub(crate) async fn prepare_network<R: Runtime>(&self, docker: &R, node: &DesiredNode) {
        let wanted = node.containers.iter().any(|c| c.network.is_some());
        if !wanted || self.state.borrow().network.as_deref() == Some(node.network.as_str()) {
            return;
        }
        match docker.ensure_network(&node.network, &self.node).await {
            Ok(()) => self.state.borrow_mut().network = Some(node.network.clone()),
            Err(e) => warn!(network = %node.network, error = %e, "cannot make the ingress network"),
        }
    }

    /// Forgets that the network exists (after a failed create: it may have been removed).
    pub(crate) fn forget_network(&self) {
        self.state.borrow_mut().network = None;
    }

    /// Brings Caddy to this pass's routes: computes them from what runs, makes sure Caddy
    /// runs (container mode), and loads the config when Caddy's differs (a change, Caddy
    /// restarted empty, or someone else's edit). Then reads the certificates it serves.
    pub(crate) async fn sync<R: Runtime>(
        &self,
        docker: &R,
        auth: &RegistryAuth,
        node: &DesiredNode,
        actual: &Actual,
        in_flight: &BTreeMap<String, String>,
    ) {
        self.observe(node, actual, in_flight);
        if self.settings.mode == IngressMode::Off {
            return;
        }
        let nothing = {
            let s = self.state.borrow();
            s.wanted.is_empty() && s.loaded.is_none()
        };
        if nothing {
            // No Service routes here and Caddy was never configured: nothing to start.
            return;
        }
        let _guard = self.loading.lock().await;
        let config = self.render();
        let caddy = self.caddy();
        let mut result = ensure(caddy.clone(), config.clone()).await;
        if result.is_err()
            && let IngressMode::Container { image } = &self.settings.mode
        {
            match self.run_container(docker, auth, node, image).await {
                Ok(true) => {
                    result = self.wait_and_load(&caddy, &config).await;
                }
                Ok(false) => {}
                Err(e) => result = Err(e),
            }
        }
        match result {
            Ok(loaded) => {
                if loaded {
                    info!(
                        routes = self.state.borrow().wanted.len(),
                        "ingress configured"
                    );
                }
                let mut s = self.state.borrow_mut();
                s.loaded = Some(config);
                s.error = None;
            }
            Err(e) => {
                warn!(error = %e, "ingress not configured; containers are unaffected");
                self.state.borrow_mut().error = Some(e);
            }
        }
        drop(_guard);
        self.read_certificates().await;
    }

    /// Routes `deployment` to its new container `id` at `address` (a start-first promotion),
    /// before the old one drains. Returns how long Caddy took, or why it refused.
    pub(crate) async fn switch(
        &self,
        deployment: &str,
        id: &str,
        address: Option<IpAddr>,
    ) -> Option<Result<Duration, String>> {
        if self.settings.mode == IngressMode::Off {
            return None;
        }
        let routed = self
            .state
            .borrow()
            .wanted
            .iter()
            .any(|w| w.deployment == deployment);
        if !routed {
            return None;
        }
        let Some(ip) = address else {
            return Some(Err(
                "the new container has no address on the ingress network".into(),
            ));
        };
        let _guard = self.loading.lock().await;
        self.state
            .borrow_mut()
            .switched
            .insert(deployment.to_owned(), (id.to_owned(), ip));
        let config = self.render();
        let started = std::time::Instant::now();
        let result = load(self.caddy(), config.clone()).await;
        let took = started.elapsed();
        let mut s = self.state.borrow_mut();
        match result {
            Ok(()) => {
                info!(%deployment, ms = took.as_millis(), "route switched to the new container");
                s.loaded = Some(config);
                s.error = None;
                Some(Ok(took))
            }
            Err(e) => {
                warn!(%deployment, error = %e, "route switch refused");
                s.error = Some(e.clone());
                Some(Err(e))
            }
        }
    }

    /// Computes this pass's routes from the resolved node and what runs.
    fn observe(&self, node: &DesiredNode, actual: &Actual, in_flight: &BTreeMap<String, String>) {
        let mut s = self.state.borrow_mut();
        let mut wanted = Vec::new();
        let mut unrouted = Vec::new();
        let by_name: BTreeMap<&str, &reconcile_core::ObservedContainer> = actual
            .containers
            .iter()
            .filter(|c| {
                c.ownership(&self.node, &node.branch).is_some()
                    && c.state == ContainerState::Running
            })
            .map(|c| (c.name.as_str(), c))
            .collect();
        let ids: BTreeSet<&str> = actual.containers.iter().map(|c| c.id.as_str()).collect();
        // A switch is over once its rollout landed with the new container under the
        // deployment's name, or once that container is gone. Until the rollout lands, the
        // container under the name carries the spec in flight and would read as gating.
        let switched = std::mem::take(&mut s.switched);
        s.switched = switched
            .into_iter()
            .filter(|(dep, (id, _))| {
                let named = node
                    .containers
                    .iter()
                    .find(|c| &c.deployment == dep)
                    .and_then(|c| by_name.get(c.container_name.as_str()))
                    .is_some_and(|c| &c.id == id);
                ids.contains(id.as_str()) && (in_flight.contains_key(dep) || !named)
            })
            .collect();
        for svc in &node.services {
            let Some(domain) = &svc.domain else {
                unrouted.push((svc.name.clone(), svc.deployment.clone()));
                continue;
            };
            let upstream = by_name.get(svc.container_name.as_str()).and_then(|c| {
                // A container whose spec is the one a rollout in flight brings is still in
                // its first gate (a create, or stop-first): not promoted, not routed.
                let gating = in_flight
                    .get(&svc.deployment)
                    .is_some_and(|h| c.spec_hash() == Some(h.as_str()));
                let ip: IpAddr = c.addresses.get(&node.network)?.parse().ok()?;
                (!gating).then(|| (c.name.clone(), c.id.clone(), ip))
            });
            wanted.push(Wanted {
                service: svc.name.clone(),
                deployment: svc.deployment.clone(),
                domain: domain.clone(),
                ssl: svc.ssl,
                port: svc.container_port,
                upstream,
            });
        }
        s.wanted = wanted;
        s.unrouted = unrouted;
    }

    /// Caddy's whole config for the routes of the last pass.
    fn render(&self) -> serde_json::Value {
        let s = self.state.borrow();
        let routes: Vec<ingress::Route> = s
            .wanted
            .iter()
            .map(|w| ingress::Route {
                service: w.service.clone(),
                domain: w.domain.clone(),
                ssl: w.ssl,
                upstream: serving(&s, w).map(|u| u.1),
            })
            .collect();
        ingress::render(&self.settings.caddy, &routes)
    }

    /// Makes sure Caddy's container runs as specified: `Ok(true)` when it was (re)started.
    async fn run_container<R: Runtime>(
        &self,
        docker: &R,
        auth: &RegistryAuth,
        node: &DesiredNode,
        image: &str,
    ) -> Result<bool, String> {
        let spec = self.container_spec(node, image)?;
        let found = docker
            .ingress_container(&spec.name, &self.node)
            .await
            .map_err(|e| format!("cannot look at the ingress container {}: {e}", spec.name))?;
        match found {
            IngressFound::Stranger => {
                return Err(format!(
                    "a container orun did not make is named {}: the ingress cannot start",
                    spec.name
                ));
            }
            IngressFound::Ours {
                id,
                state,
                identity,
            } if identity == spec.identity => {
                if state == ContainerState::Running {
                    // Running, yet the admin API did not answer: it may be starting.
                    return Ok(true);
                }
                docker
                    .start(&id)
                    .await
                    .map_err(|e| format!("cannot start the ingress container: {e}"))?;
                info!(container = %spec.name, "ingress container started");
                return Ok(true);
            }
            IngressFound::Ours { id, .. } => {
                info!(container = %spec.name, "ingress container's settings changed: replacing it");
                docker
                    .remove(&id)
                    .await
                    .map_err(|e| format!("cannot remove the old ingress container: {e}"))?;
            }
            IngressFound::Absent => {}
        }
        let present = docker
            .image_ids(&[image.to_owned()])
            .await
            .map_err(|e| format!("cannot look up the ingress image: {e}"))?
            .contains_key(image);
        if !present {
            info!(%image, "pulling the ingress image");
            docker
                .pull(image, auth)
                .await
                .map_err(|e| format!("cannot pull the ingress image {image}: {e}"))?;
        }
        docker
            .create_ingress(&spec)
            .await
            .map_err(|e| format!("cannot run the ingress container {}: {e}", spec.name))?;
        info!(container = %spec.name, %image, "ingress container started");
        Ok(true)
    }

    /// Caddy's container: the config file with the admin block, a volume for certificates,
    /// the ACME server's roots when the node trusts its own.
    fn container_spec(&self, node: &DesiredNode, image: &str) -> Result<IngressContainer, String> {
        let name = if node.environment.production {
            "orun-caddy".to_owned()
        } else {
            format!("{}.orun-caddy", node.environment.id)
        };
        let dir = self.data_dir.join("ingress");
        let init = dir.join("caddy.json");
        let admin = serde_json::json!({"admin": {"listen": self.settings.caddy.admin.to_string()}});
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        crate::state::write_atomic(&init, admin.to_string().as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", init.display()))?;
        let mut binds = vec![
            format!("{}:{INIT_IN_CONTAINER}:ro", init.display()),
            format!("{name}-data:/data"),
        ];
        if let ingress::Issuer::Acme { trusted_roots, .. } = &self.settings.caddy.issuer {
            for root in trusted_roots {
                binds.push(format!("{0}:{0}:ro", root.display()));
            }
        }
        let mut spec = IngressContainer {
            name,
            image: image.to_owned(),
            entrypoint: vec!["/usr/bin/caddy".to_owned()],
            args: ["run", "--config", INIT_IN_CONTAINER]
                .map(str::to_owned)
                .to_vec(),
            env: [
                "XDG_DATA_HOME=/data",
                "XDG_CONFIG_HOME=/config",
                "HOME=/data",
            ]
            .map(str::to_owned)
            .to_vec(),
            binds,
            node: self.node.clone(),
            identity: String::new(),
        };
        spec.identity = serde_json::json!([
            spec.image,
            spec.entrypoint,
            spec.args,
            spec.env,
            spec.binds,
            admin
        ])
        .to_string();
        Ok(spec)
    }

    /// Waits for a Caddy just started to answer, then loads `config`.
    async fn wait_and_load(
        &self,
        caddy: &ingress::Caddy,
        config: &serde_json::Value,
    ) -> Result<bool, String> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            match ensure(caddy.clone(), config.clone()).await {
                Ok(loaded) => return Ok(loaded),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => debug!(error = %e, "waiting for the ingress to answer"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Reads the certificate Caddy serves for each HTTPS route that is due.
    async fn read_certificates(&self) {
        let now = Instant::now();
        let due: Vec<String> = {
            let s = self.state.borrow();
            s.wanted
                .iter()
                .filter(|w| w.ssl)
                .filter(|w| {
                    let every = if s.certs.contains_key(&w.domain) {
                        CERT_RECHECK
                    } else {
                        CERT_PENDING_RECHECK
                    };
                    s.cert_checked
                        .get(&w.domain)
                        .is_none_or(|t| now >= *t + every)
                })
                .map(|w| w.domain.clone())
                .collect()
        };
        let https = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            self.settings.caddy.https_port,
        );
        for domain in due {
            let caddy = self.caddy();
            let d = domain.clone();
            let found = tokio::task::spawn_blocking(move || caddy.certificate(https, &d))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            let mut s = self.state.borrow_mut();
            s.cert_checked.insert(domain.clone(), now);
            match found {
                Some(c) => {
                    s.certs.insert(
                        domain,
                        CertificateStatus {
                            issuer: c.issuer,
                            not_after: rfc3339(c.not_after),
                            not_after_unix: c.not_after,
                        },
                    );
                }
                None => {
                    s.certs.remove(&domain);
                }
            }
        }
    }

    /// Each Service's route as `/status` shows it.
    pub(crate) fn services(&self) -> BTreeMap<String, ServiceStatus> {
        let s = self.state.borrow();
        let mut out = BTreeMap::new();
        for w in &s.wanted {
            let route = if self.settings.mode == IngressMode::Off {
                RouteState::NotRouted
            } else if s.error.is_some() || s.loaded.is_none() {
                RouteState::Pending
            } else if serving(&s, w).is_some() {
                RouteState::Routed
            } else {
                RouteState::NoContainer
            };
            let last_error = match route {
                RouteState::Pending => s.error.clone(),
                RouteState::NoContainer => Some(format!(
                    "no promoted, running container of {} to route to: the ingress answers 503",
                    w.deployment
                )),
                _ => None,
            };
            out.insert(
                w.service.clone(),
                ServiceStatus {
                    name: w.service.clone(),
                    deployment: w.deployment.clone(),
                    domain: Some(w.domain.clone()),
                    ssl: w.ssl,
                    route,
                    upstream: serving(&s, w).map(|u| u.0),
                    upstream_address: serving(&s, w).map(|u| u.1.to_string()),
                    certificate: s.certs.get(&w.domain).cloned(),
                    last_error,
                },
            );
        }
        for (name, deployment) in &s.unrouted {
            out.insert(
                name.clone(),
                ServiceStatus {
                    name: name.clone(),
                    deployment: deployment.clone(),
                    ..ServiceStatus::default()
                },
            );
        }
        out
    }
}

/// The container serving `w` and its address: the one a start-first rollout switched to,
/// else the promoted one under the deployment's name.
fn serving(s: &State, w: &Wanted) -> Option<(String, SocketAddr)> {
    if let Some((id, ip)) = s.switched.get(&w.deployment) {
        let short = status_http::short_container_id(id);
        return Some((short, SocketAddr::new(*ip, w.port)));
    }
    let (name, _, ip) = w.upstream.as_ref()?;
    Some((name.clone(), SocketAddr::new(*ip, w.port)))
}

/// `ensure` on the blocking pool: `Ok(true)` when Caddy took a new config.
async fn ensure(caddy: ingress::Caddy, config: serde_json::Value) -> Result<bool, String> {
    tokio::task::spawn_blocking(move || caddy.ensure(&config))
        .await
        .map_err(|e| format!("the ingress call failed: {e}"))?
        .map(|a| a == ingress::Applied::Loaded)
        .map_err(|e| e.to_string())
}

/// `load` on the blocking pool.
async fn load(caddy: ingress::Caddy, config: serde_json::Value) -> Result<(), String> {
    tokio::task::spawn_blocking(move || caddy.load(&config))
        .await
        .map_err(|e| format!("the ingress call failed: {e}"))?
        .map_err(|e| e.to_string())
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

//! The node's ingress: Caddy, given the whole of its config through its admin API, routing each
//! Service's domain to the container that serves its Deployment.
//!
//! The route of a deployment names a container only once it is promoted: the running container
//! under the deployment's own name (not a new one still in its first gate), or, during a
//! start-first rollout, the new container from the moment the rollout switches to it until the
//! rollout lands. The switch moves the routes Caddy serves before the old container drains, so
//! no request goes to a container that is stopping.
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

use crate::error::EngineError;
use crate::seams::Runtime;

/// How long one admin API call may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a Caddy container just started has to answer on its admin API.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// How long after a failed start of Caddy's container (a pull, a create) the next is tried.
const START_RETRY: Duration = Duration::from_secs(60);
/// How long a pull of Caddy's image may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// At most this many certificates are read per pass (each a TLS handshake).
const CERT_READS_PER_PASS: usize = 4;
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

/// Let's Encrypt's production directory: the ACME server unless told otherwise.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The agent's ingress flags, each `None` when not given.
#[derive(Debug, Default)]
pub struct IngressFlags {
    /// `--ingress-admin` [default: 127.0.0.1:2019].
    pub admin: Option<SocketAddr>,
    /// `--ingress-http-port` [default: 80].
    pub http_port: Option<u16>,
    /// `--ingress-https-port` [default: 443].
    pub https_port: Option<u16>,
    /// `--acme-ca`: an `https://` directory or `internal` [default: Let's Encrypt].
    pub acme_ca: Option<String>,
    /// `--acme-email`.
    pub acme_email: Option<String>,
    /// `--acme-ca-root`, already resolved against the working folder.
    pub acme_ca_root: Option<PathBuf>,
}

impl IngressSettings {
    /// Settings for `mode` from the agent's flags, checked.
    ///
    /// # Errors
    /// [`EngineError::Settings`] naming the flag: an admin address off loopback (whoever
    /// reaches it reroutes every domain of the node), an ACME directory that is not
    /// `https://`, or one port for HTTP and HTTPS.
    pub fn from_flags(mode: IngressMode, f: IngressFlags) -> Result<Self, EngineError> {
        let bad = |m: String| Err(EngineError::Settings(m));
        let admin = f
            .admin
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 2019)));
        if !admin.ip().is_loopback() {
            return bad(format!(
                "--ingress-admin {admin} is not a loopback address: Caddy's admin API must stay on this host"
            ));
        }
        let issuer = match f.acme_ca.as_deref() {
            Some("internal") => ingress::Issuer::Internal,
            directory => {
                let directory = directory.unwrap_or(LETS_ENCRYPT).to_owned();
                if !directory.starts_with("https://") {
                    return bad(
                        "--acme-ca must be an https:// ACME directory, or `internal`".to_owned(),
                    );
                }
                ingress::Issuer::Acme {
                    directory,
                    email: f.acme_email,
                    trusted_roots: f.acme_ca_root.into_iter().collect(),
                }
            }
        };
        let mut caddy = ingress::Settings {
            admin,
            issuer,
            ..ingress::Settings::default()
        };
        caddy.http_port = f.http_port.unwrap_or(caddy.http_port);
        caddy.https_port = f.https_port.unwrap_or(caddy.https_port);
        if caddy.http_port == caddy.https_port {
            return bad("--ingress-http-port and --ingress-https-port must differ".to_owned());
        }
        Ok(Self { mode, caddy })
    }
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
    /// Caddy has taken a config from this process.
    configured: bool,
    /// Why the ingress does not serve as wanted.
    error: Option<String>,
    /// Certificates served, by domain, and when each was last looked for.
    certs: BTreeMap<String, CertificateStatus>,
    cert_checked: BTreeMap<String, Instant>,
    /// The ingress network known to exist.
    network: Option<String>,
    /// The domains and ports of each deployment's routes in the revision being applied,
    /// known before any rollout of it switches (a fresh process has synced nothing yet).
    routes_of: BTreeMap<String, Vec<(String, u16)>>,
    /// Caddy's container was looked at in this process (container mode): its settings
    /// checked, a foreign Caddy on the admin address told apart.
    container_checked: bool,
    /// When starting Caddy's container last failed: tried again only after a while.
    start_failed: Option<Instant>,
    /// When this process last started Caddy's container.
    started: Option<Instant>,
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
        // Caddy reloads through new SO_REUSEPORT listeners; without this, Linux resets the
        // connections queued on the old ones at every switch (docs/ingress.md).
        let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req");
        if settings.mode != IngressMode::Off && migrate.is_ok_and(|v| v.trim() == "0") {
            warn!(
                "net.ipv4.tcp_migrate_req is 0: a route switch may reset a few connections; \
                 set it to 1 (sysctl -w net.ipv4.tcp_migrate_req=1)"
            );
        }
        Self {
            settings,
            node,
            data_dir,
            state: RefCell::default(),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes the routes of the revision being applied, before any of its rollouts switches.
    pub(crate) fn prime(&self, node: &DesiredNode) {
        let mut routes_of: BTreeMap<String, Vec<(String, u16)>> = BTreeMap::new();
        for svc in &node.services {
            if let Some(domain) = &svc.domain {
                routes_of
                    .entry(svc.deployment.clone())
                    .or_default()
                    .push((domain.clone(), svc.container_port));
            }
        }
        self.state.borrow_mut().routes_of = routes_of;
    }

    /// Why `node` cannot run with this node's ingress: a deployment publishing a host port
    /// the ingress serves (Caddy could bind neither, and every route would stop with it).
    pub(crate) fn clash(&self, node: &DesiredNode) -> Option<String> {
        if self.settings.mode == IngressMode::Off
            || node.services.iter().all(|s| s.domain.is_none())
        {
            return None;
        }
        let taken = [
            self.settings.caddy.http_port,
            self.settings.caddy.https_port,
        ];
        node.containers.iter().find_map(|c| {
            let p = c.spec.ports.iter().find(|p| {
                p.host_port.is_some_and(|h| taken.contains(&h))
                    && p.protocol == manifest_model::Protocol::Tcp
            })?;
            Some(format!(
                "deployment {}: spec.ports: host port {} is this node's ingress port; route the container through a Service instead",
                c.deployment,
                p.host_port.unwrap_or_default()
            ))
        })
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
        let routes = !self.state.borrow().wanted.is_empty();
        if let IngressMode::Container { image } = &self.settings.mode
            && routes
            && let Err(e) = self.keep_container(docker, auth, node, image).await
        {
            warn!(error = %e, "ingress not running; containers are unaffected");
            self.state.borrow_mut().error = Some(e);
            return;
        }
        let _guard = self.loading.lock().await;
        let config = self.render();
        let caddy = self.caddy();
        let deadline = Instant::now() + START_DEADLINE;
        let result = loop {
            let wanted = config.clone();
            match call(caddy.clone(), move |c| c.ensure(&wanted)).await {
                Ok(applied) => break Ok(applied == ingress::Applied::Loaded),
                // Without routes, a Caddy that does not run has nothing to unlearn.
                Err(e) if e.unreachable && !routes => break Ok(false),
                // Caddy's container just started (or restarts): give it a moment.
                Err(e) if e.unreachable && self.just_started() && Instant::now() < deadline => {
                    debug!(error = %e.text, "waiting for the ingress to answer");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => break Err(e.text),
            }
        };
        match result {
            Ok(loaded) => {
                if loaded {
                    info!(
                        routes = self.state.borrow().wanted.len(),
                        "ingress configured"
                    );
                }
                let mut s = self.state.borrow_mut();
                s.configured = true;
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
        let domains = self.state.borrow().routes_of.get(deployment).cloned()?;
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
        // What Caddy serves, with this deployment's routes moved: the rest stays as served,
        // whether or not this process has loaded anything yet.
        let caddy = self.caddy();
        let mut config = match call(caddy.clone(), ingress::Caddy::current).await {
            Ok(config) => config,
            Err(e) => return Some(Err(e.text)),
        };
        let mut moved = false;
        for (domain, port) in &domains {
            moved |= ingress::retarget(
                &self.settings.caddy,
                &mut config,
                domain,
                SocketAddr::new(ip, *port),
            );
        }
        if !moved {
            // Not routed yet: the pass's sync adds the route with the new container.
            return None;
        }
        let started = std::time::Instant::now();
        let result = call(caddy, move |c| c.load(&config)).await;
        let took = started.elapsed();
        let mut s = self.state.borrow_mut();
        match result {
            Ok(()) => {
                info!(%deployment, ms = took.as_millis(), "route switched to the new container");
                s.configured = true;
                s.error = None;
                Some(Ok(took))
            }
            Err(e) => {
                warn!(%deployment, error = %e.text, "route switch refused");
                s.error = Some(e.text.clone());
                Some(Err(e.text))
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
        // A switch lasts exactly as long as its rollout: once it lands, the new container
        // has the deployment's name (and the picture has been listed again).
        s.switched.retain(|dep, _| in_flight.contains_key(dep));
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

    /// Makes sure Caddy's container runs as specified. It is looked at once per process (its
    /// settings may have changed with the agent's), and again whenever Caddy's admin API does
    /// not answer. A Caddy the agent did not start answering on the admin address is never
    /// configured in container mode: that is `--ingress host`'s business.
    async fn keep_container<R: Runtime>(
        &self,
        docker: &R,
        auth: &RegistryAuth,
        node: &DesiredNode,
        image: &str,
    ) -> Result<(), String> {
        let checked = self.state.borrow().container_checked;
        let answers = call(self.caddy(), ingress::Caddy::current).await.is_ok();
        if checked && answers {
            return Ok(());
        }
        if self
            .state
            .borrow()
            .start_failed
            .is_some_and(|t| t.elapsed() < START_RETRY)
        {
            return Err(self.state.borrow().error.clone().unwrap_or_default());
        }
        let result = self.run_container(docker, auth, node, image, answers).await;
        let mut s = self.state.borrow_mut();
        match &result {
            Ok(()) => {
                s.container_checked = true;
                s.start_failed = None;
            }
            Err(_) => s.start_failed = Some(Instant::now()),
        }
        result
    }

    /// Whether Caddy's container was started moments ago (its admin API may not answer yet).
    fn just_started(&self) -> bool {
        self.state
            .borrow()
            .started
            .is_some_and(|t| t.elapsed() < START_DEADLINE)
    }

    /// Creates, replaces or starts Caddy's container as needed; `answers`: its admin address
    /// answers now.
    async fn run_container<R: Runtime>(
        &self,
        docker: &R,
        auth: &RegistryAuth,
        node: &DesiredNode,
        image: &str,
        answers: bool,
    ) -> Result<(), String> {
        let spec = self.container_spec(node, image)?;
        let found = docker
            .ingress_container(&spec.name, &self.node)
            .await
            .map_err(|e| format!("cannot look at the ingress container {}: {e}", spec.name))?;
        let running_ours =
            matches!(&found, IngressFound::Ours { state, .. } if *state == ContainerState::Running);
        if answers && !running_ours {
            return Err(format!(
                "a Caddy that orun did not start answers at {}: configure it with --ingress host, or give --ingress-admin another address",
                self.settings.caddy.admin
            ));
        }
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
                // Docker may be restarting it already (restart `always`).
                if !matches!(state, ContainerState::Running | ContainerState::Restarting) {
                    docker
                        .start(&id)
                        .await
                        .map_err(|e| format!("cannot start the ingress container: {e}"))?;
                    info!(container = %spec.name, "ingress container started");
                    self.state.borrow_mut().started = Some(Instant::now());
                }
                return Ok(());
            }
            IngressFound::Ours { id, .. } => {
                info!(container = %spec.name, "the ingress container's settings changed: replacing it");
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
            match tokio::time::timeout(PULL_TIMEOUT, docker.pull(image, auth)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("cannot pull the ingress image {image}: {e}")),
                Err(_) => {
                    return Err(format!(
                        "pulling the ingress image {image} took longer than {}s",
                        PULL_TIMEOUT.as_secs()
                    ));
                }
            }
        }
        docker
            .create_ingress(&spec)
            .await
            .map_err(|e| format!("cannot run the ingress container {}: {e}", spec.name))?;
        info!(container = %spec.name, %image, "ingress container started");
        self.state.borrow_mut().started = Some(Instant::now());
        Ok(())
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
        if dir.to_string_lossy().contains([':', ',']) {
            // Docker reads `host:container:options` binds: the path would be misread.
            return Err(format!(
                "the data dir {} holds `:` or `,`, which Docker's bind syntax cannot carry: Caddy's container needs another --data-dir",
                self.data_dir.display()
            ));
        }
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

    /// Reads the certificate Caddy serves for each HTTPS route that is due.
    async fn read_certificates(&self) {
        let now = Instant::now();
        let due: Vec<String> = {
            let mut s = self.state.borrow_mut();
            // Only the domains routed now are remembered.
            let routed: BTreeSet<String> = s.wanted.iter().map(|w| w.domain.clone()).collect();
            s.certs.retain(|d, _| routed.contains(d));
            s.cert_checked.retain(|d, _| routed.contains(d));
            // The longest unread first, a few per pass: each is a TLS handshake.
            let mut due: Vec<(Option<Instant>, String)> = s
                .wanted
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
                .map(|w| (s.cert_checked.get(&w.domain).copied(), w.domain.clone()))
                .collect();
            due.sort();
            due.into_iter()
                .take(CERT_READS_PER_PASS)
                .map(|(_, d)| d)
                .collect()
        };
        let https = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            self.settings.caddy.https_port,
        );
        for domain in due {
            let caddy = self.caddy();
            let d = domain.clone();
            let found = call(caddy, move |c| c.certificate(https, &d))
                .await
                .ok()
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
            } else if s.error.is_some() || !s.configured {
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

/// Why a call to Caddy failed, and whether it is that Caddy does not answer.
struct CallError {
    text: String,
    unreachable: bool,
}

/// One blocking call of the admin client, on the blocking pool.
async fn call<T: Send + 'static>(
    caddy: ingress::Caddy,
    f: impl FnOnce(&ingress::Caddy) -> Result<T, ingress::IngressError> + Send + 'static,
) -> Result<T, CallError> {
    match tokio::task::spawn_blocking(move || f(&caddy)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallError {
            unreachable: matches!(e, ingress::IngressError::Unreachable { .. }),
            text: e.to_string(),
        }),
        Err(e) => Err(CallError {
            text: format!("the ingress call failed: {e}"),
            unreachable: false,
        }),
    }
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use docker_runtime::Owner;
    use manifest_model::MemSource;
    use reconcile_core::{Desired, ObservedContainer, ObservedFields};

    use super::*;

    const NODE: &str = "n1";
    const OLD: &str = "4f1c2a9e8b7d60531f2e3d4c5b6a798877665544332211000ffeeddccbbaa998";
    const NEW: &str = "9a8b7c6d5e4f30211f2e3d4c5b6a798877665544332211000ffeeddccbbaa001";

    /// `web` behind two Services (one HTTPS), `api` publishing `api_port` on the host.
    fn revision(api_port: u16) -> (DesiredNode, Desired) {
        let svc = |name: &str, ssl: bool| {
            format!(
                "apiVersion: run.orcra.dev/v0alpha\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  deployment: web\n  ingress:\n    domain:\n      default: {name}.example.com\n    ssl: {ssl}\n"
            )
        };
        let src = MemSource::new()
            .with(
                "nodes/n1.yaml",
                "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n1\nspec:\n  host: 127.0.0.1\n  gitRepo: /srv/m.git\n",
            )
            .with(
                "deployments/web.yaml",
                "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: web:1\n  ports:\n    - containerPort: 8080\n",
            )
            .with(
                "deployments/api.yaml",
                format!("apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  image: api:1\n  ports:\n    - containerPort: 80\n      port: {api_port}\n"),
            )
            .with("services/www.yaml", svc("www", true))
            .with("services/plain.yaml", svc("plain", false));
        let (node, _) = crate::seams::judge(&src, None, NODE, "main", &Default::default()).unwrap();
        let desired =
            Desired::from_node(&node, Some("c1".to_owned()), |_| None, &Default::default());
        (node, desired)
    }

    /// A running container of `web` named `name`, at `ip` on the ingress network.
    fn web(desired: &Desired, id: &str, name: &str, ip: &str, hash: &str) -> ObservedContainer {
        let d = desired
            .deployments
            .iter()
            .find(|d| d.name == "web")
            .unwrap();
        let owner = Owner {
            node: NODE,
            environment: &desired.environment,
            deployment: "web",
            commit: None,
        };
        let mut c = ObservedContainer::from(ObservedFields {
            id: id.to_owned(),
            name: name.to_owned(),
            image_id: "sha256:web".to_owned(),
            state: ContainerState::Running,
            health: None,
            labels: docker_runtime::labels(&d.spec, owner),
        });
        c.set_label(reconcile_core::LABEL_SPEC_HASH, hash);
        c.addresses.insert("orun-ingress".to_owned(), ip.to_owned());
        c
    }

    fn ingress(mode: IngressMode) -> Ingress {
        let settings = IngressSettings {
            mode,
            ..IngressSettings::default()
        };
        let i = Ingress::new(settings, NODE.to_owned(), PathBuf::from("/nonexistent"));
        // As if Caddy had taken a config: what `services` shows depends on it.
        i.state.borrow_mut().configured = true;
        i
    }

    /// (service, route, upstream, address) for each Service.
    fn seen(i: &Ingress) -> Vec<(String, RouteState, Option<String>, Option<String>)> {
        i.services()
            .into_values()
            .map(|s| (s.name, s.route, s.upstream, s.upstream_address))
            .collect()
    }

    #[test]
    fn a_route_names_only_a_promoted_container() {
        let (node, desired) = revision(8081);
        let i = ingress(IngressMode::Host);
        let current = web(&desired, OLD, "web", "172.20.0.2", "h1");
        let actual = Actual {
            containers: vec![current.clone()],
            ..Actual::default()
        };
        // Running under its name: both Services route to it, on the Service's port.
        i.observe(&node, &actual, &BTreeMap::new());
        let routed = |ip: &str, upstream: &str| {
            ["plain", "www"]
                .map(|s| {
                    (
                        s.to_owned(),
                        RouteState::Routed,
                        Some(upstream.to_owned()),
                        Some(format!("{ip}:8080")),
                    )
                })
                .to_vec()
        };
        assert_eq!(seen(&i), routed("172.20.0.2", "web"));

        // The container under the name carries the spec a rollout in flight brings (a
        // create, or stop-first): in its first gate, not routed.
        let in_flight = BTreeMap::from([("web".to_owned(), "h1".to_owned())]);
        i.observe(&node, &actual, &in_flight);
        assert!(
            seen(&i)
                .iter()
                .all(|s| s.1 == RouteState::NoContainer && s.2.is_none())
        );

        // A start-first rollout switched: its new container serves until the rollout lands,
        // even once it holds the name with the spec in flight.
        let in_flight = BTreeMap::from([("web".to_owned(), "h2".to_owned())]);
        i.state.borrow_mut().routes_of.clear();
        i.state.borrow_mut().switched.insert(
            "web".to_owned(),
            (NEW.to_owned(), "172.20.0.3".parse().unwrap()),
        );
        i.observe(&node, &actual, &in_flight);
        assert_eq!(seen(&i), routed("172.20.0.3", &NEW[..12]));
        let renamed = Actual {
            containers: vec![web(&desired, NEW, "web", "172.20.0.3", "h2")],
            ..Actual::default()
        };
        i.observe(&node, &renamed, &in_flight);
        assert_eq!(seen(&i), routed("172.20.0.3", &NEW[..12]));
        // Landed: the container under the name, as any other.
        i.observe(&node, &renamed, &BTreeMap::new());
        assert!(i.state.borrow().switched.is_empty());
        assert_eq!(seen(&i), routed("172.20.0.3", "web"));

        // Gone, or not on the ingress network: the route answers 503.
        i.observe(&node, &Actual::default(), &BTreeMap::new());
        assert!(seen(&i).iter().all(|s| s.1 == RouteState::NoContainer));
        let mut elsewhere = current;
        elsewhere.addresses.clear();
        i.observe(
            &node,
            &Actual {
                containers: vec![elsewhere],
                ..Actual::default()
            },
            &BTreeMap::new(),
        );
        assert!(seen(&i).iter().all(|s| s.1 == RouteState::NoContainer));
    }

    #[test]
    fn no_ingress_routes_nothing_and_a_failed_load_is_pending() {
        let (node, desired) = revision(8081);
        let actual = Actual {
            containers: vec![web(&desired, OLD, "web", "172.20.0.2", "h1")],
            ..Actual::default()
        };
        let off = ingress(IngressMode::Off);
        off.observe(&node, &actual, &BTreeMap::new());
        assert!(seen(&off).iter().all(|s| s.1 == RouteState::NotRouted));

        let host = ingress(IngressMode::Host);
        host.observe(&node, &actual, &BTreeMap::new());
        host.state.borrow_mut().error = Some("cannot reach Caddy".to_owned());
        let status = host.services();
        assert_eq!(status["www"].route, RouteState::Pending);
        assert_eq!(
            status["www"].last_error.as_deref(),
            Some("cannot reach Caddy")
        );
    }

    #[test]
    fn a_host_port_on_the_ingress_ports_is_a_clash() {
        let host = ingress(IngressMode::Host);
        assert_eq!(host.clash(&revision(8081).0), None);
        assert_eq!(
            host.clash(&revision(443).0).as_deref(),
            Some(
                "deployment api: spec.ports: host port 443 is this node's ingress port; route the container through a Service instead"
            )
        );
        assert!(host.clash(&revision(80).0).is_some());
        // No ingress, no clash.
        assert_eq!(ingress(IngressMode::Off).clash(&revision(443).0), None);
    }
}

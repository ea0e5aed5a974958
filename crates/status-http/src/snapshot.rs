//! What the status API shows: an allowlisted schema, filled in by the agent after each pass.

use std::collections::BTreeMap;

use prometheus::{
    Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One picture of the node, as `/status`, `/readyz` and `/metrics` show it. It reads back
/// from `/status` as typed data (`orun status` does), `ready` and `metrics` aside.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The node and its sync state.
    pub node: NodeStatus,
    /// Deployments by name.
    pub deployments: BTreeMap<String, DeploymentStatus>,
    /// Services by name.
    pub services: BTreeMap<String, ServiceStatus>,
    /// Images orun pulled or built, and pulls and builds in progress.
    #[serde(default)]
    pub images: ImagesStatus,
    /// The opt-in self-update, when it is on (the daemon's part: [`crate::Status`] keeps it
    /// across the engine's snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_update: Option<SelfUpdateStatus>,
    /// Whether the current revision is converged and healthy (`/readyz`).
    #[serde(skip)]
    pub ready: bool,
    /// Counters for `/metrics`.
    #[serde(skip)]
    pub metrics: Metrics,
}

/// The self-update's part of `/status`: what runs, what the feed offers, what went wrong.
/// Versions and the feed's own words only; never a key or a credential.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfUpdateStatus {
    /// `notify` (report only) or `install`.
    pub mode: String,
    /// The running version.
    pub current: String,
    /// What it is doing: `idle`, `checking`, `staging`, `trial`, `probation`.
    pub phase: String,
    /// A newer release the feed offers and this node may install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<String>,
    /// When the feed was last read successfully (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_unix: Option<u64>,
    /// Why the last check or install failed, until one succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Versions refused for good, with why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refused: BTreeMap<String, String>,
}

/// The node's part of `/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// When the agent started (RFC 3339).
    pub started_at: String,
    /// When the last fetch succeeded (RFC 3339).
    pub last_sync_time: Option<String>,
    /// The commit applied.
    pub git_head: Option<String>,
    /// The branch followed (the one the agent was told, or the one the node's manifest
    /// names). Absent from the `/status` of older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The subject (first line) of the commit applied, at most 200 characters; nothing
    /// else of its message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_subject: Option<String>,
    /// The agent's version (`orun fleet` shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Why the last fetch or load failed; never holds a value from the manifests but
    /// branch names (a Node manifest naming another branch than the one followed).
    pub sync_error: Option<String>,
    /// Since when the remote could not be reached (RFC 3339).
    pub stale_since: Option<String>,
}

/// One deployment's part of `/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentStatus {
    /// Deployment name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// The container running it, in the short form `docker ps` shows and Orcra Run documented
    /// (12 hex digits). Set with [`DeploymentStatus::set_container`].
    pub container_id: Option<String>,
    /// The same container's full id (64 hex digits), for `docker inspect` and scripts. Absent
    /// from the `/status` of agents older than this field, hence the default.
    #[serde(default)]
    pub container_id_full: Option<String>,
    /// Where it stands: `running`, `rolling out`, `failed, rolled back`, `outdated (exited
    /// (1))`, ...
    pub state: DeploymentState,
    /// `healthy`, `unhealthy`, `starting`, or none.
    pub health: Option<String>,
    /// Its spec hash.
    pub spec_hash: Option<String>,
    /// The last error, as orun wrote it (no values).
    pub last_error: Option<String>,
    /// Restarts of the current container since it was promoted: Docker's restart policy
    /// and orun's supervision (liveness, unhealthy, stopped) together.
    pub restarts: u64,
    /// The current container's address on its network (no port): where clients that follow
    /// `/status` send requests. During a start-first switch it moves to the new container
    /// before the old one drains and stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The rollout in progress, in words (`waiting for health: 3s of minHealthySeconds 10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// When the current container last started, as Docker reports it (RFC 3339, UTC,
    /// seconds): its age on the status page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

impl DeploymentStatus {
    /// Names the container running it (its full id, or none): `container_id` and
    /// `container_id_full` are set together, so they never name different containers.
    pub fn set_container(&mut self, full: Option<String>) {
        self.container_id = full.as_deref().map(short_container_id);
        self.container_id_full = full;
    }
}

/// The short form of a container id, as `docker ps` shows it: its first 12 characters,
/// after an algorithm prefix (`sha256:`) if there is one, as Docker truncates ids.
pub fn short_container_id(id: &str) -> String {
    let hex = id.split_once(':').map_or(id, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// Where a deployment stands, as `/status` spells it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeploymentState {
    /// The current spec's container, in this state (`running`, `exited (1)`, ...).
    Current(ContainerPhase),
    /// A container of an earlier spec, in this state (`outdated (running)`).
    Outdated(ContainerPhase),
    /// A new container is being started or held to its gate.
    RollingOut,
    /// The current spec failed; the previous container runs again.
    FailedRolledBack,
    /// The current spec failed and there was nothing to roll back to.
    Failed,
    /// No container.
    #[default]
    Missing,
    /// `suspend: true`.
    Suspended,
    /// A state a newer agent spells (read back, never written).
    Other(String),
}

/// A container's state, as Docker names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContainerPhase {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Restarting under Docker's restart policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Exited with this code.
    Exited(i64),
    /// Dead.
    Dead,
    /// Stopping.
    Stopping,
}

impl fmt::Display for ContainerPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Created => f.write_str("created"),
            Self::Running => f.write_str("running"),
            Self::Paused => f.write_str("paused"),
            Self::Restarting => f.write_str("restarting"),
            Self::Removing => f.write_str("removing"),
            Self::Exited(code) => write!(f, "exited ({code})"),
            Self::Dead => f.write_str("dead"),
            Self::Stopping => f.write_str("stopping"),
        }
    }
}

impl FromStr for ContainerPhase {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "removing" => Self::Removing,
            "dead" => Self::Dead,
            "stopping" => Self::Stopping,
            other => {
                let code = other
                    .strip_prefix("exited (")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or(())?;
                Self::Exited(code.parse().map_err(|_| ())?)
            }
        })
    }
}

impl fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Current(p) => p.fmt(f),
            Self::Outdated(p) => write!(f, "outdated ({p})"),
            Self::RollingOut => f.write_str("rolling out"),
            Self::FailedRolledBack => f.write_str("failed, rolled back"),
            Self::Failed => f.write_str("failed"),
            Self::Missing => f.write_str("missing"),
            Self::Suspended => f.write_str("suspended"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

impl From<&str> for DeploymentState {
    fn from(s: &str) -> Self {
        match s {
            "rolling out" => Self::RollingOut,
            "failed, rolled back" => Self::FailedRolledBack,
            "failed" => Self::Failed,
            "missing" => Self::Missing,
            "suspended" => Self::Suspended,
            other => {
                if let Some(p) = other
                    .strip_prefix("outdated (")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|p| p.parse().ok())
                {
                    Self::Outdated(p)
                } else if let Ok(p) = other.parse() {
                    Self::Current(p)
                } else {
                    Self::Other(other.to_owned())
                }
            }
        }
    }
}

impl Serialize for DeploymentState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeploymentState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::from(s.as_str()))
    }
}

/// How an event ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventOutcome {
    /// Begun (a rollout started; its end is another event).
    Started,
    /// Done.
    #[default]
    Ok,
    /// Failed; nothing to roll back to, or a single step that failed.
    Failed,
    /// Failed, and the previous container serves again.
    RolledBack,
    /// Undone because the agent was shutting down.
    Cancelled,
    /// Undone because a newer revision changes the deployment.
    Superseded,
    /// An outcome a newer agent spells (read back, never written).
    #[serde(other)]
    Other,
}

impl EventOutcome {
    /// Its name in `/events`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::RolledBack => "rolled-back",
            Self::Cancelled => "cancelled",
            Self::Superseded => "superseded",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for EventOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the event history (`GET /events`): something orun did or saw, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct Event {
    /// Position in the history; grows by one per event, across restarts.
    pub seq: u64,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// The commit the agent was applying, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The deployment concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// What: `create`, `replace`, `promote`, `rollback`, `restart`, `remove`, `recover`, ...
    pub step: String,
    /// Why (a plan reason, a probe result, an exit code and log lines). Never a secret: the
    /// agent writes only its own words, container output and manifest field names.
    pub reason: String,
    /// How it ended.
    pub outcome: EventOutcome,
}

/// One service's part of `/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// The deployment routed to.
    pub deployment: String,
    /// The domain on this node, if any.
    pub domain: Option<String>,
    /// Automatic HTTPS (`ingress.ssl`).
    #[serde(default)]
    pub ssl: bool,
    /// How the route stands.
    #[serde(default)]
    pub route: RouteState,
    /// The container the route sends requests to, when one serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Its address and port on the ingress network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_address: Option<String>,
    /// The certificate the ingress serves for the domain (`ssl: true`), as read from the
    /// ingress itself by a TLS handshake; absent until one is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStatus>,
    /// The last error of the route or of the ingress serving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// How one Service's route stands, spelled in kebab-case on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteState {
    /// The ingress serves the domain from a healthy container.
    Routed,
    /// The route is loaded, but no container serves it (the deployment is missing, failing
    /// or in its first gate): the ingress answers 503.
    NoContainer,
    /// The ingress has not taken the route yet (starting, or refusing: see `last_error`).
    Pending,
    /// The node runs no ingress (`--ingress off`), or the Service has no domain here.
    #[default]
    NotRouted,
    /// A word from a newer agent.
    #[serde(other)]
    Other,
}

impl fmt::Display for RouteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Routed => "routed",
            Self::NoContainer => "no-container",
            Self::Pending => "pending",
            Self::NotRouted => "not-routed",
            Self::Other => "other",
        })
    }
}

/// The `images` part of `/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagesStatus {
    /// Images orun pulled or built that are still on the host.
    pub count: u64,
    /// Their size on disk, in bytes, as Docker reports each (shared layers counted in
    /// each image).
    pub disk_bytes: u64,
    /// Images removed by retention since the agent started.
    #[serde(default)]
    pub removed: u64,
    /// Pulls and builds in progress, by deployment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub in_progress: BTreeMap<String, ImageProgress>,
}

/// A pull or build in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageProgress {
    /// `pull` or `build`.
    pub kind: String,
    /// The image reference or build tag.
    pub image: String,
    /// Pull: layers done and in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<(u64, u64)>,
    /// Pull: bytes downloaded and known in all (the total grows as layers start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<(u64, u64)>,
    /// Build: the Dockerfile step running and the steps in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<(u64, u64)>,
    /// Build: the last line of output, with secret values masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
}

impl fmt::Display for ImageProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.image)?;
        if let Some((done, all)) = self.layers {
            write!(f, ": {done}/{all} layers")?;
        }
        if let Some((done, all)) = self.bytes {
            write!(f, ", {} of {}", human_bytes(done), human_bytes(all))?;
        }
        if let Some((n, m)) = self.step {
            write!(f, ": step {n}/{m}")?;
        }
        Ok(())
    }
}

/// `12.3 MB`: decimal units, as Docker prints pull sizes.
pub fn human_bytes(n: u64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "one decimal is shown")]
    let v = n as f64;
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", v / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", v / 1e6),
        _ => format!("{:.2} GB", v / 1e9),
    }
}

/// A served TLS certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// Its issuer's common name.
    pub issuer: String,
    /// When it expires, RFC 3339.
    pub not_after: String,
    /// The same, in Unix seconds (for `/metrics`).
    #[serde(default)]
    pub not_after_unix: i64,
}

/// Counters the agent keeps for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Reconcile passes run.
    pub passes_total: u64,
    /// Passes that ended in an error.
    pub pass_failures_total: u64,
    /// Unix time of the last successful pass.
    pub last_success_unix: Option<f64>,
    /// Duration of the last fetch, in seconds.
    pub fetch_duration_seconds: Option<f64>,
    /// Container restarts by supervision, by deployment.
    pub restarts: BTreeMap<String, u64>,
    /// Rollouts ended, by outcome (`promoted`, `rolled-back`, `failed`, `superseded`).
    pub rollouts: BTreeMap<String, u64>,
}

impl Metrics {
    /// The Prometheus text exposition (0.0.4) of these metrics and of `snap`'s deployments
    /// by state, by the `prometheus` crate's encoder: a registry is filled from the snapshot
    /// on each scrape (the agent's counters live in its snapshot, not in the library's
    /// atomics).
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut by_state: BTreeMap<String, i64> = BTreeMap::new();
        for d in snap.deployments.values() {
            *by_state.entry(d.state.to_string()).or_default() += 1;
        }
        let registry = Registry::new();
        let fill = || -> prometheus::Result<()> {
            counter(
                &registry,
                "orun_passes_total",
                "Reconcile passes run.",
                self.passes_total,
            )?;
            counter(
                &registry,
                "orun_pass_failures_total",
                "Reconcile passes that ended in an error.",
                self.pass_failures_total,
            )?;
            if let Some(t) = self.last_success_unix {
                gauge(
                    &registry,
                    "orun_last_success_timestamp_seconds",
                    "Unix time of the last successful pass.",
                    t,
                )?;
            }
            if let Some(d) = self.fetch_duration_seconds {
                gauge(
                    &registry,
                    "orun_fetch_duration_seconds",
                    "Duration of the last Git fetch.",
                    d,
                )?;
            }
            counters(
                &registry,
                "orun_restarts_total",
                "Container restarts (Docker's restart policy and orun's supervision), by deployment.",
                "deployment",
                &self.restarts,
            )?;
            counters(
                &registry,
                "orun_rollouts_total",
                "Rollouts ended, by outcome.",
                "outcome",
                &self.rollouts,
            )?;
            let deployments = IntGaugeVec::new(
                Opts::new("orun_deployments", "Deployments by state."),
                &["state"],
            )?;
            for (state, n) in &by_state {
                deployments.with_label_values(&[state.as_str()]).set(*n);
            }
            registry.register(Box::new(deployments))?;
            let ready = IntGauge::new(
                "orun_ready",
                "1 when the current revision is converged and healthy.",
            )?;
            ready.set(i64::from(snap.ready));
            registry.register(Box::new(ready))?;
            let sync_failing = IntGauge::new(
                "orun_sync_failing",
                "1 while the last sync (Git fetch or loading the revision) failed.",
            )?;
            sync_failing.set(i64::from(snap.node.sync_error.is_some()));
            registry.register(Box::new(sync_failing))?;
            routes(&registry, snap)?;
            self_update(&registry, snap)?;
            images(&registry, snap)
        };
        let mut out = String::new();
        // Names and labels are ours and fixed, so registering cannot fail; if it did, the
        // scrape would show what was registered before.
        let _ = fill();
        let _ = TextEncoder::new().encode_utf8(&registry.gather(), &mut out);
        out
    }
}

/// Self-update gauges, when it is on: an update waiting (notify mode) and a failing one.
fn self_update(registry: &Registry, snap: &Snapshot) -> prometheus::Result<()> {
    let Some(u) = &snap.self_update else {
        return Ok(());
    };
    let available = IntGauge::new(
        "orun_self_update_available",
        "1 when the release feed offers a newer version this node may install.",
    )?;
    available.set(i64::from(u.available.is_some()));
    registry.register(Box::new(available))?;
    let failing = IntGauge::new(
        "orun_self_update_failing",
        "1 when the last self-update check or install failed.",
    )?;
    failing.set(i64::from(u.last_error.is_some()));
    registry.register(Box::new(failing))
}

/// Route and certificate gauges: one series per Service with a domain.
fn routes(registry: &Registry, snap: &Snapshot) -> prometheus::Result<()> {
    let up = IntGaugeVec::new(
        Opts::new(
            "orun_route_up",
            "1 when the ingress routes the Service's domain to a serving container.",
        ),
        &["service", "domain"],
    )?;
    let expiry = IntGaugeVec::new(
        Opts::new(
            "orun_certificate_expiry_timestamp_seconds",
            "Unix time the certificate the ingress serves for a domain expires.",
        ),
        &["domain"],
    )?;
    for s in snap.services.values() {
        let Some(domain) = &s.domain else { continue };
        up.with_label_values(&[s.name.as_str(), domain.as_str()])
            .set(i64::from(s.route == RouteState::Routed));
        if let Some(c) = &s.certificate {
            expiry
                .with_label_values(&[domain.as_str()])
                .set(c.not_after_unix);
        }
    }
    registry.register(Box::new(up))?;
    registry.register(Box::new(expiry))
}

/// What orun's images weigh, and what retention removed.
fn images(registry: &Registry, snap: &Snapshot) -> prometheus::Result<()> {
    let bytes = IntGauge::new(
        "orun_images_disk_bytes",
        "Bytes on disk of the images orun pulled or built and still keeps.",
    )?;
    bytes.set(i64::try_from(snap.images.disk_bytes).unwrap_or(i64::MAX));
    registry.register(Box::new(bytes))?;
    let count = IntGauge::new(
        "orun_images",
        "Images orun pulled or built and still keeps.",
    )?;
    count.set(i64::try_from(snap.images.count).unwrap_or(i64::MAX));
    registry.register(Box::new(count))?;
    counter(
        registry,
        "orun_images_removed_total",
        "Images removed by retention since the agent started.",
        snap.images.removed,
    )?;
    let busy = IntGauge::new(
        "orun_image_operations_in_progress",
        "Pulls and builds running now.",
    )?;
    busy.set(i64::try_from(snap.images.in_progress.len()).unwrap_or(i64::MAX));
    registry.register(Box::new(busy))
}

fn counter(registry: &Registry, name: &str, help: &str, v: u64) -> prometheus::Result<()> {
    let c = IntCounter::new(name, help)?;
    c.inc_by(v);
    registry.register(Box::new(c))
}

fn gauge(registry: &Registry, name: &str, help: &str, v: f64) -> prometheus::Result<()> {
    let g = Gauge::new(name, help)?;
    g.set(v);
    registry.register(Box::new(g))
}

fn counters(
    registry: &Registry,
    name: &str,
    help: &str,
    key: &str,
    values: &BTreeMap<String, u64>,
) -> prometheus::Result<()> {
    let c = IntCounterVec::new(Opts::new(name, help), &[key])?;
    for (label, v) in values {
        c.with_label_values(&[label.as_str()]).inc_by(*v);
    }
    registry.register(Box::new(c))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// The short id is Docker's: 12 characters, after an algorithm prefix if any; shorter
    /// ids stay whole. Both fields are set together.
    #[test]
    fn container_ids_are_shown_short_and_full() {
        let full = "4f1c2a9e8b7d60531f2e3d4c5b6a798877665544332211000ffeeddccbbaa998";
        assert_eq!(short_container_id(full), "4f1c2a9e8b7d");
        assert_eq!(
            short_container_id("sha256:4f1c2a9e8b7d6053"),
            "4f1c2a9e8b7d"
        );
        assert_eq!(short_container_id("abc"), "abc");
        let mut d = DeploymentStatus::default();
        d.set_container(Some(full.to_owned()));
        assert_eq!(
            (d.container_id.as_deref(), d.container_id_full.as_deref()),
            (Some("4f1c2a9e8b7d"), Some(full))
        );
        d.set_container(None);
        assert_eq!((d.container_id, d.container_id_full), (None, None));
    }

    #[test]
    fn states_read_back_as_they_were_written() {
        for text in [
            "running",
            "exited (137)",
            "outdated (exited (1))",
            "outdated (paused)",
            "rolling out",
            "failed, rolled back",
            "failed",
            "missing",
            "suspended",
            "created",
        ] {
            let state = DeploymentState::from(text);
            assert!(!matches!(state, DeploymentState::Other(_)), "{text}");
            assert_eq!(state.to_string(), text);
        }
        // A newer agent's word survives the trip, as itself.
        assert_eq!(
            DeploymentState::from("draining"),
            DeploymentState::Other("draining".to_owned())
        );
        let snap = Snapshot {
            deployments: BTreeMap::from([(
                "web".to_owned(),
                DeploymentStatus {
                    name: "web".to_owned(),
                    state: DeploymentState::Outdated(ContainerPhase::Exited(2)),
                    ..DeploymentStatus::default()
                },
            )]),
            ..Snapshot::default()
        };
        let json = serde_json::to_string(&snap).unwrap();
        assert!(
            json.contains(r#""state":"outdated (exited (2))""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), snap);
        let e: Event = serde_json::from_str(
            r#"{"seq":1,"time":"t","step":"replace","reason":"r","outcome":"rolled-back"}"#,
        )
        .unwrap();
        assert_eq!(e.outcome, EventOutcome::RolledBack);
        let unknown: Event = serde_json::from_str(
            r#"{"seq":1,"time":"t","step":"replace","reason":"r","outcome":"postponed"}"#,
        )
        .unwrap();
        assert_eq!(unknown.outcome, EventOutcome::Other);
    }
}

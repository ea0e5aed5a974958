//! What the status API shows: an allowlisted schema, filled in by the agent after each pass.

use std::collections::BTreeMap;

use prometheus::{
    Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use serde::Serialize;

/// One picture of the node, as `/status`, `/readyz` and `/metrics` show it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// The node and its sync state.
    pub node: NodeStatus,
    /// Deployments by name.
    pub deployments: BTreeMap<String, DeploymentStatus>,
    /// Services by name.
    pub services: BTreeMap<String, ServiceStatus>,
    /// Whether the current revision is converged and healthy (`/readyz`).
    #[serde(skip)]
    pub ready: bool,
    /// Counters for `/metrics`.
    #[serde(skip)]
    pub metrics: Metrics,
}

/// The node's part of `/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// When the agent started (RFC 3339).
    pub started_at: String,
    /// When the last fetch succeeded (RFC 3339).
    pub last_sync_time: Option<String>,
    /// The commit applied.
    pub git_head: Option<String>,
    /// Why the last fetch or load failed; never holds a value from the manifests.
    pub sync_error: Option<String>,
    /// Since when the remote could not be reached (RFC 3339).
    pub stale_since: Option<String>,
}

/// One deployment's part of `/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeploymentStatus {
    /// Deployment name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// The container running it.
    pub container_id: Option<String>,
    /// `running`, `converging`, `failed, rolled back`, `suspended`, ...
    pub state: String,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The rollout in progress, in words (`waiting for health: 3s of minHealthySeconds 10`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
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
    /// How it ended: `started`, `ok`, `failed`, `rolled-back`.
    pub outcome: String,
}

/// One service's part of `/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// The deployment routed to.
    pub deployment: String,
    /// The domain on this node, if any.
    pub domain: Option<String>,
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
    /// Rollouts ended, by outcome (`promoted`, `rolled-back`, `failed`).
    pub rollouts: BTreeMap<String, u64>,
}

impl Metrics {
    /// The Prometheus text exposition (0.0.4) of these metrics and of `snap`'s deployments
    /// by state, by the `prometheus` crate's encoder: a registry is filled from the snapshot
    /// on each scrape (the agent's counters live in its snapshot, not in the library's
    /// atomics).
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut by_state: BTreeMap<&str, i64> = BTreeMap::new();
        for d in snap.deployments.values() {
            *by_state.entry(d.state.as_str()).or_default() += 1;
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
                deployments.with_label_values(&[*state]).set(*n);
            }
            registry.register(Box::new(deployments))?;
            let ready = IntGauge::new(
                "orun_ready",
                "1 when the current revision is converged and healthy.",
            )?;
            ready.set(i64::from(snap.ready));
            registry.register(Box::new(ready))
        };
        let mut out = String::new();
        // Names and labels are ours and fixed, so registering cannot fail; if it did, the
        // scrape would show what was registered before.
        let _ = fill();
        let _ = TextEncoder::new().encode_utf8(&registry.gather(), &mut out);
        out
    }
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

//! What the status API shows: an allowlisted schema, filled in by the agent after each pass.

use std::collections::BTreeMap;
use std::fmt::Write as _;

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
    /// Prometheus text exposition (0.0.4), with deployments counted by state.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        metric(
            "orun_passes_total",
            "counter",
            "Reconcile passes run.",
            &[(String::new(), self.passes_total as f64)],
        );
        metric(
            "orun_pass_failures_total",
            "counter",
            "Reconcile passes that ended in an error.",
            &[(String::new(), self.pass_failures_total as f64)],
        );
        if let Some(t) = self.last_success_unix {
            metric(
                "orun_last_success_timestamp_seconds",
                "gauge",
                "Unix time of the last successful pass.",
                &[(String::new(), t)],
            );
        }
        if let Some(d) = self.fetch_duration_seconds {
            metric(
                "orun_fetch_duration_seconds",
                "gauge",
                "Duration of the last Git fetch.",
                &[(String::new(), d)],
            );
        }
        let labelled = |key: &str, m: &BTreeMap<String, u64>| -> Vec<(String, f64)> {
            m.iter()
                .map(|(k, v)| (format!("{{{key}=\"{}\"}}", escape(k)), *v as f64))
                .collect()
        };
        metric(
            "orun_restarts_total",
            "counter",
            "Container restarts (Docker's restart policy and orun's supervision), by deployment.",
            &labelled("deployment", &self.restarts),
        );
        metric(
            "orun_rollouts_total",
            "counter",
            "Rollouts ended, by outcome.",
            &labelled("outcome", &self.rollouts),
        );
        let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
        for d in snap.deployments.values() {
            *by_state.entry(d.state.as_str()).or_default() += 1;
        }
        let samples: Vec<(String, f64)> = by_state
            .iter()
            .map(|(s, n)| (format!("{{state=\"{}\"}}", escape(s)), *n as f64))
            .collect();
        metric(
            "orun_deployments",
            "gauge",
            "Deployments by state.",
            &samples,
        );
        metric(
            "orun_ready",
            "gauge",
            "1 when the current revision is converged and healthy.",
            &[(String::new(), f64::from(u8::from(snap.ready)))],
        );
        out
    }
}

/// Escapes a Prometheus label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

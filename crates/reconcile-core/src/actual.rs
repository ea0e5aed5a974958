//! What runs: containers as observed on the host, and the labels that make one ours.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

/// Label naming the node that manages a container. Only containers carrying
/// `orun.node=<this node>` are ever touched.
pub const LABEL_NODE: &str = "orun.node";
/// Label naming the environment of the agent that manages a container, by the branch it
/// tracks exactly as Git names it: agents of one node name on one host, tracking different
/// branches, never touch each other's, even when their environment ids (`$ENV`, the
/// container-name prefix) fold to the same DNS label (`MAIN` and `main`, `feature/x` and
/// `feature_x`).
pub const LABEL_ENVIRONMENT: &str = "orun.environment";
/// Label naming the Deployment a container belongs to.
pub const LABEL_DEPLOYMENT: &str = "orun.deployment";
/// Label holding [`crate::RenderedSpec::hash`].
pub const LABEL_SPEC_HASH: &str = "orun.spec-hash";
/// Label holding [`crate::RenderedSpec::canonical_json`], so diffs need no other memory.
pub const LABEL_SPEC: &str = "orun.spec";
/// Label naming the commit the container was created from.
pub const LABEL_COMMIT: &str = "orun.commit";

/// Every container on the host, managed or not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actual {
    /// Containers in any state.
    pub containers: Vec<ObservedContainer>,
    /// Local image ids by reference, for the images the desired state names (a JSON snapshot
    /// may list them; without an entry an image counts as absent).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, String>,
}

/// One container as Docker reports it. Built from [`ObservedFields`], which reads its
/// ownership labels once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ObservedFields")]
pub struct ObservedContainer {
    /// Docker's id.
    pub id: String,
    /// Name without Docker's leading `/`.
    pub name: String,
    /// The image id it runs (`sha256:…`).
    pub image_id: String,
    /// Its state.
    pub state: ContainerState,
    /// Its Docker HEALTHCHECK status, when the image or container defines one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// All labels; changed only through [`ObservedContainer::set_label`], which keeps
    /// `owner` true to them.
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// orun's ownership labels, in fields of their own when the container carries all four:
    /// the planner asks every container whose it is, and a walk of its label tree each time
    /// was most of a converged plan's time at 10 000 containers (docs/BENCHMARKS.md).
    #[serde(skip)]
    owner: Option<Ownership>,
    /// Its IP address on each network it is attached to, by network name: where the
    /// node's ingress reaches it. Filled in by the observer; not read back from JSON.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<String, String>,
}

/// A container's fields as Docker reports them, before its ownership labels are read.
#[derive(Clone, Debug, Deserialize)]
pub struct ObservedFields {
    /// Docker's id.
    pub id: String,
    /// Name without Docker's leading `/`.
    pub name: String,
    /// The image id it runs (`sha256:…`).
    pub image_id: String,
    /// Its state.
    pub state: ContainerState,
    /// Its Docker HEALTHCHECK status, when the image or container defines one.
    #[serde(default)]
    pub health: Option<HealthStatus>,
    /// All labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl From<ObservedFields> for ObservedContainer {
    fn from(f: ObservedFields) -> Self {
        Self {
            owner: Ownership::read(&f.labels),
            id: f.id,
            name: f.name,
            image_id: f.image_id,
            state: f.state,
            health: f.health,
            labels: f.labels,
            addresses: BTreeMap::new(),
        }
    }
}

/// orun's ownership labels of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    /// `orun.node`.
    pub node: String,
    /// `orun.environment`.
    pub environment: String,
    /// `orun.deployment`.
    pub deployment: String,
    /// `orun.spec-hash`.
    pub spec_hash: String,
}

impl Ownership {
    /// The four labels, when `labels` holds every one; read in one walk over the `orun.`
    /// labels, which sort together.
    pub fn read(labels: &BTreeMap<String, String>) -> Option<Self> {
        let (mut node, mut environment, mut deployment, mut spec_hash) = (None, None, None, None);
        let orun = (Bound::Included("orun."), Bound::Excluded("orun/"));
        for (key, value) in labels.range::<str, _>(orun) {
            match key.as_str() {
                LABEL_NODE => node = Some(value),
                LABEL_ENVIRONMENT => environment = Some(value),
                LABEL_DEPLOYMENT => deployment = Some(value),
                LABEL_SPEC_HASH => spec_hash = Some(value),
                _ => {}
            }
        }
        Some(Self {
            node: node?.clone(),
            environment: environment?.clone(),
            deployment: deployment?.clone(),
            spec_hash: spec_hash?.clone(),
        })
    }
}

impl ObservedContainer {
    /// All its labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// orun's four ownership labels, when it carries every one.
    pub fn owner(&self) -> Option<&Ownership> {
        self.owner.as_ref()
    }

    /// Sets a label (as a test or a snapshot edit would), keeping the ownership fields true.
    pub fn set_label(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.labels.insert(key.into(), value.into());
        self.owner = Ownership::read(&self.labels);
    }

    /// Whether the agent of `node` in `environment` manages this container: it carries every
    /// ownership label orun writes, with those values. A container with only some of them (a
    /// copied `orun.node`, say) is not ours and is never touched (REFERENCE §2, RELIABILITY
    /// E13).
    pub fn managed_by(&self, node: &str, environment: &str) -> bool {
        self.ownership(node, environment).is_some()
    }

    /// The deployment and spec hash of a container this agent manages (see
    /// [`ObservedContainer::managed_by`]).
    pub fn ownership(&self, node: &str, environment: &str) -> Option<(&str, &str)> {
        let o = self.owner.as_ref()?;
        (o.node == node && o.environment == environment)
            .then_some((o.deployment.as_str(), o.spec_hash.as_str()))
    }

    /// The Deployment it belongs to, per its label.
    pub fn deployment(&self) -> Option<&str> {
        self.labels.get(LABEL_DEPLOYMENT).map(String::as_str)
    }

    /// The spec hash it was created with.
    pub fn spec_hash(&self) -> Option<&str> {
        self.labels.get(LABEL_SPEC_HASH).map(String::as_str)
    }
}

/// A container's state, as far as planning cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum ContainerState {
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
    Exited {
        /// The exit code.
        code: i64,
    },
    /// Dead (failed removal).
    Dead,
    /// Being stopped.
    Stopping,
}

/// A Docker HEALTHCHECK status. Promotion gates (issue 5) read it; planning does not yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthStatus {
    /// Within the start period, not judged yet.
    Starting,
    /// Passing.
    Healthy,
    /// Failing.
    Unhealthy,
}

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

/// One container as Docker reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// All labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl ObservedContainer {
    /// Whether the agent of `node` in `environment` manages this container: it carries every
    /// ownership label orun writes, with those values. A container with only some of them (a
    /// copied `orun.node`, say) is not ours and is never touched (REFERENCE §2, RELIABILITY
    /// E13).
    pub fn managed_by(&self, node: &str, environment: &str) -> bool {
        self.ownership(node, environment).is_some()
    }

    /// The deployment and spec hash of a container this agent manages (see
    /// [`ObservedContainer::managed_by`]), read in one walk over the `orun.` labels, which
    /// sort together: every key a lookup compares is a separate string, and at 10 000
    /// containers each is a cache miss (docs/BENCHMARKS.md).
    pub fn ownership(&self, node: &str, environment: &str) -> Option<(&str, &str)> {
        let (mut n, mut e, mut deployment, mut hash) = (false, false, None, None);
        let orun = (Bound::Included("orun."), Bound::Excluded("orun/"));
        for (key, value) in self.labels.range::<str, _>(orun) {
            match key.as_str() {
                LABEL_NODE => n = value == node,
                LABEL_ENVIRONMENT => e = value == environment,
                LABEL_DEPLOYMENT => deployment = Some(value.as_str()),
                LABEL_SPEC_HASH => hash = Some(value.as_str()),
                _ => {}
            }
        }
        if n && e { deployment.zip(hash) } else { None }
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

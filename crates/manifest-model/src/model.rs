//! The validated domain model of a revision: what the manifests mean, defaults filled in.
//!
//! These types are produced only by validation, so holding one means its invariants hold
//! (names are DNS labels, ports are in range, exactly one of image or build, ...). They
//! serialize back to manifest shape, which `render` uses and `reconcile-core` hashes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::secret::{EnvValue, SealedFile, SecretsFile};
use crate::values::{ImageRef, ProbeTarget};

/// The API version every manifest declares.
pub const API_VERSION: &str = "run.orcra.dev/v0alpha";

/// One accepted revision of a manifest repository.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Revision {
    /// Nodes by name, from `nodes/`.
    pub nodes: BTreeMap<String, Node>,
    /// Deployments by name, from `deployments/`.
    pub deployments: BTreeMap<String, Deployment>,
    /// Services by name, from `services/`.
    pub services: BTreeMap<String, Service>,
    /// `secrets.yaml`, still encrypted.
    pub secrets: Option<std::sync::Arc<SecretsFile>>,
    /// Deployments whose file sops encrypted (inline `ENC[...]` env values), by name.
    pub sealed: BTreeMap<String, SealedFile>,
}

/// A server that runs an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// `metadata.name`.
    pub name: String,
    /// The file it was read from, relative to the repository root: what messages about it
    /// name (never its text).
    pub file: String,
    /// `spec`.
    pub spec: NodeSpec,
}

/// What a Node manifest says, defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// SSH host or IP used by `orun bootstrap`.
    pub host: String,
    /// SSH user for bootstrap (default `root`).
    pub user: String,
    /// Operator-side SSH key for bootstrap (default `~/.ssh/id_ed25519`).
    pub ssh_key_path: String,
    /// The manifest repository the node tracks.
    pub git_repo: String,
    /// The branch the node tracks (default `main`).
    pub git_branch: String,
    /// Poll period (default 5 s).
    #[serde(serialize_with = "ser_duration")]
    pub poll_interval: Duration,
    /// Node-local state (default `/opt/orun/`).
    pub data_dir: String,
    /// Base of `build.context`; `None` means `<dataDir>/code`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_dir: Option<String>,
    /// The branch whose nodes are production (default `main`). [ext]
    pub production_branch: String,
    /// Offer every `secrets.yaml` key to every container as an env var (default `true`, as
    /// Orcra Run did); `false` leaves only explicit `secretRef`s. [ext]
    #[serde(skip_serializing_if = "is_true")]
    pub offer_secrets: bool,
    /// Free labels matched by Deployment `nodeSelector`. [ext]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn is_true(b: &bool) -> bool {
    *b
}

impl NodeSpec {
    /// The folder build contexts are resolved under.
    pub fn code_dir(&self) -> String {
        match &self.code_dir {
            Some(dir) => dir.clone(),
            None => format!("{}/code", self.data_dir.trim_end_matches('/')),
        }
    }
}

/// A containerized workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Deployment {
    /// `metadata.name`.
    pub name: String,
    /// The file it was read from, relative to the repository root: what messages about it
    /// name (never its text).
    pub file: String,
    /// `spec`.
    pub spec: DeploymentSpec,
}

/// What a Deployment manifest says, defaults filled in.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Where the image comes from: `image` or `build`.
    #[serde(flatten)]
    pub source: ImageSource,
    /// Published ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// Bind mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// Environment, plain or SOPS-encrypted values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    /// Readiness and liveness probes.
    #[serde(skip_serializing_if = "Health::is_empty")]
    pub health: Health,
    /// When to pull the image. [ext]
    pub pull: PullPolicy,
    /// Entrypoint override. [ext]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Command override. [ext]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Run only on these nodes. [ext]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
    /// Run only on nodes with these labels. [ext]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Docker restart policy. [ext]
    pub restart: RestartPolicy,
    /// Limits. [ext]
    #[serde(skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// The promotion gate. [ext]
    pub rollout: Rollout,
    /// Extra container labels; never in the reserved `orun.` prefix. [ext]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Leave this deployment exactly as it runs now. [ext]
    #[serde(skip_serializing_if = "is_false")]
    pub suspend: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl DeploymentSpec {
    /// Whether any port is published on the host (which forces stop-first rollouts).
    pub fn publishes_host_port(&self) -> bool {
        self.ports.iter().any(|p| p.host_port.is_some())
    }
}

/// Where a deployment's image comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ImageSource {
    /// Pull (or find locally) this reference.
    Image(ImageRef),
    /// Build on the node.
    Build(BuildSpec),
}

/// Building the image on the node.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildSpec {
    /// Context folder relative to the node's code dir; never escapes it.
    pub context: String,
    /// Dockerfile relative to the context (default `Dockerfile`).
    pub dockerfile: String,
    /// `--build-arg` values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// When to rebuild.
    pub build_mode: BuildMode,
}

/// Build argument values often carry tokens (`NPM_TOKEN`): debug output names the keys only.
impl std::fmt::Debug for BuildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildSpec")
            .field("context", &self.context)
            .field("dockerfile", &self.dockerfile)
            .field(
                "args",
                &self
                    .args
                    .keys()
                    .map(|k| (k, "***"))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("build_mode", &self.build_mode)
            .finish()
    }
}

/// When a build-based deployment is rebuilt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildMode {
    /// Build when no image for this spec exists yet (default).
    BuildOnce,
    /// Build again when the content of the build context (after `.dockerignore`) changes.
    /// [ext]
    OnChange,
    /// Build again, without Docker's cache, on every new commit.
    Always,
}

/// A published (or merely declared) container port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port inside the container.
    pub container_port: u16,
    /// Host port; `None` declares the port without publishing it. [ext: optional]
    #[serde(rename = "port", skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// Host address to bind (default `0.0.0.0`). [ext]
    #[serde(rename = "hostIP")]
    pub host_ip: std::net::IpAddr,
    /// `tcp` or `udp`. [ext]
    pub protocol: Protocol,
}

/// Transport of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (default).
    Tcp,
    /// UDP.
    Udp,
}

/// A bind mount.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// Absolute, normalised host path.
    pub host_path: String,
    /// Absolute, normalised container path.
    pub container_path: String,
    /// Mount read-only. [ext]
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// Where `hostPath` is written, so the node's host policy can point at it. Not part of
    /// what the mount is: equality and hashing leave it out.
    #[serde(skip)]
    pub at: crate::Pos,
}

impl PartialEq for VolumeMount {
    fn eq(&self, other: &Self) -> bool {
        (&self.host_path, &self.container_path, self.read_only)
            == (&other.host_path, &other.container_path, other.read_only)
    }
}

impl Eq for VolumeMount {}

impl std::hash::Hash for VolumeMount {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.host_path, &self.container_path, self.read_only).hash(state);
    }
}

/// Readiness and liveness probes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Gates promotion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Restarts a promoted container that stops answering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
}

impl Health {
    fn is_empty(&self) -> bool {
        self.readiness.is_none() && self.liveness.is_none()
    }
}

/// An HTTP probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// What to GET.
    pub http: ProbeTarget,
    /// Seconds between probes (default 5).
    pub period_seconds: u32,
    /// Seconds before one probe counts as failed (default 2).
    pub timeout_seconds: u32,
    /// Consecutive failures that count as unhealthy (default 3).
    pub failure_threshold: u32,
    /// Seconds to wait after start before the first probe (default 0).
    pub initial_delay_seconds: u32,
}

/// When to pull an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Only when the image is not present locally (default).
    #[default]
    Missing,
    /// Check the registry for a new digest on every pass that touches the deployment.
    Always,
    /// Never; the image must already be present.
    Never,
}

/// Docker restart policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Always restart (default).
    #[default]
    Always,
    /// Restart on non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

/// Resource limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Resources {
    /// Memory limit in bytes.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_u64_str"
    )]
    pub memory: Option<u64>,
    /// CPU limit in thousandths of a CPU.
    #[serde(
        rename = "cpus",
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_millicpus"
    )]
    pub millicpus: Option<u32>,
}

impl Resources {
    fn is_empty(&self) -> bool {
        self.memory.is_none() && self.millicpus.is_none()
    }
}

/// The promotion gate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// How old and new containers overlap.
    pub strategy: RolloutStrategy,
    /// Seconds a new container must stay healthy before promotion (default 10).
    pub min_healthy_seconds: u32,
    /// Seconds after which a new container that is not healthy is rolled back (default 300).
    pub healthy_deadline_seconds: u32,
    /// Start-first: seconds the old container keeps serving after the new one is promoted,
    /// so clients that looked up the old address finish with it (default 2).
    pub drain_seconds: u32,
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            strategy: RolloutStrategy::Auto,
            min_healthy_seconds: 10,
            healthy_deadline_seconds: 300,
            drain_seconds: 2,
        }
    }
}

/// How old and new containers overlap during a replace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutStrategy {
    /// `start-first` unless a host port is published, then `stop-first` (default).
    #[default]
    Auto,
    /// Start the new container beside the old one.
    StartFirst,
    /// Stop the old one first (required when host ports would clash).
    StopFirst,
}

/// Routes a domain to a deployment through the ingress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// `metadata.name`.
    pub name: String,
    /// The file it was read from, relative to the repository root: what messages about it
    /// name (never its text).
    pub file: String,
    /// `spec`.
    pub spec: ServiceSpec,
}

/// What a Service manifest says, defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceSpec {
    /// The Deployment routed to.
    pub deployment: String,
    /// Domains and TLS.
    pub ingress: Ingress,
    /// Which container port to route to; `None` means the deployment's first. [ext]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Domains and TLS of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ingress {
    /// The two domain forms.
    pub domain: DomainSpec,
    /// Automatic HTTPS.
    pub ssl: bool,
}

/// The production domain and the template for other environments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DomainSpec {
    /// Used on production nodes.
    pub default: String,
    /// Template with `$ENV`, used on other nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::values::format_duration(*d))
}

fn ser_opt_u64_str<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&v.to_string()),
        None => s.serialize_none(),
    }
}

fn ser_millicpus<S: Serializer>(v: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_f64(f64::from(*v) / 1000.0),
        None => s.serialize_none(),
    }
}

//! What should run: container specs rendered from the manifests, with their identity hash.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use std::sync::Arc;

use manifest_model::{
    DeploymentSpec, DesiredContainer, DesiredNode, EnvValue, Fingerprints, Health, ImageSource,
    PortMapping, Resources, RestartPolicy, RolloutStrategy, SecretsFile, VolumeMount,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Everything that defines a container, as orun creates it. Two containers with the same
/// rendered spec (and the same image id) are the same deployment generation.
///
/// Secrets appear only as hashes, so the spec can be stored in a container label, compared
/// and shown in diffs without revealing them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderedSpec {
    /// Docker container name.
    pub container_name: String,
    /// The image reference the container runs.
    pub image: String,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Command override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Environment: plain values, and secrets by hash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, RenderedEnv>,
    /// Published ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<RenderedPort>,
    /// Bind mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<RenderedVolume>,
    /// Docker restart policy: `always`, `on-failure` or `never`.
    pub restart: String,
    /// Memory limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// CPU limit in thousandths of a CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millicpus: Option<u32>,
    /// User labels (never `orun.`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Probe targets and timings, as `readiness`/`liveness` → `target period/timeout/failures/delay`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub probes: BTreeMap<String, String>,
    /// The `secrets.yaml` entries offered to the container as env vars (its own `env` wins
    /// on a shared key), by one digest of the whole file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_secrets: Option<OfferedSecrets>,
    /// The ingress network the container joins instead of Docker's default bridge, when a
    /// Service routes to it. Absent otherwise, so specs (and hashes) of containers no
    /// Service routes to are what they were before orun had an ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// `secrets.yaml` as every container of a node is offered it: one digest for identity, and
/// the entries for the create call, shared by all the node's specs rather than copied into
/// each (n entries and m deployments cost n + m, not n × m).
///
/// Serializes as its digest alone: two containers were offered the same secrets exactly when
/// their digests are equal. A spec read back from a container's label has the digest only.
#[derive(Clone)]
pub struct OfferedSecrets {
    /// `sha256:<hex>` over every key and the digest of its value, in key order.
    pub digest: String,
    /// The entries, in key order: each key, with its value when the file keeps it in clear
    /// (a key with the `unencrypted_suffix`); the others are supplied decrypted at create.
    pub entries: Arc<[(String, Option<String>)]>,
}

/// Keys only: a clear value in `secrets.yaml` is still the user's business.
impl std::fmt::Debug for OfferedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfferedSecrets")
            .field("digest", &self.digest)
            .field(
                "keys",
                &self.entries.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl OfferedSecrets {
    /// The offer made by a `secrets.yaml`, identified by each key and its value's
    /// fingerprint ([`UNCHECKED`] when a value's fingerprint is not known).
    pub fn of(file: &SecretsFile, fps: &Fingerprints) -> Self {
        let mut h = Sha256::new();
        let mut unchecked = false;
        for k in file.entries.keys() {
            let Some(fp) = fps.file.get(k) else {
                unchecked = true;
                break;
            };
            h.update(k.as_bytes());
            h.update([0]);
            h.update(fp.as_bytes());
            h.update([b'\n']);
        }
        Self {
            digest: if unchecked {
                UNCHECKED.to_owned()
            } else {
                format!("sha256:{}", hex(&h.finalize()))
            },
            entries: file
                .entries
                .iter()
                .map(|(k, v)| {
                    let plain = match v {
                        EnvValue::Plain(p) => Some(p.clone()),
                        EnvValue::Encrypted(_) | EnvValue::SecretRef(_) => None,
                    };
                    (k.clone(), plain)
                })
                .collect(),
        }
    }
}

/// What a secret's identity is when its value could not be decrypted (`orun plan` without
/// the node's keys): compared as unchanged, and said so.
pub const UNCHECKED: &str = "unchecked";

impl PartialEq for OfferedSecrets {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for OfferedSecrets {}

impl Serialize for OfferedSecrets {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.digest)
    }
}

impl<'de> Deserialize<'de> for OfferedSecrets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self {
            digest: String::deserialize(d)?,
            entries: Arc::from([]),
        })
    }
}

/// An env value as rendered: plain text, or a secret known only by its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RenderedEnv {
    /// A value written in the manifest.
    Plain(String),
    /// A secret, by the keyed fingerprint of its value (`hmac-sha256:<hex>`), or
    /// [`UNCHECKED`].
    Secret(String),
}

/// A port mapping as Docker gets it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderedPort {
    /// Port inside the container.
    pub container_port: u16,
    /// Host port, when published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// Host address.
    pub host_ip: String,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// A bind mount as Docker gets it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderedVolume {
    /// Host path.
    pub host_path: String,
    /// Container path.
    pub container_path: String,
    /// Read-only mount.
    #[serde(default)]
    pub read_only: bool,
}

/// A hash of a secret's value: `sha256:<hex>`.
pub fn secret_digest(value: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(value)))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl RenderedSpec {
    /// Renders a resolved container: its own env, plus the node's `secrets.yaml` offer. A
    /// secret enters the spec by the node-keyed fingerprint of its plaintext (`fps`), so
    /// re-encrypting an unchanged value restarts nothing and changing one replaces exactly
    /// the containers that use it; a value not in `fps` is [`UNCHECKED`].
    pub fn from_container(
        c: &DesiredContainer,
        image: impl Into<String>,
        offered: Option<&OfferedSecrets>,
        fps: &Fingerprints,
    ) -> Self {
        let s: &DeploymentSpec = &c.spec;
        let env = s
            .env
            .iter()
            .map(|(k, v)| {
                let r = match v {
                    EnvValue::Plain(p) => RenderedEnv::Plain(p.clone()),
                    EnvValue::Encrypted(_) => RenderedEnv::Secret(
                        fps.inline
                            .get(&(c.deployment.clone(), k.clone()))
                            .cloned()
                            .unwrap_or_else(|| UNCHECKED.to_owned()),
                    ),
                    EnvValue::SecretRef(key) => RenderedEnv::Secret(
                        fps.file
                            .get(key)
                            .cloned()
                            .unwrap_or_else(|| UNCHECKED.to_owned()),
                    ),
                };
                (k.clone(), r)
            })
            .collect();
        let mut ports: Vec<RenderedPort> = s.ports.iter().map(render_port).collect();
        ports.sort();
        let mut volumes: Vec<RenderedVolume> = s
            .volumes
            .iter()
            .map(|v: &VolumeMount| RenderedVolume {
                host_path: v.host_path.clone(),
                container_path: v.container_path.clone(),
                read_only: v.read_only,
            })
            .collect();
        volumes.sort();
        let Resources { memory, millicpus } = s.resources.clone();
        Self {
            container_name: c.container_name.clone(),
            image: image.into(),
            command: s.command.clone(),
            args: s.args.clone(),
            env,
            ports,
            volumes,
            restart: match s.restart {
                RestartPolicy::Always => "always",
                RestartPolicy::OnFailure => "on-failure",
                RestartPolicy::Never => "never",
            }
            .to_owned(),
            memory,
            millicpus,
            labels: s.labels.clone(),
            probes: render_probes(&s.health),
            offered_secrets: offered.cloned(),
            network: c.network.clone(),
        }
    }

    /// The canonical JSON of this spec: keys sorted, no whitespace. Stored in the
    /// `orun.spec` label and hashed into `orun.spec-hash`.
    pub fn canonical_json(&self) -> String {
        // Serializing plain data with string keys cannot fail; a Value round trip sorts keys.
        let value = serde_json::to_value(self).unwrap_or_default();
        value.to_string()
    }

    /// The identity of this spec: `sha256` of its canonical JSON, as 64 hex digits.
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// Flattens the spec into `field → value` for comparing two generations. Env values
    /// appear as digests; `plan` shows every env value as `***`.
    pub fn fields(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        out.insert("containerName".to_owned(), self.container_name.clone());
        out.insert("image".to_owned(), self.image.clone());
        if let Some(c) = &self.command {
            out.insert("command".to_owned(), format!("{c:?}"));
        }
        if let Some(a) = &self.args {
            out.insert("args".to_owned(), format!("{a:?}"));
        }
        for (k, v) in &self.env {
            // Compared, never shown: `plan` masks every env value as `***` (RELIABILITY A15).
            let compared = match v {
                RenderedEnv::Plain(p) => secret_digest(p.as_bytes()),
                RenderedEnv::Secret(d) => format!("secret {d}"),
            };
            out.insert(format!("env.{k}"), compared);
        }
        for p in &self.ports {
            // Keyed by the whole mapping: one container port may be published twice.
            let key = match p.host_port {
                Some(h) => format!(
                    "ports.{}:{h}->{}/{}",
                    p.host_ip, p.container_port, p.protocol
                ),
                None => format!("ports.{}/{}", p.container_port, p.protocol),
            };
            out.insert(key, "published".to_owned());
        }
        for v in &self.volumes {
            let mode = if v.read_only { ":ro" } else { "" };
            out.insert(
                format!("volumes.{}", v.container_path),
                format!("{}{mode}", v.host_path),
            );
        }
        out.insert("restart".to_owned(), self.restart.clone());
        if let Some(m) = self.memory {
            out.insert("resources.memory".to_owned(), m.to_string());
        }
        if let Some(c) = self.millicpus {
            out.insert(
                "resources.cpus".to_owned(),
                format!("{}", f64::from(c) / 1000.0),
            );
        }
        for (k, v) in &self.labels {
            out.insert(format!("labels.{k}"), v.clone());
        }
        for (k, v) in &self.probes {
            out.insert(format!("health.{k}"), v.clone());
        }
        if let Some(o) = &self.offered_secrets {
            // Compared by digest; `plan` shows it masked, like every env value.
            out.insert("env.(secrets.yaml)".to_owned(), o.digest.clone());
        }
        if let Some(n) = &self.network {
            out.insert("network".to_owned(), n.clone());
        }
        out
    }
}

fn render_port(p: &PortMapping) -> RenderedPort {
    RenderedPort {
        container_port: p.container_port,
        host_port: p.host_port,
        host_ip: p.host_ip.to_string(),
        protocol: match p.protocol {
            manifest_model::Protocol::Tcp => "tcp",
            manifest_model::Protocol::Udp => "udp",
        }
        .to_owned(),
    }
}

fn render_probes(h: &Health) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, probe) in [("readiness", &h.readiness), ("liveness", &h.liveness)] {
        if let Some(p) = probe {
            out.insert(
                name.to_owned(),
                format!(
                    "{} every {}s, timeout {}s, {} failures, delay {}s",
                    p.http.as_str(),
                    p.period_seconds,
                    p.timeout_seconds,
                    p.failure_threshold,
                    p.initial_delay_seconds
                ),
            );
        }
    }
    out
}

/// How a replace overlaps old and new containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplaceStrategy {
    /// New container beside the old; the old goes when the new is healthy.
    StartFirst,
    /// Old container stopped first (host ports would clash), kept until the new is healthy.
    StopFirst,
}

/// One deployment as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredDeployment {
    /// The Deployment's name.
    pub name: String,
    /// The container it renders to.
    pub spec: RenderedSpec,
    /// `spec.hash()`, computed once.
    pub spec_hash: String,
    /// The local image id of `spec.image`; `None` when the image is not on the host.
    pub image_id: Option<String>,
    /// How a replace overlaps old and new.
    pub strategy: ReplaceStrategy,
    /// Leave the deployment exactly as it runs.
    pub suspend: bool,
}

impl DesiredDeployment {
    /// Builds a desired deployment, hashing its spec.
    pub fn new(
        name: impl Into<String>,
        spec: RenderedSpec,
        image_id: Option<String>,
        strategy: ReplaceStrategy,
        suspend: bool,
    ) -> Self {
        let spec_hash = spec.hash();
        Self {
            name: name.into(),
            spec,
            spec_hash,
            image_id,
            strategy,
            suspend,
        }
    }
}

/// What one node should run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// The node's name: containers labelled `orun.node=<node>` (and this environment) are ours.
    pub node: String,
    /// The environment, named by the branch the node tracks exactly as Git names it (not its
    /// DNS-label id, which folds case and punctuation): written as `orun.environment`, so
    /// agents of two distinct branches never own each other's containers.
    pub environment: String,
    /// The commit the desired state comes from, for reasons.
    pub commit: Option<String>,
    /// Deployments on this node.
    pub deployments: Vec<DesiredDeployment>,
    /// Node-local permission to remove every deployment at once.
    pub allow_empty: bool,
}

impl Desired {
    /// The desired state of a resolved node. `image_id` looks up the local id of an image
    /// reference (`None` when the image is not on the host); `fps` are the fingerprints of
    /// its secret values ([`manifest_model::unlock`]).
    pub fn from_node(
        node: &DesiredNode,
        commit: Option<String>,
        mut image_id: impl FnMut(&str) -> Option<String>,
        fps: &Fingerprints,
    ) -> Self {
        let offered = node
            .secrets
            .as_deref()
            .filter(|_| node.node.spec.offer_secrets)
            .map(|f| OfferedSecrets::of(f, fps));
        let deployments = node
            .containers
            .iter()
            .map(|c| {
                let image = image_of(c);
                let id = image_id(&image);
                let strategy = strategy_of(&c.spec);
                DesiredDeployment::new(
                    c.deployment.clone(),
                    RenderedSpec::from_container(c, image, offered.as_ref(), fps),
                    id,
                    strategy,
                    c.spec.suspend,
                )
            })
            .collect();
        Self {
            node: node.node.name.clone(),
            environment: node.branch.clone(),
            commit,
            deployments,
            allow_empty: false,
        }
    }
}

/// Secret values `orun plan` could not check, for one deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unchecked {
    /// The deployment.
    pub deployment: String,
    /// `env.<NAME>` per unchecked value, and `secrets.yaml` for the offer.
    pub fields: Vec<String>,
}

impl Desired {
    /// Without the node's keys a secret's identity is [`UNCHECKED`]. Takes each one from the
    /// spec recorded on the container that runs the deployment now (its `orun.spec` label),
    /// so the plan shows only what could be checked, and returns which values those were. A
    /// value the running container does not have stays [`UNCHECKED`]: that env entry is new
    /// and shows as a change anyway.
    pub fn assume_unchecked(&mut self, actual: &crate::Actual) -> Vec<Unchecked> {
        let mut out = Vec::new();
        for d in &mut self.deployments {
            let mut fields: Vec<String> = d
                .spec
                .env
                .iter()
                .filter(|(_, v)| matches!(v, RenderedEnv::Secret(s) if s == UNCHECKED))
                .map(|(k, _)| format!("env.{k}"))
                .collect();
            let offer = d
                .spec
                .offered_secrets
                .as_ref()
                .is_some_and(|o| o.digest == UNCHECKED);
            if offer {
                fields.push("secrets.yaml".to_owned());
            }
            if fields.is_empty() {
                continue;
            }
            // The container under the deployment's own name first: a parked or temporary
            // one may hold an older spec.
            let mut owned: Vec<&crate::ObservedContainer> = actual
                .containers
                .iter()
                .filter(|c| {
                    c.owner().is_some_and(|o| {
                        o.node == self.node
                            && o.environment == self.environment
                            && o.deployment == d.name
                    })
                })
                .collect();
            owned.sort_by_key(|c| c.name != d.spec.container_name);
            let running: Option<RenderedSpec> = owned
                .into_iter()
                .find_map(|c| serde_json::from_str(c.labels().get(crate::LABEL_SPEC)?).ok());
            if let Some(old) = running {
                for (k, v) in &mut d.spec.env {
                    if let (RenderedEnv::Secret(s), Some(RenderedEnv::Secret(was))) =
                        (&mut *v, old.env.get(k))
                        && s == UNCHECKED
                    {
                        s.clone_from(was);
                    }
                }
                if let (Some(o), Some(was)) = (&mut d.spec.offered_secrets, &old.offered_secrets)
                    && o.digest == UNCHECKED
                {
                    o.digest.clone_from(&was.digest);
                }
                d.spec_hash = d.spec.hash();
            }
            out.push(Unchecked {
                deployment: d.name.clone(),
                fields,
            });
        }
        out
    }
}

/// The image a container runs: the manifest's reference, or the tag a node-local build gets
/// (`orun-build/<container name>:<hash of the build spec and its input>`; the container name
/// carries the environment, so two environments on one host never share a tag). The tag enters the
/// spec hash, so a deployment is replaced exactly when its build changed: its spec, its
/// context's content (`on-change`) or the commit (`always`).
pub fn image_of(c: &DesiredContainer) -> String {
    match &c.spec.source {
        ImageSource::Image(r) => r.to_string(),
        ImageSource::Build(b) => {
            let mut h = Sha256::new();
            h.update(serde_json::to_string(b).unwrap_or_default().as_bytes());
            if let Some(input) = &c.build_input {
                h.update(b"\0");
                h.update(input.as_bytes());
            }
            format!(
                "{BUILD_REPOSITORY}/{}:{}",
                c.container_name,
                &hex(&h.finalize())[..16]
            )
        }
    }
}

/// Where node-local builds are tagged: `orun-build/<container name>:<hash>`.
pub const BUILD_REPOSITORY: &str = "orun-build";

/// `auto` resolves to stop-first when a host port is published, start-first otherwise.
pub fn strategy_of(spec: &DeploymentSpec) -> ReplaceStrategy {
    match spec.rollout.strategy {
        RolloutStrategy::StartFirst => ReplaceStrategy::StartFirst,
        RolloutStrategy::StopFirst => ReplaceStrategy::StopFirst,
        RolloutStrategy::Auto if spec.publishes_host_port() => ReplaceStrategy::StopFirst,
        RolloutStrategy::Auto => ReplaceStrategy::StartFirst,
    }
}

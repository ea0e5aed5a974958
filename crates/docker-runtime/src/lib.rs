//! Observes and changes the local Docker daemon on the agent's behalf.
//!
//! This crate owns everything that talks to Docker (through `bollard`, known to no other
//! crate): observing every container with its labels and state, looking up local image ids,
//! and creating, starting, stopping, unpausing, restarting, renaming and removing containers;
//! inspecting one (health, restart count, address, log tail) for health gates; pulls with
//! progress, and the digest a registry serves for a tag against the local image's, with
//! registry logins from Docker config files and credential helpers; and the events stream.
//!
//! It does not decide what to change: that is `reconcile-core`'s plan. Docker's answers are
//! turned into `reconcile-core`'s [`Actual`] at once, so no Docker type leaves this crate, and
//! Docker's status codes become a typed [`RuntimeError`] with [`RuntimeError::is_transient`].

mod auth;
mod build;
pub mod context;
mod events;
mod images;
mod ingress;
mod inspect;
pub mod policy;
mod pull;
mod registry;

use std::collections::{BTreeMap, HashMap};

pub use auth::RegistryAuth;
pub use build::{BUILD_TAIL_LINES, BuildProgress, BuildRequest, LABEL_BUILT_FROM};
pub use events::WatchEvent;
pub use images::ImageFacts;
pub use ingress::{IngressContainer, IngressFound, LABEL_INGRESS, LABEL_INGRESS_SPEC};
pub use inspect::ContainerInfo;
pub use pull::{PullProgress, moved, registry_of};
pub use registry::head_digest;

use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::models::{
    ContainerSummary, ContainerSummaryHealthStatusEnum, ContainerSummaryStateEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use reconcile_core::{
    Actual, ContainerState, HealthStatus, LABEL_COMMIT, LABEL_DEPLOYMENT, LABEL_ENVIRONMENT,
    LABEL_NODE, LABEL_SPEC, LABEL_SPEC_HASH, ObservedContainer, ObservedFields, RenderedEnv,
    RenderedSpec,
};

/// Everything that can go wrong talking to Docker.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The daemon could not be reached or its API version negotiated.
    #[error("cannot reach Docker at {host}")]
    Connect {
        /// Where we looked.
        host: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Docker answered 404.
    #[error("not found: {0}")]
    NotFound(String),
    /// Docker answered 409 (a name in use, a container in the wrong state).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Docker answered with another error status.
    #[error("docker answered {status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Docker's message.
        message: String,
    },
    /// A pull failed: the registry's reason (no such image, unauthorised, unreachable).
    #[error("cannot pull {image}: {message}")]
    Pull {
        /// The image reference.
        image: String,
        /// Docker's reason (names no credential).
        message: String,
    },
    /// A registry refused the login given for it (or its absence): the registry is named, so
    /// an operator knows which login to fix.
    #[error("registry {registry} refused the credentials for {image}: {message}")]
    RegistryAuth {
        /// The registry, as [`registry_of`] names it (`docker.io`, `127.0.0.1:5000`).
        registry: String,
        /// The image reference.
        image: String,
        /// Docker's reason (names no credential).
        message: String,
    },
    /// A credential helper (`docker-credential-<name>`) could not give a login: it is missing,
    /// failed, timed out or answered nonsense. Never holds what it wrote, which may be secret.
    #[error("credential helper {helper} failed for registry {registry}: {reason}")]
    CredentialHelper {
        /// The helper program's name.
        helper: String,
        /// The registry it was asked about.
        registry: String,
        /// What went wrong: an exit status, a timeout, a missing program.
        reason: String,
    },
    /// A configuration file (the Docker client config) cannot be used.
    #[error("{0}")]
    Config(String),
    /// A secret the spec needs was not supplied. The key is kept for the caller, and left out
    /// of the message, which may reach a log or `/status`: a key is manifest text.
    #[error("no value supplied for a secret env var")]
    MissingSecret(String),
    /// The spec holds a value Docker would misread or drop (a `:` in a bind path, a memory
    /// limit beyond its range, a NUL): refused before Docker sees it, never passed on
    /// altered. Validation refuses these in manifests; this guards specs built otherwise.
    #[error("the spec cannot be given to Docker: {0}")]
    Unrepresentable(&'static str),
    /// The node's host policy refuses the container: each field and why. Never retried:
    /// the same request is refused again until the manifest or the policy changes.
    #[error("refused by this node's host policy: {0}")]
    Policy(String),
    /// A build context cannot be packed (missing folder or Dockerfile, a cap reached). The
    /// message names paths in the repository, never file content.
    #[error("{0}")]
    Context(String),
    /// A build failed: Docker's reason and the last lines of its output, with secret
    /// values masked by the caller's redactor.
    #[error("building {image} failed: {message}")]
    Build {
        /// The tag being built.
        image: String,
        /// The failing step's error and the output before it.
        message: String,
    },
    /// The request failed on the way (socket closed, timeout, bad response).
    #[error("request to Docker failed")]
    Transport {
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl RuntimeError {
    /// Whether retrying the same request later may succeed: transport failures and server
    /// errors are; not-found, conflicts and client errors are not.
    pub fn is_transient(&self) -> bool {
        match self {
            RuntimeError::Connect { .. } | RuntimeError::Transport { .. } => true,
            RuntimeError::Api { status, .. } => *status >= 500,
            // A registry may come back; the agent retries pulls with backoff.
            // Helpers are asked again at each attempt, so a login fixed meanwhile (a rotated
            // token, a keychain unlocked) is used then; these were `Pull` errors before.
            RuntimeError::Pull { .. }
            | RuntimeError::RegistryAuth { .. }
            | RuntimeError::CredentialHelper { .. } => true,
            // A build may fetch from the network; the agent retries with backoff too.
            RuntimeError::Build { .. } => true,
            RuntimeError::Config(_)
            | RuntimeError::Context(_)
            | RuntimeError::NotFound(_)
            | RuntimeError::Conflict(_)
            | RuntimeError::MissingSecret(_)
            | RuntimeError::Unrepresentable(_)
            | RuntimeError::Policy(_) => false,
        }
    }

    /// Whether Docker could not be asked at all. Any answer it gave, even a 500 (how it
    /// reports a host port already allocated), is about the request: a rollout rolls back on
    /// it rather than waiting for Docker to come back.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            RuntimeError::Connect { .. } | RuntimeError::Transport { .. }
        )
    }

    fn from_bollard(e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError {
                status_code: 404,
                message,
            } => RuntimeError::NotFound(message),
            B::DockerResponseServerError {
                status_code: 409,
                message,
            } => RuntimeError::Conflict(message),
            B::DockerResponseServerError {
                status_code,
                message,
            } => RuntimeError::Api {
                status: status_code,
                message,
            },
            other => RuntimeError::Transport {
                source: Box::new(other),
            },
        }
    }
}

/// A connection to one Docker daemon, with the API version negotiated.
#[derive(Clone, Debug)]
pub struct Docker {
    api: bollard::Docker,
    /// What every container created from a spec must pass ([`policy::check`]).
    guard: std::sync::Arc<policy::Guard>,
}

impl Docker {
    /// Connects to `host` (`unix:///var/run/docker.sock`, `tcp://…`), or to `DOCKER_HOST` /
    /// the local socket when `None`, and negotiates the API version.
    ///
    /// # Errors
    /// [`RuntimeError::Connect`] when the daemon does not answer.
    pub async fn connect(host: Option<&str>) -> Result<Self, RuntimeError> {
        let shown = host
            .map(str::to_owned)
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let connect_err = |e: bollard::errors::Error| RuntimeError::Connect {
            host: shown.clone(),
            source: Box::new(e),
        };
        let api = match host {
            Some(h) => bollard::Docker::connect_with_host(h),
            None => bollard::Docker::connect_with_defaults(),
        }
        .map_err(connect_err)?;
        let api = api.negotiate_version().await.map_err(connect_err)?;
        Ok(Self {
            api,
            guard: std::sync::Arc::default(),
        })
    }

    /// Judges every container this handle creates from a spec by `guard` (the node's host
    /// policy). Without it, the default policy: no host path may be bound.
    #[must_use]
    pub fn with_guard(mut self, guard: policy::Guard) -> Self {
        self.guard = std::sync::Arc::new(guard);
        self
    }

    /// The negotiated API version, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        self.api.client_version().to_string()
    }

    /// Every container on the host, in any state, managed or not. Read-only.
    ///
    /// # Errors
    /// When Docker does not answer or refuses.
    pub async fn observe(&self) -> Result<Actual, RuntimeError> {
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let list = self
            .api
            .list_containers(Some(options))
            .await
            .map_err(RuntimeError::from_bollard)?;
        Ok(Actual {
            containers: list.into_iter().filter_map(observed).collect(),
            images: BTreeMap::new(),
        })
    }

    /// The containers among `ids` that still exist, as [`Docker::observe`] would list them:
    /// one filtered listing, however many ids, so a burst of events costs dockerd one answer.
    /// An id missing from the answer is gone. Read-only.
    ///
    /// # Errors
    /// When Docker does not answer or refuses.
    pub async fn observe_ids(
        &self,
        ids: &[String],
    ) -> Result<Vec<ObservedContainer>, RuntimeError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let filters = HashMap::from([("id", ids.to_vec())]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .api
            .list_containers(Some(options))
            .await
            .map_err(RuntimeError::from_bollard)?;
        // Docker matches the filter as a pattern; only an exact id is an answer.
        Ok(list
            .into_iter()
            .filter_map(observed)
            .filter(|c| ids.contains(&c.id))
            .collect())
    }

    /// The local ids of `references` that are on the host, from one image listing plus an
    /// inspect only for references the listing does not spell the same way (Docker Hub's
    /// `docker.io/library/` forms, for example). Missing images are left out.
    ///
    /// # Errors
    /// When Docker does not answer.
    pub async fn image_ids(
        &self,
        references: &[String],
    ) -> Result<BTreeMap<String, String>, RuntimeError> {
        let listed = self
            .api
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .map_err(RuntimeError::from_bollard)?;
        let mut by_name: HashMap<&str, &str> = HashMap::new();
        for image in &listed {
            for name in image.repo_tags.iter().chain(image.repo_digests.iter()) {
                by_name.insert(name.as_str(), image.id.as_str());
            }
        }
        let mut out = BTreeMap::new();
        for r in references {
            if let Some(id) = by_name.get(r.as_str()) {
                out.insert(r.clone(), (*id).to_owned());
            } else if let Some(id) = self.image_id(r).await? {
                out.insert(r.clone(), id);
            }
        }
        Ok(out)
    }

    /// The local id of an image reference, or `None` when the image is not on the host.
    ///
    /// # Errors
    /// When Docker does not answer, or answers with anything but the image or a 404.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>, RuntimeError> {
        match self
            .api
            .inspect_image(reference)
            .await
            .map_err(RuntimeError::from_bollard)
        {
            Ok(image) => Ok(image.id),
            Err(RuntimeError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Who a created container belongs to: written as orun's ownership labels.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    /// `orun.node`.
    pub node: &'a str,
    /// `orun.environment`.
    pub environment: &'a str,
    /// `orun.deployment`.
    pub deployment: &'a str,
    /// `orun.commit`, when known.
    pub commit: Option<&'a str>,
}

impl Docker {
    /// Creates (does not start) a container for `spec` under `name`, labelled for `owner`.
    ///
    /// `secrets` holds the plaintext of every env entry that `spec` knows only as a secret
    /// digest, and of every `secrets.yaml` key it is offered; the values go to Docker and
    /// nowhere else (not into labels, logs or errors).
    ///
    /// # Errors
    /// [`RuntimeError::MissingSecret`], [`RuntimeError::Unrepresentable`] or
    /// [`RuntimeError::Policy`] before Docker is asked; [`RuntimeError::NotFound`] when the image is not on the host,
    /// [`RuntimeError::Conflict`] when the name is taken, or what else Docker says.
    pub async fn create(
        &self,
        name: &str,
        spec: &RenderedSpec,
        owner: Owner<'_>,
        secrets: &BTreeMap<String, reconcile_core::Secret>,
    ) -> Result<String, RuntimeError> {
        let body = create_body(spec, owner, Some(secrets))?;
        // Judged here, over the very request Docker gets, whatever judged the revision
        // before: nothing built later reaches Docker without passing the node's policy.
        let refused = policy::check(&body, owner.deployment, &self.guard, &policy::RealHost);
        if !refused.is_empty() {
            return Err(RuntimeError::Policy(
                refused
                    .into_iter()
                    .map(|v| format!("{}: {}", v.field, v.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        let created = self
            .api
            .create_container(Some(options), body)
            .await
            .map_err(RuntimeError::from_bollard)?;
        Ok(created.id)
    }

    /// Starts a container.
    ///
    /// # Errors
    /// What Docker says (e.g. a host port already taken).
    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.api
            .start_container(id, None)
            .await
            .map_err(RuntimeError::from_bollard)
    }

    /// Stops a container, giving it `grace_seconds` before it is killed.
    ///
    /// # Errors
    /// What Docker says.
    pub async fn stop(&self, id: &str, grace_seconds: i32) -> Result<(), RuntimeError> {
        let options = StopContainerOptionsBuilder::default()
            .t(grace_seconds)
            .build();
        self.api
            .stop_container(id, Some(options))
            .await
            .map_err(RuntimeError::from_bollard)
    }

    /// Unpauses a container.
    ///
    /// # Errors
    /// What Docker says.
    pub async fn unpause(&self, id: &str) -> Result<(), RuntimeError> {
        self.api
            .unpause_container(id)
            .await
            .map_err(RuntimeError::from_bollard)
    }

    /// Renames a container.
    ///
    /// # Errors
    /// [`RuntimeError::Conflict`] when the name is taken.
    pub async fn rename(&self, id: &str, name: &str) -> Result<(), RuntimeError> {
        let options = RenameContainerOptionsBuilder::default().name(name).build();
        self.api
            .rename_container(id, options)
            .await
            .map_err(RuntimeError::from_bollard)
    }

    /// Removes a container, stopping it first if it runs. Its volumes are left alone.
    ///
    /// # Errors
    /// What Docker says; a container already gone is not an error.
    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self
            .api
            .remove_container(id, Some(options))
            .await
            .map_err(RuntimeError::from_bollard)
        {
            Err(RuntimeError::NotFound(_)) => Ok(()),
            other => other,
        }
    }
}

/// One listed container as the planner sees it; `None` for an entry without an id.
fn observed(c: ContainerSummary) -> Option<ObservedContainer> {
    let id = c.id?;
    let name = c
        .names
        .and_then(|n| n.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_default();
    let state = match c.state {
        Some(ContainerSummaryStateEnum::RUNNING) => ContainerState::Running,
        Some(ContainerSummaryStateEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerSummaryStateEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerSummaryStateEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerSummaryStateEnum::DEAD) => ContainerState::Dead,
        Some(ContainerSummaryStateEnum::STOPPING) => ContainerState::Stopping,
        Some(ContainerSummaryStateEnum::EXITED) => ContainerState::Exited {
            code: c.status.as_deref().and_then(exit_code).unwrap_or(0),
        },
        _ => ContainerState::Created,
    };
    // Newer APIs list a health object; API 1.41 (Docker 20.10) only says it in the status text.
    let health = match c.health.and_then(|h| h.status) {
        Some(ContainerSummaryHealthStatusEnum::STARTING) => Some(HealthStatus::Starting),
        Some(ContainerSummaryHealthStatusEnum::HEALTHY) => Some(HealthStatus::Healthy),
        Some(ContainerSummaryHealthStatusEnum::UNHEALTHY) => Some(HealthStatus::Unhealthy),
        _ => c.status.as_deref().and_then(health_from_status),
    };
    let mut observed = ObservedContainer::from(ObservedFields {
        id,
        name,
        image_id: c.image_id.unwrap_or_default(),
        state,
        health,
        labels: c.labels.unwrap_or_default().into_iter().collect(),
    });
    observed.addresses = c
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(net, e)| Some((net, e.ip_address.filter(|ip| !ip.is_empty())?)))
        .collect();
    Some(observed)
}

/// The health in Docker's status text: `Up 3 seconds (health: starting)`, `(healthy)`,
/// `(unhealthy)`.
fn health_from_status(status: &str) -> Option<HealthStatus> {
    if status.ends_with("(health: starting)") {
        Some(HealthStatus::Starting)
    } else if status.ends_with("(unhealthy)") {
        Some(HealthStatus::Unhealthy)
    } else if status.ends_with("(healthy)") {
        Some(HealthStatus::Healthy)
    } else {
        None
    }
}

/// The code in Docker's status text, `Exited (137) 5 minutes ago`.
fn exit_code(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest[..rest.find(')')?].parse().ok()
}

/// The labels a container created for `spec` and `owner` carries: the spec's own, then
/// orun's ownership labels, the spec hash and the spec itself (which win over the spec's).
pub fn labels(spec: &RenderedSpec, owner: Owner<'_>) -> BTreeMap<String, String> {
    let mut labels = spec.labels.clone();
    labels.insert(LABEL_NODE.to_owned(), owner.node.to_owned());
    labels.insert(LABEL_ENVIRONMENT.to_owned(), owner.environment.to_owned());
    labels.insert(LABEL_DEPLOYMENT.to_owned(), owner.deployment.to_owned());
    labels.insert(LABEL_SPEC_HASH.to_owned(), spec.hash());
    labels.insert(LABEL_SPEC.to_owned(), spec.canonical_json());
    if let Some(c) = owner.commit {
        labels.insert(LABEL_COMMIT.to_owned(), c.to_owned());
    }
    labels
}

/// The create request for `spec` as the node's policy sees it: everything but secret
/// values, which it does not look at.
///
/// # Errors
/// [`RuntimeError::Unrepresentable`] when a value would be misread or dropped by Docker.
pub(crate) fn request(
    spec: &RenderedSpec,
    deployment: &str,
) -> Result<ContainerCreateBody, RuntimeError> {
    let owner = Owner {
        node: "",
        environment: "",
        deployment,
        commit: None,
    };
    create_body(spec, owner, None)
}

/// The create request for `spec`: pure, so what reaches Docker is tested without one.
/// Without `secrets`, secret env vars are left out rather than missing.
///
/// # Errors
/// [`RuntimeError::MissingSecret`] when a secret has no value; [`RuntimeError::Unrepresentable`]
/// when a value would be misread or dropped by Docker.
fn create_body(
    spec: &RenderedSpec,
    owner: Owner<'_>,
    secrets: Option<&BTreeMap<String, reconcile_core::Secret>>,
) -> Result<ContainerCreateBody, RuntimeError> {
    let mut env = Vec::with_capacity(spec.env.len());
    for (k, v) in &spec.env {
        match v {
            RenderedEnv::Plain(p) => env.push(format!("{k}={p}")),
            RenderedEnv::Secret(_) => match secrets.map(|s| s.get(k)) {
                Some(Some(p)) => env.push(format!("{k}={}", p.expose())),
                Some(None) => return Err(RuntimeError::MissingSecret(k.clone())),
                None => {}
            },
        }
    }
    // Every `secrets.yaml` key the container's own env does not set: a clear value as the
    // file holds it, an encrypted one decrypted by the caller.
    if let Some(offered) = &spec.offered_secrets {
        for (k, plain) in offered
            .entries
            .iter()
            .filter(|(k, _)| !spec.env.contains_key(k))
        {
            match plain
                .as_deref()
                .or_else(|| secrets?.get(k).map(reconcile_core::Secret::expose))
            {
                Some(p) => env.push(format!("{k}={p}")),
                None if secrets.is_none() => {}
                None => return Err(RuntimeError::MissingSecret(k.clone())),
            }
        }
    }
    let words = spec.command.iter().chain(&spec.args).flatten();
    let labels_text = spec.labels.iter().flat_map(|(k, v)| [k, v]);
    if env
        .iter()
        .chain(words)
        .chain(labels_text)
        .any(|e| e.contains('\0'))
    {
        // Docker's API carries C strings: a NUL would cut the value short.
        return Err(RuntimeError::Unrepresentable(
            "an env var, command word or label holds a NUL",
        ));
    }
    let labels: HashMap<String, String> = labels(spec, owner).into_iter().collect();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        if seen.insert(key.clone()) {
            exposed.push(key.clone());
        }
        if let Some(host_port) = p.host_port {
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(p.host_ip.clone()),
                    host_port: Some(host_port.to_string()),
                });
        }
    }
    // The loader refuses these in manifests (`manifest_model::values::bind_path`); this
    // crate does not see the loader, and a spec may be built without it: checked again here.
    if spec.volumes.iter().any(|v| {
        v.host_path.contains([':', ','])
            || v.container_path.contains([':', ','])
            || v.host_path.is_empty()
            || v.container_path.is_empty()
    }) {
        // Docker splits `host:container:options` on `:`: a path holding one would set
        // mount options (SELinux relabel, propagation) no manifest may set.
        return Err(RuntimeError::Unrepresentable(
            "a bind path is empty or holds `:` or `,`",
        ));
    }
    let binds = spec
        .volumes
        .iter()
        .map(|v| {
            format!(
                "{}:{}{}",
                v.host_path,
                v.container_path,
                if v.read_only { ":ro" } else { "" }
            )
        })
        .collect();
    let memory = spec
        .memory
        .map(i64::try_from)
        .transpose()
        .map_err(|_| RuntimeError::Unrepresentable("the memory limit is out of range"))?;
    let restart = match spec.restart.as_str() {
        "never" => RestartPolicyNameEnum::NO,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => RestartPolicyNameEnum::ALWAYS,
    };
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.command.clone(),
        cmd: spec.args.clone(),
        env: Some(env),
        labels: Some(labels),
        exposed_ports: Some(exposed),
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            binds: Some(binds),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            memory,
            nano_cpus: spec.millicpus.map(|m| i64::from(m) * 1_000_000),
            // The ingress network instead of the default bridge: the one address the
            // ingress routes to, and a name other containers of the network resolve.
            network_mode: spec.network.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_from_status_text() {
        assert_eq!(exit_code("Exited (137) 5 minutes ago"), Some(137));
        assert_eq!(exit_code("Exited (0) About a minute ago"), Some(0));
        assert_eq!(exit_code("Up 3 seconds"), None);
        assert_eq!(exit_code("Exited (x"), None);
    }

    #[test]
    fn health_from_status_text() {
        assert_eq!(
            health_from_status("Up 1 second (health: starting)"),
            Some(HealthStatus::Starting)
        );
        assert_eq!(
            health_from_status("Up 5 minutes (healthy)"),
            Some(HealthStatus::Healthy)
        );
        assert_eq!(
            health_from_status("Up 5 minutes (unhealthy)"),
            Some(HealthStatus::Unhealthy)
        );
        assert_eq!(health_from_status("Up 5 minutes"), None);
    }

    #[test]
    fn transient_errors() {
        assert!(
            RuntimeError::Api {
                status: 500,
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !RuntimeError::Api {
                status: 400,
                message: String::new()
            }
            .is_transient()
        );
        assert!(!RuntimeError::NotFound("x".into()).is_transient());
        assert!(!RuntimeError::Conflict("x".into()).is_transient());
        let port_taken = RuntimeError::Api {
            status: 500,
            message: "port is already allocated".into(),
        };
        assert!(port_taken.is_transient() && !port_taken.is_unreachable());
    }

    fn spec() -> RenderedSpec {
        RenderedSpec {
            container_name: "web".into(),
            image: "nginx:1".into(),
            command: None,
            args: None,
            env: BTreeMap::from([("A".into(), RenderedEnv::Plain("1".into()))]),
            ports: Vec::new(),
            volumes: vec![reconcile_core::RenderedVolume {
                host_path: "/srv/web".into(),
                container_path: "/data".into(),
                read_only: true,
            }],
            restart: "always".into(),
            memory: Some(256 << 20),
            millicpus: None,
            labels: BTreeMap::new(),
            probes: BTreeMap::new(),
            offered_secrets: None,
            network: None,
        }
    }

    const OWNER: Owner<'static> = Owner {
        node: "n1",
        environment: "main",
        deployment: "web",
        commit: None,
    };

    fn refused(spec: &RenderedSpec, secrets: &BTreeMap<String, reconcile_core::Secret>) -> String {
        create_body(spec, OWNER, Some(secrets))
            .unwrap_err()
            .to_string()
    }

    /// Issue 12, classes 7 and 8: a spec Docker would misread is refused, never altered.
    #[test]
    fn what_docker_would_misread_is_refused_not_altered() {
        let none = BTreeMap::new();
        let body = create_body(&spec(), OWNER, Some(&none)).unwrap();
        let host = body.host_config.unwrap();
        assert_eq!(host.binds, Some(vec!["/srv/web:/data:ro".to_owned()]));
        assert_eq!(host.memory, Some(256 << 20));

        let mut s = spec();
        s.volumes[0].host_path = "/srv/web:Z".into();
        assert_eq!(
            refused(&s, &none),
            "the spec cannot be given to Docker: a bind path is empty or holds `:` or `,`"
        );
        let mut s = spec();
        s.volumes[0].container_path = "/data,rshared".into();
        assert!(refused(&s, &none).contains("bind path"));
        let mut s = spec();
        s.memory = Some(u64::MAX);
        assert_eq!(
            refused(&s, &none),
            "the spec cannot be given to Docker: the memory limit is out of range"
        );
        let mut s = spec();
        s.args = Some(vec!["a\0b".into()]);
        assert!(refused(&s, &none).contains("NUL"));
        let mut s = spec();
        s.env.insert("B".into(), RenderedEnv::Plain("x\0".into()));
        assert!(refused(&s, &none).contains("NUL"));
    }

    /// `secrets.yaml` is offered by key; the container's own env wins; a clear entry needs no
    /// value from the caller; a missing one is refused without naming the key in the message
    /// (a key is manifest text).
    #[test]
    fn offered_secrets_reach_the_env_and_nothing_else() {
        let mut s = spec();
        s.offered_secrets = Some(reconcile_core::OfferedSecrets {
            digest: "sha256:offer".into(),
            entries: std::sync::Arc::from(vec![
                ("A".to_owned(), None),
                ("REGION_unencrypted".to_owned(), Some("eu".to_owned())),
                ("TOKEN".to_owned(), None),
            ]),
        });
        let secrets =
            BTreeMap::from([("TOKEN".to_owned(), reconcile_core::Secret::new("hunter2"))]);
        let body = create_body(&s, OWNER, Some(&secrets)).unwrap();
        // Its own `A` wins; the clear entry comes from the file; `TOKEN` from the caller.
        assert_eq!(
            body.env,
            Some(vec![
                "A=1".to_owned(),
                "REGION_unencrypted=eu".to_owned(),
                "TOKEN=hunter2".to_owned()
            ])
        );
        let labels = format!("{:?}", body.labels);
        assert!(!labels.contains("hunter2"), "{labels}");
        assert_eq!(
            refused(&s, &BTreeMap::new()),
            "no value supplied for a secret env var"
        );
    }
}

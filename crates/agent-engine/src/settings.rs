//! What the engine is told at start: which node it is, where its data dir is, which remote and
//! branch it follows and how. The binary builds it from flags, environment and file.

use std::path::PathBuf;
use std::time::Duration;

use gitsync::RemoteOptions;

/// The engine's settings, already checked.
#[derive(Debug)]
#[non_exhaustive]
pub struct Settings {
    /// This node's name (a file in `nodes/`).
    pub node: String,
    /// Node-local state: the Git mirror, the state file, the journal, the lock.
    pub data_dir: PathBuf,
    /// `None`: take the Node manifest's `pollInterval`.
    pub poll_interval: Option<Duration>,
    /// The Docker daemon; `None` for the local default.
    pub docker_host: Option<String>,
    /// The remote, the branch and how to authenticate. Without a branch, the engine follows
    /// the one this node's manifest on the remote's default branch names, found again on
    /// every poll.
    pub remote: RemoteOptions,
    /// Docker client config with registry logins; `None` for Docker's default place.
    pub registry_config: Option<PathBuf>,
    /// A revision may remove every deployment of this node at once.
    pub allow_remove_all: bool,
    /// One pass, then exit: skips what only a long-running agent needs.
    pub once: bool,
    /// The age key file (`--age-key-path`, else `SOPS_AGE_KEY_FILE`); `None`:
    /// `<data_dir>/keys/age.key`.
    pub age_key: Option<PathBuf>,
    /// The seed of the poll timer's jitter; `None` draws one from the process and the clock.
    pub jitter_seed: Option<u64>,
    /// The node's ingress (Caddy); off unless set.
    pub ingress: crate::IngressSettings,
    /// A node-local file of registry logins (Docker's `config.json` format), read besides
    /// the Docker config and winning over it.
    pub registry_credentials: Option<PathBuf>,
    /// How often a `pull: always` image asks its registry whether the tag moved.
    pub pull_check_interval: Duration,
    /// How long an image orun brought stays once nothing uses it.
    pub image_grace: Duration,
    /// The node policy (`--policy`): signed commits, host paths, the status token.
    pub policy: manifest_model::NodePolicy,
    /// Where the policy was read from, protected from containers as the data dir is.
    pub policy_file: Option<PathBuf>,
    /// Other node-local files the agent reads (its config file, `known_hosts`, the Git
    /// token file), protected the same way.
    pub own_files: Vec<PathBuf>,
}

/// Default of [`Settings::pull_check_interval`]: one `HEAD` of the manifest per image a
/// minute (docs/images.md: what a check costs).
pub const DEFAULT_PULL_CHECK: Duration = Duration::from_secs(60);
/// Default of [`Settings::image_grace`].
pub const DEFAULT_IMAGE_GRACE: Duration = Duration::from_secs(3600);

impl Settings {
    /// Settings for `node` following `remote`, with `data_dir`; the rest at defaults.
    pub fn new(node: String, data_dir: PathBuf, remote: RemoteOptions) -> Self {
        Self {
            node,
            data_dir,
            poll_interval: None,
            docker_host: None,
            remote,
            registry_config: None,
            allow_remove_all: false,
            once: false,
            age_key: None,
            jitter_seed: None,
            ingress: crate::IngressSettings::default(),
            registry_credentials: None,
            pull_check_interval: DEFAULT_PULL_CHECK,
            image_grace: DEFAULT_IMAGE_GRACE,
            policy: manifest_model::NodePolicy::default(),
            policy_file: None,
            own_files: Vec::new(),
        }
    }

    /// Protects these files too (see [`Settings::own_files`]).
    pub fn protect(&mut self, files: impl IntoIterator<Item = Option<PathBuf>>) {
        self.own_files.extend(files.into_iter().flatten());
    }

    /// Reads the node policy at `path` (`--policy`).
    ///
    /// # Errors
    /// [`crate::EngineError::Settings`] with every problem found, each with line and field.
    pub fn load_policy(&mut self, path: PathBuf) -> Result<(), crate::EngineError> {
        let policy = manifest_model::load_policy(&path)
            .map_err(|e| crate::EngineError::Settings(e.to_string()))?;
        self.policy = policy;
        self.policy_file = Some(path);
        Ok(())
    }

    /// The node's rules for the commits it applies, with their keys read; `None` when the
    /// policy does not require signed commits.
    ///
    /// # Errors
    /// A key file that cannot be read or holds no usable key.
    pub fn commit_rules(&self) -> Result<Option<crate::CommitRules>, crate::EngineError> {
        let Some(c) = &self.policy.commits else {
            return Ok(None);
        };
        let trust = gitsync::Trust::load(c.allowed_signers.as_deref(), c.openpgp_keys.as_deref())?;
        tracing::info!(keys = %trust.describe(), "commits must be signed by a trusted key");
        Ok(Some(crate::CommitRules {
            trust,
            allow_non_fast_forward: c.allow_non_fast_forward,
        }))
    }

    /// The host policy every container is judged by: the node's allowances, and the
    /// agent's own files protected as system paths are (a container that could bind them
    /// could rewrite what the agent trusts, or read its keys).
    pub fn guard(&self) -> docker_runtime::policy::Guard {
        let commits = self.policy.commits.iter().flat_map(|c| {
            [c.allowed_signers.as_ref(), c.openpgp_keys.as_ref()]
                .into_iter()
                .flatten()
        });
        let own = [
            Some(&self.data_dir),
            self.age_key.as_ref(),
            self.policy_file.as_ref(),
            self.policy.status_token_file.as_ref(),
            self.registry_credentials.as_ref(),
            self.registry_config.as_ref(),
            self.remote.ssh_key.as_ref(),
        ];
        let protected = own
            .into_iter()
            .flatten()
            .chain(commits)
            .chain(&self.own_files)
            .map(|p| {
                // Judged where it really is, as bind sources are.
                let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                p.display().to_string()
            })
            .filter(|p| p.starts_with('/'))
            .collect();
        docker_runtime::policy::Guard {
            host: self.policy.host.clone(),
            protected,
        }
    }
}

//! Node resolution: what one node of a revision should run.
//!
//! Given a validated revision and a node name, picks the deployments that target the node,
//! names their containers for the node's environment, and resolves Service domains.

use serde::Serialize;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::diag::{Diagnostic, Pos, escape_file_name};
use crate::error::ModelError;
use crate::model::{DeploymentSpec, Node, Protocol, Revision};
use crate::secret::{SealedFile, SecretsFile};
use crate::validate::{HostPorts, targets};
use crate::values;

/// The environment a node belongs to, from the branch it tracks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Environment {
    /// The branch made a DNS label (`feature/Login_x` → `feature-login-x`).
    pub id: String,
    /// Whether the node tracks the production branch.
    pub production: bool,
}

/// The name of the ingress network on a production node; prefixed `<env>.` elsewhere.
const NETWORK: &str = "orun-ingress";

/// One container the node should run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DesiredContainer {
    /// The Deployment's name.
    pub deployment: String,
    /// The Docker container name: the deployment's name, prefixed `<env>.` off production.
    pub container_name: String,
    /// The deployment's spec.
    pub spec: DeploymentSpec,
    /// The Docker network the node's ingress reaches it on ([`DesiredNode::network`]): set
    /// when a Service with a domain on this node routes to it, so it needs no host port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// What a built image depends on beyond its build spec: the digest of the build context
    /// (`on-change`) or the commit (`always`). Filled by whoever reads the context (the
    /// agent, `orun plan`); `None` for `image:` and `build-once` deployments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_input: Option<String>,
}

/// One route the node's ingress should serve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvedService {
    /// The Service's name.
    pub name: String,
    /// The Deployment routed to.
    pub deployment: String,
    /// Its container on this node.
    pub container_name: String,
    /// The domain on this node; `None` off production when the Service has no template.
    pub domain: Option<String>,
    /// Automatic HTTPS.
    pub ssl: bool,
    /// The container port routed to.
    pub container_port: u16,
}

/// Everything one node should run, for one revision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DesiredNode {
    /// The node's own manifest.
    pub node: Node,
    /// The branch the node tracks.
    pub branch: String,
    /// Its environment.
    pub environment: Environment,
    /// Containers, ordered by deployment name.
    pub containers: Vec<DesiredContainer>,
    /// Routes, ordered by service name.
    pub services: Vec<ResolvedService>,
    /// The Docker network of this node's ingress: `orun-ingress`, prefixed `<env>.` off
    /// production like container names, so environments sharing a host stay apart.
    pub network: String,
    /// `secrets.yaml`, whose every entry is offered to every container as an env var (its
    /// own `env` wins on a shared key). Held once for the node, never copied per container:
    /// n entries and m deployments cost n + m, not n × m.
    #[serde(skip)]
    pub secrets: Option<Arc<SecretsFile>>,
    /// The sops-encrypted files of this node's deployments (inline `ENC[...]` values), by
    /// deployment name; each shares the revision's document.
    #[serde(skip)]
    pub sealed: BTreeMap<String, SealedFile>,
}

impl Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Node", 2)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("spec", &self.spec)?;
        st.end()
    }
}

/// The branch a node follows and the environment that makes it: the one rule the agent and
/// `orun plan` both go by, so they can never disagree about a node.
///
/// A node follows the branch its Node manifest names (`gitBranch`, `main` when unset).
/// `revision_of` is the branch the revision was read from, when the caller knows it (the
/// agent always does; `orun plan --branch`). The Node manifest on that branch must name that
/// same branch: a manifest naming another one is not this node's configuration (a merge
/// carried it over, or the agent was pointed at the wrong branch), and running it would put
/// one environment's containers under another's names, so it is refused.
///
/// # Errors
/// [`ModelError::Unfit`] naming `spec.gitBranch` in the node's file, and both branches, when
/// `revision_of` is not the branch the manifest names; [`ModelError::InvalidValue`] when the
/// branch is not a valid branch name or gives no environment id.
pub fn tracking(
    node: &Node,
    revision_of: Option<&str>,
) -> Result<(String, Environment), ModelError> {
    let named = node.spec.git_branch.as_str();
    let branch = revision_of.unwrap_or(named);
    values::check_branch(branch).map_err(|r| ModelError::invalid("branch", r))?;
    if branch != named {
        // Branch names are shown (the one value of a manifest a diagnostic shows besides file
        // names): the operator cannot fix this without knowing both, and a name that passed
        // `check_branch` is one line with no space or control character.
        return Err(ModelError::Unfit {
            diagnostics: vec![Diagnostic::error(
                &node.file,
                Pos::FILE,
                "spec.gitBranch",
                format!(
                    "this revision is of branch `{branch}`, but the node's manifest on it names branch `{named}`{}; a node runs only the branch its manifest names, so the revision is refused",
                    if named == "main" {
                        " (`main` when unset)"
                    } else {
                        ""
                    }
                ),
            )],
        });
    }
    let id = values::environment_id(branch).map_err(|r| ModelError::invalid("branch", r))?;
    let environment = Environment {
        production: branch == node.spec.production_branch,
        id,
    };
    Ok((branch.to_owned(), environment))
}

/// Resolves the desired state of `node` in `rev`.
///
/// `revision_of` is the branch `rev` was read from, when known; the branch and environment
/// come from [`tracking`], which refuses a Node manifest naming another branch.
///
/// # Errors
/// [`ModelError::UnknownNode`] when `nodes/` does not declare `node`; what [`tracking`]
/// refuses; [`ModelError::Unfit`] when the revision cannot run on this node: two of its
/// containers publish one host port, a domain template does not fit its environment, or a
/// container would have a one-character name (a one-character Deployment on a production
/// node).
pub fn resolve(
    rev: &Revision,
    node: &str,
    revision_of: Option<&str>,
) -> Result<DesiredNode, ModelError> {
    let n = rev
        .nodes
        .get(node)
        .ok_or_else(|| ModelError::UnknownNode(node.to_owned()))?;
    let (branch, environment) = tracking(n, revision_of)?;
    let container_name = |deployment: &str| {
        if environment.production {
            deployment.to_owned()
        } else {
            format!("{}.{deployment}", environment.id)
        }
    };
    let mut containers: Vec<DesiredContainer> = rev
        .deployments
        .values()
        .filter(|d| targets(&d.spec, n))
        .map(|d| DesiredContainer {
            deployment: d.name.clone(),
            container_name: container_name(&d.name),
            spec: d.spec.clone(),
            network: None,
            build_input: None,
        })
        .collect();
    short_names(rev, &containers)?;
    host_port_clashes(rev, &containers)?;
    // Looked up by name: a search of the list per service made resolving 10 000 deployments
    // quadratic (docs/BENCHMARKS.md).
    let by_deployment: BTreeMap<&str, &DesiredContainer> = containers
        .iter()
        .map(|c| (c.deployment.as_str(), c))
        .collect();
    let services: Vec<ResolvedService> = rev
        .services
        .values()
        .filter_map(|s| {
            let c = *by_deployment.get(s.spec.deployment.as_str())?;
            let container_port = s
                .spec
                .port
                .or_else(|| c.spec.ports.first().map(|p| p.container_port))?;
            let domain = if environment.production {
                Some(s.spec.ingress.domain.default.clone())
            } else {
                s.spec
                    .ingress
                    .domain
                    .environment
                    .as_ref()
                    .map(|t| t.replace("$ENV", &environment.id))
            };
            Some(ResolvedService {
                name: s.name.clone(),
                deployment: s.spec.deployment.clone(),
                container_name: c.container_name.clone(),
                domain,
                ssl: s.spec.ingress.ssl,
                container_port,
            })
        })
        .collect();
    // A template can be valid for short branch names and too long for this one.
    let unfit: Vec<Diagnostic> = services
        .iter()
        .filter_map(|s| {
            let r = values::check_domain(s.domain.as_ref()?).err()?;
            Some(Diagnostic::error(
                &rev.services[&s.name].file,
                Pos::FILE,
                "spec.ingress.domain.environment",
                format!("in this node's environment the domain is not valid: {r}"),
            ))
        })
        .collect();
    // Two templates can fill in to one domain here (`a-$ENV` and `a-staging` on staging):
    // the load checks production's domains only.
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let mut unfit = unfit;
    for s in &services {
        let Some(domain) = s.domain.as_deref() else {
            continue;
        };
        if let Some(first) = seen.insert(domain, &s.name) {
            seen.insert(domain, first);
            unfit.push(Diagnostic::error(
                &rev.services[&s.name].file,
                Pos::FILE,
                "spec.ingress.domain.environment",
                format!(
                    "in this node's environment the domain is also routed by service {}",
                    escape_file_name(first)
                ),
            ));
        }
    }
    if !unfit.is_empty() {
        return Err(ModelError::Unfit { diagnostics: unfit });
    }
    let network = container_name(NETWORK);
    let routed: std::collections::BTreeSet<&str> = services
        .iter()
        .filter(|s| s.domain.is_some())
        .map(|s| s.deployment.as_str())
        .collect();
    for c in &mut containers {
        if routed.contains(c.deployment.as_str()) {
            c.network = Some(network.clone());
        }
    }
    let sealed = containers
        .iter()
        .filter_map(|c| Some((c.deployment.clone(), rev.sealed.get(&c.deployment)?.clone())))
        .collect();
    Ok(DesiredNode {
        sealed,
        node: n.clone(),
        branch,
        environment,
        containers,
        services,
        network,
        secrets: rev.secrets.clone(),
    })
}

/// Refuses a container name of one character: Docker refuses it, and on a production node a
/// one-character Deployment name is the container's name (elsewhere `<env>.` makes it longer,
/// which is why `load` only warns).
fn short_names(rev: &Revision, containers: &[DesiredContainer]) -> Result<(), ModelError> {
    let short: Vec<Diagnostic> = containers
        .iter()
        .filter(|c| c.container_name.len() < 2)
        .map(|c| {
            Diagnostic::error(
                &rev.deployments[&c.deployment].file,
                Pos::FILE,
                "metadata.name",
                "on this production node the container would have this one-character name, and Docker refuses one-character container names; rename the deployment",
            )
        })
        .collect();
    if short.is_empty() {
        Ok(())
    } else {
        Err(ModelError::Unfit { diagnostics: short })
    }
}

/// Refuses two containers of this node that publish one host port (and protocol) on
/// colliding addresses: the exact check for one node, linear in its ports, which holds even
/// when the fleet-wide check in `load` gave up on a pathological revision.
fn host_port_clashes(rev: &Revision, containers: &[DesiredContainer]) -> Result<(), ModelError> {
    let mut claims: HostPorts<(u16, Protocol), (&str, usize)> = HostPorts::default();
    let mut clashes = Vec::new();
    for c in containers {
        for (i, p) in c.spec.ports.iter().enumerate() {
            let Some(hp) = p.host_port else { continue };
            if let Some((other, _)) = claims.claim((hp, p.protocol), p.host_ip, (&c.deployment, i))
                && other != c.deployment
            {
                clashes.push(Diagnostic::error(
                    &rev.deployments[&c.deployment].file,
                    Pos::FILE,
                    &format!("spec.ports[{i}].port"),
                    format!(
                        "this host port is also published on this node by {}",
                        escape_file_name(&rev.deployments[other].file)
                    ),
                ));
            }
        }
    }
    if clashes.is_empty() {
        Ok(())
    } else {
        Err(ModelError::Unfit {
            diagnostics: clashes,
        })
    }
}

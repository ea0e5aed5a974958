//! Node resolution: what one node of a revision should run.
//!
//! Given a validated revision and a node name, picks the deployments that target the node,
//! names their containers for the node's environment, and resolves Service domains.

use serde::Serialize;

use crate::error::ModelError;
use std::collections::BTreeMap;

use crate::model::{DeploymentSpec, Node, Revision};
use crate::secret::EnvValue;
use crate::validate::targets;
use crate::values;

/// The environment a node belongs to, from the branch it tracks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Environment {
    /// The branch made a DNS label (`feature/Login_x` → `feature-login-x`).
    pub id: String,
    /// Whether the node tracks the production branch.
    pub production: bool,
}

/// One container the node should run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DesiredContainer {
    /// The Deployment's name.
    pub deployment: String,
    /// The Docker container name: the deployment's name, prefixed `<env>.` off production.
    pub container_name: String,
    /// The deployment's spec.
    pub spec: DeploymentSpec,
    /// `secrets.yaml` entries offered to it as env vars (keys its own `env` sets excluded).
    #[serde(skip)]
    pub secret_env: BTreeMap<String, EnvValue>,
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

/// Resolves the desired state of `node` in `rev`.
///
/// `branch` overrides the node's `gitBranch` (the agent's `--branch` flag).
///
/// # Errors
/// [`ModelError::UnknownNode`] when `nodes/` does not declare `node`;
/// [`ModelError::InvalidValue`] when the branch gives no environment id.
pub fn resolve(
    rev: &Revision,
    node: &str,
    branch: Option<&str>,
) -> Result<DesiredNode, ModelError> {
    let n = rev
        .nodes
        .get(node)
        .ok_or_else(|| ModelError::UnknownNode(node.to_owned()))?;
    let branch = branch.unwrap_or(&n.spec.git_branch).to_owned();
    values::check_branch(&branch)
        .map_err(|r| ModelError::invalid("branch", format!("`{branch}` {r}")))?;
    let id = values::environment_id(&branch).map_err(|r| ModelError::invalid("branch", r))?;
    let environment = Environment {
        production: branch == n.spec.production_branch,
        id,
    };
    let container_name = |deployment: &str| {
        if environment.production {
            deployment.to_owned()
        } else {
            format!("{}.{deployment}", environment.id)
        }
    };
    let containers: Vec<DesiredContainer> = rev
        .deployments
        .values()
        .filter(|d| targets(&d.spec, n))
        .map(|d| DesiredContainer {
            deployment: d.name.clone(),
            container_name: container_name(&d.name),
            spec: d.spec.clone(),
            secret_env: rev
                .secrets
                .iter()
                .flat_map(|s| s.entries.iter())
                .filter(|(k, _)| !d.spec.env.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
        .collect();
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
    for s in &services {
        if let Some(domain) = &s.domain {
            values::check_domain(domain).map_err(|r| {
                ModelError::invalid(
                    "domain",
                    format!(
                        "service `{}` in environment `{}`: {r}",
                        s.name, environment.id
                    ),
                )
            })?;
        }
    }
    Ok(DesiredNode {
        node: n.clone(),
        branch,
        environment,
        containers,
        services,
    })
}

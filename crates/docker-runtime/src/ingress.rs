//! The Docker side of the node's ingress: its network, and Caddy's own container when the agent
//! runs Caddy itself.
//!
//! Caddy's container is not a deployment: it carries `orun.ingress=<node>` and none of the
//! ownership labels the planner reads, so no plan ever touches it, and this module never
//! touches a container without that label, whatever its name.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, HostConfig, NetworkCreateRequest, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use reconcile_core::ContainerState;

use crate::{Docker, RuntimeError};

/// Label naming the node whose ingress a container or network is.
pub const LABEL_INGRESS: &str = "orun.ingress";
/// Label holding the identity of the [`IngressContainer`] a container was made from.
pub const LABEL_INGRESS_SPEC: &str = "orun.ingress-spec";

/// Caddy's container as the agent wants it: host networking (Caddy listens on the host's
/// ports 80 and 443 and its admin API on host loopback, out of reach of every container),
/// restarted by Docker whatever happens, its certificates in a named volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressContainer {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// The program, whatever the image's own entrypoint.
    pub entrypoint: Vec<String>,
    /// Its arguments.
    pub args: Vec<String>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Bind mounts, `host:container[:ro]`, and named volumes, `volume:container`.
    pub binds: Vec<String>,
    /// The node whose ingress this is.
    pub node: String,
    /// Identity of this spec (everything above, written out): a container made from
    /// another is replaced.
    pub identity: String,
}

/// What Docker says of the container under the ingress's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngressFound {
    /// No container has the name.
    Absent,
    /// A container this node's ingress made.
    Ours {
        /// Its id.
        id: String,
        /// Its state.
        state: ContainerState,
        /// The identity of the spec it was made from.
        identity: String,
    },
    /// A container orun did not make for this node holds the name: never touched.
    Stranger,
}

impl Docker {
    /// Makes the bridge network `name` (labelled for `node`) unless a network of that name
    /// exists, whoever made it: a user may have made it for the purpose.
    ///
    /// # Errors
    /// What Docker says.
    pub async fn ensure_network(&self, name: &str, node: &str) -> Result<(), RuntimeError> {
        match self.api.inspect_network(name, None).await {
            Ok(_) => return Ok(()),
            Err(e) => match RuntimeError::from_bollard(e) {
                RuntimeError::NotFound(_) => {}
                other => return Err(other),
            },
        }
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            labels: Some(HashMap::from([(LABEL_INGRESS.to_owned(), node.to_owned())])),
            ..Default::default()
        };
        match self.api.create_network(request).await {
            Ok(_) => Ok(()),
            // Made meanwhile by another agent on this host.
            Err(e) => match RuntimeError::from_bollard(e) {
                RuntimeError::Conflict(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Looks at the container named `name`: absent, this node's ingress, or someone else's.
    ///
    /// # Errors
    /// What Docker says, other than that it is absent.
    pub async fn ingress_container(
        &self,
        name: &str,
        node: &str,
    ) -> Result<IngressFound, RuntimeError> {
        let c = match self.api.inspect_container(name, None).await {
            Ok(c) => c,
            Err(e) => {
                return match RuntimeError::from_bollard(e) {
                    RuntimeError::NotFound(_) => Ok(IngressFound::Absent),
                    other => Err(other),
                };
            }
        };
        let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
        if labels.get(LABEL_INGRESS).map(String::as_str) != Some(node) {
            return Ok(IngressFound::Stranger);
        }
        Ok(IngressFound::Ours {
            id: c.id.unwrap_or_else(|| name.to_owned()),
            state: crate::inspect::state_of(&c.state.unwrap_or_default()),
            identity: labels.get(LABEL_INGRESS_SPEC).cloned().unwrap_or_default(),
        })
    }

    /// Creates and starts Caddy's container from `spec`; the caller removed any old one.
    ///
    /// # Errors
    /// What Docker says (the image missing, the name taken, a port in use at start).
    pub async fn create_ingress(&self, spec: &IngressContainer) -> Result<String, RuntimeError> {
        let labels: BTreeMap<String, String> = BTreeMap::from([
            (LABEL_INGRESS.to_owned(), spec.node.clone()),
            (LABEL_INGRESS_SPEC.to_owned(), spec.identity.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: Some(spec.entrypoint.clone()),
            cmd: Some(spec.args.clone()),
            env: Some(spec.env.clone()),
            labels: Some(labels.into_iter().collect()),
            host_config: Some(HostConfig {
                network_mode: Some("host".to_owned()),
                binds: Some(spec.binds.clone()),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::ALWAYS),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let created = self
            .api
            .create_container(Some(options), body)
            .await
            .map_err(RuntimeError::from_bollard)?;
        self.start(&created.id).await?;
        Ok(created.id)
    }
}

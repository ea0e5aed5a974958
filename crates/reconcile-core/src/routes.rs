//! The ingress routes a plan changes, for `orun plan`: what the node's Services want against
//! what the node's Caddy serves now, and which routes move to a new container once it is
//! promoted. Pure, like the planner.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use manifest_model::DesiredNode;
use serde::Serialize;

use crate::Actual;
use crate::plan::{Action, Plan};

/// A route as the ingress serves it now (`ingress::routes_in` reads it from Caddy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteNow {
    /// Served over HTTPS.
    pub ssl: bool,
    /// The address proxied to; `None` when the route answers 503.
    pub upstream: Option<SocketAddr>,
}

/// One route's change, or that it stays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum RouteChange {
    /// A domain the ingress does not serve yet.
    Add {
        /// The Service.
        service: String,
        /// Its domain.
        domain: String,
        /// HTTPS.
        ssl: bool,
        /// The container it will route to.
        container: String,
        /// The container port.
        port: u16,
    },
    /// A domain the ingress serves that no Service wants any more.
    Remove {
        /// The domain.
        domain: String,
    },
    /// The domain stays; its HTTPS setting or container changes.
    Change {
        /// The Service.
        service: String,
        /// Its domain.
        domain: String,
        /// HTTPS, as it will be.
        ssl: bool,
        /// The container it will route to.
        container: String,
        /// What changes, in words.
        what: String,
    },
    /// The domain moves to its Deployment's new container once that is promoted.
    Move {
        /// The Service.
        service: String,
        /// Its domain.
        domain: String,
        /// The Deployment rolled out.
        deployment: String,
    },
}

impl fmt::Display for RouteChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = |ssl: bool| if ssl { "https" } else { "http" };
        match self {
            Self::Add {
                service,
                domain,
                ssl,
                container,
                port,
            } => write!(
                f,
                "+ route {}://{domain} -> {container}:{port} (service {service})",
                scheme(*ssl)
            ),
            Self::Remove { domain } => write!(f, "- route {domain}"),
            Self::Change {
                service,
                domain,
                ssl,
                container,
                what,
            } => write!(
                f,
                "~ route {}://{domain} -> {container} (service {service}): {what}",
                scheme(*ssl)
            ),
            Self::Move {
                service,
                domain,
                deployment,
            } => write!(
                f,
                "> route {domain} (service {service}) moves to {deployment}'s new container once it is promoted"
            ),
        }
    }
}

/// The route changes of `node` against `now` (domain → route), given the container steps of
/// `plan`; a served address is named by the container `actual` shows at it on the node's
/// ingress network. `now` is `None` when the ingress could not be asked: every wanted route
/// is shown as added.
pub fn route_changes(
    node: &DesiredNode,
    plan: &Plan,
    actual: &Actual,
    now: Option<&BTreeMap<String, RouteNow>>,
) -> Vec<RouteChange> {
    let name_at = |addr: SocketAddr| {
        let ip = addr.ip().to_string();
        actual
            .containers
            .iter()
            .find(|c| c.addresses.get(&node.network) == Some(&ip))
            .map(|c| c.name.as_str())
    };
    let empty = BTreeMap::new();
    let now = now.unwrap_or(&empty);
    let rolled: std::collections::BTreeSet<&str> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::Create { .. } | Action::Replace { .. }))
        .map(|s| s.deployment.as_str())
        .collect();
    let mut out = Vec::new();
    let mut wanted = std::collections::BTreeSet::new();
    for s in &node.services {
        let Some(domain) = &s.domain else { continue };
        wanted.insert(domain.as_str());
        match now.get(domain) {
            None => out.push(RouteChange::Add {
                service: s.name.clone(),
                domain: domain.clone(),
                ssl: s.ssl,
                container: s.container_name.clone(),
                port: s.container_port,
            }),
            Some(r) => {
                let mut what = Vec::new();
                if r.ssl != s.ssl {
                    what.push(if s.ssl {
                        "HTTPS turned on".to_owned()
                    } else {
                        "HTTPS turned off".to_owned()
                    });
                }
                if let Some(port) = r
                    .upstream
                    .map(|u| u.port())
                    .filter(|p| *p != s.container_port)
                {
                    what.push(format!("port {port} -> {}", s.container_port));
                }
                let served = r.upstream.and_then(name_at);
                if served != Some(s.container_name.as_str())
                    && !rolled.contains(s.deployment.as_str())
                {
                    what.push(match served {
                        Some(u) => format!("container {u} -> {}", s.container_name),
                        None => format!("no container -> {}", s.container_name),
                    });
                }
                if !what.is_empty() {
                    out.push(RouteChange::Change {
                        service: s.name.clone(),
                        domain: domain.clone(),
                        ssl: s.ssl,
                        container: s.container_name.clone(),
                        what: what.join(", "),
                    });
                }
                if rolled.contains(s.deployment.as_str()) {
                    out.push(RouteChange::Move {
                        service: s.name.clone(),
                        domain: domain.clone(),
                        deployment: s.deployment.clone(),
                    });
                }
            }
        }
    }
    for domain in now.keys() {
        if !wanted.contains(domain.as_str()) {
            out.push(RouteChange::Remove {
                domain: domain.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use manifest_model::{MemSource, load, resolve};

    fn node() -> DesiredNode {
        let svc = |name: &str, domain: &str, ssl: bool| {
            format!(
                "apiVersion: run.orcra.dev/v0alpha\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  deployment: web\n  ingress:\n    domain:\n      default: {domain}\n    ssl: {ssl}\n"
            )
        };
        let src = MemSource::new()
            .with(
                "nodes/n.yaml",
                "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n\nspec:\n  host: h\n  gitRepo: git@example.invalid:o/r.git\n  gitBranch: main\n",
            )
            .with(
                "deployments/web.yaml",
                "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: nginx:1\n  ports:\n    - containerPort: 80\n",
            )
            .with("services/a.yaml", svc("a", "a.example.com", true))
            .with("services/b.yaml", svc("b", "b.example.com", false));
        let rev = load(&src, &manifest_model::Limits::default())
            .revision
            .unwrap();
        resolve(&rev, "n", None).unwrap()
    }

    /// Routes served: domain, HTTPS, upstream address.
    fn now(routes: &[(&str, bool, Option<&str>)]) -> BTreeMap<String, RouteNow> {
        routes
            .iter()
            .map(|(d, ssl, u)| {
                let upstream = u.map(|u| u.parse().unwrap());
                (
                    (*d).to_owned(),
                    RouteNow {
                        ssl: *ssl,
                        upstream,
                    },
                )
            })
            .collect()
    }

    /// The host: `web` at 172.18.0.2 on the ingress network.
    fn actual() -> crate::Actual {
        let mut web = crate::ObservedContainer::from(crate::ObservedFields {
            id: "a1".to_owned(),
            name: "web".to_owned(),
            image_id: "sha256:web".to_owned(),
            state: crate::ContainerState::Running,
            health: None,
            labels: BTreeMap::new(),
        });
        web.addresses
            .insert("orun-ingress".to_owned(), "172.18.0.2".to_owned());
        crate::Actual {
            containers: vec![web],
            ..crate::Actual::default()
        }
    }

    #[test]
    fn adds_removes_changes_and_moves_with_the_plan() {
        let n = node();
        let actual = actual();
        let changes = |now: Option<&BTreeMap<String, RouteNow>>| -> Vec<String> {
            route_changes(&n, &Plan::default(), &actual, now)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        // Nothing served yet: both routes are added.
        assert_eq!(
            changes(None),
            [
                "+ route https://a.example.com -> web:80 (service a)",
                "+ route http://b.example.com -> web:80 (service b)",
            ]
        );
        // Served as wanted: nothing to say.
        let same = now(&[
            ("a.example.com", true, Some("172.18.0.2:80")),
            ("b.example.com", false, Some("172.18.0.2:80")),
        ]);
        assert!(changes(Some(&same)).is_empty());
        // HTTPS flipped, a stale domain, and no container yet.
        let stale = now(&[
            ("a.example.com", false, None),
            ("b.example.com", false, Some("172.18.0.2:80")),
            ("old.example.com", false, Some("172.18.0.2:80")),
        ]);
        assert_eq!(
            changes(Some(&stale)),
            [
                "~ route https://a.example.com -> web (service a): HTTPS turned on, no container -> web",
                "- route old.example.com",
            ]
        );
        // Another port than the Service's, and an address no container holds.
        let moved = now(&[
            ("a.example.com", true, Some("172.18.0.9:80")),
            ("b.example.com", false, Some("172.18.0.2:8080")),
        ]);
        assert_eq!(
            changes(Some(&moved)),
            [
                "~ route https://a.example.com -> web (service a): no container -> web",
                "~ route http://b.example.com -> web (service b): port 8080 -> 80",
            ]
        );
    }
}

//! The ingress routes a plan changes, for `orun plan`: what the node's Services want against
//! what the node's Caddy serves now, and which routes move to a new container once it is
//! promoted. Pure, like the planner.

use std::collections::BTreeMap;
use std::fmt;

use manifest_model::DesiredNode;
use serde::Serialize;

use crate::plan::{Action, Plan};

/// A route as the ingress serves it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteNow {
    /// Automatic HTTPS.
    pub ssl: bool,
    /// The container served (its name), when the ingress sends the domain to one.
    pub upstream: Option<String>,
    /// The port it is dialled on.
    pub port: Option<u16>,
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
/// `plan`. `now` is `None` when the ingress could not be asked: every wanted route is shown
/// as added.
pub fn route_changes(
    node: &DesiredNode,
    plan: &Plan,
    now: Option<&BTreeMap<String, RouteNow>>,
) -> Vec<RouteChange> {
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
                if let Some(port) = r.port.filter(|p| *p != s.container_port) {
                    what.push(format!("port {port} -> {}", s.container_port));
                }
                if r.upstream.as_deref() != Some(s.container_name.as_str())
                    && !rolled.contains(s.deployment.as_str())
                {
                    what.push(match &r.upstream {
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

    fn now(routes: &[(&str, bool, Option<&str>)]) -> BTreeMap<String, RouteNow> {
        routes
            .iter()
            .map(|(d, ssl, u)| {
                (
                    (*d).to_owned(),
                    RouteNow {
                        ssl: *ssl,
                        upstream: u.map(str::to_owned),
                        port: u.map(|_| 80),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn adds_removes_changes_and_moves_with_the_plan() {
        let n = node();
        // Nothing served yet: both routes are added.
        let lines: Vec<String> = route_changes(&n, &Plan::default(), None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "+ route https://a.example.com -> web:80 (service a)",
                "+ route http://b.example.com -> web:80 (service b)",
            ]
        );
        // Served as wanted: nothing to say.
        let same = now(&[
            ("a.example.com", true, Some("web")),
            ("b.example.com", false, Some("web")),
        ]);
        assert!(route_changes(&n, &Plan::default(), Some(&same)).is_empty());
        // HTTPS flipped, a stale domain, and no container yet.
        let stale = now(&[
            ("a.example.com", false, None),
            ("b.example.com", false, Some("web")),
            ("old.example.com", false, Some("web")),
        ]);
        let lines: Vec<String> = route_changes(&n, &Plan::default(), Some(&stale))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "~ route https://a.example.com -> web (service a): HTTPS turned on, no container -> web",
                "- route old.example.com",
            ]
        );
        // Another port than the Service's.
        let mut moved_port = same.clone();
        moved_port.get_mut("b.example.com").unwrap().port = Some(8080);
        let lines: Vec<String> = route_changes(&n, &Plan::default(), Some(&moved_port))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            ["~ route http://b.example.com -> web (service b): port 8080 -> 80"]
        );
    }
}

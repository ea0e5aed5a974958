//! The node's host policy, judged over the final container create request: one pure
//! function that every container orun creates from a manifest passes through, so no way of
//! writing a mount (and nothing a later version adds to the request) goes around it.
//!
//! Denied unless the node allows it: a bind of a host path outside the node's allowed
//! prefixes (judged after following symbolic links on the host); the Docker socket; `/`,
//! system paths and the agent's own files, unless allowed by name; and, with no way to
//! allow them, privileged mode, added capabilities, devices, host namespaces, unconfined
//! security profiles, sysctls, named volumes and another container's volumes or namespaces.
//! Manifests cannot ask for the last group today; the request is judged anyway, so a field
//! added later is refused until this function learns it.

use bollard::models::{ContainerCreateBody, HostConfigCgroupnsModeEnum, MountType};
use manifest_model::HostPolicy;
use reconcile_core::RenderedSpec;

/// Paths no broad prefix allows: each is allowed only by a prefix at or inside it (or, for
/// one that merely contains such a path, by naming the bound path itself). `/` is one too.
pub const SYSTEM_PATHS: [&str; 16] = [
    "/etc",
    "/root",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/log",
];

/// File names that are a container runtime's control socket wherever they are: whoever
/// reaches one is root on the host.
const RUNTIME_SOCKETS: [&str; 3] = ["docker.sock", "containerd.sock", "podman.sock"];

/// How many symbolic links one path may pass through, as Linux allows (`ELOOP` after 40).
pub const MAX_LINKS: usize = 40;

/// The longest path judged, in bytes (Linux's `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// The host's file system, as the policy sees it: only symbolic links matter.
pub trait HostFs {
    /// The target of `path` when it is a symbolic link; `None` when it is anything else or
    /// does not exist.
    fn read_link(&self, path: &str) -> Option<String>;
}

/// The real host.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealHost;

impl HostFs for RealHost {
    fn read_link(&self, path: &str) -> Option<String> {
        let target = std::fs::read_link(path).ok()?;
        target.into_os_string().into_string().ok()
    }
}

/// A host whose links are known up front: for `orun validate`, which runs away from the
/// node (no links, so paths are judged as written), and for tests.
#[derive(Clone, Debug, Default)]
pub struct KnownLinks(pub std::collections::BTreeMap<String, String>);

impl HostFs for KnownLinks {
    fn read_link(&self, path: &str) -> Option<String> {
        self.0.get(path).cloned()
    }
}

/// What the policy guards: the node's allowances and the agent's own files.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    /// What the node allows.
    pub host: HostPolicy,
    /// The agent's own paths (its data dir, keys, policy file): protected as system paths
    /// are, since a container reaching them could rewrite what the agent trusts.
    pub protected: Vec<String>,
}

/// One thing the request may not do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The bind (`HostConfig.Binds`, in the spec's volume order) it is about, if any.
    pub volume: Option<usize>,
    /// The request field, as Docker's API names it.
    pub field: String,
    /// Why, and how a node would allow it when it can.
    pub message: String,
}

/// Follows the symbolic links of the absolute path `path` on `fs`, component by component,
/// as the kernel would when Docker binds it: a link's target replaces it (from `/` when
/// absolute) and a `..` after a link climbs from where the link led. The part that does
/// not exist is kept as written (Docker creates it).
///
/// Work is bounded: at most [`MAX_LINKS`] links, and each component looked at costs one
/// `read_link`; paths (and what they grow to) beyond [`MAX_PATH`] are refused.
///
/// # Errors
/// Why the path cannot be judged: not absolute, too long, or too many links.
pub fn resolve(path: &str, fs: &dyn HostFs) -> Result<String, &'static str> {
    if !path.starts_with('/') {
        return Err("is not absolute");
    }
    if path.len() > MAX_PATH {
        return Err("is longer than 4096 bytes");
    }
    // Components still to walk, last first, so a link's target goes on top.
    let mut todo: Vec<String> = path.rsplit('/').map(str::to_owned).collect();
    let mut done = String::new();
    let mut ends: Vec<usize> = Vec::new();
    let mut links = 0usize;
    let mut pending = path.len();
    while let Some(c) = todo.pop() {
        pending = pending.saturating_sub(c.len() + 1);
        match c.as_str() {
            "" | "." => {}
            ".." => {
                if let Some(start) = ends.pop() {
                    done.truncate(start);
                }
            }
            name => {
                ends.push(done.len());
                done.push('/');
                done.push_str(name);
                if done.len() > MAX_PATH {
                    return Err("is longer than 4096 bytes once its links are followed");
                }
                let Some(target) = fs.read_link(&done) else {
                    continue;
                };
                links += 1;
                if links > MAX_LINKS {
                    return Err("passes through more than 40 symbolic links");
                }
                if pending + target.len() > MAX_PATH {
                    return Err("is longer than 4096 bytes once its links are followed");
                }
                pending += target.len() + 1;
                let start = ends.pop().unwrap_or(0);
                done.truncate(start);
                if target.starts_with('/') {
                    done.clear();
                    ends.clear();
                }
                todo.extend(target.rsplit('/').map(str::to_owned));
            }
        }
    }
    if done.is_empty() {
        done.push('/');
    }
    Ok(done)
}

/// Whether `path` is `prefix` or inside it (`/` holds everything). A prefix that is not
/// absolute holds nothing; a trailing `/` is ignored.
pub fn within(path: &str, prefix: &str) -> bool {
    if !prefix.starts_with('/') {
        return false;
    }
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Judges one host path a container would bind, once resolved, against the prefixes
/// `allowed`; `None` when it may be bound.
fn judge_bind(resolved: &str, allowed: &[&str], protected: &[String]) -> Option<String> {
    let covering: Vec<&str> = allowed
        .iter()
        .copied()
        .filter(|e| within(resolved, e))
        .collect();
    // The most telling reason first: a socket or a system path is refused as such, even
    // when no prefix covers it at all.
    let name = resolved.rsplit('/').next().unwrap_or_default();
    if RUNTIME_SOCKETS.contains(&name) {
        // Named exactly or not at all: a socket is never reached through a broad prefix.
        return (!covering.contains(&resolved)).then(|| {
            "is a container runtime's socket, which gives root on the host; only a policy entry naming this exact path allows it".to_owned()
        });
    }
    if resolved == "/" {
        return (!covering.contains(&"/"))
            .then(|| "is the host's root; only a policy entry naming `/` allows it".to_owned());
    }
    let sensitive = SYSTEM_PATHS
        .iter()
        .copied()
        .chain(protected.iter().map(String::as_str));
    for area in sensitive {
        let inside = within(resolved, area);
        if !inside && !within(area, resolved) {
            continue;
        }
        // Inside a system path: the allowing prefix must lie within it too. Holding one
        // (binding `/var` holds `/var/lib/docker`): the path itself must be named.
        let explicit = covering.iter().any(|e| {
            if inside {
                within(e, area)
            } else {
                *e == resolved
            }
        });
        if !explicit {
            return Some(if inside {
                format!(
                    "is a system path (inside {area}); only a policy entry at or inside {area} allows it"
                )
            } else {
                format!(
                    "holds the system path {area}; only a policy entry naming this exact path allows it"
                )
            });
        }
    }
    covering.is_empty().then(|| {
        "is outside the host paths this node allows containers to bind (`host.bind` in the node policy)"
            .to_owned()
    })
}

/// Everything `body` may not do on this node, for `deployment`, with host paths resolved
/// through `fs`. Empty when the request may go to Docker.
pub fn check(
    body: &ContainerCreateBody,
    deployment: &str,
    guard: &Guard,
    fs: &dyn HostFs,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(host) = &body.host_config else {
        return out;
    };
    // Entries are followed as binds are: `/var/run/docker.sock` names the socket where
    // `/var/run` leads (`/run` on Debian), as Docker would bind it.
    let on_host = |p: &str| resolve(p, fs).unwrap_or_else(|_| p.to_owned());
    let allowed: Vec<String> = guard.host.allowed_for(deployment).map(on_host).collect();
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let protected: Vec<String> = guard.protected.iter().map(|p| on_host(p)).collect();
    let mut deny = |volume: Option<usize>, field: &str, message: String| {
        out.push(Violation {
            volume,
            field: field.to_owned(),
            message,
        });
    };
    for (i, bind) in host.binds.iter().flatten().enumerate() {
        let source = bind.split(':').next().unwrap_or_default();
        if !source.starts_with('/') && guard.host.volume_allowed(deployment, source) {
            continue;
        }
        if let Some(why) = judge_source(source, &allowed, &protected, fs) {
            deny(Some(i), "HostConfig.Binds", why);
        }
    }
    for m in host.mounts.iter().flatten() {
        let why = match m.typ {
            Some(MountType::BIND) => {
                judge_source(m.source.as_deref().unwrap_or(""), &allowed, &protected, fs)
            }
            Some(MountType::TMPFS) => None,
            _ => Some("only bind and tmpfs mounts are allowed".to_owned()),
        };
        if let Some(why) = why {
            deny(None, "HostConfig.Mounts", why);
        }
    }
    let mut deny_if = |set: bool, field: &str, what: &str| {
        if set {
            out.push(Violation {
                volume: None,
                field: field.to_owned(),
                message: format!("{what} is not allowed on this node"),
            });
        }
    };
    let nonempty = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    let shares = |mode: &Option<String>| {
        mode.as_deref()
            .is_some_and(|m| m == "host" || m.starts_with("container:"))
    };
    deny_if(
        host.privileged == Some(true),
        "HostConfig.Privileged",
        "privileged mode",
    );
    deny_if(
        nonempty(&host.cap_add),
        "HostConfig.CapAdd",
        "adding capabilities",
    );
    deny_if(
        host.devices.as_ref().is_some_and(|d| !d.is_empty()),
        "HostConfig.Devices",
        "a host device",
    );
    deny_if(
        host.device_requests.as_ref().is_some_and(|d| !d.is_empty()),
        "HostConfig.DeviceRequests",
        "a device request",
    );
    deny_if(
        nonempty(&host.device_cgroup_rules),
        "HostConfig.DeviceCgroupRules",
        "a device cgroup rule",
    );
    deny_if(
        shares(&host.network_mode),
        "HostConfig.NetworkMode",
        "the host's (or another container's) network",
    );
    deny_if(
        shares(&host.pid_mode),
        "HostConfig.PidMode",
        "the host's (or another container's) process namespace",
    );
    deny_if(
        shares(&host.ipc_mode),
        "HostConfig.IpcMode",
        "the host's (or another container's) IPC namespace",
    );
    deny_if(
        host.uts_mode.as_deref() == Some("host"),
        "HostConfig.UTSMode",
        "the host's UTS namespace",
    );
    deny_if(
        host.userns_mode.as_deref() == Some("host"),
        "HostConfig.UsernsMode",
        "the host's user namespace",
    );
    deny_if(
        host.cgroupns_mode == Some(HostConfigCgroupnsModeEnum::HOST),
        "HostConfig.CgroupnsMode",
        "the host's cgroup namespace",
    );
    deny_if(
        host.security_opt
            .iter()
            .flatten()
            .any(|o| o.contains("unconfined") || o.replace('=', ":") == "label:disable"),
        "HostConfig.SecurityOpt",
        "an unconfined security profile",
    );
    deny_if(
        host.sysctls.as_ref().is_some_and(|s| !s.is_empty()),
        "HostConfig.Sysctls",
        "setting sysctls",
    );
    deny_if(
        nonempty(&host.volumes_from),
        "HostConfig.VolumesFrom",
        "another container's volumes",
    );
    deny_if(
        host.volume_driver.as_deref().is_some_and(|d| !d.is_empty()),
        "HostConfig.VolumeDriver",
        "a volume driver",
    );
    deny_if(
        host.cgroup_parent.as_deref().is_some_and(|d| !d.is_empty()),
        "HostConfig.CgroupParent",
        "a cgroup parent",
    );
    out
}

/// Why the bind source `source` may not be bound, if it may not.
fn judge_source(
    source: &str,
    allowed: &[&str],
    protected: &[String],
    fs: &dyn HostFs,
) -> Option<String> {
    if !source.starts_with('/') {
        // A named volume: a volume driver may back it with any host path (`type: none, o:
        // bind, device: /`).
        return Some(
            "is a named volume, which this node does not allow (`host.volumes` in the node policy; a volume made with bind options reaches any host path)"
                .to_owned(),
        );
    }
    match resolve(source, fs) {
        // The written path is not repeated (the field points at it, and messages never
        // quote a manifest); where links lead is the host's, and news to the author.
        Ok(resolved) => judge_bind(&resolved, allowed, protected).map(|why| {
            if resolved == source {
                format!("this host path {why}")
            } else {
                format!("this host path (which leads to {resolved}) {why}")
            }
        }),
        Err(why) => Some(format!("this host path {why}")),
    }
}

/// [`check`] of the request orun would send for `spec`: for judging a revision before
/// anything runs, with secret values left out (the policy does not look at them).
///
/// # Errors
/// What the request itself cannot carry ([`crate::RuntimeError::Unrepresentable`]).
pub fn check_spec(
    spec: &RenderedSpec,
    deployment: &str,
    guard: &Guard,
    fs: &dyn HostFs,
) -> Result<Vec<Violation>, crate::RuntimeError> {
    let body = crate::request(spec, deployment)?;
    Ok(check(&body, deployment, guard, fs))
}

/// Every container `node` would run, judged as [`check`] judges its request: what a node
/// refuses a revision for, as diagnostics naming the deployment's file, and for a bind the
/// line and field of its `hostPath`.
pub fn judge_node(
    rev: &manifest_model::Revision,
    node: &manifest_model::DesiredNode,
    guard: &Guard,
    fs: &dyn HostFs,
) -> Vec<manifest_model::Diagnostic> {
    use manifest_model::{Diagnostic, Pos};
    let desired = reconcile_core::Desired::from_node(node, None, |_| None, &Default::default());
    let mut out = Vec::new();
    for d in &desired.deployments {
        let manifest = rev.deployments.get(&d.name);
        let file = manifest.map_or("deployments", |m| m.file.as_str());
        let refused = match check_spec(&d.spec, &d.name, guard, fs) {
            Ok(refused) => refused,
            Err(e) => {
                out.push(Diagnostic::error(file, Pos::FILE, "spec", e.to_string()));
                continue;
            }
        };
        for v in refused {
            // The spec keeps its mounts in a canonical order, not the manifest's: the
            // manifest's entry is found by what it mounts.
            let written = v.volume.and_then(|i| d.spec.volumes.get(i)).and_then(|r| {
                let volumes = &manifest?.spec.volumes;
                volumes.iter().enumerate().find(|(_, m)| {
                    m.host_path == r.host_path && m.container_path == r.container_path
                })
            });
            let (at, field) = match written {
                Some((i, m)) => (m.at, format!("spec.volumes[{i}].hostPath")),
                None => (Pos::FILE, v.field),
            };
            out.push(Diagnostic::error(file, at, &field, v.message));
        }
    }
    out.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{HostConfig, Mount};

    fn links(pairs: &[(&str, &str)]) -> KnownLinks {
        KnownLinks(
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        )
    }

    fn guard(bind: &[&str]) -> Guard {
        Guard {
            host: HostPolicy {
                all: manifest_model::Allowance {
                    bind: bind.iter().map(|s| (*s).to_owned()).collect(),
                    volumes: vec!["pgdata".to_owned()],
                },
                ..HostPolicy::default()
            },
            protected: vec!["/opt/orun".to_owned()],
        }
    }

    fn binds(paths: &[&str]) -> ContainerCreateBody {
        ContainerCreateBody {
            host_config: Some(HostConfig {
                binds: Some(paths.iter().map(|p| format!("{p}:/mnt")).collect()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        }
    }

    fn refused(g: &Guard, fs: &dyn HostFs, path: &str) -> bool {
        !check(&binds(&[path]), "web", g, fs).is_empty()
    }

    #[test]
    fn links_are_followed_as_the_kernel_does() {
        let fs = links(&[
            ("/srv/up", ".."),
            ("/srv/abs", "/etc"),
            ("/srv/rel", "data/x"),
            ("/srv/data/x", "/var/lib"),
            ("/loop", "/loop"),
        ]);
        assert_eq!(resolve("/srv/up/etc", &fs).unwrap(), "/etc");
        assert_eq!(resolve("/srv/abs/shadow", &fs).unwrap(), "/etc/shadow");
        assert_eq!(resolve("/srv/rel/docker", &fs).unwrap(), "/var/lib/docker");
        assert_eq!(resolve("/srv/abs/..", &fs).unwrap(), "/");
        assert_eq!(resolve("/", &fs).unwrap(), "/");
        assert_eq!(resolve("/new/dir", &fs).unwrap(), "/new/dir");
        assert!(resolve("/loop/x", &fs).is_err());
        assert!(resolve("relative", &fs).is_err());
    }

    #[test]
    fn binds_need_an_allowed_prefix() {
        let g = guard(&["/srv"]);
        let none = KnownLinks::default();
        assert!(!refused(&g, &none, "/srv/data"));
        assert!(!refused(&g, &none, "/srv"));
        assert!(refused(&g, &none, "/srvx"));
        assert!(refused(&g, &none, "/home/me"));
        assert!(
            refused(&Guard::default(), &none, "/srv/data"),
            "nothing allowed by default"
        );
    }

    #[test]
    fn a_link_out_of_an_allowed_prefix_is_judged_where_it_leads() {
        let g = guard(&["/srv"]);
        let fs = links(&[("/srv/sock", "/var/run/docker.sock"), ("/srv/up", "/")]);
        let v = check(&binds(&["/srv/sock"]), "web", &g, &fs);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].message.contains("which leads to /var/run/docker.sock"),
            "{v:?}"
        );
        assert!(refused(&g, &fs, "/srv/up"));
        assert!(refused(&g, &fs, "/srv/up/etc"));
    }

    #[test]
    fn entries_are_followed_as_binds_are() {
        let fs = links(&[("/var/run", "/run")]);
        let g = guard(&["/var/run/docker.sock"]);
        assert!(!refused(&g, &fs, "/var/run/docker.sock"));
        assert!(!refused(&g, &fs, "/run/docker.sock"));
    }

    #[test]
    fn system_paths_and_sockets_need_naming() {
        let none = KnownLinks::default();
        let broad = guard(&["/"]);
        for p in [
            "/etc",
            "/etc/ssl",
            "/var/lib/docker",
            "/var",
            "/proc",
            "/opt/orun/state",
            "/opt",
            "/run/docker.sock",
        ] {
            assert!(refused(&broad, &none, p), "{p} allowed through `/`");
        }
        assert!(!refused(&broad, &none, "/"), "`/` named allows `/` itself");
        assert!(!refused(&broad, &none, "/srv/x"), "a plain path under `/`");
        assert!(!refused(&guard(&["/proc"]), &none, "/proc"));
        assert!(!refused(&guard(&["/etc/ssl"]), &none, "/etc/ssl/certs"));
        assert!(refused(
            &guard(&["/var/run"]),
            &none,
            "/var/run/docker.sock"
        ));
        assert!(!refused(
            &guard(&["/var/run/docker.sock"]),
            &none,
            "/var/run/docker.sock"
        ));
        assert!(refused(&guard(&["/srv"]), &none, "/srv/x/docker.sock"));
        assert!(!refused(&guard(&["/var"]), &none, "/var"));
    }

    #[test]
    fn allowances_are_per_deployment() {
        let mut g = guard(&[]);
        let own = manifest_model::Allowance {
            bind: vec!["/proc".to_owned()],
            volumes: Vec::new(),
        };
        g.host.deployments.insert("exporter".to_owned(), own);
        let none = KnownLinks::default();
        assert!(check(&binds(&["/proc"]), "exporter", &g, &none).is_empty());
        assert!(!check(&binds(&["/proc"]), "web", &g, &none).is_empty());
    }

    #[test]
    fn every_other_host_option_is_refused() {
        let cases: Vec<HostConfig> = vec![
            HostConfig {
                privileged: Some(true),
                ..HostConfig::default()
            },
            HostConfig {
                cap_add: Some(vec!["SYS_ADMIN".into()]),
                ..HostConfig::default()
            },
            HostConfig {
                network_mode: Some("host".into()),
                ..HostConfig::default()
            },
            HostConfig {
                network_mode: Some("container:db".into()),
                ..HostConfig::default()
            },
            HostConfig {
                pid_mode: Some("host".into()),
                ..HostConfig::default()
            },
            HostConfig {
                ipc_mode: Some("host".into()),
                ..HostConfig::default()
            },
            HostConfig {
                uts_mode: Some("host".into()),
                ..HostConfig::default()
            },
            HostConfig {
                userns_mode: Some("host".into()),
                ..HostConfig::default()
            },
            HostConfig {
                cgroupns_mode: Some(HostConfigCgroupnsModeEnum::HOST),
                ..HostConfig::default()
            },
            HostConfig {
                security_opt: Some(vec!["seccomp=unconfined".into()]),
                ..HostConfig::default()
            },
            HostConfig {
                security_opt: Some(vec!["label=disable".into()]),
                ..HostConfig::default()
            },
            HostConfig {
                volumes_from: Some(vec!["other".into()]),
                ..HostConfig::default()
            },
            HostConfig {
                binds: Some(vec!["named:/data".into()]),
                ..HostConfig::default()
            },
            HostConfig {
                binds: Some(vec!["pgdata2:/data".into()]),
                ..HostConfig::default()
            },
            HostConfig {
                sysctls: Some([("kernel.x".to_owned(), "1".to_owned())].into()),
                ..HostConfig::default()
            },
            HostConfig {
                mounts: Some(vec![Mount {
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                }]),
                ..HostConfig::default()
            },
            HostConfig {
                mounts: Some(vec![Mount {
                    typ: Some(MountType::BIND),
                    source: Some("/".into()),
                    ..Default::default()
                }]),
                ..HostConfig::default()
            },
        ];
        let g = guard(&["/srv"]);
        for host in cases {
            let shown = format!("{host:?}");
            let body = ContainerCreateBody {
                host_config: Some(host),
                ..ContainerCreateBody::default()
            };
            assert_eq!(check(&body, "web", &g, &RealHost).len(), 1, "{shown}");
        }
        let plain = ContainerCreateBody {
            host_config: Some(HostConfig {
                network_mode: Some("orun-ingress".into()),
                binds: Some(vec!["pgdata:/var/lib/postgresql".into()]),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        assert!(check(&plain, "web", &g, &RealHost).is_empty());
    }
}

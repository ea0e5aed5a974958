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

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigCgroupnsModeEnum, MountType};
use manifest_model::HostPolicy;
use reconcile_core::RenderedSpec;

/// Paths no broad prefix allows: each is allowed only by a prefix at or inside it (or, for
/// one that merely contains such a path, by naming the bound path itself). `/` is one too.
pub const SYSTEM_PATHS: [&str; 19] = [
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
    // Package scripts, kubelet, databases' own state: a write there is code run as root.
    "/var/lib",
    "/var/spool",
    // Users' keys and shells' start-up files.
    "/home",
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
    ///
    /// # Errors
    /// Why `path` cannot be judged (a link whose target is not UTF-8, a folder that cannot
    /// be read): never taken for "not a link", which would let the kernel follow a link
    /// the policy did not.
    fn read_link(&self, path: &str) -> Result<Option<String>, &'static str>;
}

/// The real host.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealHost;

impl HostFs for RealHost {
    fn read_link(&self, path: &str) -> Result<Option<String>, &'static str> {
        use std::io::ErrorKind::{NotADirectory, NotFound};
        match std::fs::symlink_metadata(path) {
            // The rest of the path does not exist: Docker creates it, as written.
            Err(e) if matches!(e.kind(), NotFound | NotADirectory) => Ok(None),
            Err(_) => Err("cannot be examined on this host"),
            Ok(m) if !m.file_type().is_symlink() => Ok(None),
            Ok(_) => std::fs::read_link(path)
                .map_err(|_| "passes through a symbolic link that cannot be read")?
                .into_os_string()
                .into_string()
                .map(Some)
                .map_err(|_| "passes through a symbolic link whose target is not UTF-8"),
        }
    }
}

/// A host whose links are known up front: for `orun validate`, which runs away from the
/// node (no links, so paths are judged as written), and for tests.
#[derive(Clone, Debug, Default)]
pub struct KnownLinks(pub std::collections::BTreeMap<String, String>);

impl HostFs for KnownLinks {
    fn read_link(&self, path: &str) -> Result<Option<String>, &'static str> {
        Ok(self.0.get(path).cloned())
    }
}

/// What the policy guards: the node's allowances and the agent's own files.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    /// What the node allows, compared as written: [`Guard::settled`] resolves it once.
    pub host: HostPolicy,
    /// The agent's own paths (its data dir, keys, policy file): protected as system paths
    /// are, since a container reaching them could rewrite what the agent trusts.
    pub protected: Vec<String>,
}

impl Guard {
    /// The guard with its allowed prefixes and protected paths replaced by where they lead
    /// on `fs` now, and every system path that leads elsewhere (`/var/run` to `/run`,
    /// `/var/lib/docker` to another disk) protected there too. Done once, when the agent
    /// starts: resolving an entry at each check would follow a link a container had since
    /// planted inside an allowed folder, and widen the policy to wherever it points.
    #[must_use]
    pub fn settled(mut self, fs: &dyn HostFs) -> Self {
        let on_host = |p: &mut String| {
            if let Ok(r) = resolve(p, fs) {
                *p = r;
            }
        };
        self.host.all.bind.iter_mut().for_each(on_host);
        for own in self.host.deployments.values_mut() {
            own.bind.iter_mut().for_each(on_host);
        }
        let mut protected = Vec::with_capacity(self.protected.len() + SYSTEM_PATHS.len());
        for p in self
            .protected
            .iter()
            .map(String::as_str)
            .chain(SYSTEM_PATHS)
        {
            let r = resolve(p, fs).unwrap_or_else(|_| p.to_owned());
            // Bind sources are judged resolved, so only where a path leads matters.
            if !SYSTEM_PATHS.contains(&r.as_str()) && !protected.contains(&r) {
                protected.push(r);
            }
        }
        self.protected = protected;
        self
    }
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
                let Some(target) = fs.read_link(&done)? else {
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
    // Entries are compared as they are: the agent settles them once at start
    // (`Guard::settled`), so `/var/run/docker.sock` names the socket where `/var/run` led.
    let allowed: Vec<&str> = guard.host.allowed_for(deployment).collect();
    let protected = &guard.protected;
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
        if let Some(why) = judge_source(source, &allowed, protected, fs) {
            deny(Some(i), "HostConfig.Binds", why);
        }
    }
    for m in host.mounts.iter().flatten() {
        let why = match m.typ {
            Some(MountType::BIND) => {
                judge_source(m.source.as_deref().unwrap_or(""), &allowed, protected, fs)
            }
            Some(MountType::TMPFS) => None,
            _ => Some("only bind and tmpfs mounts are allowed".to_owned()),
        };
        if let Some(why) = why {
            deny(None, "HostConfig.Mounts", why);
        }
    }
    for (field, what) in options(body) {
        out.push(Violation {
            volume: None,
            field: field.to_owned(),
            message: format!("{what} is not allowed on this node"),
        });
    }
    out
}

/// Every option of the request, other than mounts, that reaches beyond the container, as
/// (Docker's field, what it does). Both structs are taken apart field by field with no
/// `..`: a field a newer Docker API adds stops this crate compiling until it is judged here.
fn options(body: &ContainerCreateBody) -> Vec<(&'static str, &'static str)> {
    let ContainerCreateBody {
        // What runs, as the manifest says, inside the container.
        hostname: _,
        domainname: _,
        user: _,
        attach_stdin: _,
        attach_stdout: _,
        attach_stderr: _,
        exposed_ports: _,
        tty: _,
        open_stdin: _,
        stdin_once: _,
        env: _,
        cmd: _,
        healthcheck: _,
        args_escaped: _,
        image: _,
        // Anonymous volumes live in Docker's storage.
        volumes: _,
        working_dir: _,
        entrypoint: _,
        network_disabled: _,
        on_build: _,
        labels: _,
        stop_signal: _,
        stop_timeout: _,
        shell: _,
        host_config,
        networking_config,
    } = body;
    let mut out = Vec::new();
    let mut deny = |set: bool, field: &'static str, what: &'static str| {
        if set {
            out.push((field, what));
        }
    };
    // orun joins a network through `NetworkMode` alone; endpoint settings could name any.
    deny(
        networking_config.is_some(),
        "NetworkingConfig",
        "a network endpoint setting",
    );
    let Some(host) = host_config else {
        return out;
    };
    let HostConfig {
        // Limits and accounting: they bound the container, never widen it.
        cpu_shares: _,
        memory: _,
        blkio_weight: _,
        blkio_weight_device: _,
        blkio_device_read_bps: _,
        blkio_device_write_bps: _,
        blkio_device_read_iops: _,
        blkio_device_write_iops: _,
        cpu_period: _,
        cpu_quota: _,
        cpu_realtime_period: _,
        cpu_realtime_runtime: _,
        cpuset_cpus: _,
        cpuset_mems: _,
        memory_reservation: _,
        memory_swap: _,
        memory_swappiness: _,
        nano_cpus: _,
        init: _,
        pids_limit: _,
        ulimits: _,
        cpu_count: _,
        cpu_percent: _,
        io_maximum_iops: _,
        io_maximum_bandwidth: _,
        shm_size: _,
        console_size: _,
        // Inside the container's own namespaces.
        port_bindings: _,
        restart_policy: _,
        auto_remove: _,
        cap_drop: _,
        dns: _,
        dns_options: _,
        dns_search: _,
        extra_hosts: _,
        tmpfs: _,
        readonly_rootfs: _,
        // Judged with the mounts, in `check`.
        binds: _,
        mounts: _,
        cgroup_parent,
        devices,
        device_cgroup_rules,
        device_requests,
        oom_kill_disable,
        container_id_file,
        log_config,
        network_mode,
        volume_driver,
        volumes_from,
        annotations,
        cap_add,
        cgroupns_mode,
        group_add,
        ipc_mode,
        cgroup,
        links,
        oom_score_adj,
        pid_mode,
        privileged,
        publish_all_ports,
        security_opt,
        storage_opt,
        uts_mode,
        userns_mode,
        sysctls,
        runtime,
        isolation,
        masked_paths,
        readonly_paths,
    } = host;
    let some = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    let shares = |mode: &Option<String>| {
        mode.as_deref()
            .is_some_and(|m| m == "host" || m.starts_with("container:"))
    };
    deny(
        *privileged == Some(true),
        "HostConfig.Privileged",
        "privileged mode",
    );
    deny(some(cap_add), "HostConfig.CapAdd", "adding capabilities");
    deny(
        devices.as_ref().is_some_and(|d| !d.is_empty()),
        "HostConfig.Devices",
        "a host device",
    );
    deny(
        device_requests.as_ref().is_some_and(|d| !d.is_empty()),
        "HostConfig.DeviceRequests",
        "a device request",
    );
    deny(
        some(device_cgroup_rules),
        "HostConfig.DeviceCgroupRules",
        "a device cgroup rule",
    );
    deny(
        shares(network_mode),
        "HostConfig.NetworkMode",
        "the host's (or another container's) network",
    );
    deny(
        shares(pid_mode),
        "HostConfig.PidMode",
        "the host's (or another container's) process namespace",
    );
    deny(
        shares(ipc_mode),
        "HostConfig.IpcMode",
        "the host's (or another container's) IPC namespace",
    );
    deny(
        uts_mode.as_deref() == Some("host"),
        "HostConfig.UTSMode",
        "the host's UTS namespace",
    );
    deny(
        userns_mode.as_deref() == Some("host"),
        "HostConfig.UsernsMode",
        "the host's user namespace",
    );
    deny(
        *cgroupns_mode == Some(HostConfigCgroupnsModeEnum::HOST),
        "HostConfig.CgroupnsMode",
        "the host's cgroup namespace",
    );
    deny(cgroup.is_some(), "HostConfig.Cgroup", "another cgroup");
    deny(
        cgroup_parent.as_deref().is_some_and(|d| !d.is_empty()),
        "HostConfig.CgroupParent",
        "a cgroup parent",
    );
    // Any option at all: orun sets none, and seccomp or AppArmor profiles given inline,
    // `label=type:spc_t` or `systempaths=unconfined` each undo the default confinement.
    deny(
        some(security_opt),
        "HostConfig.SecurityOpt",
        "a security option",
    );
    deny(
        masked_paths.is_some(),
        "HostConfig.MaskedPaths",
        "changing the masked paths",
    );
    deny(
        readonly_paths.is_some(),
        "HostConfig.ReadonlyPaths",
        "changing the read-only paths",
    );
    deny(
        runtime.is_some(),
        "HostConfig.Runtime",
        "another container runtime",
    );
    deny(
        isolation.is_some(),
        "HostConfig.Isolation",
        "an isolation mode",
    );
    deny(
        sysctls.as_ref().is_some_and(|s| !s.is_empty()),
        "HostConfig.Sysctls",
        "setting sysctls",
    );
    deny(
        some(volumes_from),
        "HostConfig.VolumesFrom",
        "another container's volumes",
    );
    deny(
        volume_driver.as_deref().is_some_and(|d| !d.is_empty()),
        "HostConfig.VolumeDriver",
        "a volume driver",
    );
    deny(
        some(group_add),
        "HostConfig.GroupAdd",
        "adding groups (the `docker` group is root)",
    );
    deny(some(links), "HostConfig.Links", "a legacy container link");
    deny(
        *oom_kill_disable == Some(true),
        "HostConfig.OomKillDisable",
        "disabling the OOM killer",
    );
    deny(
        oom_score_adj.is_some_and(|a| a < 0),
        "HostConfig.OomScoreAdj",
        "a lower OOM score",
    );
    deny(
        *publish_all_ports == Some(true),
        "HostConfig.PublishAllPorts",
        "publishing every port",
    );
    deny(
        container_id_file.as_deref().is_some_and(|f| !f.is_empty()),
        "HostConfig.ContainerIDFile",
        "writing a host file",
    );
    deny(
        log_config.is_some(),
        "HostConfig.LogConfig",
        "another log driver",
    );
    deny(
        storage_opt.as_ref().is_some_and(|s| !s.is_empty()),
        "HostConfig.StorageOpt",
        "a storage option",
    );
    deny(
        annotations.as_ref().is_some_and(|a| !a.is_empty()),
        "HostConfig.Annotations",
        "a runtime annotation",
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

/// Where the spec's `i`th mount is written in its manifest, and its field. The spec keeps
/// its mounts in a canonical order, not the manifest's: the entry is found by what it
/// mounts.
fn written(
    manifest: Option<&manifest_model::Deployment>,
    spec: &RenderedSpec,
    i: usize,
) -> Option<(manifest_model::Pos, String)> {
    let r = spec.volumes.get(i)?;
    let (j, m) = manifest?
        .spec
        .volumes
        .iter()
        .enumerate()
        .find(|(_, m)| m.host_path == r.host_path && m.container_path == r.container_path)?;
    Some((m.at, format!("spec.volumes[{j}].hostPath")))
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
    // Every host-path bind of the node, resolved, for the nesting rule below.
    let mut binds: Vec<(usize, usize, String)> = Vec::new();
    let mut writable = std::collections::HashSet::new();
    // Each deployment's manifest and the file messages about it name.
    let manifest = |d: &reconcile_core::DesiredDeployment| {
        let m = rev.deployments.get(&d.name);
        (m, m.map_or("deployments", |m| m.file.as_str()))
    };
    for (n, d) in desired.deployments.iter().enumerate() {
        let (manifest, file) = manifest(d);
        let refused = match check_spec(&d.spec, &d.name, guard, fs) {
            Ok(refused) => refused,
            Err(e) => {
                out.push(Diagnostic::error(file, Pos::FILE, "spec", e.to_string()));
                continue;
            }
        };
        for v in refused {
            let (at, field) = v
                .volume
                .and_then(|i| written(manifest, &d.spec, i))
                .unwrap_or((Pos::FILE, v.field));
            out.push(Diagnostic::error(file, at, &field, v.message));
        }
        for (i, v) in d.spec.volumes.iter().enumerate() {
            let Ok(resolved) = resolve(&v.host_path, fs) else {
                continue;
            };
            if !v.read_only {
                writable.insert(resolved.clone());
            }
            binds.push((n, i, resolved));
        }
    }
    // Docker finds a bind's host path again at every start of its container. One inside a
    // folder some container can write could be swapped for a link to anywhere, and the next
    // restart would follow it past every check: refused. Each bind looks up its ancestors
    // only, so the rule costs the node's binds times their depth.
    for (n, i, resolved) in binds {
        let inside = resolved
            .match_indices('/')
            .map(|(at, _)| if at == 0 { "/" } else { &resolved[..at] })
            .any(|ancestor| ancestor != resolved && writable.contains(ancestor));
        if inside {
            let d = &desired.deployments[n];
            let (manifest, file) = manifest(d);
            let (at, field) =
                written(manifest, &d.spec, i).unwrap_or((Pos::FILE, "HostConfig.Binds".to_owned()));
            out.push(Diagnostic::error(
                file,
                at,
                &field,
                "this host path lies inside a folder another bind of this node mounts read-write, where a container could replace it with a link to anywhere; mount that folder read-only, or bind folders apart",
            ));
        }
    }
    out.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::Mount;

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

    fn node_with(volumes: &[(&str, bool)]) -> Vec<manifest_model::Diagnostic> {
        let mut yaml = String::from(
            "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: busybox:1\n  volumes:\n",
        );
        for (i, (path, ro)) in volumes.iter().enumerate() {
            yaml.push_str(&format!(
                "    - hostPath: {path}\n      containerPath: /m{i}\n      readOnly: {ro}\n"
            ));
        }
        let src = manifest_model::MemSource::new()
            .with(
                "nodes/n.yaml",
                "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n\nspec:\n  host: 10.0.0.1\n  gitRepo: /srv/r.git\n",
            )
            .with("deployments/web.yaml", yaml);
        let rev = manifest_model::load(&src, &manifest_model::Limits::default())
            .into_result()
            .unwrap()
            .0;
        let node = manifest_model::resolve(&rev, "n", None).unwrap();
        judge_node(&rev, &node, &guard(&["/srv"]), &KnownLinks::default())
    }

    #[test]
    fn a_bind_inside_a_writable_bind_is_refused_at_its_line() {
        assert!(node_with(&[("/srv/a", false), ("/srv/b", false)]).is_empty());
        assert!(node_with(&[("/srv/a", true), ("/srv/a/x", false)]).is_empty());
        let refused = node_with(&[("/srv/a", false), ("/srv/a/x", true)]);
        assert_eq!(refused.len(), 1, "{refused:?}");
        let shown = refused[0].to_string();
        assert!(shown.starts_with("deployments/web.yaml:11:"), "{shown}");
        assert!(shown.contains("spec.volumes[1].hostPath") && shown.contains("read-write"));
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
    fn a_real_link_that_cannot_be_read_as_text_is_refused() {
        use std::os::unix::ffi::OsStrExt as _;
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path())
            .unwrap()
            .display()
            .to_string();
        let odd = std::ffi::OsStr::from_bytes(b"/\xff");
        std::os::unix::fs::symlink(odd, dir.path().join("x")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("etc")).unwrap();
        assert_eq!(
            resolve(&format!("{root}/x/y"), &RealHost),
            Err("passes through a symbolic link whose target is not UTF-8")
        );
        assert_eq!(
            resolve(&format!("{root}/etc/ssl"), &RealHost).unwrap(),
            "/etc/ssl"
        );
        assert_eq!(
            resolve(&format!("{root}/new/dir"), &RealHost).unwrap(),
            format!("{root}/new/dir")
        );
        assert!(refused(&guard(&[&root]), &RealHost, &format!("{root}/x/y")));
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
    fn entries_are_followed_once_when_settled() {
        let fs = links(&[("/var/run", "/run"), ("/data", "/mnt/disk")]);
        let g = guard(&["/var/run/docker.sock", "/data/app"]).settled(&fs);
        assert_eq!(g.host.all.bind, ["/run/docker.sock", "/mnt/disk/app"]);
        assert!(!refused(&g, &fs, "/data/app/x"));
        // A link planted later inside an allowed folder does not move the entry.
        let later = links(&[
            ("/var/run", "/run"),
            ("/data", "/mnt/disk"),
            ("/mnt/disk/app", "/"),
        ]);
        assert!(refused(&g, &later, "/data/app"));
        // A system path that leads elsewhere is protected where it leads.
        let moved = links(&[("/var/lib/docker", "/srv/docker")]);
        let g = guard(&["/srv"]).settled(&moved);
        assert!(refused(&g, &moved, "/srv/docker/volumes"));
        assert!(!refused(&g, &moved, "/srv/data"));
        // Found by the fuzz target (fuzz/regressions/host_policy): a protected path written
        // unclean is kept clean, as binds are judged.
        let mut g = guard(&[]);
        g.protected = vec!["/opt//run/".to_owned()];
        assert_eq!(g.settled(&fs).protected, ["/opt/run"]);
        let g = guard(&["/var/run/docker.sock"]).settled(&fs);
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
                security_opt: Some(vec!["label=type:spc_t".into()]),
                ..HostConfig::default()
            },
            HostConfig {
                masked_paths: Some(Vec::new()),
                ..HostConfig::default()
            },
            HostConfig {
                runtime: Some("runc-unsafe".into()),
                ..HostConfig::default()
            },
            HostConfig {
                group_add: Some(vec!["docker".into()]),
                ..HostConfig::default()
            },
            HostConfig {
                container_id_file: Some("/etc/cron.d/x".into()),
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

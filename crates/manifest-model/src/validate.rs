//! Validation: raw manifests in, domain types and diagnostics out.
//!
//! Each file is checked on its own (collecting every problem, not just the first), then the
//! revision is checked across files: duplicate names, Service → Deployment references,
//! domains routed twice, and host ports that would clash on a node.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use crate::diag::{Diagnostic, Pos, shown_key};
use crate::model::*;
use crate::raw::{self, Entries, Envelope, Sp};
use crate::secret::{AgeStanza, EnvValue, SecretsFile, SopsValue};
use crate::values::{self, ImageRef, ProbeTarget};
use crate::yaml::pos;

/// Collects diagnostics for one file.
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    pub diags: &'a mut Vec<Diagnostic>,
    errors: usize,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(file: &'a str, diags: &'a mut Vec<Diagnostic>) -> Self {
        Self {
            file,
            diags,
            errors: 0,
        }
    }

    pub(crate) fn err(&mut self, at: Pos, field: &str, msg: impl Into<String>) {
        self.errors += 1;
        self.diags
            .push(Diagnostic::error(self.file, at, field, msg));
    }

    pub(crate) fn warn(&mut self, at: Pos, field: &str, msg: impl Into<String>) {
        self.diags
            .push(Diagnostic::warning(self.file, at, field, msg));
    }

    pub(crate) fn ok(&self) -> bool {
        self.errors == 0
    }
}

/// Where a validated item came from, for cross-file diagnostics.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub file: String,
    pub name_at: Pos,
    /// Positions of list items the cross-file checks point at (ports, service fields).
    pub ports_at: Vec<Pos>,
    pub deployment_at: Pos,
    pub port_at: Pos,
    pub domain_at: Pos,
    pub nodes_at: Vec<Pos>,
}

impl Origin {
    fn new(file: &str, name_at: Pos) -> Self {
        Self {
            file: file.to_owned(),
            name_at,
            ports_at: Vec::new(),
            deployment_at: Pos::FILE,
            port_at: Pos::FILE,
            domain_at: Pos::FILE,
            nodes_at: Vec::new(),
        }
    }
}

/// Checks the envelope shared by all kinds; returns the name when it is usable.
fn envelope<S>(cx: &mut Ctx<'_>, env: &Envelope<S>, kind: &str, stem: &str) -> Option<String> {
    if env.api_version.value != API_VERSION {
        cx.err(
            pos(&env.api_version.referenced),
            "apiVersion",
            format!("unsupported apiVersion, expected `{API_VERSION}`"),
        );
    }
    if env.kind.value != kind {
        let msg = if crate::FOLDERS.iter().any(|(_, k)| *k == env.kind.value) {
            format!(
                "kind `{}` does not belong in this folder, which holds `{kind}`",
                env.kind.value
            )
        } else {
            format!("unknown kind, expected `{kind}` in this folder")
        };
        cx.err(pos(&env.kind.referenced), "kind", msg);
    }
    let name = &env.metadata.name;
    if let Err(r) = values::check_dns_label(&name.value) {
        cx.err(pos(&name.referenced), "metadata.name", format!("name {r}"));
        return None;
    }
    if name.value != stem {
        cx.warn(
            pos(&name.referenced),
            "metadata.name",
            format!("name `{}` differs from the file name `{stem}`", name.value),
        );
    }
    Some(name.value.clone())
}

fn opt_str(v: &Option<Sp<String>>, default: &str) -> String {
    v.as_ref()
        .map_or_else(|| default.to_owned(), |s| s.value.clone())
}

fn labels(
    cx: &mut Ctx<'_>,
    field: &str,
    entries: &Entries<Sp<String>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in &entries.0 {
        if let Err(r) = values::check_label_key(k) {
            cx.err(pos(&v.referenced), &format!("{field}.{}", shown_key(k)), r);
        }
        out.insert(k.clone(), v.value.clone());
    }
    out
}

pub(crate) fn node(
    cx: &mut Ctx<'_>,
    env: Envelope<raw::NodeSpec>,
    stem: &str,
) -> Option<(Node, Origin)> {
    let name = envelope(cx, &env, "Node", stem);
    let s = env.spec;
    if let Err(r) = values::check_host(&s.host.value) {
        cx.err(pos(&s.host.referenced), "spec.host", format!("host {r}"));
    }
    if let Some(u) = &s.user
        && let Err(r) = values::check_user(&u.value)
    {
        cx.err(pos(&u.referenced), "spec.user", format!("user {r}"));
    }
    if let Err(r) = values::check_git_url(&s.git_repo.value) {
        cx.err(pos(&s.git_repo.referenced), "spec.gitRepo", r);
    }
    for (field, v) in [
        ("spec.gitBranch", &s.git_branch),
        ("spec.productionBranch", &s.production_branch),
    ] {
        if let Some(b) = v
            && let Err(r) = values::check_branch(&b.value)
        {
            cx.err(pos(&b.referenced), field, format!("branch {r}"));
        }
    }
    let git_branch = opt_str(&s.git_branch, "main");
    if let Err(r) = values::environment_id(&git_branch) {
        let at = s
            .git_branch
            .as_ref()
            .map_or(Pos::FILE, |b| pos(&b.referenced));
        cx.err(at, "spec.gitBranch", r);
    }
    let poll_interval = match &s.poll_interval {
        None => std::time::Duration::from_secs(5),
        Some(p) => match values::parse_duration(&p.value) {
            Ok(d) => d,
            Err(r) => {
                cx.err(pos(&p.referenced), "spec.pollInterval", r);
                std::time::Duration::from_secs(5)
            }
        },
    };
    let mut dir = |field: &str, v: &Option<Sp<String>>, default: &str| -> String {
        match v {
            None => default.to_owned(),
            Some(d) => match values::normalize_abs_path(&d.value) {
                // Keep the spelling the user chose; normalising only checks it.
                Ok(_) => d.value.clone(),
                Err(r) => {
                    cx.err(pos(&d.referenced), field, format!("path {r}"));
                    default.to_owned()
                }
            },
        }
    };
    let data_dir = dir("spec.dataDir", &s.data_dir, "/opt/orun/");
    let code_dir = s
        .code_dir
        .as_ref()
        .map(|_| dir("spec.codeDir", &s.code_dir, ""));
    let spec = NodeSpec {
        host: s.host.value,
        user: opt_str(&s.user, "root"),
        ssh_key_path: opt_str(&s.ssh_key_path, "~/.ssh/id_ed25519"),
        git_repo: s.git_repo.value,
        git_branch,
        poll_interval,
        data_dir,
        code_dir,
        production_branch: opt_str(&s.production_branch, "main"),
        labels: labels(cx, "spec.labels", &s.labels),
    };
    let name = name?;
    let origin = Origin::new(cx.file, pos(&env.metadata.name.referenced));
    cx.ok().then_some((Node { name, spec }, origin))
}

fn seconds(cx: &mut Ctx<'_>, field: &str, v: &Option<Sp<i64>>, default: u32, min: u32) -> u32 {
    match v {
        None => default,
        Some(n) => match u32::try_from(n.value) {
            Ok(x) if x >= min && x <= 86_400 => x,
            _ => {
                cx.err(
                    pos(&n.referenced),
                    field,
                    format!("must be a whole number from {min} to 86400"),
                );
                default
            }
        },
    }
}

fn port_number(cx: &mut Ctx<'_>, field: &str, v: &Sp<i64>) -> u16 {
    match u16::try_from(v.value) {
        Ok(p) if p != 0 => p,
        _ => {
            cx.err(
                pos(&v.referenced),
                field,
                "port must be a number from 1 to 65535",
            );
            1
        }
    }
}

fn probe(cx: &mut Ctx<'_>, field: &str, p: &Option<raw::Probe>) -> Option<Probe> {
    let p = p.as_ref()?;
    let http = match ProbeTarget::parse(&p.http.value) {
        Ok(t) => t,
        Err(r) => {
            cx.err(pos(&p.http.referenced), &format!("{field}.http"), r);
            return None;
        }
    };
    Some(Probe {
        http,
        period_seconds: seconds(
            cx,
            &format!("{field}.periodSeconds"),
            &p.period_seconds,
            5,
            1,
        ),
        timeout_seconds: seconds(
            cx,
            &format!("{field}.timeoutSeconds"),
            &p.timeout_seconds,
            2,
            1,
        ),
        failure_threshold: seconds(
            cx,
            &format!("{field}.failureThreshold"),
            &p.failure_threshold,
            3,
            1,
        ),
        initial_delay_seconds: seconds(
            cx,
            &format!("{field}.initialDelaySeconds"),
            &p.initial_delay_seconds,
            0,
            0,
        ),
    })
}

fn keyword<T: Copy>(
    cx: &mut Ctx<'_>,
    field: &str,
    v: &Option<Sp<String>>,
    table: &[(&str, T)],
    default: T,
) -> T {
    let Some(v) = v else { return default };
    match table.iter().find(|(k, _)| *k == v.value) {
        Some((_, t)) => *t,
        None => {
            let names: Vec<&str> = table.iter().map(|(k, _)| *k).collect();
            // The value is not quoted back: it may be a secret pasted in the wrong place.
            cx.err(
                pos(&v.referenced),
                field,
                format!("unknown value, expected one of: {}", names.join(", ")),
            );
            default
        }
    }
}

fn env_value(cx: &mut Ctx<'_>, field: &str, v: &Sp<String>) -> EnvValue {
    match SopsValue::parse(&v.value) {
        Ok(None) => EnvValue::Plain(v.value.clone()),
        Ok(Some(enc)) => EnvValue::Encrypted(enc),
        Err(r) => {
            cx.err(
                pos(&v.referenced),
                field,
                format!("malformed encrypted value: {r}"),
            );
            EnvValue::Plain(String::new())
        }
    }
}

pub(crate) fn deployment(
    cx: &mut Ctx<'_>,
    env: Envelope<raw::DeploymentSpec>,
    stem: &str,
) -> Option<(Deployment, Origin)> {
    let name = envelope(cx, &env, "Deployment", stem);
    if name.as_ref().is_some_and(|n| n.len() < 2) {
        // The name becomes the container's name, and Docker refuses one-character names.
        cx.err(
            pos(&env.metadata.name.referenced),
            "metadata.name",
            "a Deployment name needs at least 2 characters: it names the container, and Docker refuses shorter names",
        );
    }
    let s = env.spec;
    let mut origin = Origin::new(cx.file, pos(&env.metadata.name.referenced));

    let source = match (&s.image, &s.build) {
        (Some(_), Some(b)) => {
            cx.err(
                pos(&b.referenced),
                "spec.build",
                "set either `image` or `build`, not both",
            );
            None
        }
        (None, None) => {
            cx.err(
                pos(&env.metadata.name.referenced),
                "spec",
                "set one of `image` or `build`",
            );
            None
        }
        (Some(i), None) => match ImageRef::parse(&i.value) {
            Ok(r) => Some(ImageSource::Image(r)),
            Err(r) => {
                cx.err(pos(&i.referenced), "spec.image", r);
                None
            }
        },
        (None, Some(b)) => build(cx, &b.value).map(ImageSource::Build),
    };

    let mut ports = Vec::with_capacity(s.ports.len());
    for (i, p) in s.ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        let container_port =
            port_number(cx, &format!("{f}.containerPort"), &p.value.container_port);
        let host_port = p
            .value
            .port
            .as_ref()
            .map(|hp| port_number(cx, &format!("{f}.port"), hp));
        let host_ip = match &p.value.host_ip {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(ip) => ip.value.parse().unwrap_or_else(|_| {
                cx.err(
                    pos(&ip.referenced),
                    &format!("{f}.hostIP"),
                    "not an IP address",
                );
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            }),
        };
        let protocol = keyword(
            cx,
            &format!("{f}.protocol"),
            &p.value.protocol,
            &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)],
            Protocol::Tcp,
        );
        // Clashes are about the host port: point there when it is written.
        origin.ports_at.push(
            p.value
                .port
                .as_ref()
                .map_or(pos(&p.referenced), |hp| pos(&hp.referenced)),
        );
        ports.push(PortMapping {
            container_port,
            host_port,
            host_ip,
            protocol,
        });
    }
    for i in 0..ports.len() {
        for j in 0..i {
            if let (Some(a), Some(b)) = (ports[i].host_port, ports[j].host_port)
                && a == b
                && ports[i].protocol == ports[j].protocol
                && ips_overlap(ports[i].host_ip, ports[j].host_ip)
            {
                cx.err(
                    origin.ports_at[i],
                    &format!("spec.ports[{i}].port"),
                    format!("host port {a} is already published by spec.ports[{j}]"),
                );
            }
        }
    }

    let mut volumes = Vec::with_capacity(s.volumes.len());
    for (i, v) in s.volumes.iter().enumerate() {
        let f = format!("spec.volumes[{i}]");
        let host_path = values::normalize_abs_path(&v.value.host_path.value).unwrap_or_else(|r| {
            cx.err(
                pos(&v.value.host_path.referenced),
                &format!("{f}.hostPath"),
                format!("path {r}"),
            );
            String::new()
        });
        let container_path = match values::normalize_abs_path(&v.value.container_path.value) {
            Ok(p) if p == "/" => {
                cx.err(
                    pos(&v.value.container_path.referenced),
                    &format!("{f}.containerPath"),
                    "cannot mount over `/`",
                );
                p
            }
            Ok(p) => p,
            Err(r) => {
                cx.err(
                    pos(&v.value.container_path.referenced),
                    &format!("{f}.containerPath"),
                    format!("path {r}"),
                );
                String::new()
            }
        };
        if volumes
            .iter()
            .any(|m: &VolumeMount| m.container_path == container_path)
        {
            cx.err(
                pos(&v.referenced),
                &format!("{f}.containerPath"),
                "container path is mounted twice",
            );
        }
        volumes.push(VolumeMount {
            host_path,
            container_path,
            read_only: v.value.read_only.unwrap_or(false),
        });
    }

    let mut env_map = BTreeMap::new();
    for (k, v) in &s.env.0 {
        let f = format!("spec.env.{}", shown_key(k));
        if let Err(r) = values::check_env_name(k) {
            cx.err(pos(&v.referenced), &f, r);
        }
        env_map.insert(k.clone(), env_value(cx, &f, v));
    }

    let health = match &s.health {
        None => Health::default(),
        Some(h) => Health {
            readiness: probe(cx, "spec.health.readiness", &h.readiness),
            liveness: probe(cx, "spec.health.liveness", &h.liveness),
        },
    };

    let pull = keyword(
        cx,
        "spec.pull",
        &s.pull,
        &[
            ("missing", PullPolicy::Missing),
            ("always", PullPolicy::Always),
            ("never", PullPolicy::Never),
        ],
        PullPolicy::Missing,
    );
    if pull != PullPolicy::Missing && matches!(source, Some(ImageSource::Build(_))) {
        cx.err(
            s.pull.as_ref().map_or(Pos::FILE, |p| pos(&p.referenced)),
            "spec.pull",
            "`pull` applies to `image` deployments; built images are never pulled",
        );
    }
    let restart = keyword(
        cx,
        "spec.restart",
        &s.restart,
        &[
            ("always", RestartPolicy::Always),
            ("on-failure", RestartPolicy::OnFailure),
            ("never", RestartPolicy::Never),
        ],
        RestartPolicy::Always,
    );

    let nodes = s.nodes.as_ref().map(|list| {
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for (i, n) in list.iter().enumerate() {
            if let Err(r) = values::check_dns_label(&n.value) {
                cx.err(
                    pos(&n.referenced),
                    &format!("spec.nodes[{i}]"),
                    format!("node name {r}"),
                );
            } else if out.contains(&n.value) {
                cx.warn(
                    pos(&n.referenced),
                    &format!("spec.nodes[{i}]"),
                    "node listed twice",
                );
            } else {
                origin.nodes_at.push(pos(&n.referenced));
                out.push(n.value.clone());
            }
        }
        out
    });
    if let Some(list) = &nodes
        && list.is_empty()
        && cx.ok()
    {
        cx.warn(
            Pos::FILE,
            "spec.nodes",
            "empty `nodes` list: this deployment runs nowhere",
        );
    }
    let node_selector = labels(cx, "spec.nodeSelector", &s.node_selector);

    let resources = match &s.resources {
        None => Resources::default(),
        Some(r) => Resources {
            memory: r
                .memory
                .as_ref()
                .and_then(|m| match values::parse_bytes(&m.value) {
                    Ok(b) if b >= 6 << 20 => Some(b),
                    Ok(_) => {
                        cx.err(
                            pos(&m.referenced),
                            "spec.resources.memory",
                            "memory limit must be at least 6Mi (Docker's minimum)",
                        );
                        None
                    }
                    Err(e) => {
                        cx.err(pos(&m.referenced), "spec.resources.memory", e);
                        None
                    }
                }),
            millicpus: r.cpus.as_ref().and_then(|c| {
                let milli = (c.value * 1000.0).round();
                if c.value.is_finite() && (1.0..=1_024_000.0).contains(&milli) {
                    // In range by the check above, so the cast is exact.
                    Some(milli as u32)
                } else {
                    cx.err(
                        pos(&c.referenced),
                        "spec.resources.cpus",
                        "cpus must be from 0.001 to 1024",
                    );
                    None
                }
            }),
        },
    };

    let rollout = match &s.rollout {
        None => Rollout::default(),
        Some(r) => {
            let d = Rollout::default();
            let strategy = keyword(
                cx,
                "spec.rollout.strategy",
                &r.strategy,
                &[
                    ("auto", RolloutStrategy::Auto),
                    ("start-first", RolloutStrategy::StartFirst),
                    ("stop-first", RolloutStrategy::StopFirst),
                ],
                RolloutStrategy::Auto,
            );
            let min = seconds(
                cx,
                "spec.rollout.minHealthySeconds",
                &r.min_healthy_seconds,
                d.min_healthy_seconds,
                0,
            );
            let deadline = seconds(
                cx,
                "spec.rollout.healthyDeadlineSeconds",
                &r.healthy_deadline_seconds,
                d.healthy_deadline_seconds,
                1,
            );
            if deadline <= min && cx.ok() {
                // Point at whichever of the two was written; the default one has no place.
                match (&r.healthy_deadline_seconds, &r.min_healthy_seconds) {
                    (Some(v), _) => cx.err(
                        pos(&v.referenced),
                        "spec.rollout.healthyDeadlineSeconds",
                        "must be greater than minHealthySeconds",
                    ),
                    (None, Some(v)) => cx.err(
                        pos(&v.referenced),
                        "spec.rollout.minHealthySeconds",
                        format!("must be less than healthyDeadlineSeconds (default {deadline})"),
                    ),
                    (None, None) => {}
                }
            }
            let drain = seconds(
                cx,
                "spec.rollout.drainSeconds",
                &r.drain_seconds,
                d.drain_seconds,
                0,
            );
            Rollout {
                strategy,
                min_healthy_seconds: min,
                healthy_deadline_seconds: deadline,
                drain_seconds: drain,
            }
        }
    };

    let labels_map = labels(cx, "spec.labels", &s.labels);
    let (Some(name), Some(source)) = (name, source) else {
        return None;
    };
    let spec = DeploymentSpec {
        source,
        ports,
        volumes,
        env: env_map,
        health,
        pull,
        command: s.command,
        args: s.args,
        nodes,
        node_selector,
        restart,
        resources,
        rollout,
        labels: labels_map,
        suspend: s.suspend.unwrap_or(false),
    };
    if spec.rollout.strategy == RolloutStrategy::StartFirst && spec.publishes_host_port() {
        let at = s
            .rollout
            .as_ref()
            .and_then(|r| r.strategy.as_ref())
            .map_or(origin.name_at, |v| pos(&v.referenced));
        cx.err(
            at,
            "spec.rollout.strategy",
            "`start-first` cannot be used with published host ports: old and new containers would clash; use `stop-first` or `auto`",
        );
    }
    cx.ok().then_some((Deployment { name, spec }, origin))
}

fn build(cx: &mut Ctx<'_>, b: &raw::Build) -> Option<BuildSpec> {
    let context = values::normalize_rel_path(&b.context.value)
        .map_err(|r| {
            cx.err(
                pos(&b.context.referenced),
                "spec.build.context",
                format!("path {r} (it is resolved under the node's codeDir)"),
            )
        })
        .ok();
    let dockerfile = match &b.dockerfile {
        None => Some("Dockerfile".to_owned()),
        Some(d) => values::normalize_rel_path(&d.value)
            .map_err(|r| {
                cx.err(
                    pos(&d.referenced),
                    "spec.build.dockerfile",
                    format!("path {r} (it is resolved under the build context)"),
                )
            })
            .ok(),
    };
    let build_mode = keyword(
        cx,
        "spec.build.buildMode",
        &b.build_mode,
        &[
            ("build-once", BuildMode::BuildOnce),
            ("always", BuildMode::Always),
        ],
        BuildMode::BuildOnce,
    );
    let mut args = BTreeMap::new();
    for (k, v) in &b.args.0 {
        if let Err(r) = values::check_env_name(k) {
            cx.err(
                pos(&v.referenced),
                &format!("spec.build.args.{}", shown_key(k)),
                r,
            );
        }
        args.insert(k.clone(), v.value.clone());
    }
    Some(BuildSpec {
        context: context?,
        dockerfile: dockerfile?,
        args,
        build_mode,
    })
}

pub(crate) fn service(
    cx: &mut Ctx<'_>,
    env: Envelope<raw::ServiceSpec>,
    stem: &str,
) -> Option<(Service, Origin)> {
    let name = envelope(cx, &env, "Service", stem);
    let s = env.spec;
    let mut origin = Origin::new(cx.file, pos(&env.metadata.name.referenced));
    origin.deployment_at = pos(&s.deployment.referenced);
    origin.domain_at = pos(&s.ingress.domain.default.referenced);
    if let Err(r) = values::check_dns_label(&s.deployment.value) {
        cx.err(
            origin.deployment_at,
            "spec.deployment",
            format!("deployment name {r}"),
        );
    }
    if let Err(r) = values::check_domain(&s.ingress.domain.default.value) {
        cx.err(origin.domain_at, "spec.ingress.domain.default", r);
    }
    if let Some(t) = &s.ingress.domain.environment {
        if !t.value.contains("$ENV") {
            cx.warn(
                pos(&t.referenced),
                "spec.ingress.domain.environment",
                "template has no `$ENV`: every non-production environment gets the same domain",
            );
        }
        // Syntax only: whether the filled-in name fits depends on the branch, and `resolve`
        // checks it once the environment is known.
        if let Err(r) = values::check_domain(&t.value.replace("$ENV", "env")) {
            cx.err(pos(&t.referenced), "spec.ingress.domain.environment", r);
        }
    }
    let port = s.port.as_ref().map(|p| {
        origin.port_at = pos(&p.referenced);
        port_number(cx, "spec.port", p)
    });
    let spec = ServiceSpec {
        deployment: s.deployment.value,
        ingress: Ingress {
            domain: DomainSpec {
                default: s.ingress.domain.default.value,
                environment: s.ingress.domain.environment.map(|e| e.value),
            },
            ssl: s.ingress.ssl.unwrap_or(false),
        },
        port,
    };
    let name = name?;
    cx.ok().then_some((Service { name, spec }, origin))
}

pub(crate) fn secrets(cx: &mut Ctx<'_>, raw: raw::SecretsFile) -> Option<SecretsFile> {
    let Some(meta) = raw.sops else {
        cx.err(Pos::FILE, "sops", "secrets.yaml is not encrypted with SOPS (no `sops` metadata); never commit plaintext secrets");
        return None;
    };
    let at = pos(&meta.referenced);
    let meta = meta.value;
    if meta.encrypted_suffix.is_some()
        || meta.unencrypted_regex.is_some()
        || meta.encrypted_regex.is_some()
    {
        cx.err(
            at,
            "sops",
            "only the `unencrypted_suffix` rule is supported for secrets.yaml",
        );
    }
    if meta.mac_only_encrypted == Some(true) {
        cx.err(
            at,
            "sops.mac_only_encrypted",
            "`mac_only_encrypted` is not supported",
        );
    }
    let age: Vec<AgeStanza> = meta
        .age
        .unwrap_or_default()
        .into_iter()
        .map(|a| AgeStanza {
            recipient: a.recipient,
            enc: a.enc,
        })
        .collect();
    if age.is_empty() {
        cx.err(
            at,
            "sops.age",
            "no age recipients: orun decrypts with age keys only",
        );
    }
    let mac = match meta.mac.as_deref().map(SopsValue::parse) {
        Some(Ok(Some(mac))) => Some(mac),
        _ => {
            cx.err(at, "sops.mac", "missing or malformed SOPS MAC");
            None
        }
    };
    let last_modified = meta.lastmodified.unwrap_or_default();
    if last_modified.is_empty() {
        cx.err(at, "sops.lastmodified", "missing `lastmodified`");
    }
    // An empty suffix would match every key and switch the plaintext check off; SOPS itself
    // falls back to the default then.
    let suffix = meta
        .unencrypted_suffix
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "_unencrypted".to_owned());
    let mut entries = BTreeMap::new();
    for (k, v) in raw.entries {
        let f = shown_key(&k);
        if let Err(r) = values::check_env_name(&k) {
            cx.err(pos(&v.referenced), &f, r);
        }
        let value = env_value(cx, &f, &v);
        if matches!(value, EnvValue::Plain(_)) && !k.ends_with(&suffix) {
            cx.err(
                pos(&v.referenced),
                &f,
                "value is not encrypted; run `sops --encrypt` on secrets.yaml",
            );
        }
        entries.insert(k, value);
    }
    let mac = mac?;
    cx.ok().then_some(SecretsFile {
        entries,
        age,
        last_modified,
        mac,
        unencrypted_suffix: suffix,
    })
}

/// Whether two bind addresses can collide: equal, or either is the wildcard.
pub(crate) fn ips_overlap(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// Whether `deployment` runs on `node` by its `nodes` list and `nodeSelector`.
pub fn targets(spec: &DeploymentSpec, node: &Node) -> bool {
    let listed = spec.nodes.as_ref().is_none_or(|n| n.contains(&node.name));
    let selected = spec
        .node_selector
        .iter()
        .all(|(k, v)| node.spec.labels.get(k) == Some(v));
    listed && selected
}

/// Checks across files, once every file validated on its own.
pub(crate) fn cross_file(rev: &Revision, origins: &Origins, diags: &mut Vec<Diagnostic>) {
    // Services → Deployments, ports, and domains routed twice.
    let mut domains: HashMap<&str, &str> = HashMap::new();
    for (name, svc) in &rev.services {
        let o = &origins.services[name];
        match rev.deployments.get(&svc.spec.deployment) {
            // Declared twice, or declared in a file with errors: already reported there.
            None if origins.deployments.contains_key(&svc.spec.deployment)
                || origins.broken_deployments.contains(&svc.spec.deployment) => {}
            None => diags.push(Diagnostic::error(
                &o.file,
                o.deployment_at,
                "spec.deployment",
                format!(
                    "no deployment named `{}` in deployments/",
                    svc.spec.deployment
                ),
            )),
            Some(dep) => {
                if let Some(p) = svc.spec.port
                    && !dep.spec.ports.iter().any(|m| m.container_port == p)
                {
                    diags.push(Diagnostic::error(
                        &o.file,
                        o.port_at,
                        "spec.port",
                        format!("deployment `{}` declares no containerPort {p}", dep.name),
                    ));
                }
                if svc.spec.port.is_none() && dep.spec.ports.is_empty() {
                    diags.push(Diagnostic::error(
                        &o.file,
                        o.deployment_at,
                        "spec.deployment",
                        format!("deployment `{}` declares no ports to route to", dep.name),
                    ));
                }
            }
        }
        if let Some(other) = domains.insert(&svc.spec.ingress.domain.default, name) {
            diags.push(Diagnostic::error(
                &o.file,
                o.domain_at,
                "spec.ingress.domain.default",
                format!(
                    "domain `{}` is also routed by {}",
                    svc.spec.ingress.domain.default, origins.services[other].file
                ),
            ));
        }
    }

    // Deployments naming nodes that do not exist.
    for (name, dep) in &rev.deployments {
        if let Some(list) = &dep.spec.nodes {
            let o = &origins.deployments[name];
            for (i, n) in list.iter().enumerate() {
                if !rev.nodes.contains_key(n) {
                    diags.push(Diagnostic::warning(
                        &o.file,
                        o.nodes_at.get(i).copied().unwrap_or(Pos::FILE),
                        &format!("spec.nodes[{i}]"),
                        format!("no node named `{n}` in nodes/"),
                    ));
                }
            }
        }
    }

    host_port_clashes(rev, origins, diags);
}

/// A published port: (deployment, index in its `ports`, bind address).
type PortUse<'a> = (&'a str, usize, IpAddr);

/// Two deployments that can land on one node must not publish the same host port.
fn host_port_clashes(rev: &Revision, origins: &Origins, diags: &mut Vec<Diagnostic>) {
    // Group published ports by (port, protocol); only groups of two or more need a look.
    let mut by_port: BTreeMap<(u16, Protocol), Vec<PortUse<'_>>> = BTreeMap::new();
    for (name, dep) in &rev.deployments {
        for (i, p) in dep.spec.ports.iter().enumerate() {
            if let Some(hp) = p.host_port {
                by_port
                    .entry((hp, p.protocol))
                    .or_default()
                    .push((name, i, p.host_ip));
            }
        }
    }
    let co_located = |a: &Deployment, b: &Deployment| -> Option<String> {
        if rev.nodes.is_empty() {
            // Without Node manifests, assume any two deployments may share a host.
            return Some("a node".to_owned());
        }
        rev.nodes
            .values()
            .find(|n| targets(&a.spec, n) && targets(&b.spec, n))
            .map(|n| format!("node `{}`", n.name))
    };
    for ((port, proto), users) in by_port {
        for j in 1..users.len() {
            for i in 0..j {
                let (a_name, _, a_ip) = users[i];
                let (b_name, b_idx, b_ip) = users[j];
                if a_name == b_name || !ips_overlap(a_ip, b_ip) {
                    continue;
                }
                let (a, b) = (&rev.deployments[a_name], &rev.deployments[b_name]);
                if let Some(where_) = co_located(a, b) {
                    let o = &origins.deployments[b_name];
                    diags.push(Diagnostic::error(
                        &o.file,
                        o.ports_at.get(b_idx).copied().unwrap_or(Pos::FILE),
                        &format!("spec.ports[{b_idx}].port"),
                        format!(
                            "host port {port}/{} is also published by {} on {where_}",
                            match proto {
                                Protocol::Tcp => "tcp",
                                Protocol::Udp => "udp",
                            },
                            origins.deployments[a_name].file
                        ),
                    ));
                }
            }
        }
    }
}

/// Origins of every validated item, by kind and name.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    pub nodes: BTreeMap<String, Origin>,
    pub deployments: BTreeMap<String, Origin>,
    pub services: BTreeMap<String, Origin>,
    /// Deployments whose file failed (by name, or file stem when even that did not parse):
    /// references to them are not "missing", the file's own error says what is wrong.
    pub broken_deployments: std::collections::BTreeSet<String>,
}

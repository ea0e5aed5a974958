//! Validation: raw manifests in, domain types and diagnostics out.
//!
//! Each file is checked on its own (collecting every problem, not just the first), then the
//! revision is checked across files: duplicate names, Service → Deployment references,
//! domains routed twice, and host ports that would clash on a node.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use crate::diag::{Diagnostic, Diags, KEY, Pos, escape_file_name};
use crate::model::*;
use crate::raw::{self, Entries, Envelope, Flag, MapValue, Sp};
use crate::secret::{EnvValue, SealedFile, SecretsFile, SopsValue};
use crate::values::{self, ImageRef, ProbeTarget};
use crate::yaml::pos;

/// Collects diagnostics for one file.
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    pub diags: &'a mut Diags,
    errors: usize,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(file: &'a str, diags: &'a mut Diags) -> Self {
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
    /// Where each `env` entry with a `secretRef` is, by env name.
    pub refs_at: BTreeMap<String, Pos>,
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
            refs_at: BTreeMap::new(),
        }
    }
}

/// Checks the envelope shared by all kinds; returns the name when it is usable.
fn envelope<S>(cx: &mut Ctx<'_>, env: &Envelope<S>, kind: &str, stem: &str) -> Option<String> {
    if env.sops && kind != "Deployment" {
        cx.err(
            Pos::FILE,
            "sops",
            "only secrets.yaml and Deployment files (their `env`) may be encrypted with sops",
        );
    }
    if sops_age::looks_sealed(&env.api_version.value) {
        cx.err(
            pos(&env.api_version.referenced),
            "apiVersion",
            "the whole file is encrypted; encrypt only `env` values: `sops --encrypt --encrypted-regex '^env$'`",
        );
        return None;
    }
    if env.api_version.value != API_VERSION {
        cx.err(
            pos(&env.api_version.referenced),
            "apiVersion",
            format!("unsupported apiVersion, expected `{API_VERSION}`"),
        );
    }
    if env.kind.value != kind {
        // A kind is named back only when it is one of ours: then it is our word, not the
        // author's text.
        let msg =
            if let Some((_, other)) = crate::FOLDERS.iter().find(|(_, k)| *k == env.kind.value) {
                format!("kind `{other}` does not belong in this folder, which holds `{kind}`")
            } else {
                format!("unknown kind, expected `{kind}` in this folder")
            };
        cx.err(pos(&env.kind.referenced), "kind", msg);
    }
    for (key, v) in &env.metadata.ignored {
        let field = format!("metadata.{}", metadata_key(key));
        let msg = if key == "labels" {
            "ignored: orun reads only `metadata.name`; container labels go in `spec.labels`"
        } else {
            "ignored: orun reads only `metadata.name`"
        };
        cx.warn(pos(&v.referenced), &field, msg);
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
            "name differs from the file name (without .yaml)",
        );
    }
    Some(name.value.clone())
}

/// A `metadata` key as a field path shows it: the keys Kubernetes manifests carry are named,
/// any other is [`KEY`] (a key is where a pasted secret lands, so it is never echoed).
fn metadata_key(key: &str) -> &str {
    const KNOWN: &[&str] = &["labels", "annotations", "namespace", "uid", "generateName"];
    if KNOWN.contains(&key) { key } else { KEY }
}

/// A boolean field: its value, with a warning when it was written as a YAML 1.1 word.
fn flag(cx: &mut Ctx<'_>, field: &str, v: &Option<Sp<Flag>>) -> Option<bool> {
    let v = v.as_ref()?;
    if v.value.yaml11 {
        cx.warn(
            pos(&v.referenced),
            field,
            format!(
                "a YAML 1.1 boolean word, read as `{}` as Orcra Run read it; write `true` or `false`",
                v.value.value
            ),
        );
    }
    Some(v.value.value)
}

/// A map value, the empty string when it was left empty (`KEY:`), with a warning then.
fn map_value<'a>(cx: &mut Ctx<'_>, field: &str, v: &'a MapValue) -> &'a str {
    match &v.value {
        Some(s) => s,
        None => {
            cx.warn(
                pos(&v.referenced),
                field,
                "empty (null) value, read as the empty string as Orcra Run read it; write `\"\"` to say so",
            );
            ""
        }
    }
}

fn opt_str(v: &Option<Sp<String>>, default: &str) -> String {
    v.as_ref()
        .map_or_else(|| default.to_owned(), |s| s.value.clone())
}

fn labels(cx: &mut Ctx<'_>, field: &str, entries: &Entries<MapValue>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let field = format!("{field}.{KEY}");
    for (k, v) in &entries.0 {
        if let Err(r) = values::check_label_key(k) {
            cx.err(pos(&v.referenced), &field, r);
        }
        let value = map_value(cx, &field, v);
        if let Err(r) = values::check_docker_string(value) {
            cx.err(pos(&v.referenced), &field, r);
        }
        out.insert(k.clone(), value.to_owned());
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
        offer_secrets: s.offer_secrets.unwrap_or(true),
        labels: labels(cx, "spec.labels", &s.labels),
    };
    let name = name?;
    let origin = Origin::new(cx.file, pos(&env.metadata.name.referenced));
    let file = cx.file.to_owned();
    cx.ok().then_some((Node { name, file, spec }, origin))
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

fn env_value(cx: &mut Ctx<'_>, field: &str, value: &str, at: Pos) -> EnvValue {
    match SopsValue::parse(value) {
        Ok(None) => {
            if let Err(r) = values::check_docker_string(value) {
                cx.err(at, field, r);
            }
            EnvValue::Plain(value.to_owned())
        }
        Ok(Some(enc)) => EnvValue::Encrypted(enc),
        Err(r) => {
            cx.err(at, field, format!("malformed encrypted value: {r}"));
            EnvValue::Plain(String::new())
        }
    }
}

/// A Deployment's `env` value: text as written (a plain scalar the parser typed is read back
/// from `text` by its span, so `1.10` stays `1.10`), or a reference into `secrets.yaml`.
fn deployment_env_value(
    cx: &mut Ctx<'_>,
    field: &str,
    v: &Sp<raw::EnvValue>,
    text: &str,
) -> EnvValue {
    let written = match &v.value {
        raw::EnvValue::SecretRef(key) => {
            if sops_age::looks_sealed(key) {
                cx.err(
                    pos(&v.referenced),
                    &format!("{field}.secretRef"),
                    "sops encrypted this reference's key name (its rule covers all of `env`): keep `secretRef`s in files sops does not encrypt, or encrypt only the values, e.g. `--encrypted-regex '^(DB_PASS|API_KEY)$'`",
                );
            } else if let Err(r) = values::check_env_name(key) {
                cx.err(pos(&v.referenced), &format!("{field}.secretRef"), r);
            }
            return EnvValue::SecretRef(key.clone());
        }
        raw::EnvValue::Text(t) => t.clone(),
        raw::EnvValue::Typed => {
            // `defined`: an alias's value is spelled where its anchor is.
            let span = v.defined.span();
            let spelled = span.byte_offset().zip(span.byte_len()).and_then(|(o, l)| {
                let o = usize::try_from(o).ok()?;
                text.get(o..o.checked_add(usize::try_from(l).ok()?)?)
            });
            match spelled {
                Some("~" | "null" | "Null" | "NULL" | "") | None => {
                    cx.warn(
                        pos(&v.referenced),
                        field,
                        "empty (null) value, read as the empty string as Orcra Run read it; write `\"\"` to say so",
                    );
                    String::new()
                }
                Some(s) => s.to_owned(),
            }
        }
    };
    env_value(cx, field, &written, pos(&v.referenced))
}

pub(crate) fn deployment(
    cx: &mut Ctx<'_>,
    env: Envelope<raw::DeploymentSpec>,
    stem: &str,
    text: &str,
) -> Option<(Deployment, Origin)> {
    let name = envelope(cx, &env, "Deployment", stem);
    if name.as_ref().is_some_and(|n| n.len() < 2) {
        // The name becomes the container's name on production nodes, and Docker refuses
        // one-character container names; elsewhere it runs as `<env>.<name>`. Only the node
        // resolving it knows which, so `resolve` refuses it on production.
        cx.warn(
            pos(&env.metadata.name.referenced),
            "metadata.name",
            "a one-character name runs only off production (as `<env>.<name>`): a production node would give it to the container, which Docker refuses, so production nodes refuse the revision",
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
    // One host port published twice: grouped by (port, protocol), each mapping compared with
    // the first that could collide, so n ports cost n lookups and at most n diagnostics.
    let mut published = HostPorts::default();
    for (i, p) in ports.iter().enumerate() {
        if let Some(hp) = p.host_port
            && let Some(j) = published.claim((hp, p.protocol), p.host_ip, i)
        {
            cx.err(
                origin.ports_at[i],
                &format!("spec.ports[{i}].port"),
                format!("this host port is already published by spec.ports[{j}]"),
            );
        }
    }

    let mut volumes = Vec::with_capacity(s.volumes.len());
    let mut mounted = std::collections::HashSet::with_capacity(s.volumes.len());
    for (i, v) in s.volumes.iter().enumerate() {
        let f = format!("spec.volumes[{i}]");
        let host_path = host_path(cx, &format!("{f}.hostPath"), &v.value.host_path);
        let container_field = format!("{f}.containerPath");
        let at = pos(&v.value.container_path.referenced);
        let container_path = match values::bind_path(&v.value.container_path.value) {
            Ok(p) if p == "/" => {
                cx.err(at, &container_field, "cannot mount over `/`");
                p
            }
            Ok(p) => {
                if values::has_dot_dot(&v.value.container_path.value) {
                    cx.warn(at, &container_field, DOT_DOT);
                }
                p
            }
            Err(r) => {
                cx.err(at, &container_field, format!("path {r}"));
                String::new()
            }
        };
        if !mounted.insert(container_path.clone()) {
            cx.err(
                pos(&v.referenced),
                &format!("{f}.containerPath"),
                "container path is mounted twice",
            );
        }
        volumes.push(VolumeMount {
            host_path,
            container_path,
            read_only: flag(cx, &format!("{f}.readOnly"), &v.value.read_only).unwrap_or(false),
            at: pos(&v.value.host_path.referenced),
        });
    }

    let sealed = env.sops;
    let mut env_map = BTreeMap::new();
    let env_field = format!("spec.env.{KEY}");
    for (k, v) in &s.env.0 {
        if let Err(r) = values::check_env_name(k) {
            cx.err(pos(&v.referenced), &env_field, r);
        }
        let value = deployment_env_value(cx, &env_field, v, text);
        if matches!(value, EnvValue::SecretRef(_)) {
            origin.refs_at.insert(k.clone(), pos(&v.referenced));
        }
        if matches!(value, EnvValue::Encrypted(_)) && !sealed {
            cx.err(
                pos(&v.referenced),
                &env_field,
                "an encrypted value needs its file's `sops` metadata to be decrypted, and this file has none: encrypt the file with `sops --encrypt --encrypted-regex '^env$' --in-place` rather than pasting a value from another file",
            );
        }
        env_map.insert(k.clone(), value);
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
        let mut listed = std::collections::HashSet::with_capacity(list.len());
        for (i, n) in list.iter().enumerate() {
            if let Err(r) = values::check_dns_label(&n.value) {
                cx.err(
                    pos(&n.referenced),
                    &format!("spec.nodes[{i}]"),
                    format!("node name {r}"),
                );
            } else if !listed.insert(n.value.as_str()) {
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
                    Ok(b) if (6 << 20..=values::MAX_MEMORY).contains(&b) => Some(b),
                    Ok(b) if b < 6 << 20 => {
                        cx.err(
                            pos(&m.referenced),
                            "spec.resources.memory",
                            "memory limit must be at least 6Mi (Docker's minimum)",
                        );
                        None
                    }
                    Ok(_) => {
                        // Docker takes a signed 64-bit count; a larger one would be dropped,
                        // and a limit silently dropped is no limit.
                        cx.err(
                            pos(&m.referenced),
                            "spec.resources.memory",
                            "memory limit must be at most 1024Ti",
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
    let command = words(cx, "spec.command", &s.command);
    let args = words(cx, "spec.args", &s.args);
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
        command,
        args,
        nodes,
        node_selector,
        restart,
        resources,
        rollout,
        labels: labels_map,
        suspend: flag(cx, "spec.suspend", &s.suspend).unwrap_or(false),
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
    let file = cx.file.to_owned();
    cx.ok().then_some((Deployment { name, file, spec }, origin))
}

/// Said of a bind path holding `..`: what Docker does with it, and so what orun mounts.
const DOT_DOT: &str = "path holds `..`: Docker cleans it before mounting, and orun mounts the cleaned path; write it without `..`";

/// A volume's `hostPath`: an absolute path, cleaned as Docker cleans it; or a Docker volume
/// name, which Docker mounts as a named volume (the `host:container` syntax orun hands to
/// Docker reads any source that is not absolute as one). Anything else is refused: Docker
/// would refuse it too, and guessing a base folder could mount the wrong one.
fn host_path(cx: &mut Ctx<'_>, field: &str, v: &Sp<String>) -> String {
    let at = pos(&v.referenced);
    if !v.value.starts_with('/') && values::is_volume_name(&v.value) {
        cx.warn(
            at,
            field,
            "not an absolute path: Docker reads it as the name of a named volume and mounts that (in Docker's volume storage, not a host folder), and so does orun; write an absolute path to bind a host folder",
        );
        return v.value.clone();
    }
    match values::bind_path(&v.value) {
        Ok(p) => {
            if values::has_dot_dot(&v.value) {
                cx.warn(at, field, DOT_DOT);
            }
            p
        }
        Err(r) if r == values::NOT_ABSOLUTE => {
            cx.err(
                at,
                field,
                format!("path {r}: Docker binds only absolute host paths, and this is not a volume name (letters, digits, `_`, `.`, `-`) either"),
            );
            String::new()
        }
        Err(r) => {
            cx.err(at, field, format!("path {r}"));
            String::new()
        }
    }
}

/// A `command` or `args` list: each word goes to Docker as it is, so it must be a string
/// Docker can carry (no NUL).
fn words(cx: &mut Ctx<'_>, field: &str, list: &Option<Vec<Sp<String>>>) -> Option<Vec<String>> {
    let list = list.as_ref()?;
    let mut out = Vec::with_capacity(list.len());
    for (i, w) in list.iter().enumerate() {
        if let Err(r) = values::check_docker_string(&w.value) {
            cx.err(pos(&w.referenced), &format!("{field}[{i}]"), r);
        }
        out.push(w.value.clone());
    }
    Some(out)
}

fn build(cx: &mut Ctx<'_>, b: &raw::Build) -> Option<BuildSpec> {
    let context = values::normalize_rel_path(&b.context.value)
        .map_err(|r| {
            cx.err(
                pos(&b.context.referenced),
                "spec.build.context",
                format!("path {r} (it is a folder of this repository)"),
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
            ("on-change", BuildMode::OnChange),
            ("always", BuildMode::Always),
        ],
        BuildMode::BuildOnce,
    );
    let mut args = BTreeMap::new();
    let field = format!("spec.build.args.{KEY}");
    for (k, v) in &b.args.0 {
        let value = map_value(cx, &field, v);
        if let Err(r) = values::check_env_name(k).and_then(|()| values::check_docker_string(value))
        {
            cx.err(pos(&v.referenced), &field, r);
        }
        args.insert(k.clone(), value.to_owned());
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
    let default = domain(cx, "spec.ingress.domain.default", &s.ingress.domain.default);
    let environment = s.ingress.domain.environment.as_ref().map(|t| {
        if !t.value.contains("$ENV") {
            cx.warn(
                pos(&t.referenced),
                "spec.ingress.domain.environment",
                "template has no `$ENV`: every non-production environment gets the same domain",
            );
        }
        domain(cx, "spec.ingress.domain.environment", t)
    });
    let port = s.port.as_ref().map(|p| {
        origin.port_at = pos(&p.referenced);
        port_number(cx, "spec.port", p)
    });
    let spec = ServiceSpec {
        deployment: s.deployment.value,
        ingress: Ingress {
            domain: DomainSpec {
                default,
                environment,
            },
            ssl: flag(cx, "spec.ingress.ssl", &s.ingress.ssl).unwrap_or(false),
        },
        port,
    };
    let name = name?;
    let file = cx.file.to_owned();
    cx.ok().then_some((Service { name, file, spec }, origin))
}

/// A Service domain or domain template, lowercased. DNS names are case-insensitive and Orcra
/// Run routed `Example.COM` as `example.com`, so uppercase is accepted with a warning; the
/// `$ENV` placeholder keeps its case.
fn domain(cx: &mut Ctx<'_>, field: &str, v: &Sp<String>) -> String {
    let at = pos(&v.referenced);
    let lower = v
        .value
        .split("$ENV")
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join("$ENV");
    // Syntax only for a template: whether the filled-in name fits depends on the branch, and
    // `resolve` checks it once the environment is known.
    match values::check_domain(&lower.replace("$ENV", "env")) {
        Err(r) => cx.err(at, field, r),
        Ok(()) if lower != v.value => cx.warn(
            at,
            field,
            "domain holds uppercase letters: domains are case-insensitive, and orun routes it lowercased",
        ),
        Ok(()) => {}
    }
    lower
}

pub(crate) fn secrets(
    cx: &mut Ctx<'_>,
    raw: raw::SecretsFile,
    tree: sops_age::Value,
) -> Option<SecretsFile> {
    let Some(meta) = raw.sops else {
        cx.err(Pos::FILE, "sops", "secrets.yaml is not encrypted with SOPS (no `sops` metadata); never commit plaintext secrets");
        return None;
    };
    let sealed = sealed_file(cx, pos(&meta.referenced), tree)?;
    let mut entries = BTreeMap::new();
    for (k, v) in raw.entries {
        if let Err(r) = values::check_env_name(&k) {
            cx.err(pos(&v.referenced), KEY, r);
        }
        let value = env_value(cx, KEY, &v.value, pos(&v.referenced));
        // The file's own rule says which keys stay in clear; any other plaintext is a secret
        // committed by mistake (or a value swapped in by hand, which the MAC would refuse).
        if matches!(value, EnvValue::Plain(_))
            && !v.value.is_empty()
            && sealed.document.encrypts(&[k.as_str()])
        {
            cx.err(
                pos(&v.referenced),
                KEY,
                "value is not encrypted; run `sops --encrypt` on secrets.yaml",
            );
        }
        entries.insert(k, value);
    }
    cx.ok().then_some(SecretsFile { entries, sealed })
}

/// Reads a file's `sops` metadata (at `at`) for the decryptor; an error names what is wrong
/// with it.
pub(crate) fn sealed_file(cx: &mut Ctx<'_>, at: Pos, tree: sops_age::Value) -> Option<SealedFile> {
    match sops_age::Document::parse(tree) {
        Ok(Some(document)) => Some(SealedFile {
            file: cx.file.to_owned(),
            document: std::sync::Arc::new(document),
        }),
        Ok(None) => {
            cx.err(at, "sops", "the file has no `sops` metadata");
            None
        }
        Err(e) => {
            cx.err(at, "sops", e.to_string());
            None
        }
    }
}

/// Who published a host port, by bind address, for one key (a port and protocol, or a node):
/// the wildcard address collides with every address, a specific one with itself and the
/// wildcard. Each claim is one lookup, so n ports cost n lookups however they collide.
#[derive(Debug)]
pub(crate) struct Claims<U> {
    any: Option<U>,
    wildcard: Option<U>,
    by_ip: HashMap<IpAddr, U>,
}

impl<U> Default for Claims<U> {
    fn default() -> Self {
        Self {
            any: None,
            wildcard: None,
            by_ip: HashMap::new(),
        }
    }
}

impl<U: Copy> Claims<U> {
    /// The first claim `ip` would collide with.
    fn conflict(&self, ip: IpAddr) -> Option<U> {
        if ip.is_unspecified() {
            self.any
        } else {
            self.wildcard.or_else(|| self.by_ip.get(&ip).copied())
        }
    }

    /// Records `who` on `ip` and returns the first claim it collides with. A colliding
    /// claim is recorded too (each address keeps its first claimant), so a later claim that
    /// collides only with it is still reported.
    fn claim(&mut self, ip: IpAddr, who: U) -> Option<U> {
        let clash = self.conflict(ip);
        self.record(ip, who);
        clash
    }

    /// Records `who` on `ip` whatever it collides with, keeping the first claim of each
    /// address: for a summary across nodes, where claims on different nodes never collide.
    fn record(&mut self, ip: IpAddr, who: U) {
        self.any.get_or_insert(who);
        if ip.is_unspecified() {
            self.wildcard.get_or_insert(who);
        } else {
            self.by_ip.entry(ip).or_insert(who);
        }
    }
}

/// [`Claims`] by key.
pub(crate) struct HostPorts<K, U> {
    by_key: HashMap<K, Claims<U>>,
}

impl<K, U> Default for HostPorts<K, U> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq, U: Copy> HostPorts<K, U> {
    /// Records `who` on `ip` under `key`, or returns whom it collides with.
    pub(crate) fn claim(&mut self, key: K, ip: IpAddr, who: U) -> Option<U> {
        self.by_key.entry(key).or_default().claim(ip, who)
    }
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
///
/// Every check groups by key (a name, a domain, a host port) instead of comparing pairs, and
/// reports each offending item once, against the first it collides with: a repository that
/// repeats one mistake n times gets n diagnostics, not n².
pub(crate) fn cross_file(rev: &Revision, origins: &Origins, diags: &mut Diags) {
    // `secretRef`s name keys of secrets.yaml, which SOPS keeps in clear: checked without a key.
    for (name, dep) in &rev.deployments {
        let o = &origins.deployments[name];
        for (env, v) in &dep.spec.env {
            let EnvValue::SecretRef(key) = v else {
                continue;
            };
            // Neither name is echoed: a value pasted where a name belongs must not reach a log.
            let missing = match &rev.secrets {
                None => "the key is taken from secrets.yaml, and the repository has none",
                Some(f) if !f.entries.contains_key(key) => "secrets.yaml has no such key",
                Some(_) => continue,
            };
            diags.push(Diagnostic::error(
                &o.file,
                o.refs_at.get(env).copied().unwrap_or(Pos::FILE),
                &format!("spec.env.{KEY}.secretRef"),
                missing,
            ));
        }
    }
    // Services → Deployments, ports, and domains routed twice.
    let mut domains: HashMap<&str, &str> = HashMap::new();
    // The container ports of each deployment a Service names a port of, gathered once.
    let mut declared: HashMap<&str, std::collections::HashSet<u16>> = HashMap::new();
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
                "no deployment with this name in deployments/",
            )),
            Some(dep) => {
                let dep_file = escape_file_name(&origins.deployments[&dep.name].file);
                if let Some(p) = svc.spec.port
                    && !declared
                        .entry(dep.name.as_str())
                        .or_insert_with(|| {
                            dep.spec.ports.iter().map(|m| m.container_port).collect()
                        })
                        .contains(&p)
                {
                    diags.push(Diagnostic::error(
                        &o.file,
                        o.port_at,
                        "spec.port",
                        format!("the deployment ({dep_file}) declares no such containerPort"),
                    ));
                }
                if svc.spec.port.is_none() && dep.spec.ports.is_empty() {
                    // Nothing to route to, but nothing breaks either: the deployment runs and
                    // the Service is left out of the node's routes (see `resolve`).
                    diags.push(Diagnostic::warning(
                        &o.file,
                        o.deployment_at,
                        "spec.deployment",
                        format!("the deployment ({dep_file}) declares no ports, so orun does not route this Service; give the deployment a `containerPort` to route it"),
                    ));
                }
            }
        }
        if let Some(first) = domains.get(svc.spec.ingress.domain.default.as_str()) {
            diags.push(Diagnostic::error(
                &o.file,
                o.domain_at,
                "spec.ingress.domain.default",
                format!(
                    "this domain is also routed by {}",
                    escape_file_name(&origins.services[*first].file)
                ),
            ));
        } else {
            domains.insert(&svc.spec.ingress.domain.default, name);
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
                        "no node with this name in nodes/",
                    ));
                }
            }
        }
    }

    host_port_clashes(rev, origins, diags);
}

/// The nodes of a revision, indexed so the nodes a deployment targets are found without
/// looking at every node.
struct NodeIndex<'a> {
    names: Vec<&'a str>,
    by_name: HashMap<&'a str, usize>,
    /// Nodes carrying each `label=value`.
    by_label: HashMap<(&'a str, &'a str), Vec<usize>>,
    nodes: Vec<&'a Node>,
}

/// Where a deployment lands.
#[derive(Clone)]
enum Landing {
    /// On every node (no `nodes` list, no selector).
    Everywhere,
    /// On these nodes.
    Some(Vec<usize>),
}

impl<'a> NodeIndex<'a> {
    fn new(rev: &'a Revision) -> Self {
        let nodes: Vec<&Node> = rev.nodes.values().collect();
        let mut by_label: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for (k, v) in &n.spec.labels {
                by_label.entry((k, v)).or_default().push(i);
            }
        }
        Self {
            names: nodes.iter().map(|n| n.name.as_str()).collect(),
            by_name: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.as_str(), i))
                .collect(),
            by_label,
            nodes,
        }
    }

    /// The nodes `spec` lands on, and the candidates looked at to find them: its `nodes`
    /// list (each name once), or the smallest set of nodes carrying one of its selector's
    /// labels, each then held to the selector.
    fn landing(&self, spec: &DeploymentSpec) -> (Landing, usize) {
        let candidates: Vec<usize> = if let Some(list) = &spec.nodes {
            let mut seen = std::collections::HashSet::with_capacity(list.len());
            list.iter()
                .filter_map(|n| self.by_name.get(n.as_str()).copied())
                .filter(|i| seen.insert(*i))
                .collect()
        } else if spec.node_selector.is_empty() {
            return (Landing::Everywhere, 0);
        } else {
            spec.node_selector
                .iter()
                .map(|(k, v)| {
                    self.by_label
                        .get(&(k.as_str(), v.as_str()))
                        .map_or(&[][..], Vec::as_slice)
                })
                .min_by_key(|s| s.len())
                .unwrap_or(&[])
                .to_vec()
        };
        let looked_at = candidates.len() + spec.nodes.as_ref().map_or(0, Vec::len);
        // Membership in the list is settled above: only the selector is left to check.
        let selected = |n: &Node| {
            spec.node_selector
                .iter()
                .all(|(k, v)| n.spec.labels.get(k) == Some(v))
        };
        let nodes = candidates
            .into_iter()
            .filter(|i| selected(self.nodes[*i]))
            .collect();
        (Landing::Some(nodes), looked_at)
    }
}

/// Says the fleet-wide host-port check stopped at its budget.
fn gave_up(diags: &mut Diags) {
    diags.push(Diagnostic::warning(
        ".",
        Pos::FILE,
        "",
        "host-port clashes across nodes were not all checked: too many deployments share a host port on too many nodes; each node still refuses a clash among its own deployments",
    ));
}

/// Landings the fleet-wide host-port check may walk: a base, plus this many per node, per
/// published port and per name in a `nodes` list of the revision.
const LANDING_BUDGET_BASE: usize = 100_000;
const LANDING_BUDGET_PER_ITEM: usize = 16;

/// A host port published by a deployment: (deployment, index in its `ports`).
type Publisher<'a> = (&'a str, usize);

/// Two deployments that can land on one node must not publish the same host port.
///
/// Ports are grouped by (port, protocol); within a group each deployment claims the port on
/// every node it lands on, and the first claim it collides with is reported. A deployment
/// that lands everywhere claims once for all nodes. The work is the number of (deployment,
/// node) landings among deployments that share a host port: linear for `nodes` lists (their
/// length is in the repository), but deployments selecting many nodes by label on distinct
/// addresses could multiply. So the walk has a budget linear in the revision; past it the
/// fleet-wide check stops with a warning, and [`crate::resolve()`] still refuses a clash on
/// the one node it resolves, which is all an agent runs.
fn host_port_clashes(rev: &Revision, origins: &Origins, diags: &mut Diags) {
    let mut by_port: HashMap<(u16, Protocol), Vec<(Publisher<'_>, IpAddr)>> = HashMap::new();
    let mut published = 0usize;
    for (name, dep) in &rev.deployments {
        // A port published twice by one deployment was reported with its file; here each
        // (port, protocol, address) of a deployment counts once.
        let mut own = std::collections::HashSet::new();
        for (i, p) in dep.spec.ports.iter().enumerate() {
            if let Some(hp) = p.host_port
                && own.insert((hp, p.protocol, p.host_ip))
            {
                by_port
                    .entry((hp, p.protocol))
                    .or_default()
                    .push(((name.as_str(), i), p.host_ip));
                published += 1;
            }
        }
    }
    let index = NodeIndex::new(rev);
    let mut groups: Vec<_> = by_port.into_iter().filter(|(_, u)| u.len() > 1).collect();
    // Diagnostics come out sorted; the walk is in a stable order so which of two colliding
    // deployments is reported does not depend on hashing.
    groups.sort_by_key(|(k, _)| *k);
    // Linear in what is written: nodes, published ports and the `nodes` lists.
    let listed: usize = rev
        .deployments
        .values()
        .map(|d| d.spec.nodes.as_ref().map_or(0, Vec::len))
        .sum();
    let mut budget =
        LANDING_BUDGET_BASE + LANDING_BUDGET_PER_ITEM * (rev.nodes.len() + published + listed);
    let mut landings: HashMap<&str, Landing> = HashMap::new();
    for ((_, proto), users) in groups {
        let proto = match proto {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        // Claims per node, claims of deployments landing everywhere, and one claim per
        // address across all nodes (to judge a newcomer landing everywhere in one lookup).
        let mut per_node: HostPorts<usize, (Publisher<'_>, Option<usize>)> = HostPorts::default();
        let mut everywhere: Claims<(Publisher<'_>, Option<usize>)> = Claims::default();
        let mut anywhere: Claims<(Publisher<'_>, Option<usize>)> = Claims::default();
        for (who, ip) in users {
            let clash = if rev.nodes.is_empty() {
                // Without Node manifests, any two deployments may share a host.
                everywhere.claim(ip, (who, None))
            } else {
                // Each deployment's landing is found once, whatever ports it shares.
                let landing = match landings.get(who.0) {
                    Some(l) => l.clone(),
                    None => {
                        let (l, looked_at) = index.landing(&rev.deployments[who.0].spec);
                        if budget < looked_at {
                            return gave_up(diags);
                        }
                        budget -= looked_at;
                        landings.insert(who.0, l.clone());
                        l
                    }
                };
                match landing {
                    Landing::Everywhere => {
                        let clash = everywhere
                            .conflict(ip)
                            .or_else(|| anywhere.conflict(ip))
                            .map(|(other, node)| (other, node.or(Some(0))));
                        everywhere.record(ip, (who, Some(0)));
                        clash
                    }
                    Landing::Some(nodes) => {
                        let mut clash = None;
                        if budget < nodes.len() {
                            return gave_up(diags);
                        }
                        budget -= nodes.len();
                        for n in nodes {
                            if let Some((other, _)) = everywhere.conflict(ip) {
                                clash = Some((other, Some(n)));
                                break;
                            }
                            if let Some(c) = per_node.claim(n, ip, (who, Some(n))) {
                                clash = Some(c);
                                break;
                            }
                            anywhere.record(ip, (who, Some(n)));
                        }
                        clash
                    }
                }
            };
            let Some(((other, _), node)) = clash else {
                continue;
            };
            let o = &origins.deployments[who.0];
            let where_ = match node {
                Some(n) => format!(
                    "the node of {}",
                    escape_file_name(&origins.nodes[index.names[n]].file)
                ),
                None => "a node (there are no Node manifests)".to_owned(),
            };
            diags.push(Diagnostic::error(
                &o.file,
                o.ports_at.get(who.1).copied().unwrap_or(Pos::FILE),
                &format!("spec.ports[{}].port", who.1),
                format!(
                    "this host port ({proto}) is also published by {} on {where_}",
                    escape_file_name(&origins.deployments[other].file)
                ),
            ));
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

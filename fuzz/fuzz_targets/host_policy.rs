//! Fuzz target: the node's host policy over arbitrary create requests, allowances and host
//! symbolic links.
//!
//! Issue 17. The input is split on `\n` into lines; each line's first byte says what it is:
//! `b` a bind source, `m` a bind given as a mount, `a` an allowed prefix, `d` a prefix
//! allowed to the deployment only, `l` a link `path>target`, `p` a protected path, `o` one
//! other host option (its second byte picks which). Checked:
//! - nothing panics, and every bind is judged in bounded work (links are capped);
//! - with no allowance, every bind and every option is refused (deny by default);
//! - a bind let through lies, once resolved, within an allowed prefix; it is no runtime
//!   socket unless named exactly, and inside a system or protected path only when an
//!   allowance lies within that path too;
//! - widening the policy never refuses more, and a link is judged as what it leads to;
//! - once settled (as the agent settles them at start), no entry passes through a link.

#![no_main]

use std::collections::BTreeMap;

// The request type itself, from the library docker-runtime builds it with (the same version:
// one lock file resolves both): the policy is judged over what Docker would get.
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use docker_runtime::policy::{Guard, KnownLinks, SYSTEM_PATHS, check, resolve, within};
use libfuzzer_sys::fuzz_target;
use manifest_model::{Allowance, HostPolicy};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut host = HostConfig::default();
    let (mut binds, mut mounts) = (Vec::new(), Vec::new());
    let mut policy = HostPolicy::default();
    let mut own = Vec::new();
    let mut links = BTreeMap::new();
    let mut protected = Vec::new();
    let mut options = 0usize;
    for line in text.split('\n').take(64) {
        let Some(kind) = line.chars().next() else {
            continue;
        };
        let rest = &line[kind.len_utf8()..];
        match kind {
            'b' => binds.push(format!("{rest}:/mnt")),
            'm' => mounts.push(Mount {
                typ: Some(MountType::BIND),
                source: Some(rest.to_owned()),
                ..Mount::default()
            }),
            'a' => policy.all.bind.push(rest.to_owned()),
            'd' => own.push(rest.to_owned()),
            'p' => protected.push(rest.to_owned()),
            'l' => {
                if let Some((from, to)) = rest.split_once('>') {
                    links.insert(from.to_owned(), to.to_owned());
                }
            }
            'o' => {
                options += 1;
                let v = Some(rest.get(1..).unwrap_or("").to_owned()).filter(|s| !s.is_empty());
                match rest.bytes().next().unwrap_or(0) % 8 {
                    0 => host.privileged = Some(true),
                    1 => host.cap_add = Some(vec![v.unwrap_or_else(|| "ALL".into())]),
                    2 => host.network_mode = Some("host".into()),
                    3 => host.pid_mode = Some("host".into()),
                    4 => host.ipc_mode = Some(format!("container:{}", v.unwrap_or_default())),
                    5 => host.security_opt = Some(vec!["seccomp=unconfined".into()]),
                    6 => host.volumes_from = Some(vec![v.unwrap_or_else(|| "x".into())]),
                    _ => host.sysctls = Some([("net.x".to_owned(), "1".to_owned())].into()),
                }
            }
            _ => {}
        }
    }
    let own = Allowance {
        bind: own,
        volumes: Vec::new(),
    };
    policy.deployments.insert("web".to_owned(), own);
    host.binds = Some(binds.clone());
    host.mounts = Some(mounts);
    let body = ContainerCreateBody {
        host_config: Some(host),
        ..ContainerCreateBody::default()
    };
    let fs = KnownLinks(links);
    // As the agent does at start: entries and protected paths settled where they lead.
    let guard = Guard {
        host: policy.clone(),
        protected: protected.clone(),
    }
    .settled(&fs);
    for e in guard.host.allowed_for("web").chain(guard.protected.iter().map(String::as_str)) {
        if let Ok(r) = resolve(e, &fs) {
            assert_eq!(r, e, "a settled path still passes through a link");
        }
    }
    let refused = check(&body, "web", &guard, &fs);

    // Deny by default.
    let closed = Guard {
        host: HostPolicy::default(),
        protected: protected.clone(),
    };
    let all = check(&body, "web", &closed, &fs);
    let mounted = body
        .host_config
        .as_ref()
        .and_then(|h| h.mounts.as_ref())
        .map_or(0, Vec::len);
    assert_eq!(
        all.len(),
        binds.len() + mounted + count_options(&body),
        "{options} options"
    );

    // What is let through is within what the policy allows.
    let allowed: Vec<&str> = guard.host.allowed_for("web").collect();
    let protected = &guard.protected;
    for (i, b) in binds.iter().enumerate() {
        if refused.iter().any(|v| v.volume == Some(i)) {
            continue;
        }
        let source = b.split(':').next().unwrap_or_default();
        let resolved = resolve(source, &fs).expect("a bind let through resolves");
        assert!(
            allowed.iter().any(|e| within(&resolved, e)),
            "{resolved} let through"
        );
        let name = resolved.rsplit('/').next().unwrap_or_default();
        if ["docker.sock", "containerd.sock", "podman.sock"].contains(&name) {
            assert!(
                allowed.contains(&resolved.as_str()),
                "socket {resolved} let through"
            );
        }
        for area in SYSTEM_PATHS
            .iter()
            .copied()
            .chain(protected.iter().map(String::as_str))
        {
            if within(&resolved, area) && area.starts_with('/') {
                assert!(
                    allowed.iter().any(|e| within(e, area)),
                    "{resolved} inside {area} let through by a broader prefix"
                );
            }
        }
        // A link is judged as where it leads.
        if resolved.contains(':') {
            continue;
        }
        let direct = single(&format!("{resolved}:/mnt"));
        assert!(
            check(&direct, "web", &guard, &fs).is_empty(),
            "{source} -> {resolved}"
        );
    }

    // Widening refuses no more.
    let mut wider = guard.clone();
    wider.host.all.bind.push("/srv".to_owned());
    assert!(check(&body, "web", &wider, &fs).len() <= refused.len());
});

/// How many of the other host options the request sets (each is one refusal).
fn count_options(body: &ContainerCreateBody) -> usize {
    let Some(h) = &body.host_config else { return 0 };
    [
        h.privileged.is_some(),
        h.cap_add.is_some(),
        h.network_mode.is_some(),
        h.pid_mode.is_some(),
        h.ipc_mode.is_some(),
        h.security_opt.is_some(),
        h.volumes_from.is_some(),
        h.sysctls.is_some(),
    ]
    .into_iter()
    .filter(|set| *set)
    .count()
}

fn single(bind: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        host_config: Some(HostConfig {
            binds: Some(vec![bind.to_owned()]),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

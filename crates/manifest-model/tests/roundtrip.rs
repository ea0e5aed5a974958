//! Property tests: any valid revision survives render → parse unchanged, and no input makes
//! the loader panic.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use manifest_model::*;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}[a-z0-9]"
}

/// Arbitrary text, including quotes, colons, `#`, tabs, newlines and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,16}",
        "[a-zA-Z0-9 \\t\\n\"'#:{}\\[\\],&*!|>%@`-]{0,16}",
        "(true|no|null|~|0755|1e3|0x1F|22:22|-)"
    ]
}

fn branch() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,6}(/[a-z0-9][a-z0-9_-]{0,6})?"
}

fn abs_path() -> impl Strategy<Value = String> {
    "(/[a-z0-9_.-]{1,8}){1,3}".prop_filter("normalised", |p| {
        !p.split('/').any(|c| c == "." || c == "..")
    })
}

fn rel_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(".".to_owned()),
        "[a-z0-9_-]{1,8}(/[a-z0-9_-]{1,8}){0,2}"
    ]
}

fn label_key() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9.-]{0,10}".prop_filter("not reserved", |k| !k.starts_with("orun."))
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(label_key(), text(), 0..3)
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        prop_oneof![
            "[a-z]{1,8}\\.example\\.com",
            Just("203.0.113.10".to_owned())
        ],
        "[a-z_][a-z0-9_-]{0,8}",
        text(),
        prop_oneof![
            Just("git@github.com:org/manifests.git".to_owned()),
            Just("ssh://git@127.0.0.1:2222/srv/repo.git".to_owned()),
            Just("/srv/git/repo.git".to_owned()),
        ],
        branch(),
        1u64..=3_600_000,
        abs_path(),
        proptest::option::of(abs_path()),
        branch(),
        labels(),
    )
        .prop_map(
            |(host, user, key, repo, git_branch, ms, data_dir, code_dir, prod, labels)| NodeSpec {
                host,
                user,
                ssh_key_path: key,
                git_repo: repo,
                git_branch,
                poll_interval: Duration::from_millis(ms),
                data_dir,
                code_dir,
                production_branch: prod,
                offer_secrets: true,
                labels,
            },
        )
}

fn image() -> impl Strategy<Value = ImageSource> {
    let image = prop_oneof![
        "[a-z0-9]{1,8}(/[a-z0-9]{1,8})?(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,6})?",
        Just("127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_owned()),
        Just("ghcr.io/org/app:latest".to_owned()),
    ]
    .prop_map(|s| ImageSource::Image(ImageRef::parse(&s).unwrap()));
    let build = (
        rel_path(),
        rel_path(),
        btree_map("[A-Z_]{1,6}", text(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(context, dockerfile, args, always)| {
            ImageSource::Build(BuildSpec {
                context,
                dockerfile,
                args,
                build_mode: if always {
                    BuildMode::Always
                } else {
                    BuildMode::BuildOnce
                },
            })
        });
    prop_oneof![image, build]
}

fn probe() -> impl Strategy<Value = Probe> {
    (
        prop_oneof![
            Just("localhost:80/health"),
            Just("http://app.internal/healthz?x=1"),
            Just("https://127.0.0.1:8443/ready")
        ],
        1u32..=86_400,
        1u32..=86_400,
        1u32..=100,
        0u32..=600,
    )
        .prop_map(|(t, period, timeout, failures, delay)| Probe {
            http: ProbeTarget::parse(t).unwrap(),
            period_seconds: period,
            timeout_seconds: timeout,
            failure_threshold: failures,
            initial_delay_seconds: delay,
        })
}

fn port() -> impl Strategy<Value = PortMapping> {
    (
        1u16..=65_535,
        any::<bool>(),
        prop_oneof![Just("0.0.0.0"), Just("127.0.0.1"), Just("::1")],
        any::<bool>(),
    )
        .prop_map(|(container_port, publish, ip, udp)| PortMapping {
            container_port,
            // Placeholder; `unique_host_ports` assigns real, clash-free numbers.
            host_port: publish.then_some(1),
            host_ip: ip.parse::<IpAddr>().unwrap(),
            protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
        })
}

fn deployment_spec() -> impl Strategy<Value = DeploymentSpec> {
    let a = (
        image(),
        vec(port(), 0..3),
        btree_map(
            abs_path().prop_filter("not root", |p| p != "/"),
            (abs_path(), any::<bool>()),
            0..3,
        ),
        btree_map(
            "[A-Za-z_][A-Za-z0-9_.-]{0,8}",
            text().prop_filter("plain", |v| !v.starts_with("ENC[")),
            0..4,
        ),
        (proptest::option::of(probe()), proptest::option::of(probe())),
        0..3usize,
        proptest::option::of(vec(text(), 0..3)),
        proptest::option::of(vec(text(), 0..3)),
    );
    let b = (
        proptest::option::of(vec(name(), 0..3)),
        labels(),
        0..3usize,
        (
            proptest::option::of(6u64 << 20..1 << 40),
            proptest::option::of(1u32..=1_024_000),
        ),
        (0..3usize, 0u32..=86_399, 1u32..=86_400),
        labels(),
        any::<bool>(),
    );
    (a, b).prop_map(
        |(
            (source, ports, volumes, env, (readiness, liveness), pull, command, args),
            (
                nodes,
                node_selector,
                restart,
                (memory, millicpus),
                (strategy, min, extra),
                labels,
                suspend,
            ),
        )| {
            let is_build = matches!(source, ImageSource::Build(_));
            let publishes = ports.iter().any(|p| p.host_port.is_some());
            let mut strategy = [
                RolloutStrategy::Auto,
                RolloutStrategy::StartFirst,
                RolloutStrategy::StopFirst,
            ][strategy];
            if publishes && strategy == RolloutStrategy::StartFirst {
                strategy = RolloutStrategy::StopFirst;
            }
            DeploymentSpec {
                source,
                ports,
                volumes: volumes
                    .into_iter()
                    .map(|(container_path, (host_path, read_only))| VolumeMount {
                        host_path,
                        container_path,
                        read_only,
                        at: manifest_model::Pos::FILE,
                    })
                    .collect(),
                env: env
                    .into_iter()
                    .map(|(k, v)| (k, EnvValue::Plain(v)))
                    .collect(),
                health: Health {
                    readiness,
                    liveness,
                },
                pull: if is_build {
                    PullPolicy::Missing
                } else {
                    [PullPolicy::Missing, PullPolicy::Always, PullPolicy::Never][pull]
                },
                command,
                args,
                nodes: nodes.map(|mut n| {
                    n.sort();
                    n.dedup();
                    n
                }),
                node_selector,
                restart: [
                    RestartPolicy::Always,
                    RestartPolicy::OnFailure,
                    RestartPolicy::Never,
                ][restart],
                resources: Resources { memory, millicpus },
                rollout: Rollout {
                    strategy,
                    min_healthy_seconds: min,
                    healthy_deadline_seconds: (min + extra).min(86_400).max(min + 1),
                    drain_seconds: extra % 7,
                },
                labels,
                suspend,
            }
        },
    )
}

/// Gives every published port its own number, so no two deployments clash on any node.
fn unique_host_ports(deployments: &mut BTreeMap<String, Deployment>) {
    let mut next = 1024u16;
    for d in deployments.values_mut() {
        for p in &mut d.spec.ports {
            if p.host_port.is_some() {
                p.host_port = Some(next);
                next += 1;
            }
        }
    }
}

fn revision() -> impl Strategy<Value = Revision> {
    (
        btree_map(name(), node_spec(), 0..4),
        btree_map(name(), deployment_spec(), 0..5),
        vec(
            (
                name(),
                any::<prop::sample::Index>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            ),
            0..4,
        ),
    )
        .prop_map(|(nodes, deployments, services)| {
            let nodes = nodes
                .into_iter()
                .map(|(name, spec)| {
                    let file = format!("nodes/{name}.yaml");
                    (name.clone(), Node { name, file, spec })
                })
                .collect();
            let mut deployments: BTreeMap<String, Deployment> = deployments
                .into_iter()
                .map(|(name, spec)| {
                    let file = format!("deployments/{name}.yaml");
                    (name.clone(), Deployment { name, file, spec })
                })
                .collect();
            unique_host_ports(&mut deployments);
            // Services route only to deployments with a port, each to a domain of its own.
            let routable: Vec<&Deployment> = deployments
                .values()
                .filter(|d| !d.spec.ports.is_empty())
                .collect();
            let mut out = BTreeMap::new();
            if !routable.is_empty() {
                for (name, pick, explicit_port, template, ssl) in services {
                    let d = pick.get(&routable);
                    let spec = ServiceSpec {
                        deployment: d.name.clone(),
                        ingress: Ingress {
                            domain: DomainSpec {
                                default: format!("{name}.example.com"),
                                environment: template.then(|| format!("{name}.$ENV.example.com")),
                            },
                            ssl,
                        },
                        port: explicit_port.then(|| d.spec.ports[0].container_port),
                    };
                    let file = format!("services/{name}.yaml");
                    out.insert(name.clone(), Service { name, file, spec });
                }
            }
            Revision {
                nodes,
                deployments,
                services: out,
                secrets: None,
                sealed: Default::default(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// render → parse is the identity on valid revisions.
    #[test]
    fn render_then_parse_round_trips(rev in revision()) {
        let mut src = MemSource::new();
        for (path, text) in render_revision(&rev) {
            src.insert(path, text);
        }
        // An empty revision renders no files; give it its folders so it is still a repository.
        src.insert("nodes/.keep", "");
        let report = load(&src, &Limits::default());
        prop_assert!(!report.has_errors(), "{:#?}\n{}", report.diagnostics, render_revision(&rev).into_iter().map(|(p, t)| format!("# {p}\n{t}")).collect::<String>());
        prop_assert_eq!(report.revision.unwrap(), rev);
    }

    /// No byte sequence in a manifest makes the loader panic (the fuzz target digs deeper).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512), folder in 0..3usize) {
        let (dir, _) = FOLDERS[folder];
        let src = MemSource::new().with(format!("{dir}/x.yaml"), bytes);
        let report = load(&src, &Limits::default());
        prop_assert!(report.revision.is_some() || report.has_errors());
    }

    /// Mutating a valid manifest one character at a time never panics either: this reaches
    /// validation paths that random bytes rarely get to.
    #[test]
    fn mutated_manifests_never_panic(rev in revision(), at in any::<prop::sample::Index>(), with in any::<char>()) {
        let files = render_revision(&rev);
        prop_assume!(!files.is_empty());
        let mut src = MemSource::new();
        let victim = at.index(files.len());
        for (i, (path, text)) in files.into_iter().enumerate() {
            let text = if i == victim && !text.is_empty() {
                let mut chars: Vec<char> = text.chars().collect();
                let j = at.index(chars.len());
                chars[j] = with;
                chars.into_iter().collect()
            } else {
                text
            };
            src.insert(path, text);
        }
        let _ = load(&src, &Limits::default());
    }
}

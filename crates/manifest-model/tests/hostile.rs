//! Hostile and careless repositories (issue 12): each class of input that once cost
//! quadratic time or memory, leaked text, crossed environments or was silently dropped, as a
//! property over generated repositories, against an oracle where one exists.
//!
//! The cost itself is measured in `cargo xtask bench` (docs/BENCHMARKS.md), never timed
//! here; these tests pin the shapes that keep it linear: each input item yields at most one
//! diagnostic, reports are capped, secrets are shared and not copied, a clash check agrees
//! with a brute-force oracle.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use manifest_model::*;
use proptest::prelude::*;

const HEAD: &str = "apiVersion: run.orcra.dev/v0alpha\n";

fn node(name: &str, labels: &[(&str, &str)]) -> String {
    let mut s = format!(
        "{HEAD}kind: Node\nmetadata:\n  name: {name}\nspec:\n  host: h.example.com\n  gitRepo: /srv/r.git\n"
    );
    if !labels.is_empty() {
        s.push_str("  labels:\n");
        for (k, v) in labels {
            s.push_str(&format!("    {k}: {v}\n"));
        }
    }
    s
}

fn deployment(name: &str, body: &str) -> String {
    format!("{HEAD}kind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: nginx:1\n{body}")
}

fn port(container: u16, host: u16, ip: &str) -> String {
    format!("    - {{containerPort: {container}, port: {host}, hostIP: \"{ip}\"}}\n")
}

/// Class 1 (quadratic errors), one deployment: n mappings of one host port give n - 1
/// errors, each naming the first mapping, not one per pair.
#[test]
fn one_host_port_many_times_in_one_file_is_reported_once_per_mapping() {
    for n in [2usize, 10, 500] {
        let ports: String = (0..n).map(|i| port(i as u16 + 1, 9, "0.0.0.0")).collect();
        let src = MemSource::new().with(
            "deployments/web.yaml",
            deployment("web", &format!("  ports:\n{ports}")),
        );
        let report = load(&src, &Limits::default());
        assert_eq!(report.error_count(), n - 1, "n = {n}");
        assert!(
            report
                .diagnostics
                .iter()
                .all(|d| d.message == "this host port is already published by spec.ports[0]"),
            "{:?}",
            report.diagnostics.first()
        );
    }
}

/// Class 1 across files, and the cap: n files publishing one host port give n - 1 errors,
/// of which the report keeps `max_diagnostics` and counts the rest.
#[test]
fn one_host_port_across_many_files_is_capped() {
    let n = 300;
    let mut src = MemSource::new();
    for i in 0..n {
        src.insert(
            format!("deployments/d{i:03}.yaml"),
            deployment(
                &format!("d{i:03}"),
                &format!("  ports:\n{}", port(80, 9, "0.0.0.0")),
            ),
        );
    }
    let limits = Limits {
        max_diagnostics: 50,
        ..Limits::default()
    };
    let report = load(&src, &limits);
    assert_eq!(report.error_count(), n - 1);
    assert_eq!(report.diagnostics.len(), 50);
    assert_eq!(report.omitted.errors, n - 1 - 50);
    assert!(report.revision.is_none());
}

/// The loader stops reading once its cap holds an error: what is left unread is counted.
#[test]
fn reading_stops_once_the_cap_holds_an_error() {
    let mut src = MemSource::new();
    for i in 0..100 {
        src.insert(format!("deployments/d{i:03}.yaml"), "kind: [unclosed\n");
    }
    let limits = Limits {
        max_diagnostics: 10,
        ..Limits::default()
    };
    let report = load(&src, &limits);
    assert_eq!(report.diagnostics.len(), 10);
    assert_eq!(report.omitted.unchecked_files, 90);
    assert!(report.has_errors());
    // Warnings alone never stop the reading: the verdict could still be "valid".
    let mut src = MemSource::new();
    for i in 0..20 {
        let d = format!("d{i:03}");
        // A name that differs from the file name is a warning only.
        src.insert(
            format!("deployments/{d}.yaml"),
            deployment(&format!("x{d}"), ""),
        );
    }
    let report = load(&src, &limits);
    assert!(report.revision.is_some());
    assert_eq!(report.omitted.unchecked_files, 0);
    assert_eq!(report.warning_count(), 20);
}

/// Class 2: `secrets.yaml` is held once by the revision and once by the resolved node, never
/// copied into each container.
#[test]
fn secrets_are_shared_not_copied_per_deployment() {
    let enc = "ENC[AES256_GCM,data:YQ==,iv:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]";
    let mut secrets: String = (0..200).map(|i| format!("K{i}: {enc}\n")).collect();
    secrets.push_str(&format!(
        "sops:\n  age:\n    - recipient: age1x\n      enc: x\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: {enc}\n"
    ));
    let mut src = MemSource::new()
        .with("nodes/n.yaml", node("n", &[]))
        .with("secrets.yaml", secrets);
    for i in 0..200 {
        src.insert(
            format!("deployments/d{i}.yaml"),
            deployment(&format!("d{i}"), ""),
        );
    }
    let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
    let desired = resolve(&rev, "n", None).unwrap();
    assert_eq!(desired.containers.len(), 200);
    let (a, b) = (
        rev.secrets.as_ref().unwrap(),
        desired.secrets.as_ref().unwrap(),
    );
    assert!(Arc::ptr_eq(a, b), "the node shares the revision's secrets");
    assert_eq!(b.entries.len(), 200);
}

/// A generated fleet for the host-port landing check: nodes with labels, deployments with
/// `nodes` lists or selectors, all publishing one of two host ports on one of three
/// addresses.
#[derive(Clone, Debug)]
struct Fleet {
    nodes: Vec<Vec<(usize, usize)>>,
    deployments: Vec<Dep>,
}

#[derive(Clone, Debug)]
struct Dep {
    nodes: Option<Vec<usize>>,
    selector: Vec<(usize, usize)>,
    port: u16,
    ip: &'static str,
}

const IPS: [&str; 3] = ["0.0.0.0", "127.0.0.1", "127.0.0.2"];

fn fleet() -> impl Strategy<Value = Fleet> {
    let label = (0..2usize, 0..2usize);
    let nodes = prop::collection::vec(prop::collection::vec(label.clone(), 0..3), 0..5);
    let dep = (
        prop::option::of(prop::collection::vec(0..6usize, 0..4)),
        prop::collection::vec(label, 0..2),
        prop_oneof![Just(9u16), Just(10u16)],
        prop::sample::select(IPS.to_vec()),
    )
        .prop_map(|(nodes, selector, port, ip)| Dep {
            nodes,
            selector,
            port,
            ip,
        });
    (nodes, prop::collection::vec(dep, 0..7))
        .prop_map(|(nodes, deployments)| Fleet { nodes, deployments })
}

impl Fleet {
    fn source(&self) -> MemSource {
        let mut src = MemSource::new();
        for (i, labels) in self.nodes.iter().enumerate() {
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (format!("k{k}"), format!("v{v}")))
                .collect();
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            src.insert(format!("nodes/n{i}.yaml"), node(&format!("n{i}"), &pairs));
        }
        for (i, d) in self.deployments.iter().enumerate() {
            let mut body = String::new();
            if let Some(list) = &d.nodes {
                let list: BTreeSet<usize> = list.iter().copied().collect();
                let names: Vec<String> = list.iter().map(|n| format!("n{n}")).collect();
                body.push_str(&format!("  nodes: [{}]\n", names.join(", ")));
            }
            let selector: BTreeMap<usize, usize> = d.selector.iter().copied().collect();
            if !selector.is_empty() {
                body.push_str("  nodeSelector:\n");
                for (k, v) in selector {
                    body.push_str(&format!("    k{k}: v{v}\n"));
                }
            }
            body.push_str(&format!("  ports:\n{}", port(80, d.port, d.ip)));
            src.insert(
                format!("deployments/d{i}.yaml"),
                deployment(&format!("d{i}"), &body),
            );
        }
        src
    }

    /// Brute force: does deployment `d` land on node `n`?
    fn lands(&self, d: usize, n: usize) -> bool {
        let dep = &self.deployments[d];
        let listed = dep.nodes.as_ref().is_none_or(|l| l.contains(&n));
        let labels: BTreeMap<usize, usize> = self.nodes[n].iter().copied().collect();
        let selector: BTreeMap<usize, usize> = dep.selector.iter().copied().collect();
        listed && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    fn collide(&self, a: usize, b: usize) -> bool {
        let (x, y) = (&self.deployments[a], &self.deployments[b]);
        let ips = x.ip == y.ip || x.ip == "0.0.0.0" || y.ip == "0.0.0.0";
        x.port == y.port && ips
    }

    /// Brute force: the pairs of deployments that clash on some node.
    fn clashing_pairs(&self) -> Vec<(usize, usize)> {
        let n = self.deployments.len();
        let mut out = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                let on_a_node = if self.nodes.is_empty() {
                    true
                } else {
                    (0..self.nodes.len()).any(|i| self.lands(a, i) && self.lands(b, i))
                };
                if self.collide(a, b) && on_a_node {
                    out.push((a, b));
                }
            }
        }
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Class 3: the linear host-port landing check against a brute-force oracle. Every
    /// clashing pair has at least one member reported; no deployment is reported that clashes
    /// with nothing; and on every node, `resolve` refuses exactly when two of its
    /// deployments clash there.
    #[test]
    fn landing_check_agrees_with_brute_force(f in fleet()) {
        let src = f.source();
        let report = load(&src, &Limits::default());
        let reported: BTreeSet<usize> = report
            .diagnostics
            .iter()
            .filter(|d| d.is_error() && d.file.starts_with("deployments/"))
            .map(|d| {
                d.file
                    .trim_start_matches("deployments/d")
                    .trim_end_matches(".yaml")
                    .parse()
                    .unwrap()
            })
            .collect();
        let pairs = f.clashing_pairs();
        for (a, b) in &pairs {
            prop_assert!(
                reported.contains(a) || reported.contains(b),
                "pair ({a}, {b}) clashes and neither is reported: {:?}",
                report.diagnostics
            );
        }
        for d in &reported {
            prop_assert!(
                pairs.iter().any(|(a, b)| a == d || b == d),
                "d{d} reported but clashes with nothing: {:?}",
                report.diagnostics
            );
        }
        // Per node, exact: load the fleet with a host port of its own for each deployment
        // (so `load` accepts it), put the generated ports back into the revision, and hold
        // `resolve` to the oracle on every node.
        let mut unique = f.clone();
        for (i, d) in unique.deployments.iter_mut().enumerate() {
            d.port = 20_000 + i as u16;
            d.ip = "0.0.0.0";
        }
        let Some(mut rev) = load(&unique.source(), &Limits::default()).revision else {
            return Ok(());
        };
        for (i, d) in f.deployments.iter().enumerate() {
            let p = &mut rev.deployments.get_mut(&format!("d{i}")).unwrap().spec.ports[0];
            p.host_port = Some(d.port);
            p.host_ip = d.ip.parse().unwrap();
        }
        for n in 0..f.nodes.len() {
            let here: Vec<usize> = (0..f.deployments.len()).filter(|d| f.lands(*d, n)).collect();
            let clash = here.iter().enumerate().any(|(i, a)| here[i + 1..].iter().any(|b| f.collide(*a, *b)));
            prop_assert_eq!(resolve(&rev, &format!("n{n}"), None).is_err(), clash, "node n{}", n);
        }
    }
}

/// Class 3, the exact per-node check: on a revision `load` never checked (an embedder's, or
/// one where the fleet-wide check gave up at its budget), `resolve` still refuses two
/// containers of one node on one host port.
#[test]
fn resolve_refuses_a_clash_on_its_node() {
    let src = MemSource::new()
        .with("nodes/n1.yaml", node("n1", &[]))
        .with(
            "deployments/aa.yaml",
            deployment("aa", &format!("  ports:\n{}", port(80, 9, "0.0.0.0"))),
        )
        .with(
            "deployments/bb.yaml",
            deployment("bb", &format!("  ports:\n{}", port(81, 10, "0.0.0.0"))),
        );
    let (mut rev, _) = load(&src, &Limits::default()).into_result().unwrap();
    // A revision built by hand (an embedder's), which `load` never checked.
    rev.deployments.get_mut("bb").unwrap().spec.ports[0].host_port = Some(9);
    let err = resolve(&rev, "n1", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "deployments/bb.yaml:0:0: error: spec.ports[0].port: this host port is also published on this node by deployments/aa.yaml"
    );
}

/// Class 4: aliases replay at most `replay_budget(len)` events. A file whose aliases stay
/// well inside its budget parses; one whose aliases replay far more is refused with the
/// budget error, whatever its size.
#[test]
fn alias_replay_is_budgeted_by_file_size() {
    let file = |items: usize, uses: usize| {
        let anchor: Vec<&str> = vec!["1"; items];
        let aliases: Vec<&str> = vec!["*a"; uses];
        format!(
            "{HEAD}x-a: &a [{}]\nx-b: [{}]\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: nginx:1\n",
            anchor.join(","),
            aliases.join(",")
        )
    };
    // Each case well inside or well beyond its budget: (1, 10) and (5, 20) replay tens of
    // events in files of hundreds of bytes; the others replay thousands to a hundred
    // thousand in files of a few kilobytes.
    for (items, uses) in [
        (1, 10),
        (5, 20),
        (10, 400),
        (99, 1000),
        (20, 200),
        (50, 300),
    ] {
        let text = file(items, uses);
        // Each use replays the sequence: its items plus its start and end.
        let replayed = uses * (items + 2);
        let budget = replay_budget(text.len());
        let report = load(
            &MemSource::new().with("deployments/web.yaml", text),
            &Limits::default(),
        );
        if replayed * 2 <= budget {
            assert!(
                report.revision.is_some(),
                "{items}×{uses}: {:?}",
                report.diagnostics
            );
        } else {
            assert!(
                replayed >= budget * 2,
                "{items}×{uses} is too near its budget to judge"
            );
            assert_eq!(
                report.diagnostics[0].message,
                "aliases expand too far: the document exceeds the alias budget",
                "{items}×{uses}"
            );
        }
    }
    // The budget grows with the file, and is capped.
    assert!(replay_budget(4_000) > replay_budget(400));
    assert_eq!(replay_budget(usize::MAX), replay_budget(1 << 30));
}

/// Class 4, in bytes: one long scalar aliased many times is few events but many copies.
/// What aliases would copy is weighed before anything is built, so a 100 KB string aliased
/// fifty times (5 MB of copies from a 100 KB file) is refused, while aliases of short
/// values, and a long value used a few times, are not.
#[test]
fn alias_copies_are_budgeted_in_bytes() {
    let file = |len: usize, uses: usize| {
        let env: String = (0..uses).map(|i| format!("    K{i}: *big\n")).collect();
        format!(
            "{HEAD}x-big: &big \"{}\"\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: nginx:1\n  env:\n{env}",
            "x".repeat(len)
        )
    };
    let load_one = |text: String| {
        load(
            &MemSource::new().with("deployments/web.yaml", text),
            &Limits::default(),
        )
    };
    // Fifty uses: within every count the parser keeps (compose-style files use that many),
    // but 5 MB of copies from a 100 KB file.
    let bomb = load_one(file(100_000, 50));
    assert_eq!(
        bomb.diagnostics
            .iter()
            .map(|d| d.message.as_str())
            .collect::<Vec<_>>(),
        vec!["aliases expand too far: the document exceeds the alias budget"]
    );
    // Refused at the alias that passed the budget (the fifth), before anything was built.
    assert_eq!(bomb.diagnostics[0].line, 13, "{:?}", bomb.diagnostics[0]);
    let fine = load_one(file(100_000, 3));
    assert!(fine.revision.is_some(), "{:?}", fine.diagnostics);
    let short = load_one(file(8, 40));
    assert!(short.revision.is_some(), "{:?}", short.diagnostics);
    // Nested anchors weigh what they copy in turn: 10 levels of 10 uses of the one below.
    let mut nested = String::from("x-l0: &l0 \"aaaaaaaaaa\"\n");
    for l in 1..10 {
        let uses = vec![format!("*l{}", l - 1); 10].join(", ");
        nested.push_str(&format!("x-l{l}: &l{l} [{uses}]\n"));
    }
    let text = format!(
        "{HEAD}{nested}kind: Deployment\nmetadata:\n  name: web\nspec:\n  image: nginx:1\n"
    );
    assert_eq!(
        load_one(text).diagnostics[0].message,
        "aliases expand too far: the document exceeds the alias budget"
    );
    assert_eq!(copy_budget(1_000), 8_096);
}

/// Class 6: planted text never comes back in a diagnostic: keys, values, names and kinds
/// are described, not quoted. File names are the exception, escaped to one line.
mod echo {
    use super::*;

    const CANARY: &str = "zq7canary";

    /// Where a canary can be planted in a deployment manifest; each gives at least one error.
    fn planted(kind: usize) -> String {
        let c = CANARY;
        match kind {
            0 => deployment("web", &format!("  env:\n    {c}=x: v\n")),
            1 => deployment("web", &format!("  env:\n    A: v\n    A: {c}\n")),
            2 => deployment("web", &format!("  {c}: true\n")),
            3 => deployment("web", &format!("  env:\n    {c}: [1]\n")),
            4 => deployment("web", &format!("  labels:\n    orun.{c}: x\n")),
            5 => deployment("web", &format!("  ports:\n    - {{containerPort: {c}}}\n")),
            6 => format!("{HEAD}kind: Deployment\nmetadata:\n  name: {c}_\nspec:\n  image: a:1\n"),
            7 => format!(
                "{HEAD}kind: Deployment\nmetadata:\n  name: web\nspec:\n  image: {c}@md5:0\n"
            ),
            8 => format!("{HEAD}kind: {c}\nmetadata:\n  name: web\nspec:\n  image: a:1\n"),
            9 => deployment("web", &format!("  restart: {c}\n")),
            10 => deployment("web", &format!("  resources:\n    memory: {c}\n")),
            11 => deployment(
                "web",
                &format!("  volumes:\n    - {{hostPath: /a:{c}, containerPath: /b}}\n"),
            ),
            12 => deployment("web", &format!("  env:\n    A: \"x\\0{c}\"\n")),
            13 => deployment("web", &format!("  env: {{ {c}: 1, {c}: 2 }}\n")),
            14 => format!(
                "{HEAD}kind: Deployment\nmetadata:\n  name: web\n  {c}: 1\nspec:\n  image: a:1\n"
            ),
            15 => format!(
                "{HEAD}x-{c}: &{c} [1]\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: a:1\n  env:\n    A: *{c}\n"
            ),
            16 => deployment("web", &format!("  command: [\"{c}\", 1: 2]\n")),
            _ => deployment(
                "web",
                &format!("  env:\n    A: \"ENC[AES256_GCM,data:{c}]\"\n"),
            ),
        }
    }

    fn service(kind: usize) -> String {
        let c = CANARY;
        let domain = match kind % 3 {
            0 => format!("{c}.Example.com"),
            1 => format!("a.{c}-.com"),
            _ => format!("{c}..com"),
        };
        format!(
            "{HEAD}kind: Service\nmetadata:\n  name: web\nspec:\n  deployment: {c}\n  ingress:\n    domain:\n      default: {domain}\n"
        )
    }

    fn assert_quiet(report: &Report) {
        assert!(report.has_errors(), "{:?}", report.diagnostics);
        for d in &report.diagnostics {
            let text = format!("{} {}", d.field, d.message);
            assert!(!text.contains(CANARY), "echoed: {d}");
            // The whole line may hold the canary only inside the file name.
            assert!(
                !d.to_string().replace(&d.file, "").contains(CANARY),
                "echoed: {d}"
            );
        }
    }

    #[test]
    fn planted_text_is_never_echoed() {
        for kind in 0..18 {
            let src = MemSource::new()
                .with("deployments/web.yaml", planted(kind))
                .with("services/web.yaml", service(kind));
            assert_quiet(&load(&src, &Limits::default()));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The same, with the canary spliced at random places of a valid manifest: whatever
        /// error results, it does not quote it.
        #[test]
        fn spliced_canary_is_never_echoed(at in 0usize..200, kind in 0usize..18) {
            let base = planted(kind);
            let at = (0..=at.min(base.len())).rev().find(|i| base.is_char_boundary(*i)).unwrap_or(0);
            let text = format!("{}{CANARY}{}", &base[..at], &base[at..]);
            let report = load(&MemSource::new().with("deployments/web.yaml", text), &Limits::default());
            for d in &report.diagnostics {
                prop_assert!(!format!("{} {}", d.field, d.message).contains(CANARY), "echoed: {}", d);
            }
        }
    }

    /// File names are shown, but escaped: no control character or line break reaches the
    /// output, so a file name cannot forge a line.
    #[test]
    fn file_names_are_escaped() {
        let src = MemSource::new().with(
            "deployments/x\nforged: error\u{1b}[31m\u{202e}.yaml",
            "kind: [\n",
        );
        let report = load(&src, &Limits::default());
        let line = report.diagnostics[0].to_string();
        assert_eq!(
            line,
            "deployments/x\\u{a}forged: error\\u{1b}[31m\\u{202e}.yaml:1:7: error: kind: expected a string"
        );
        assert!(!line.chars().any(char::is_control));
        assert_eq!(escape_file_name(&"a".repeat(300)).chars().count(), 201);
    }
}

/// Classes 7 and 8: what reaches Docker is what Docker will parse, never altered or dropped.
#[test]
fn values_docker_would_misread_are_refused() {
    let cases = [
        (
            "  volumes:\n    - {hostPath: \"/srv/a:Z\", containerPath: /data}\n",
            "spec.volumes[0].hostPath: path must not contain `:` or `,` (Docker reads them as mount options)",
        ),
        (
            "  volumes:\n    - {hostPath: /srv/a, containerPath: \"/data:rshared\"}\n",
            "spec.volumes[0].containerPath: path must not contain `:` or `,` (Docker reads them as mount options)",
        ),
        (
            "  volumes:\n    - {hostPath: \"/srv/a,b\", containerPath: /data}\n",
            "spec.volumes[0].hostPath: path must not contain `:` or `,` (Docker reads them as mount options)",
        ),
        (
            "  resources:\n    memory: \"18446744073709551615\"\n",
            "spec.resources.memory: memory limit must be at most 1024Ti",
        ),
        (
            "  resources:\n    memory: 2Pi\n",
            "spec.resources.memory: unknown size unit; use Ki, Mi, Gi, Ti, K, M, G or T",
        ),
        (
            "  resources:\n    memory: 2048Ti\n",
            "spec.resources.memory: memory limit must be at most 1024Ti",
        ),
        (
            "  env:\n    A: \"x\\0y\"\n",
            "spec.env.<key>: must not contain a NUL character",
        ),
        (
            "  command: [\"sh\\0\"]\n",
            "spec.command[0]: must not contain a NUL character",
        ),
        (
            "  args: [\"a\", \"\\0\"]\n",
            "spec.args[1]: must not contain a NUL character",
        ),
        (
            "  labels:\n    team: \"a\\0\"\n",
            "spec.labels.<key>: must not contain a NUL character",
        ),
    ];
    for (body, want) in cases {
        let src = MemSource::new().with("deployments/web.yaml", deployment("web", body));
        let report = load(&src, &Limits::default());
        let got: Vec<String> = report
            .diagnostics
            .iter()
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect();
        assert_eq!(got, vec![want.to_owned()], "{body}");
    }
    // 1 PiB itself is accepted, and reaches the spec unchanged.
    let src = MemSource::new().with(
        "deployments/web.yaml",
        deployment("web", "  resources:\n    memory: 1024Ti\n"),
    );
    let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
    assert_eq!(rev.deployments["web"].spec.resources.memory, Some(1 << 50));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Class 7: any bind path the loader accepts splits back into exactly itself in
    /// Docker's `host:container[:ro]` syntax.
    #[test]
    fn accepted_bind_paths_survive_dockers_syntax(host in "[/a-z:,.\\n-]{1,12}", container in "[/a-z:,.-]{1,12}") {
        let body = format!("  volumes:\n    - {{hostPath: {host:?}, containerPath: {container:?}, readOnly: true}}\n");
        let src = MemSource::new().with("deployments/web.yaml", deployment("web", &body));
        if let Some(rev) = load(&src, &Limits::default()).revision {
            let v = &rev.deployments["web"].spec.volumes[0];
            let bind = format!("{}:{}:ro", v.host_path, v.container_path);
            let parts: Vec<&str> = bind.split(':').collect();
            prop_assert_eq!(parts, vec![v.host_path.as_str(), v.container_path.as_str(), "ro"]);
            prop_assert!(!bind.contains(','));
        } else {
            prop_assert!(host.contains([':', ',', '\n']) || container.contains([':', ',']) || !host.starts_with('/') || !container.starts_with('/') || host.split('/').any(|c| c == "..") || container.split('/').any(|c| c == "..") || container.trim_end_matches('/').is_empty() || container.split('/').all(|c| c.is_empty() || c == "."));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Class 1 as a property: mappings of host ports on addresses, in one deployment; each
    /// mapping that collides with an earlier one is one error, against a brute-force count.
    #[test]
    fn one_error_per_colliding_mapping(ports in prop::collection::vec((0u16..4, prop::sample::select(IPS.to_vec())), 1..40)) {
        let body: String = ports.iter().enumerate().map(|(i, (p, ip))| port(i as u16 + 1, 9000 + p, ip)).collect();
        let src = MemSource::new().with("deployments/web.yaml", deployment("web", &format!("  ports:\n{body}")));
        let report = load(&src, &Limits::default());
        let overlap = |a: &str, b: &str| a == b || a == "0.0.0.0" || b == "0.0.0.0";
        let expected = (0..ports.len())
            .filter(|&i| (0..i).any(|j| ports[j].0 == ports[i].0 && overlap(ports[i].1, ports[j].1)))
            .count();
        prop_assert_eq!(report.error_count(), expected, "{:?}", report.diagnostics);
    }

    /// Class 2 as a property: however many entries and deployments, the node's containers
    /// carry no copy of the secrets; the one shared file is the revision's.
    #[test]
    fn secrets_are_never_copied(entries in 0usize..30, deployments in 1usize..30) {
        let enc = "ENC[AES256_GCM,data:YQ==,iv:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]";
        let mut secrets: String = (0..entries).map(|i| format!("K{i}: {enc}\n")).collect();
        secrets.push_str(&format!("sops:\n  age:\n    - recipient: age1x\n      enc: x\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: {enc}\n"));
        let mut src = MemSource::new().with("nodes/n.yaml", node("n", &[])).with("secrets.yaml", secrets);
        for i in 0..deployments {
            src.insert(format!("deployments/d{i}.yaml"), deployment(&format!("d{i}"), ""));
        }
        let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
        let desired = resolve(&rev, "n", None).unwrap();
        prop_assert!(Arc::ptr_eq(rev.secrets.as_ref().unwrap(), desired.secrets.as_ref().unwrap()));
        prop_assert_eq!(desired.containers.len(), deployments);
        // Each container is its deployment's spec, nothing more (no per-container secrets).
        for c in &desired.containers {
            prop_assert_eq!(&c.spec, &rev.deployments[&c.deployment].spec);
        }
    }

    /// Class 4 as a property: aliases well inside the file's budget parse; far beyond it,
    /// the file is refused for its budget, never parsed at length.
    #[test]
    fn alias_budget_holds(items in 1usize..120, uses in 1usize..1200) {
        let anchor: Vec<&str> = vec!["1"; items];
        let aliases: Vec<&str> = vec!["*a"; uses];
        let text = format!(
            "{HEAD}x-a: &a [{}]\nx-b: [{}]\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: nginx:1\n",
            anchor.join(","),
            aliases.join(",")
        );
        let replayed = uses * (items + 2);
        let budget = replay_budget(text.len());
        let report = load(&MemSource::new().with("deployments/web.yaml", text), &Limits::default());
        if replayed * 2 <= budget {
            prop_assert!(report.revision.is_some(), "{:?}", report.diagnostics);
        } else if replayed >= budget * 2 {
            prop_assert_eq!(
                report.diagnostics.first().map(|d| d.message.as_str()),
                Some("aliases expand too far: the document exceeds the alias budget")
            );
        }
    }

    /// Class 8 as a property: a memory limit is accepted exactly when Docker can take it
    /// (6 MiB to 1 PiB), and then reaches the spec unchanged; never dropped.
    #[test]
    fn memory_limits_are_taken_or_refused_never_dropped(n in 0u64..u64::MAX, unit in prop::sample::select(vec!["", "Ki", "Mi", "Gi", "Ti", "K", "M", "G", "T"])) {
        let text = format!("{n}{unit}");
        let src = MemSource::new().with("deployments/web.yaml", deployment("web", &format!("  resources:\n    memory: \"{text}\"\n")));
        let report = load(&src, &Limits::default());
        let bytes = values::parse_bytes(&text).ok();
        match (&report.revision, bytes) {
            (Some(rev), Some(b)) => {
                prop_assert!((6 << 20..=values::MAX_MEMORY).contains(&b));
                prop_assert_eq!(rev.deployments["web"].spec.resources.memory, Some(b));
            }
            (None, b) => prop_assert!(b.is_none_or(|b| !(6 << 20..=values::MAX_MEMORY).contains(&b))),
            (Some(_), None) => prop_assert!(false, "accepted an unparsable size"),
        }
    }
}

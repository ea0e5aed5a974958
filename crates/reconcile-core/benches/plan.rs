//! Planner benchmark: 10 to 10 000 deployments, converged (the steady state), fresh (all to
//! create) and all changed (every spec differs, so every container's recorded spec is parsed
//! and diffed). Run with `cargo bench -p reconcile-core --bench plan`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reconcile_core::*;

/// A realistic spec: a few env vars, one published port, a volume, a label.
fn spec(i: usize, version: &str) -> RenderedSpec {
    RenderedSpec {
        container_name: format!("app-{i:05}"),
        image: format!("registry.example.com/team/app-{i:05}:{version}"),
        command: None,
        args: Some(vec!["--serve".to_owned()]),
        env: (0..5)
            .map(|k| {
                (
                    format!("VAR_{k}"),
                    RenderedEnv::Plain(format!("value-{i}-{k}-{version}")),
                )
            })
            .collect(),
        ports: vec![RenderedPort {
            container_port: 8080,
            host_port: Some(10_000 + (i % 50_000) as u16),
            host_ip: "127.0.0.1".to_owned(),
            protocol: "tcp".to_owned(),
        }],
        volumes: vec![RenderedVolume {
            host_path: format!("/srv/app-{i:05}"),
            container_path: "/data".to_owned(),
            read_only: false,
        }],
        restart: "always".to_owned(),
        memory: Some(256 << 20),
        millicpus: Some(500),
        labels: BTreeMap::from([("team".to_owned(), "core".to_owned())]),
        probes: BTreeMap::new(),
        offered_secrets: None,
        network: None,
    }
}

fn desired(n: usize, version: &str) -> Desired {
    Desired {
        node: "n1".to_owned(),
        environment: "main".to_owned(),
        commit: Some("9f8e7d6c".to_owned()),
        deployments: (0..n)
            .map(|i| {
                DesiredDeployment::new(
                    format!("app-{i:05}"),
                    spec(i, version),
                    Some(format!("sha256:{i:064x}")),
                    ReplaceStrategy::StopFirst,
                    false,
                )
            })
            .collect(),
        allow_empty: false,
    }
}

/// Containers created from `d`, plus a few unmanaged ones, listed newest first as Docker lists
/// them (and allocated in that order, as a listing is parsed).
fn actual_from(d: &Desired) -> Actual {
    let mut containers: Vec<ObservedContainer> = d
        .deployments
        .iter()
        .enumerate()
        .rev()
        .map(|(i, x)| {
            ObservedContainer::from(ObservedFields {
                id: format!("{i:064x}"),
                name: x.spec.container_name.clone(),
                image_id: x.image_id.clone().unwrap_or_default(),
                state: ContainerState::Running,
                health: None,
                labels: BTreeMap::from([
                    (LABEL_NODE.to_owned(), "n1".to_owned()),
                    (LABEL_ENVIRONMENT.to_owned(), "main".to_owned()),
                    (LABEL_DEPLOYMENT.to_owned(), x.name.clone()),
                    (LABEL_SPEC_HASH.to_owned(), x.spec_hash.clone()),
                    (LABEL_SPEC.to_owned(), x.spec.canonical_json()),
                ]),
            })
        })
        .collect();
    containers.extend((0..10).map(|i| {
        ObservedContainer::from(ObservedFields {
            id: format!("unmanaged{i}"),
            name: format!("other-{i}"),
            image_id: "sha256:other".to_owned(),
            state: ContainerState::Running,
            health: None,
            labels: BTreeMap::new(),
        })
    }));
    Actual {
        images: Default::default(),
        containers,
    }
}

/// Every size under `cargo bench`; under `cargo test`, which runs each benchmark once as a
/// check and passes no `--bench`, only the small ones (10 000 in a debug build takes long).
fn sizes() -> &'static [usize] {
    if std::env::args().any(|a| a == "--bench") {
        &[10, 100, 1_000, 10_000]
    } else {
        &[10, 100]
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    for &n in sizes() {
        let current = desired(n, "1");
        let converged = actual_from(&current);
        let changed = desired(n, "2");
        let history = History::default();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("converged", n), &n, |b, _| {
            b.iter(|| black_box(plan(&current, &converged, &history, Timestamp(0))));
        });
        group.bench_with_input(BenchmarkId::new("fresh", n), &n, |b, _| {
            let empty = Actual::default();
            b.iter(|| black_box(plan(&current, &empty, &history, Timestamp(0))));
        });
        group.bench_with_input(BenchmarkId::new("all-changed", n), &n, |b, _| {
            b.iter(|| black_box(plan(&changed, &converged, &history, Timestamp(0))));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

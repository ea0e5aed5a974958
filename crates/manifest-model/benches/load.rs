//! Manifest loader benchmark: 10 to 10 000 deployments read, parsed and validated as one
//! revision (`load`), then resolved for a node (`resolve`). Run with
//! `cargo bench -p manifest-model --bench load`; `cargo xtask bench` records the figures.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use manifest_model::{Limits, MemSource, load, resolve};

const NODE: &str = "apiVersion: run.orcra.dev/v0alpha
kind: Node
metadata:
  name: web-01
spec:
  host: 10.0.0.1
  gitRepo: git@github.com:acme/manifests.git
  labels:
    role: web
";

/// A deployment as a real repository holds it: image, port, env, a volume, probes, limits.
fn deployment(i: usize) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha
kind: Deployment
metadata:
  name: app-{i:05}
spec:
  image: registry.example.com/team/app-{i:05}:1.4.2
  nodeSelector:
    role: web
  ports:
    - containerPort: 8080
      port: {port}
      hostIP: 127.0.0.1
  volumes:
    - hostPath: /srv/app-{i:05}
      containerPath: /data
  env:
    APP_NAME: app-{i:05}
    LOG_LEVEL: info
    WORKERS: \"4\"
    FEATURE_FLAGS: a,b,c
    REGION: eu-west
  health:
    readiness:
      http: localhost:8080/ready
      periodSeconds: 5
    liveness:
      http: localhost:8080/alive
  resources:
    memory: 256Mi
    cpus: 0.5
  rollout:
    minHealthySeconds: 5
",
        port = 10_000 + i
    )
}

fn service(i: usize) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha
kind: Service
metadata:
  name: app-{i:05}
spec:
  deployment: app-{i:05}
  ingress:
    domain:
      default: app-{i:05}.example.com
      environment: app-{i:05}.$ENV.example.com
"
    )
}

/// A repository of `n` deployments, one Service for every tenth.
fn repository(n: usize) -> MemSource {
    let mut src = MemSource::new();
    src.insert("nodes/web-01.yaml", NODE);
    for i in 0..n {
        src.insert(format!("deployments/app-{i:05}.yaml"), deployment(i));
        if i % 10 == 0 {
            src.insert(format!("services/app-{i:05}.yaml"), service(i));
        }
    }
    src
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
    let mut group = c.benchmark_group("load");
    for &n in sizes() {
        let src = repository(n);
        let limits = Limits::default();
        let rev = load(&src, &limits)
            .into_result()
            .expect("the benchmark repository is valid");
        assert_eq!(rev.0.deployments.len(), n);
        group.throughput(Throughput::Elements(n as u64));
        // Sampling 10 000 files takes long: fewer samples keep the whole run short.
        if n >= 1_000 {
            group.sample_size(10);
        }
        group.bench_with_input(BenchmarkId::new("load", n), &n, |b, _| {
            b.iter(|| black_box(load(&src, &limits)));
        });
        group.bench_with_input(BenchmarkId::new("resolve", n), &n, |b, _| {
            b.iter(|| black_box(resolve(&rev.0, "web-01", Some("main"))));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

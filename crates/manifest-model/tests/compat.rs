//! Compatibility: the examples of the public Orcra Run documentation, verbatim, validate
//! unchanged and resolve as documented (REFERENCE.md §1, environments).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use manifest_model::{
    BuildMode, EnvValue, ImageSource, Limits, MemSource, ModelError, PullPolicy, Revision, load,
    resolve,
};

/// `configuration/node`: the full Node example, `codeDir` included.
const NODE: &str = "apiVersion: run.orcra.dev/v0alpha
kind: Node
metadata:
  name: web-01
spec:
  host: 203.0.113.10
  user: root
  sshKeyPath: ~/.ssh/id_ed25519
  gitRepo: git@github.com:org/manifests.git
  gitBranch: main
  pollInterval: 5s
  dataDir: /opt/orun/
  codeDir: /var/lib/orun/code
";

/// `configuration/deployment`: the image-based example.
const DEPLOYMENT: &str = "apiVersion: run.orcra.dev/v0alpha
kind: Deployment
metadata:
  name: hello-world
spec:
  image: traefik/whoami
  ports:
    - containerPort: 80
      port: 8080
  health:
    readiness:
      http: localhost:80/health
    liveness:
      http: localhost:80/health
  volumes:
    - hostPath: /var/storage/db
      containerPath: /db
  env:
    LOG_FORMAT: json
";

/// `configuration/deployment`: the build-based example.
const BUILD: &str = "apiVersion: run.orcra.dev/v0alpha
kind: Deployment
metadata:
  name: my-app
spec:
  build:
    context: my-app
    args:
      NODE_ENV: production
      APP_VERSION: \"1.2.3\"
";

/// `configuration/service`: the Service example.
const SERVICE: &str = "apiVersion: run.orcra.dev/v0alpha
kind: Service
metadata:
  name: hello-world
spec:
  deployment: hello-world
  ingress:
    domain:
      default: hello-world.example.com
      environment: hello-world.$ENV.example.com
    ssl: true
";

/// `concepts/environments`: a staging node beside production.
const STAGING_NODE: &str = "apiVersion: run.orcra.dev/v0alpha
kind: Node
metadata:
  name: web-staging
spec:
  host: 203.0.113.11
  gitRepo: git@github.com:org/manifests.git
  gitBranch: staging
";

/// Every diagnostic of loading `src`, rendered as `orun validate` prints it.
fn diagnostics(src: &MemSource) -> Vec<String> {
    let report = load(src, &Limits::default());
    report.diagnostics.iter().map(ToString::to_string).collect()
}

fn documented_repo() -> Revision {
    let src = MemSource::new()
        .with("nodes/web-01.yaml", NODE)
        .with("nodes/web-staging.yaml", STAGING_NODE)
        .with("deployments/hello-world.yaml", DEPLOYMENT)
        .with("deployments/my-app.yaml", BUILD)
        .with("services/hello-world.yaml", SERVICE);
    let (rev, warnings) = load(&src, &Limits::default()).into_result().unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    rev
}

#[test]
fn documented_examples_validate_unchanged() {
    let rev = documented_repo();
    let node = &rev.nodes["web-01"].spec;
    assert_eq!(node.code_dir(), "/var/lib/orun/code");
    assert_eq!(node.poll_interval, std::time::Duration::from_secs(5));
    let hello = &rev.deployments["hello-world"].spec;
    assert!(matches!(&hello.source, ImageSource::Image(i) if i.path == "traefik/whoami"));
    assert_eq!(hello.pull, PullPolicy::Missing);
    assert_eq!(hello.volumes[0].host_path, "/var/storage/db");
    assert_eq!(hello.env["LOG_FORMAT"], EnvValue::Plain("json".into()));
    let readiness = hello.health.readiness.as_ref().unwrap();
    assert_eq!(
        (readiness.http.host.as_str(), readiness.http.port),
        ("localhost", 80)
    );
    let ImageSource::Build(build) = &rev.deployments["my-app"].spec.source else {
        panic!()
    };
    assert_eq!(build.build_mode, BuildMode::BuildOnce);
    assert_eq!(build.dockerfile, "Dockerfile");
    assert_eq!(build.args["APP_VERSION"], "1.2.3");
}

/// Production uses the default domain and bare container names.
#[test]
fn production_node_resolution() {
    let rev = documented_repo();
    let desired = resolve(&rev, "web-01", None).unwrap();
    assert!(desired.environment.production);
    let names: Vec<_> = desired
        .containers
        .iter()
        .map(|c| c.container_name.as_str())
        .collect();
    assert_eq!(names, ["hello-world", "my-app"]);
    assert_eq!(
        desired.services[0].domain.as_deref(),
        Some("hello-world.example.com")
    );
    assert_eq!(desired.services[0].container_port, 80);
}

/// Other branches prefix container names with `<env>.` and fill `$ENV` in domains.
#[test]
fn non_production_node_resolution() {
    let rev = documented_repo();
    let desired = resolve(&rev, "web-staging", None).unwrap();
    assert!(!desired.environment.production);
    assert_eq!(desired.environment.id, "staging");
    assert_eq!(desired.containers[0].container_name, "staging.hello-world");
    assert_eq!(
        desired.services[0].domain.as_deref(),
        Some("hello-world.staging.example.com")
    );
    assert_eq!(desired.services[0].container_name, "staging.hello-world");

    // The environment id is the branch made a DNS label.
    let src = MemSource::new()
        .with(
            "nodes/web-01.yaml",
            NODE.replace("gitBranch: main", "gitBranch: feature/Login_x"),
        )
        .with("deployments/hello-world.yaml", DEPLOYMENT)
        .with("deployments/my-app.yaml", BUILD)
        .with("services/hello-world.yaml", SERVICE);
    let (feature, _) = load(&src, &Limits::default()).into_result().unwrap();
    let desired = resolve(&feature, "web-01", Some("feature/Login_x")).unwrap();
    assert_eq!(
        desired.containers[1].container_name,
        "feature-login-x.my-app"
    );
    assert_eq!(
        desired.services[0].domain.as_deref(),
        Some("hello-world.feature-login-x.example.com")
    );
}

/// A node follows the branch its manifest names; told the branch a revision is of (the
/// agent always is; `orun plan --branch`), resolution agrees when it is that branch and
/// refuses the revision, naming both branches and the field, when it is another.
#[test]
fn a_node_runs_only_the_branch_its_manifest_names() {
    let rev = documented_repo();
    let named = resolve(&rev, "web-staging", None).unwrap();
    assert_eq!(
        (named.branch.as_str(), named.environment.id.as_str()),
        ("staging", "staging")
    );
    assert_eq!(
        resolve(&rev, "web-staging", Some("staging")).unwrap(),
        named
    );
    for (node, branch, expected) in [
        (
            "web-staging",
            "main",
            "nodes/web-staging.yaml:0:0: error: spec.gitBranch: this revision is of branch `main`, but the node's manifest on it names branch `staging`; a node runs only the branch its manifest names, so the revision is refused",
        ),
        (
            "web-01",
            "feature/Login_x",
            "nodes/web-01.yaml:0:0: error: spec.gitBranch: this revision is of branch `feature/Login_x`, but the node's manifest on it names branch `main` (`main` when unset); a node runs only the branch its manifest names, so the revision is refused",
        ),
    ] {
        match resolve(&rev, node, Some(branch)) {
            Err(e @ ModelError::Unfit { .. }) => assert_eq!(e.to_string(), expected),
            other => panic!("{node} on {branch}: {other:?}"),
        }
    }
    // An invalid branch is refused before it is compared, without quoting it.
    let err = resolve(&rev, "web-01", Some("-x")).unwrap_err().to_string();
    assert_eq!(err, "invalid branch: is not a valid Git branch name");
}

/// The agent reads a node's own file on the remote's default branch to learn its branch:
/// the rest of that revision is not judged (a broken deployment on `main` must not stop a
/// staging node from finding its branch), the file itself is, whole.
#[test]
fn a_node_file_is_read_alone() {
    let limits = Limits::default();
    let src = MemSource::new()
        .with("nodes/web-staging.yaml", STAGING_NODE)
        .with("nodes/web-01.yaml", "not: [a node")
        .with("deployments/broken.yaml", "kind: Deployment\n")
        .with("secrets.yaml", "not sops\n");
    let node = manifest_model::load_node(&src, "web-staging", &limits).unwrap();
    assert_eq!(node.spec.git_branch, "staging");
    assert_eq!(node.file, "nodes/web-staging.yaml");
    let yml = MemSource::new().with("nodes/web-staging.yml", STAGING_NODE);
    assert_eq!(
        manifest_model::load_node(&yml, "web-staging", &limits)
            .unwrap()
            .spec
            .git_branch,
        "staging"
    );

    let err = manifest_model::load_node(&src, "web-01", &limits).unwrap_err();
    assert!(
        matches!(&err, ModelError::Invalid { diagnostics, .. } if diagnostics.iter().all(|d| d.file == "nodes/web-01.yaml")),
        "{err:?}"
    );
    // A file of another name declaring the node (a warning to the loader) is found by the
    // name it declares, among the node files alone.
    let other = MemSource::new()
        .with("nodes/other.yaml", STAGING_NODE)
        .with("deployments/broken.yaml", "kind: Deployment\n");
    let node = manifest_model::load_node(&other, "web-staging", &limits).unwrap();
    assert_eq!(node.file, "nodes/other.yaml");
    for missing in [
        MemSource::new().with("nodes/web-01.yaml", NODE),
        MemSource::new().with("deployments/hello-world.yaml", DEPLOYMENT),
    ] {
        assert!(
            matches!(
                manifest_model::load_node(&missing, "web-staging", &limits),
                Err(ModelError::UnknownNode(n)) if n == "web-staging"
            ),
            "{missing:?}"
        );
    }
}

#[test]
fn unknown_node_is_an_error() {
    let rev = documented_repo();
    assert!(
        matches!(resolve(&rev, "web-99", None), Err(ModelError::UnknownNode(n)) if n == "web-99")
    );
}

/// `nodes` and `nodeSelector` pick nodes; a host port may repeat on disjoint nodes but not on
/// a shared one.
#[test]
fn targeting_and_host_port_clashes() {
    let node = |name: &str, tier: &str| {
        format!(
            "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  host: {name}.internal\n  gitRepo: /srv/repo.git\n  labels:\n    tier: {tier}\n"
        )
    };
    let dep = |name: &str, placement: &str| {
        format!(
            "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: org/{name}:1\n  ports:\n    - containerPort: 80\n      port: 8080\n{placement}"
        )
    };
    let src = MemSource::new()
        .with("nodes/a.yaml", node("a", "web"))
        .with("nodes/b.yaml", node("b", "db"))
        .with(
            "deployments/front.yaml",
            dep("front", "  nodeSelector:\n    tier: web\n"),
        )
        .with("deployments/back.yaml", dep("back", "  nodes: [b]\n"));
    let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
    let on_a = resolve(&rev, "a", None).unwrap();
    let on_b = resolve(&rev, "b", None).unwrap();
    assert_eq!(
        on_a.containers
            .iter()
            .map(|c| c.deployment.as_str())
            .collect::<Vec<_>>(),
        ["front"]
    );
    assert_eq!(
        on_b.containers
            .iter()
            .map(|c| c.deployment.as_str())
            .collect::<Vec<_>>(),
        ["back"]
    );

    // Now both land on `a`: the same host port is refused, naming both files.
    let src = src.with("deployments/back.yaml", dep("back", "  nodes: [a, b]\n"));
    let text = diagnostics(&src);
    assert_eq!(
        text,
        [
            "deployments/front.yaml:9:13: error: spec.ports[0].port: this host port (tcp) is also published by deployments/back.yaml on the node of nodes/a.yaml"
        ]
    );
}

/// Cross-file references: a Service must name an existing Deployment and one of its ports,
/// and no two Services may route the same domain.
#[test]
fn service_references_are_checked() {
    let src = MemSource::new()
        .with("deployments/hello-world.yaml", DEPLOYMENT)
        .with(
            "services/hello-world.yaml",
            SERVICE.replace("deployment: hello-world", "deployment: hello"),
        )
        .with(
            "services/other.yaml",
            SERVICE
                .replace("name: hello-world\nspec", "name: other\nspec")
                .replace("    ssl: true", "    ssl: true\n  port: 81"),
        );
    let text = diagnostics(&src);
    assert_eq!(
        text,
        [
            "services/hello-world.yaml:6:15: error: spec.deployment: no deployment with this name in deployments/",
            "services/other.yaml:9:16: error: spec.ingress.domain.default: this domain is also routed by services/hello-world.yaml",
            "services/other.yaml:12:9: error: spec.port: the deployment (deployments/hello-world.yaml) declares no such containerPort",
        ]
    );
}

/// A manifest in the wrong folder says so, instead of only "unknown field".
#[test]
fn kind_in_wrong_folder_is_explained() {
    let src = MemSource::new().with("deployments/hello-world.yaml", SERVICE);
    let text = diagnostics(&src);
    assert_eq!(
        text,
        [
            "deployments/hello-world.yaml:0:0: error: kind: this file declares kind `Service`, but deployments/ holds `Deployment`",
            "deployments/hello-world.yaml:6:3: error: spec.deployment: unknown field, expected one of: image, build, ports, volumes, env, health, pull, command, args, nodes, nodeSelector, restart, resources, rollout, labels, suspend",
        ]
    );
}

/// `secrets.yaml` from real sops output (shared/testdata) is recognised and kept opaque;
/// nested values are refused with a clear message since orun offers flat env pairs.
#[test]
fn sops_secrets_file() {
    let flat = "DB_PASSWORD: ENC[AES256_GCM,data:DywXZc/D+Q==,iv:O6r4yGD+odLEhDsc0y7aYGb1j/UC83ipBPfiQ69Vvic=,tag:JrZvo0ZQNag1D+nGnwDf1A==,type:str]
region_unencrypted: eu-west
sops:
    kms: []
    age:
        - recipient: age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw
          enc: |
            -----BEGIN AGE ENCRYPTED FILE-----
            YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBnYU4zaDZ3dFNXTGRLN2Qr
            -----END AGE ENCRYPTED FILE-----
    lastmodified: \"2022-03-15T22:11:15Z\"
    mac: ENC[AES256_GCM,data:dwrqrNqt0F0lNkPv/T16GzC57nGmHo/frkdYvsUM/Izfqd7F7t1FUs6sILmz1o6lKllkADL3+A5DISSsaYK05RYr2RuCtZ7V+XC1JKD+loJoo1CAwcHAjGkv/Jv2Y7ePd6tXr6Fb+BuFVQIpwmI5ze3DsKqUd7bQ+DfRRpr9IoA=,iv:9Y2ASpFstcE8ZgwzOvb3oMQsd30Rukd7gvOb7lMvV1o=,tag:qXQosmzw6UoOXFI+8IvtXg==,type:str]
    pgp: []
    unencrypted_suffix: _unencrypted
    version: 3.7.1
";
    let src = MemSource::new()
        .with("deployments/hello-world.yaml", DEPLOYMENT)
        .with("secrets.yaml", flat);
    let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
    let secrets = rev.secrets.unwrap();
    assert_eq!(secrets.sealed.recipients().len(), 1);
    assert!(matches!(&secrets.entries["DB_PASSWORD"], EnvValue::Encrypted(v) if v.kind == "str"));
    assert_eq!(
        secrets.entries["region_unencrypted"],
        EnvValue::Plain("eu-west".into())
    );
    // Debug output of the model never shows ciphertext or plaintext values.
    let dbg = format!("{:?}", secrets.entries);
    assert!(!dbg.contains("DywXZc") && !dbg.contains("eu-west"), "{dbg}");

    // The sops example file nests values: refused, naming the key and the rule.
    let nested = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/sops/example.yaml"
    ));
    if let Ok(nested) = nested {
        let src = MemSource::new()
            .with("deployments/hello-world.yaml", DEPLOYMENT)
            .with("secrets.yaml", nested);
        let text = diagnostics(&src);
        assert_eq!(text, ["secrets.yaml:3:5: error: <key>: expected a string"]);
    }

    // Plaintext where ciphertext belongs is refused without echoing it (A17).
    let plain = flat.replace("DB_PASSWORD: ENC[AES256_GCM,data:DywXZc/D+Q==,iv:O6r4yGD+odLEhDsc0y7aYGb1j/UC83ipBPfiQ69Vvic=,tag:JrZvo0ZQNag1D+nGnwDf1A==,type:str]", "DB_PASSWORD: hunter2");
    let src = MemSource::new()
        .with("deployments/hello-world.yaml", DEPLOYMENT)
        .with("secrets.yaml", plain);
    let text = diagnostics(&src);
    assert_eq!(
        text,
        [
            "secrets.yaml:1:14: error: <key>: value is not encrypted; run `sops --encrypt` on secrets.yaml"
        ]
    );
}

/// A template that is fine for short branches can be too long for this one: resolution says
/// so instead of producing an invalid name.
#[test]
fn environment_domain_too_long_for_branch() {
    let rev = documented_repo();
    let branch = format!("feature/{}", "a".repeat(60));
    let svc = SERVICE.replace("hello-world.$ENV.example.com", "web-$ENV.example.com");
    let on = |branch: &str| {
        let src = MemSource::new()
            .with(
                "nodes/web-01.yaml",
                NODE.replace("gitBranch: main", &format!("gitBranch: {branch}")),
            )
            .with("deployments/hello-world.yaml", DEPLOYMENT)
            .with("services/hello-world.yaml", svc.clone());
        load(&src, &Limits::default()).into_result().unwrap().0
    };
    let err = resolve(&on(&branch), "web-01", None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "services/hello-world.yaml:0:0: error: spec.ingress.domain.environment: in this node's environment the domain is not valid: domain label 1 is 67 characters long; at most 63 are allowed"
    );
    assert!(resolve(&on("staging"), "web-01", None).is_ok());
    assert!(resolve(&rev, "web-staging", None).is_ok());
}

/// Plaintext in secrets.yaml is refused even when the file's suffix rule is empty.
#[test]
fn empty_unencrypted_suffix_does_not_disable_the_check() {
    let text = "DB_PASSWORD: hunter2\nsops:\n    age:\n        - recipient: age1x\n          enc: x\n    lastmodified: \"2022-03-15T22:11:15Z\"\n    mac: ENC[AES256_GCM,data:ZXhhbXBsZQ==,iv:9Y2ASpFstcE8ZgwzOvb3oMQsd30Rukd7gvOb7lMvV1o=,tag:qXQosmzw6UoOXFI+8IvtXg==,type:str]\n    unencrypted_suffix: \"\"\n";
    let src = MemSource::new()
        .with("deployments/hello-world.yaml", DEPLOYMENT)
        .with("secrets.yaml", text);
    let text = diagnostics(&src);
    assert_eq!(
        text,
        [
            "secrets.yaml:1:14: error: <key>: value is not encrypted; run `sops --encrypt` on secrets.yaml"
        ]
    );
}

/// Build argument values are as sensitive as env values: debug output names keys only.
#[test]
fn debug_output_hides_build_args() {
    let src = MemSource::new().with(
        "deployments/my-app.yaml",
        BUILD.replace("NODE_ENV: production", "NPM_TOKEN: hunter2"),
    );
    let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
    let dbg = format!("{rev:?}");
    assert!(
        dbg.contains("NPM_TOKEN") && !dbg.contains("hunter2"),
        "{dbg}"
    );
}

/// Two Services whose templates fill in to one domain in a node's environment: refused for
/// that node (the load checks production's domains only), and fine where they differ.
#[test]
fn domains_routed_twice_in_an_environment_are_refused() {
    let svc = |name: &str, default: &str, template: &str| {
        format!(
            "apiVersion: run.orcra.dev/v0alpha\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  deployment: hello-world\n  ingress:\n    domain:\n      default: {default}\n      environment: {template}\n"
        )
    };
    let src = MemSource::new()
        .with("nodes/web-01.yaml", NODE)
        .with("nodes/web-staging.yaml", STAGING_NODE)
        .with("deployments/hello-world.yaml", DEPLOYMENT)
        .with(
            "services/a.yaml",
            svc("a", "a.example.com", "a-$ENV.example.com"),
        )
        .with(
            "services/b.yaml",
            svc("b", "b.example.com", "a-staging.example.com"),
        );
    let rev = load(&src, &Limits::default()).revision.unwrap();
    assert!(resolve(&rev, "web-01", None).is_ok());
    match resolve(&rev, "web-staging", None) {
        Err(e @ ModelError::Unfit { .. }) => assert_eq!(
            e.to_string(),
            "services/b.yaml:0:0: error: spec.ingress.domain.environment: in this node's environment the domain is also routed by service a"
        ),
        other => panic!("{other:?}"),
    }
}

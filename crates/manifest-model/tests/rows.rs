//! Data-driven tests: one fixture per row of RELIABILITY.md that applies to manifest loading.
//!
//! Each fixture under `tests/fixtures/<row>/` holds only the files of its row; `check` overlays
//! them on `fixtures/base/` (one valid node, deployment and service) so every case is a whole
//! repository with exactly one problem. Expected output is an inline snapshot of the stable
//! rendering: the diagnostics as `orun validate` prints them, then the verdict. Run with
//! `UPDATE_EXPECT=1` to refresh after an intended change, and review the diff.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::cell::Cell;
use std::fs;
use std::io;
use std::path::Path;

use expect_test::{Expect, expect};
use manifest_model::{
    DirSource, Entry, EnvValue, ImageSource, Limits, MemSource, ModelError, ReadError, Report,
    Source, load, resolve,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Adds every file under `dir` to `src`, keyed by its path relative to `dir`.
fn add_tree(src: &mut MemSource, dir: &Path, rel: &str) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type().unwrap().is_dir() {
            add_tree(src, &entry.path(), &path);
        } else {
            src.insert(path, fs::read(entry.path()).unwrap());
        }
    }
}

/// The base repository with the row's files laid over it.
fn fixture(row: &str) -> MemSource {
    let mut src = MemSource::new();
    add_tree(&mut src, &Path::new(FIXTURES).join("base"), "");
    add_tree(&mut src, &Path::new(FIXTURES).join(row), "");
    src
}

fn render(report: &Report) -> String {
    let mut out = String::new();
    for d in &report.diagnostics {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out.push_str(match &report.revision {
        Some(_) => "accepted\n",
        None => "refused\n",
    });
    out
}

fn check_source(src: &dyn Source, expect: Expect) {
    let report = load(src, &Limits::default());
    expect.assert_eq(&render(&report));
}

fn check(row: &str, expect: Expect) {
    check_source(&fixture(row), expect);
}

/// The base alone is valid: every other case differs from it by its row only.
#[test]
fn base_is_valid() {
    check(
        "base",
        expect![[r#"
        accepted
    "#]],
    );
}

/// A1: malformed YAML in one of N files refuses the revision and names file:line; the other
/// files are not applied on their own.
#[test]
fn a01_malformed_yaml_refuses_revision() {
    check(
        "a01-malformed-yaml",
        expect![[r#"
        deployments/api.yaml:9:6: error: spec.ports: while parsing a block collection, did not find expected '-' indicator
        refused
    "#]],
    );
}

/// A2: a ~400-byte alias bomb stops at the alias budget instead of expanding 9^9 nodes.
#[test]
fn a02_alias_bomb_hits_budget() {
    check(
        "a02-alias-bomb",
        expect![[r#"
            deployments/bomb.yaml:8:10: error: aliases expand too far: the document exceeds the alias budget
            refused
        "#]],
    );
}

/// A3: compose-style `x-` templates with ~50 aliases are ordinary and parse fine.
#[test]
fn a03_heavy_anchor_use_parses() {
    check(
        "a03-heavy-anchors",
        expect![[r#"
        accepted
    "#]],
    );
    let (rev, _) = load(&fixture("a03-heavy-anchors"), &Limits::default())
        .into_result()
        .unwrap();
    let t = &rev.deployments["templated"].spec;
    assert_eq!(t.env.len(), 46);
    assert_eq!(t.health.readiness, t.health.liveness);
    assert_eq!(t.ports[0].container_port, 80);
}

/// A4: 10 000-deep nesting is a depth error, not a stack overflow.
#[test]
fn a04_deep_nesting_is_an_error() {
    let deep_seq = format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: deep\nspec:\n  image: a:1\n  command: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let mut deep_map = String::from(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: deep2\nx-deep: ",
    );
    for _ in 0..10_000 {
        deep_map.push_str("{a: ");
    }
    deep_map.push('1');
    deep_map.push_str(&"}".repeat(10_000));
    deep_map.push_str("\nspec:\n  image: a:1\n");
    let mut src = fixture("base");
    src.insert("deployments/deep.yaml", deep_seq);
    src.insert("deployments/deep2.yaml", deep_map);
    check_source(
        &src,
        expect![[r#"
            deployments/deep.yaml:7:267: error: spec.command: nesting is deeper than 64 levels
            deployments/deep2.yaml:5:261: error: nesting is deeper than 64 levels
            refused
        "#]],
    );
}

/// Counts reads, to prove caps are checked before any file is read.
struct Counting<'a> {
    inner: &'a MemSource,
    reads: Cell<usize>,
}

impl Source for Counting<'_> {
    fn list(&self, dir: &str) -> io::Result<Option<Vec<Entry>>> {
        self.inner.list(dir)
    }
    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        self.reads.set(self.reads.get() + 1);
        self.inner.read(path, limit)
    }
    fn read_link(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        self.reads.set(self.reads.get() + 1);
        self.inner.read_link(path)
    }
}

/// A5: an oversized file, too many files and too many bytes are refused before reading.
#[test]
fn a05_caps_checked_before_reading() {
    // One file over the per-file cap: refused without being read; the others still are.
    let mut src = fixture("base");
    src.insert("deployments/huge.yaml", vec![b'#'; (1 << 20) + 1]);
    let counting = Counting {
        inner: &src,
        reads: Cell::new(0),
    };
    check_source(
        &counting,
        expect![[r#"
            deployments/huge.yaml:0:0: error: file is 1048577 bytes, over the limit of 1048576 bytes
            refused
        "#]],
    );
    assert_eq!(
        counting.reads.get(),
        3,
        "only the three base files are read"
    );

    // More files than the count cap: nothing at all is read.
    let mut many = fixture("base");
    for i in 0..20_001 {
        many.insert(format!("services/s{i}.yaml"), "x");
    }
    let counting = Counting {
        inner: &many,
        reads: Cell::new(0),
    };
    check_source(
        &counting,
        expect![[r#"
        .:0:0: error: 20004 manifest files exceed the limit of 20000
        refused
    "#]],
    );
    assert_eq!(counting.reads.get(), 0);

    // More bytes in total than the cap: nothing is read.
    let limits = Limits {
        max_total_bytes: 100,
        ..Limits::default()
    };
    let src = fixture("base");
    let counting = Counting {
        inner: &src,
        reads: Cell::new(0),
    };
    let report = load(&counting, &limits);
    assert!(
        render(&report).contains("over the limit of 100 bytes"),
        "{}",
        render(&report)
    );
    assert_eq!(counting.reads.get(), 0);
}

/// A6: duplicate keys are refused, at any depth; never "last one wins".
#[test]
fn a06_duplicate_keys() {
    check(
        "a06-duplicate-keys",
        expect![[r#"
            deployments/dup-coerced.yaml:8:5: error: spec.env: duplicate key: a key may appear only once
            deployments/dup-env.yaml:9:5: error: spec.env.<key>: duplicate key: a key may appear only once
            deployments/dup.yaml:7:3: error: spec.image: duplicate key: a key may appear only once
            refused
        "#]],
    );
}

/// A7: two files declaring the same name are refused, naming both files.
#[test]
fn a07_duplicate_names_name_both_files() {
    check(
        "a07-duplicate-names",
        expect![[r#"
            deployments/web-bak.yaml:4:9: error: metadata.name: this name is also declared by deployments/web.yaml
            deployments/web-bak.yaml:4:9: warning: metadata.name: name differs from the file name (without .yaml)
            deployments/web.yaml:4:9: error: metadata.name: this name is also declared by deployments/web-bak.yaml
            refused
        "#]],
    );
}

/// A8: misspelt or unknown fields are errors, never ignored.
#[test]
fn a08_unknown_fields() {
    check(
        "a08-unknown-fields",
        expect![[r#"
            deployments/priv.yaml:7:3: error: spec.<key>: unknown field, expected one of: image, build, ports, volumes, env, health, pull, command, args, nodes, nodeSelector, restart, resources, rollout, labels, suspend
            deployments/typo.yaml:7:3: error: spec.<key>: unknown field, expected one of: image, build, ports, volumes, env, health, pull, command, args, nodes, nodeSelector, restart, resources, rollout, labels, suspend
            refused
        "#]],
    );
}

/// A9: YAML 1.1 coercions: an unquoted `22:22` is not a port list; `yes` in a boolean field
/// is read as Orcra Run's Go decoder read it, with a warning.
#[test]
fn a09_coercions() {
    check(
        "a09-coercions",
        expect![[r#"
            deployments/norway.yaml:7:12: warning: spec.suspend: a YAML 1.1 boolean word, read as `true` as Orcra Run read it; write `true` or `false`
            deployments/sexagesimal.yaml:7:10: error: spec.ports: expected a list (`- item` lines)
            refused
        "#]],
    );
}

/// Issue 14: what Orcra Run ran, orun runs too, each time with a warning naming the file,
/// line and field and saying what orun does (docs/manifests.md, "Leniency").
#[test]
fn what_the_original_ran_is_accepted_with_a_warning() {
    check(
        "lenient",
        expect![[r#"
        deployments/empty-values.yaml:9:14: warning: spec.build.args.<key>: empty (null) value, read as the empty string as Orcra Run read it; write `""` to say so
        deployments/empty-values.yaml:11:10: warning: spec.env.<key>: empty (null) value, read as the empty string as Orcra Run read it; write `""` to say so
        deployments/empty-values.yaml:14:11: warning: spec.labels.<key>: empty (null) value, read as the empty string as Orcra Run read it; write `""` to say so
        deployments/kube-style.yaml:5:14: warning: metadata.namespace: ignored: orun reads only `metadata.name`
        deployments/kube-style.yaml:7:5: warning: metadata.labels: ignored: orun reads only `metadata.name`; container labels go in `spec.labels`
        deployments/kube-style.yaml:9:5: warning: metadata.annotations: ignored: orun reads only `metadata.name`
        deployments/kube-style.yaml:10:9: warning: metadata.<key>: ignored: orun reads only `metadata.name`
        deployments/volumes.yaml:8:17: warning: spec.volumes[0].hostPath: not an absolute path: Docker reads it as the name of a named volume and mounts that (in Docker's volume storage, not a host folder), and so does orun; write an absolute path to bind a host folder
        deployments/volumes.yaml:10:17: warning: spec.volumes[1].hostPath: path holds `..`: Docker cleans it before mounting, and orun mounts the cleaned path; write it without `..`
        deployments/volumes.yaml:11:22: warning: spec.volumes[1].containerPath: path holds `..`: Docker cleans it before mounting, and orun mounts the cleaned path; write it without `..`
        deployments/yaml11.yaml:7:12: warning: spec.suspend: a YAML 1.1 boolean word, read as `false` as Orcra Run read it; write `true` or `false`
        deployments/yaml11.yaml:11:17: warning: spec.volumes[0].readOnly: a YAML 1.1 boolean word, read as `true` as Orcra Run read it; write `true` or `false`
        deployments/yaml11.yaml:14:17: warning: spec.volumes[1].readOnly: a YAML 1.1 boolean word, read as `false` as Orcra Run read it; write `true` or `false`
        services/shop.yaml:9:16: warning: spec.ingress.domain.default: domain holds uppercase letters: domains are case-insensitive, and orun routes it lowercased
        services/shop.yaml:10:20: warning: spec.ingress.domain.environment: domain holds uppercase letters: domains are case-insensitive, and orun routes it lowercased
        services/shop.yaml:11:10: warning: spec.ingress.ssl: a YAML 1.1 boolean word, read as `true` as Orcra Run read it; write `true` or `false`
        services/worker.yaml:6:15: warning: spec.deployment: the deployment (deployments/worker.yaml) declares no ports, so orun does not route this Service; give the deployment a `containerPort` to route it
        accepted
    "#]],
    );
    let (rev, _) = load(&fixture("lenient"), &Limits::default())
        .into_result()
        .unwrap();
    let flags = &rev.deployments["yaml11"].spec;
    assert!(!flags.suspend);
    let read_only: Vec<bool> = flags.volumes.iter().map(|v| v.read_only).collect();
    assert_eq!(read_only, [true, false, true]);
    let mounts: Vec<(&str, &str)> = rev.deployments["volumes"]
        .spec
        .volumes
        .iter()
        .map(|v| (v.host_path.as_str(), v.container_path.as_str()))
        .collect();
    assert_eq!(
        mounts,
        [
            ("pgdata", "/var/lib/postgresql/data"),
            ("/srv/shared", "/shared")
        ]
    );
    let empty = &rev.deployments["empty-values"].spec;
    assert_eq!(empty.env["DEBUG"], EnvValue::Plain(String::new()));
    assert_eq!(empty.env["LOG_LEVEL"], EnvValue::Plain("info".into()));
    assert_eq!(empty.labels["tier"], "");
    let ImageSource::Build(build) = &empty.source else {
        panic!("empty-values builds")
    };
    assert_eq!(build.args["VERSION"], "");
    let ImageSource::Image(image) = &rev.deployments["kube-style"].spec.source else {
        panic!("kube-style has an image")
    };
    assert_eq!(
        (
            image.registry.as_deref(),
            image.path.as_str(),
            image.tag.as_deref()
        ),
        (Some("MyRegistry:5000"), "shop/api", Some("V1.2"))
    );
    let shop = &rev.services["shop"].spec;
    assert_eq!(shop.ingress.domain.default, "shop.example.com");
    assert_eq!(
        shop.ingress.domain.environment.as_deref(),
        Some("shop.$ENV.example.com")
    );
    assert!(shop.ingress.ssl);
    // The Service of a deployment without ports is left out of the routes; the deployment
    // still runs.
    let desired = resolve(&rev, "web-01", None).unwrap();
    assert!(desired.containers.iter().any(|c| c.deployment == "worker"));
    let routed: Vec<&str> = desired.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(routed, ["shop", "web"]);
}

/// Issue 14: what could not work, or would do harm, stays an error, and names file, line
/// and field without quoting the value.
#[test]
fn what_cannot_work_stays_refused() {
    let mut src = fixture("base");
    let deployment = |name: &str, body: &str| {
        format!(
            "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: org/app:1\n{body}"
        )
    };
    src.insert(
        "deployments/paths.yaml",
        deployment(
            "paths",
            "  volumes:\n    - {hostPath: ./data, containerPath: /a}\n    - {hostPath: data/sub, containerPath: /b}\n    - {hostPath: /srv/x, containerPath: /x/..}\n    - {hostPath: /srv/y, containerPath: y}\n",
        ),
    );
    // Go's decoders refuse these in a boolean too. One file each: a file stops at its first
    // parse error.
    for (name, body) in [
        ("word", "  suspend: enabled\n"),
        ("number", "  suspend: 1\n"),
        (
            "quoted",
            "  volumes:\n    - {hostPath: /srv/a, containerPath: /a, readOnly: \"true\"}\n",
        ),
    ] {
        src.insert(format!("deployments/{name}.yaml"), deployment(name, body));
    }
    src.insert(
        "deployments/upper.yaml",
        deployment("upper", "").replace("org/app:1", "Org/App:1"),
    );
    src.insert(
        "deployments/spec-typo.yaml",
        deployment("spec-typo", "  privilged: true\n"),
    );
    check_source(
        &src,
        expect![[r#"
        deployments/number.yaml:7:3: error: spec.suspend: expected `true` or `false`, found integer
        deployments/paths.yaml:8:18: error: spec.volumes[0].hostPath: path must be absolute (start with `/`): Docker binds only absolute host paths, and this is not a volume name (letters, digits, `_`, `.`, `-`) either
        deployments/paths.yaml:9:18: error: spec.volumes[1].hostPath: path must be absolute (start with `/`): Docker binds only absolute host paths, and this is not a volume name (letters, digits, `_`, `.`, `-`) either
        deployments/paths.yaml:10:41: error: spec.volumes[2].containerPath: cannot mount over `/`
        deployments/paths.yaml:11:41: error: spec.volumes[3].containerPath: path must be absolute (start with `/`)
        deployments/quoted.yaml:8:55: error: spec.volumes[0].readOnly: a quoted boolean is a string: write true or false without quotes
        deployments/spec-typo.yaml:7:3: error: spec.<key>: unknown field, expected one of: image, build, ports, volumes, env, health, pull, command, args, nodes, nodeSelector, restart, resources, rollout, labels, suspend
        deployments/upper.yaml:6:10: error: spec.image: repository name must be lowercase: Docker refuses uppercase there (only the registry host and the tag may hold it)
        deployments/word.yaml:7:3: error: spec.suspend: expected `true` or `false`, found string
        refused
    "#]],
    );
}

/// A9: string fields keep what was written: `NO`, `0755`, `yes`, `1.50` stay strings.
#[test]
fn a09_strings_stay_strings() {
    let (rev, _) = load(&fixture("a09-strings"), &Limits::default())
        .into_result()
        .unwrap();
    let env = &rev.deployments["strings"].spec.env;
    let plain = |k: &str| match &env[k] {
        manifest_model::EnvValue::Plain(v) => v.clone(),
        other => panic!("{k} is {other:?}"),
    };
    assert_eq!(plain("COUNTRY"), "NO");
    assert_eq!(plain("MODE"), "0755");
    assert_eq!(plain("ENABLED"), "yes");
    assert_eq!(plain("RATIO"), "1.50");
    assert_eq!(plain("PORTS"), "22:22");
}

/// A10: encodings and empty documents: clear errors or a defined meaning, never a panic.
#[test]
fn a10_encodings_and_empty_documents() {
    let good = fs::read_to_string(Path::new(FIXTURES).join("base/deployments/web.yaml")).unwrap();
    let mut src = fixture("base");
    src.insert(
        "deployments/latin1.yaml",
        b"apiVersion: run.orcra.dev/v0alpha\nkind: Deployment # caf\xe9\n".to_vec(),
    );
    src.insert(
        "deployments/nul.yaml",
        "apiVersion: run\0.orcra.dev/v0alpha\n",
    );
    src.insert("deployments/empty.yaml", "");
    src.insert("deployments/dashes.yaml", "---\n");
    src.insert("deployments/comment.yaml", "# nothing here\n");
    src.insert("deployments/two-docs.yaml", format!("{good}---\n{good}"));
    check_source(
        &src,
        expect![[r#"
            deployments/comment.yaml:0:0: error: file holds no manifest (it is empty)
            deployments/dashes.yaml:0:0: error: file holds no manifest (it is empty)
            deployments/empty.yaml:0:0: error: file holds no manifest (it is empty)
            deployments/latin1.yaml:2:23: error: file is not valid UTF-8
            deployments/nul.yaml:1:16: error: file contains a NUL character
            deployments/two-docs.yaml:10:1: error: more than one YAML document: a manifest file holds exactly one
            refused
        "#]],
    );

    // A BOM and CRLF line ends are accepted: editors on Windows write them. Empty documents
    // after the manifest (a trailing `---`) are ignored with a warning, as Go's decoder
    // ignored every document after the first; one with content is refused above.
    let mut src = fixture("base");
    for (name, port, tail) in [
        ("trailing", 8082, "---\n"),
        ("trailing2", 8083, "...\n---\n# end\n--- ~\n"),
    ] {
        let text = good
            .replace("name: web", &format!("name: {name}"))
            .replace("port: 8080", &format!("port: {port}"));
        src.insert(format!("deployments/{name}.yaml"), format!("{text}{tail}"));
    }
    let crlf = good
        .replace("name: web", "name: crlf")
        .replace('\n', "\r\n");
    src.insert(
        "deployments/crlf.yaml",
        format!("\u{feff}{crlf}").replace("port: 8080", "port: 8081"),
    );
    check_source(
        &src,
        expect![[r#"
            deployments/trailing.yaml:10:1: warning: empty YAML document after the manifest (a trailing `---`): ignored
            deployments/trailing2.yaml:11:1: warning: empty YAML document after the manifest (a trailing `---`): ignored
            accepted
        "#]],
    );
}

/// A12: a path that holds no manifest folders is an error, not an empty desired state.
#[test]
fn a12_missing_path_is_an_error() {
    let mut src = MemSource::new();
    add_tree(&mut src, &Path::new(FIXTURES).join("a12-not-a-repo"), "");
    // A secrets file alone does not make a manifest repository either.
    src.insert("secrets.yaml", "sops: {}\n");
    check_source(
        &src,
        expect![[r#"
        .:0:0: error: no nodes/, deployments/ or services/ folder: this is not a manifest repository (or the path is wrong)
        refused
    "#]],
    );
}

/// A13: editor leftovers and non-YAML files are ignored.
#[test]
fn a13_editor_leftovers_ignored() {
    check(
        "a13-editor-leftovers",
        expect![[r#"
        accepted
    "#]],
    );
}

/// A14: invalid image references are refused at validation, before any Docker call.
#[test]
fn a14_invalid_image_refs() {
    check(
        "a14-image-refs",
        expect![[r#"
            deployments/bad-tag.yaml:6:10: error: spec.image: tag must be 1–128 of letters, digits, `_`, `.`, `-`, not starting with `.` or `-`
            deployments/short-digest.yaml:6:10: error: spec.image: sha256 digest must be exactly 64 lowercase hex digits (got 6 characters)
            deployments/uppercase.yaml:6:10: error: spec.image: repository name must be lowercase: Docker refuses uppercase there (only the registry host and the tag may hold it)
            refused
        "#]],
    );
}

/// A15: a secret in a manifest that fails is named by key and file, never echoed.
#[test]
fn a15_errors_never_echo_secret_values() {
    let report = load(&fixture("a15-secret-echo"), &Limits::default());
    let text = render(&report);
    assert!(report.has_errors());
    assert!(!text.contains("hunter2"), "secret echoed:\n{text}");
    let json = serde_json::to_string(&report.diagnostics).unwrap();
    assert!(!json.contains("hunter2"));
    expect![[r#"
        deployments/db.yaml:10:22: error: spec.ports[0].containerPort: expected a whole number
        deployments/db2.yaml:8:5: error: spec.env.<key>: expected a string or {secretRef: key}, found sequence
        deployments/db3.yaml:8:18: error: spec.env.<key>: malformed encrypted value: SOPS `data` is not valid base64
        deployments/db4.yaml:7:12: error: spec.restart: unknown value, expected one of: always, on-failure, never
        deployments/db4.yaml:8:9: error: spec.pull: unknown value, expected one of: missing, always, never
        deployments/db5.yaml:8:12: error: spec.env.<key>: malformed encrypted value: SOPS value has an unknown type
        deployments/db5.yaml:9:14: error: spec.env.<key>: malformed encrypted value: SOPS value has an unknown field
        deployments/db5.yaml:10:26: error: spec.env.<key>: variable name must not contain `=` or NUL
        deployments/db5.yaml:12:13: error: spec.resources.memory: unknown size unit; use Ki, Mi, Gi, Ti, K, M, G or T
        deployments/db6.yaml:9:26: error: spec.build.args.<key>: variable name must not contain `=` or NUL
        refused
    "#]].assert_eq(&text);
}

/// A16: repo-relative paths cannot escape their base. An absolute path has no base to
/// escape: `..` in a host path is cleaned as Docker cleans it, with a warning.
#[test]
fn a16_paths_cannot_escape() {
    check(
        "a16-path-escape",
        expect![[r#"
            deployments/absolute.yaml:7:14: error: spec.build.context: path must be relative, not absolute (it is a folder of this repository)
            deployments/absolute.yaml:9:17: warning: spec.volumes[0].hostPath: path holds `..`: Docker cleans it before mounting, and orun mounts the cleaned path; write it without `..`
            deployments/absolute.yaml:10:22: error: spec.volumes[0].containerPath: path must be absolute (start with `/`)
            deployments/escape.yaml:7:14: error: spec.build.context: path must not contain `..` (it is a folder of this repository)
            deployments/escape.yaml:8:17: error: spec.build.dockerfile: path must not contain `..` (it is resolved under the build context)
            refused
        "#]],
    );
}

/// A18: a Git LFS pointer is detected, not parsed as a manifest.
#[test]
fn a18_lfs_pointer_rejected() {
    check(
        "a18-lfs-pointer",
        expect![[r#"
        deployments/big.yaml:1:1: error: file is a Git LFS pointer, not a manifest; do not store manifests in LFS
        refused
    "#]],
    );
}

/// The working-tree reader over the same base, for the symlink rows.
fn dir_fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    for (rel, _) in [("nodes", 0), ("deployments", 0), ("services", 0)] {
        fs::create_dir_all(repo.join(rel)).unwrap();
    }
    for f in [
        "nodes/web-01.yaml",
        "deployments/web.yaml",
        "services/web.yaml",
    ] {
        fs::copy(Path::new(FIXTURES).join("base").join(f), repo.join(f)).unwrap();
    }
    tmp
}

/// B1: a link to a file outside the tree is refused without reading its target; B2: a link
/// inside the tree is followed.
#[test]
fn b01_b02_symlinks_out_refused_in_allowed() {
    let tmp = dir_fixture();
    let repo = tmp.path().join("repo");
    // The outside target is a perfectly valid manifest: refusing it proves the link, not the
    // content, was judged.
    let outside = tmp.path().join("outside.yaml");
    fs::write(
        &outside,
        fs::read(repo.join("deployments/web.yaml")).unwrap(),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, repo.join("deployments/evil.yaml")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", repo.join("deployments/shadow.yaml")).unwrap();
    fs::create_dir_all(repo.join("shared")).unwrap();
    fs::write(
        repo.join("shared/api.yaml"),
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  image: org/api:1\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("../shared/api.yaml", repo.join("deployments/api.yaml")).unwrap();
    check_source(
        &DirSource::new(&repo).unwrap(),
        expect![[r#"
        deployments/evil.yaml:0:0: error: symbolic link points outside the repository
        deployments/shadow.yaml:0:0: error: symbolic link points outside the repository
        refused
    "#]],
    );

    fs::remove_file(repo.join("deployments/evil.yaml")).unwrap();
    fs::remove_file(repo.join("deployments/shadow.yaml")).unwrap();
    let (rev, _) = load(&DirSource::new(&repo).unwrap(), &Limits::default())
        .into_result()
        .unwrap();
    assert!(
        rev.deployments.contains_key("api"),
        "in-tree link followed (B2)"
    );
}

/// B3: link loops and long chains are clean errors; links to folders are not followed.
#[test]
fn b03_link_loops_and_folder_links() {
    let tmp = dir_fixture();
    let repo = tmp.path().join("repo");
    std::os::unix::fs::symlink("loop-b.yaml", repo.join("deployments/loop-a.yaml")).unwrap();
    std::os::unix::fs::symlink("loop-a.yaml", repo.join("deployments/loop-b.yaml")).unwrap();
    fs::create_dir_all(repo.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink("../elsewhere", repo.join("deployments/folder.yaml")).unwrap();
    check_source(
        &DirSource::new(&repo).unwrap(),
        expect![[r#"
        deployments/folder.yaml:0:0: error: symbolic link to a folder is not followed
        deployments/loop-a.yaml:0:0: error: symbolic link loop or chain too long
        deployments/loop-b.yaml:0:0: error: symbolic link loop or chain too long
        refused
    "#]],
    );

    // A manifest folder that is itself a link is not followed either.
    let tmp2 = dir_fixture();
    let repo2 = tmp2.path().join("repo");
    fs::remove_dir_all(repo2.join("services")).unwrap();
    std::os::unix::fs::symlink(repo.join("services"), repo2.join("services")).unwrap();
    let report = load(&DirSource::new(&repo2).unwrap(), &Limits::default());
    assert!(
        report.revision.is_none(),
        "a linked folder must not read as an empty one"
    );
    assert_eq!(
        report.diagnostics[0].to_string(),
        "services:0:0: error: is a symbolic link; manifest folders must be real folders"
    );

    // A link that cannot be resolved among files the loader ignores does not fail anything.
    std::os::unix::fs::symlink("/etc/passwd/x", repo.join("deployments/notes.txt")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd/x", repo.join("README")).unwrap();
    fs::remove_file(repo.join("deployments/loop-a.yaml")).unwrap();
    fs::remove_file(repo.join("deployments/loop-b.yaml")).unwrap();
    fs::remove_file(repo.join("deployments/folder.yaml")).unwrap();
    assert!(
        load(&DirSource::new(&repo).unwrap(), &Limits::default())
            .revision
            .is_some()
    );
}

/// The repository's own example validates clean (it is what the demo runs).
#[test]
fn examples_validate_clean() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    check_source(
        &DirSource::new(examples).unwrap(),
        expect![[r#"
        accepted
    "#]],
    );
}

/// Swaps one file for a link to a file outside the tree just before the loader reads it.
struct SwapBeforeRead<'a> {
    inner: &'a DirSource,
    victim: std::path::PathBuf,
    outside: std::path::PathBuf,
}

impl Source for SwapBeforeRead<'_> {
    fn list(&self, dir: &str) -> io::Result<Option<Vec<Entry>>> {
        self.inner.list(dir)
    }
    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        if self.victim.ends_with(path) {
            fs::remove_file(&self.victim).unwrap();
            std::os::unix::fs::symlink(&self.outside, &self.victim).unwrap();
        }
        self.inner.read(path, limit)
    }
    fn read_link(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        self.inner.read_link(path)
    }
}

/// B4: a file that was a regular file when listed but is a link out of the tree when read is
/// refused; its target is not loaded. (The narrower window between the read's own check and
/// its open is covered by a unit test in `source.rs`.)
#[test]
fn b04_swap_between_list_and_read_is_refused() {
    let tmp = dir_fixture();
    let repo = tmp.path().join("repo");
    let outside = tmp.path().join("outside.yaml");
    fs::write(
        &outside,
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: org/outside:1\n",
    )
    .unwrap();
    let dir = DirSource::new(&repo).unwrap();
    let swapping = SwapBeforeRead {
        inner: &dir,
        victim: repo.join("deployments/web.yaml"),
        outside,
    };
    check_source(
        &swapping,
        expect![[r#"
            deployments/web.yaml:0:0: error: file changed while being read: a symbolic link appeared on its path
            refused
        "#]],
    );
}

/// Review findings: diagnostics point at the value that is wrong, and a broken deployment
/// does not also make its Service report a missing deployment.
#[test]
fn positions_and_no_cascading_errors() {
    let mut src = fixture("base");
    src.insert(
        "deployments/roll.yaml",
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: roll\nspec:\n  image: a:1\n  ports:\n    - containerPort: 80\n      port: 9000\n  rollout:\n    strategy: start-first\n",
    );
    src.insert(
        "deployments/slow.yaml",
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: slow\nspec:\n  image: a:1\n  rollout:\n    minHealthySeconds: 400\n",
    );
    // The base service routes to `web`; break `web` itself.
    src.insert(
        "deployments/web.yaml",
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: Nginx\n  ports:\n    - containerPort: 80\n      port: 8080\n",
    );
    src.insert(
        "deployments/args.yaml",
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: args\nspec:\n  build:\n    context: app\n    args:\n      \"A=B\": x\n      \"\": y\n  ports:\n    - containerPort: 80\n      port: +8081\n",
    );
    check_source(
        &src,
        expect![[r#"
            deployments/args.yaml:9:14: error: spec.build.args.<key>: variable name must not contain `=` or NUL
            deployments/args.yaml:10:11: error: spec.build.args.<key>: variable name is empty
            deployments/roll.yaml:11:15: error: spec.rollout.strategy: `start-first` cannot be used with published host ports: old and new containers would clash; use `stop-first` or `auto`
            deployments/slow.yaml:8:24: error: spec.rollout.minHealthySeconds: must be less than healthyDeadlineSeconds (default 300)
            deployments/web.yaml:6:10: error: spec.image: repository name must be lowercase: Docker refuses uppercase there (only the registry host and the tag may hold it)
            refused
        "#]],
    );
}

/// A one-character Deployment runs off production, where its container is `<env>.a`; a
/// production node would name the container `a`, which Docker refuses, so it refuses there.
#[test]
fn a_one_character_deployment_name_is_refused_where_docker_would_refuse_it() {
    let mut src = fixture("base");
    src.insert(
        "deployments/a.yaml".to_owned(),
        b"apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: a\nspec:\n  image: nginx:1.27\n".to_vec(),
    );
    src.insert(
        "nodes/web-staging.yaml".to_owned(),
        b"apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: web-staging\nspec:\n  host: 203.0.113.11\n  gitRepo: git@github.com:org/manifests.git\n  gitBranch: staging\n".to_vec(),
    );
    check_source(
        &src,
        expect![[r#"
        deployments/a.yaml:4:9: warning: metadata.name: a one-character name runs only off production (as `<env>.<name>`): a production node would give it to the container, which Docker refuses, so production nodes refuse the revision
        accepted
    "#]],
    );
    let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
    let staging = resolve(&rev, "web-staging", None).unwrap();
    assert!(
        staging
            .containers
            .iter()
            .any(|c| c.container_name == "staging.a")
    );
    let Err(ModelError::Unfit { diagnostics }) = resolve(&rev, "web-01", None) else {
        panic!("the production node must refuse a one-character container name")
    };
    let shown: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    expect![[r#"
        [
            "deployments/a.yaml:0:0: error: metadata.name: on this production node the container would have this one-character name, and Docker refuses one-character container names; rename the deployment",
        ]
    "#]].assert_debug_eq(&shown);
}

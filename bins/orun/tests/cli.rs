//! The `orun` binary as a user runs it: exit codes, output shapes, and no secret in output.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::path::Path;
use std::process::{Command, Output};

fn orun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orun"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn examples() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .display()
        .to_string()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn validate_accepts_the_examples() {
    let out = orun(&["validate", &examples(), "--node", "web-01"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("valid: 1 node(s), 2 deployment(s), 1 service(s); 0 warning(s)\n"),
        "{text}"
    );
    assert!(text.contains("container hello-world"), "{text}");
    assert!(text.contains("build apps/greeter"), "{text}");
}

/// A15 end to end: a broken repository exits 1 with `file:line:col: error:` lines, in text and
/// JSON, and the secret in it appears in neither.
#[test]
fn validate_reports_errors_without_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "deployments/db.yaml",
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: db\nspec:\n  image: postgres:16\n  env:\n    DB_PASSWORD: hunter2\n  restart: hunter2\n",
    );
    let dir = tmp.path().display().to_string();
    let out = orun(&["validate", &dir]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert_eq!(
        text,
        "deployments/db.yaml:9:12: error: spec.restart: unknown value, expected one of: always, on-failure, never\n\
         invalid: 1 error(s), 0 warning(s); the revision would be refused whole\n"
    );

    let out = orun(&["validate", &dir, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], false);
    let d = &json["diagnostics"][0];
    assert_eq!(
        (d["file"].as_str(), d["line"].as_u64(), d["column"].as_u64()),
        (Some("deployments/db.yaml"), Some(9), Some(12))
    );
    assert_eq!(d["field"], "spec.restart");
    assert_eq!(d["severity"], "error");
    assert!(!stdout(&out).contains("hunter2"));
}

#[test]
fn validate_json_on_success_has_no_env_values() {
    let out = orun(&[
        "validate",
        &examples(),
        "--node",
        "web-01",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["node"]["containers"][0]["container"], "greeter");
    assert_eq!(json["node"]["containers"][1]["container"], "hello-world");
    assert_eq!(
        json["node"]["services"][0]["domain"],
        "hello-world.localhost"
    );
    // The example sets LOG_FORMAT=json; env values never reach this output.
    assert!(!stdout(&out).contains("LOG_FORMAT"));
}

#[test]
fn validate_fails_for_unknown_node_and_missing_dir() {
    let out = orun(&["validate", &examples(), "--node", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("error: node `nope` is not declared in nodes/"));

    let out = orun(&["validate", "/definitely/not/here"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("orun: error: cannot open manifest repository /definitely/not/here"),
        "{err}"
    );
}

/// Warnings alone do not fail validation.
#[test]
fn warnings_do_not_fail() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "deployments/web.yaml",
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: website\nspec:\n  image: nginx:1.27\n",
    );
    let out = orun(&["validate", &tmp.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("deployments/web.yaml:4:9: warning: metadata.name: name differs from the file name (without .yaml)\n"));
}

/// `orun plan --actual FILE.json` plans without Docker, from a snapshot of actual state.
#[test]
fn plan_from_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = tmp.path().join("actual.json");
    std::fs::write(
        &snapshot,
        r#"{"containers": [
            {"id": "aaa", "name": "hello-world", "image_id": "sha256:1", "state": {"status": "running"}, "labels": {}},
            {"id": "bbb", "name": "gone", "image_id": "sha256:2", "state": {"status": "exited", "code": 0},
             "labels": {"orun.node": "web-01", "orun.environment": "main", "orun.deployment": "gone", "orun.spec-hash": "0f1e2d"}}
        ], "images": {"orun-example/hello:1": "sha256:1"}}"#,
    )
    .unwrap();
    let out = orun(&[
        "plan",
        "--repo",
        &examples(),
        "--node",
        "web-01",
        "--actual",
        &snapshot.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "node web-01: branch main, environment main (production)\n\
         - gone: remove gone (deployment is no longer in the repository for this node)\n\
         + greeter: create greeter (not running on this node, image to fetch)\n\
         ! hello-world: name hello-world is taken by container aaa, which is left alone\n\
         Plan: 1 to create, 0 to replace, 0 to start, 1 to remove.\n"
    );

    // A bad snapshot or an invalid repository is an error (exit 1), never an empty plan.
    std::fs::write(&snapshot, "{").unwrap();
    let out = orun(&[
        "plan",
        "--repo",
        &examples(),
        "--node",
        "web-01",
        "--actual",
        &snapshot.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a snapshot of actual state"));
}

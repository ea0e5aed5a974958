//! Architecture invariants from docs/ARCHITECTURE.md, checked against the real dependency
//! graph (`cargo metadata`) and the source tree, so the map cannot silently drift.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The resolved graph for this platform: package name → names of its normal dependencies.
fn graph() -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    let host =
        String::from_utf8(Command::new("rustc").arg("-vV").output().unwrap().stdout).unwrap();
    let triple = host
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap()
        .to_owned();
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
            &triple,
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let members: BTreeSet<String> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| name_of[id.as_str().unwrap()].to_owned())
        .collect();
    let mut deps = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let name = name_of[node["id"].as_str().unwrap()].to_owned();
        let normal: BTreeSet<String> = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| name_of[d["pkg"].as_str().unwrap()].to_owned())
            .collect();
        deps.entry(name)
            .or_insert_with(BTreeSet::new)
            .extend(normal);
    }
    (deps, members)
}

fn reachable(deps: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(p) = stack.pop() {
        for d in deps.get(&p).into_iter().flatten() {
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    seen
}

const IO_CRATES: [&str; 6] = ["tokio", "bollard", "git2", "hyper", "reqwest", "mio"];

/// reconcile-core and manifest-model know nothing of Docker, Git, HTTP or an async runtime.
#[test]
fn pure_crates_reach_no_io_libraries() {
    let (deps, _) = graph();
    for pure in ["reconcile-core", "manifest-model"] {
        let reached = reachable(&deps, pure);
        // The graph is real: the pure crates do reach their own foundations.
        assert!(
            reached.contains("serde") || pure == "reconcile-core",
            "{pure}: {reached:?}"
        );
        let bad: Vec<_> = IO_CRATES.iter().filter(|c| reached.contains(**c)).collect();
        assert!(bad.is_empty(), "{pure} reaches {bad:?}");
    }
}

/// Each foreign library is known to one crate only.
#[test]
fn each_foreign_library_has_one_owner() {
    let (deps, members) = graph();
    for (lib, owner) in [
        ("bollard", "docker-runtime"),
        ("git2", "gitsync"),
        ("hyper", "status-http"),
        ("serde-saphyr", "manifest-model"),
        ("granit-parser", "manifest-model"),
        // node-setup: `statvfs` and the effective user for `orun doctor`; agent-daemon:
        // SIGTERM to the self-update's trial process.
        ("rustix", "manifest-model,node-setup,agent-daemon"),
        ("hyper-util", "status-http"),
        ("http-body-util", "status-http"),
        ("prometheus", "status-http"),
        ("rustls", "status-http"),
        ("x509-parser", "status-http"),
        // status-http: the CA its own download tests make (dev-dependency).
        ("rcgen", "test-support,status-http"),
        ("minisign-verify", "self-update"),
        ("rustls-native-certs", "status-http"),
        ("tar", "docker-runtime"),
        ("jiff", "agent-engine"),
        ("age", "sops-age"),
        ("aes-gcm", "sops-age"),
        ("hmac", "sops-age"),
        ("aho-corasick", "agent-engine"),
        ("ssh-key", "gitsync"),
        ("pgp", "gitsync"),
    ] {
        let users: Vec<&String> = members.iter().filter(|m| deps[*m].contains(lib)).collect();
        assert!(
            users
                .iter()
                .all(|u| owner.split(',').any(|o| o == u.as_str())),
            "{lib} is used by {users:?}; only {owner} may"
        );
    }
}

/// The shared test helpers are dev-only: no crate builds them into what it ships.
#[test]
fn test_support_is_dev_only() {
    let (deps, members) = graph();
    assert!(members.contains("test-support"));
    for m in &members {
        assert!(
            !deps[m].contains("test-support"),
            "{m} depends on test-support outside [dev-dependencies]"
        );
    }
}

/// Nothing depends on a binary; libraries do not use anyhow.
#[test]
fn binaries_are_leaves_and_libraries_avoid_anyhow() {
    let (deps, members) = graph();
    let bins = ["orun", "orun-agent"];
    for m in &members {
        for b in bins {
            assert!(!deps[m].contains(b), "{m} depends on the binary {b}");
        }
    }
    let libs = crate_dirs("crates");
    assert!(libs.len() >= 6, "{libs:?}");
    for lib in &libs {
        assert!(members.contains(lib), "{lib} is a workspace member");
        assert!(
            !deps[lib].contains("anyhow"),
            "{lib} uses anyhow; library crates use thiserror"
        );
    }
}

/// The package names of the folders under `crates/` or `bins/` (each folder is named after
/// its package).
fn crate_dirs(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Lines of a binary's sources, its unit tests left out: what it does beyond parsing flags,
/// setting up logging and calling library code is what grows it.
fn code_lines(dir: &Path) -> usize {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines()
                .take_while(|l| !l.starts_with("#[cfg(test)]"))
                .filter(|l| !l.trim().is_empty())
                .count()
        })
        .sum()
}

/// The binaries stay thin shells over the library crates (docs/ARCHITECTURE.md): the agent's
/// engine lives in `agent-engine`, the CLI's commands only parse, call and print.
#[test]
fn binaries_stay_thin() {
    let bins = crate_dirs("bins");
    assert_eq!(bins, ["orun", "orun-agent"]);
    for (bin, budget) in [("orun-agent", 500), ("orun", 800)] {
        let lines = code_lines(&root().join("bins").join(bin).join("src"));
        // The count is real: each binary has at least a main (orun-agent's flags live in
        // agent-daemon, shared with `orun start`).
        assert!(lines > 5, "{bin}: {lines} lines");
        assert!(
            lines <= budget,
            "bins/{bin} has {lines} lines of code (at most {budget}): move logic into a library crate"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Every Rust file opens with a `//!` line saying what it is for.
#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    for dir in ["crates", "bins", "xtask", "tests", "fuzz"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 10);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            !text
                .lines()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.starts_with("//!"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` opening line: {missing:?}"
    );
}

/// Library crates opt into the workspace lints and are not published.
#[test]
fn crates_use_workspace_lints() {
    for dir in ["crates", "bins"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let manifest = entry.unwrap().path().join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest).unwrap();
            assert!(
                text.contains("[lints]\nworkspace = true"),
                "{} lacks workspace lints",
                manifest.display()
            );
            assert!(
                text.contains("publish.workspace = true"),
                "{} may be published",
                manifest.display()
            );
        }
    }
}

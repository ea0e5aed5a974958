//! One loader, one set of rules (issue 12): the same tree read from a working copy
//! (`DirSource`, what `orun validate` reads) and from Git objects (`TreeSource`, what the
//! agent reads) gives the same report: links inside and outside the tree, loops, linked and
//! file-shaped manifest folders, non-UTF-8 names.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;

use gitsync::{Mirror, RemoteOptions, RemoteUrl};
use manifest_model::{DirSource, Limits, Report, Source, load};
use test_support::git::Remote;

const NODE: &str = "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n1\nspec:\n  host: h.example.com\n  gitRepo: /srv/r.git\n";

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: nginx:1\n"
    )
}

fn render(report: &Report) -> String {
    let mut out: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
    out.push(match &report.revision {
        Some(rev) => format!("accepted: {:?}", rev.deployments.keys().collect::<Vec<_>>()),
        None => "refused".to_owned(),
    });
    out.join("\n")
}

/// Builds a tree with `build`, commits it, and loads it both ways; returns the one report.
fn both_ways(build: impl FnOnce(&Path)) -> String {
    let remote = Remote::new();
    build(&remote.work());
    let commit = remote.commit("tree", &[]);
    let data = tempfile::tempdir().unwrap();
    let opts = RemoteOptions::new(
        RemoteUrl::parse(&remote.file_url(), Path::new("/")).unwrap(),
        "main",
    );
    let mut mirror = Mirror::open(&data.path().join("git"), opts).unwrap();
    mirror.sync().unwrap();
    let tree = mirror.source(&commit).unwrap();
    let dir = DirSource::new(remote.work()).unwrap();
    let (from_git, from_dir) = (
        render(&load(&tree as &dyn Source, &Limits::default())),
        render(&load(&dir, &Limits::default())),
    );
    assert_eq!(
        from_git, from_dir,
        "Git objects and the working copy differ"
    );
    from_git
}

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn links_read_the_same_from_git_and_from_disk() {
    let report = both_ways(|w| {
        write(w, "nodes/n1.yaml", NODE);
        write(w, "shared/inside.yaml", &deployment("inside"));
        write(w, "deployments/real.yaml", &deployment("real"));
        std::fs::create_dir_all(w.join("deployments/sub")).unwrap();
        symlink("../shared/inside.yaml", w.join("deployments/inside.yaml")).unwrap();
        symlink("inside.yaml", w.join("deployments/chain.yaml")).unwrap();
        symlink("/etc/passwd", w.join("deployments/absolute.yaml")).unwrap();
        symlink("../../etc/passwd", w.join("deployments/above.yaml")).unwrap();
        symlink("../shared", w.join("deployments/folder.yaml")).unwrap();
        symlink("loop-b.yaml", w.join("deployments/loop-a.yaml")).unwrap();
        symlink("loop-a.yaml", w.join("deployments/loop-b.yaml")).unwrap();
        symlink("missing.yaml", w.join("deployments/dangling.yaml")).unwrap();
        symlink("../linked/x.yaml", w.join("deployments/through.yaml")).unwrap();
        symlink("shared", w.join("linked")).unwrap();
        // Links among files the loader ignores fail nothing.
        symlink("/etc/shadow", w.join("deployments/notes.txt")).unwrap();
        write(w, "deployments/sub/x.yaml", "x");
    });
    assert_eq!(
        report,
        "deployments/above.yaml:0:0: error: symbolic link points outside the repository
deployments/absolute.yaml:0:0: error: symbolic link points outside the repository
deployments/chain.yaml:4:9: error: metadata.name: this name is also declared by deployments/inside.yaml
deployments/chain.yaml:4:9: warning: metadata.name: name differs from the file name (without .yaml)
deployments/dangling.yaml:0:0: error: dangling symbolic link
deployments/folder.yaml:0:0: error: symbolic link to a folder is not followed
deployments/inside.yaml:4:9: error: metadata.name: this name is also declared by deployments/chain.yaml
deployments/loop-a.yaml:0:0: error: symbolic link loop or chain too long
deployments/loop-b.yaml:0:0: error: symbolic link loop or chain too long
deployments/sub:0:0: warning: subfolders are not read; move manifests up one level
deployments/through.yaml:0:0: error: symbolic link through a linked folder is not followed
refused"
    );

    // Without the refused ones, in-tree links are read through, from both.
    let report = both_ways(|w| {
        write(w, "nodes/n1.yaml", NODE);
        write(w, "shared/inside.yaml", &deployment("inside"));
        std::fs::create_dir_all(w.join("deployments")).unwrap();
        symlink("../shared/inside.yaml", w.join("deployments/inside.yaml")).unwrap();
        symlink("nodes/n1.yaml", w.join("secrets.yaml")).unwrap();
    });
    assert!(report.contains("secrets.yaml"), "{report}");
    assert!(!report.contains("deployments/inside.yaml"), "{report}");
}

#[test]
fn folders_that_are_not_folders_read_the_same() {
    let report = both_ways(|w| {
        write(w, "nodes/n1.yaml", NODE);
        write(w, "deployments", "not a folder\n");
        write(w, "elsewhere/web.yaml", &deployment("web"));
        symlink("elsewhere", w.join("services")).unwrap();
    });
    assert_eq!(
        report,
        "deployments:0:0: error: is a file, not a folder\n\
         services:0:0: error: is a symbolic link; manifest folders must be real folders\n\
         refused"
    );
}

#[test]
fn names_that_are_not_utf8_read_the_same() {
    let report = both_ways(|w| {
        write(w, "nodes/n1.yaml", NODE);
        write(w, "deployments/web.yaml", &deployment("web"));
        let dir = w.join("deployments");
        let bad = |name: &[u8]| dir.join(std::ffi::OsStr::from_bytes(name));
        std::fs::write(bad(b"caf\xe9.yaml"), deployment("cafe")).unwrap();
        // Not a manifest name: ignored, whatever its bytes.
        std::fs::write(bad(b"notes\xff.txt"), "x").unwrap();
    });
    assert_eq!(
        report,
        "deployments/caf\u{fffd}.yaml:0:0: error: file name is not valid UTF-8\nrefused"
    );
}

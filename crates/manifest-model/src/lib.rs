//! Strict reading, validation and per-node resolution of an orun manifest repository.
//!
//! `manifest-model` turns the files of one revision (`nodes/`, `deployments/`, `services/`,
//! `secrets.yaml`) into a validated [`Revision`], or refuses the revision whole with every
//! problem found, each with file, line, column and field. [`resolve()`] then says what one
//! node should run.
//!
//! It decrypts secrets only in memory and only when given a key ([`unlock`]). It does not
//! talk to Git or Docker, or decide what to change: files arrive
//! through the [`Source`] trait, and planning is `reconcile-core`'s job.
//!
//! ```
//! use manifest_model::{load, Limits, MemSource};
//!
//! let repo = MemSource::new().with(
//!     "deployments/web.yaml",
//!     "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: web\n\
//!      spec:\n  image: nginx:1.27\n  ports:\n    - containerPort: 80\n      port: 8080\n",
//! );
//! let (revision, warnings) = load(&repo, &Limits::default()).into_result().unwrap();
//! assert!(warnings.is_empty());
//! assert_eq!(revision.deployments["web"].spec.ports[0].host_port, Some(8080));
//! ```

mod diag;
mod error;
mod model;
mod policy;
mod raw;
mod render;
mod resolve;
mod secret;
mod source;
pub mod summary;
pub mod unlock;
mod validate;
pub mod values;
mod walk;
mod yaml;

pub use diag::{Diagnostic, Omitted, Pos, Severity, escape_file_name};
pub use error::ModelError;
pub use model::*;
pub use policy::{
    Allowance, CommitPolicy, HostPolicy, MAX_POLICY_BYTES, NodePolicy, load_policy, parse_policy,
};
pub use render::{render_file, render_revision};
pub use resolve::{DesiredContainer, DesiredNode, Environment, ResolvedService, resolve, tracking};
pub use secret::{EnvValue, SealedFile, Secret, SecretsFile, SopsValue};
pub use sops_age::{Fingerprinter, Identities, SopsError};
pub use source::{DirSource, Entry, EntryKind, MAX_LINK_TARGET, MemSource, ReadError, Source};
pub use unlock::{Fingerprints, Unlocked, unlock};
pub use validate::targets;
pub use values::{ImageRef, ProbeTarget};
pub use yaml::{copy_budget, replay_budget};

use diag::Diags;
use validate::{Ctx, Origins};
use walk::Tree;

/// Caps checked before any file is read (RELIABILITY A5), and on what a report keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest file, in bytes (default 1 MiB).
    pub max_file_bytes: u64,
    /// Largest sum of all manifest files, in bytes (default 64 MiB).
    pub max_total_bytes: u64,
    /// Most manifest files in a revision (default 20 000).
    pub max_files: usize,
    /// Most diagnostics a [`Report`] keeps (default 1 000); the rest are counted in
    /// [`Report::omitted`]. Once this many are kept and one is an error, the loader stops
    /// reading files: the revision is refused whatever they say.
    pub max_diagnostics: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 1 << 20,
            max_total_bytes: 64 << 20,
            max_files: 20_000,
            max_diagnostics: 1_000,
        }
    }
}

/// The outcome of loading a revision: the revision when it has no errors, and the
/// diagnostics in stable order, at most [`Limits::max_diagnostics`] of them.
#[derive(Debug)]
pub struct Report {
    /// `Some` only when no diagnostic is an error.
    pub revision: Option<Revision>,
    /// Errors and warnings, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// What was found beyond the cap, or not read at all.
    pub omitted: Omitted,
}

impl Report {
    /// The revision and its warnings, or the refusal.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] with the diagnostics when any is an error.
    pub fn into_result(self) -> Result<(Revision, Vec<Diagnostic>), ModelError> {
        match self.revision {
            Some(rev) => Ok((rev, self.diagnostics)),
            None => Err(ModelError::Invalid {
                diagnostics: self.diagnostics,
                omitted: self.omitted,
            }),
        }
    }

    /// Whether any diagnostic is an error, shown or not.
    pub fn has_errors(&self) -> bool {
        self.omitted.errors > 0 || self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Errors found, shown or not.
    pub fn error_count(&self) -> usize {
        self.omitted.errors + self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Warnings found, shown or not.
    pub fn warning_count(&self) -> usize {
        self.omitted.warnings + self.diagnostics.iter().filter(|d| !d.is_error()).count()
    }
}

/// The manifest folders and the kind each holds.
pub const FOLDERS: [(&str, &str); 3] = [
    ("nodes", "Node"),
    ("deployments", "Deployment"),
    ("services", "Service"),
];

/// The optional SOPS file at the repository root.
pub const SECRETS_FILE: &str = "secrets.yaml";

/// Whether a file name in a manifest folder is a manifest: `*.yaml` / `*.yml`, not hidden.
/// Editor leftovers (`x.yaml~`, `.x.yaml.swp`, `x.yaml-bak`, `.#x.yaml`) are not (A13).
pub fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

fn stem(name: &str) -> &str {
    name.strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .unwrap_or(name)
}

/// Loads and validates one revision from `source`.
///
/// Never panics on any input and never stops at the first problem, but stops reading files
/// once [`Limits::max_diagnostics`] are kept and one is an error. The revision is accepted or
/// refused whole (REFERENCE §1).
///
/// # Cost
/// Time and memory are linear in the bytes read: every check across files groups by key
/// instead of comparing pairs, each diagnostic site reports an input item at most once, and
/// YAML aliases may replay at most [`replay_budget`] events per file (docs/BENCHMARKS.md
/// measures each hostile shape).
pub fn load(source: &dyn Source, limits: &Limits) -> Report {
    load_scoped(source, limits, None)
}

/// Loads only the Node manifest of `node` (`nodes/<node>.yaml` or `.yml`) from `source`, by
/// the same rules as [`load`]: what the agent reads on the remote's default branch to learn
/// which branch the node follows, without judging anything else there (a broken deployment
/// on `main` must not stop a staging node from finding its branch).
///
/// # Errors
/// [`ModelError::Invalid`] when that file is refused; [`ModelError::UnknownNode`] when there
/// is no such file, or it declares another name.
pub fn load_node(source: &dyn Source, node: &str, limits: &Limits) -> Result<Node, ModelError> {
    let (mut rev, _) = load_scoped(source, limits, Some(Some(node))).into_result()?;
    if let Some(n) = rev.nodes.remove(node) {
        return Ok(n);
    }
    // A file named otherwise (`nodes/web.yaml` declaring `web-01`) is only a warning to the
    // loader: the node is found by its name among all of `nodes/`, and nothing else is read.
    let (mut rev, _) = load_scoped(source, limits, Some(None)).into_result()?;
    rev.nodes
        .remove(node)
        .ok_or_else(|| ModelError::UnknownNode(node.to_owned()))
}

/// [`load`], or with `only_nodes` only `nodes/`: the one node's file when it names one.
fn load_scoped(source: &dyn Source, limits: &Limits, only_nodes: Option<Option<&str>>) -> Report {
    let mut diags = Diags::new(limits.max_diagnostics);
    let revision = load_inner(source, limits, only_nodes, &mut diags);
    let refused = diags.errors() > 0;
    let (diagnostics, omitted) = diags.finish();
    Report {
        revision: revision.filter(|_| !refused),
        diagnostics,
        omitted,
    }
}

/// A manifest file found by listing, not yet read.
struct Manifest {
    kind: &'static str,
    /// The file stem, which the manifest's name should match.
    stem: String,
    /// Where the loader found it: what diagnostics name.
    path: String,
    /// Where its bytes are (itself, or the target of its links).
    read_path: String,
    size: u64,
}

fn load_inner(
    source: &dyn Source,
    limits: &Limits,
    only_nodes: Option<Option<&str>>,
    diags: &mut Diags,
) -> Option<Revision> {
    let mut tree = Tree::new(source);
    let (found, secrets) = list_manifests(&mut tree, limits, only_nodes, diags)?;

    let mut rev = Revision::default();
    let mut origins = Origins::default();
    for (i, f) in found.iter().enumerate() {
        if diags.full_of_errors() {
            diags.skip_files(found.len() - i + usize::from(secrets.is_some()));
            return None;
        }
        let Some(text) = read_text(source, f, limits.max_file_bytes, diags) else {
            if f.kind == "Deployment" {
                origins.broken_deployments.insert(f.stem.clone());
            }
            continue;
        };
        let mut cx = Ctx::new(&f.path, diags);
        let stem = f.stem.as_str();
        let parsed = match f.kind {
            "Node" => parse_into(&mut cx, &text, |cx, env| {
                validate::node(cx, env, stem).map(|(n, o)| {
                    insert(cx, &mut rev.nodes, &mut origins.nodes, n.name.clone(), n, o)
                })
            }),
            "Deployment" => parse_into(&mut cx, &text, |cx, env| {
                let name = env.metadata.name.value.clone();
                let sops = env.sops;
                let valid = validate::deployment(cx, env, stem, &text).map(|(d, o)| {
                    if sops {
                        // Read again whole, in document order with typed scalars: the MAC
                        // covers every leaf of the file, not only `env`.
                        match yaml::parse::<sops_age::Value>(cx.file, &text) {
                            Ok(tree) => {
                                if let Some(sealed) =
                                    validate::sealed_file(cx, Pos::FILE, tree.value)
                                {
                                    rev.sealed.insert(d.name.clone(), sealed);
                                }
                            }
                            Err(diag) => cx.diags.push(diag),
                        }
                    }
                    insert(
                        cx,
                        &mut rev.deployments,
                        &mut origins.deployments,
                        d.name.clone(),
                        d,
                        o,
                    )
                });
                if valid.is_none() {
                    origins.broken_deployments.insert(name);
                }
                valid
            }),
            _ => parse_into(&mut cx, &text, |cx, env| {
                validate::service(cx, env, stem).map(|(s, o)| {
                    insert(
                        cx,
                        &mut rev.services,
                        &mut origins.services,
                        s.name.clone(),
                        s,
                        o,
                    )
                })
            }),
        };
        if parsed.is_none() {
            if f.kind == "Deployment" {
                origins.broken_deployments.insert(stem.to_owned());
            }
            hint_kind_mismatch(&mut cx, &text, f.kind);
        }
    }
    if let Some(f) = &secrets {
        if diags.full_of_errors() {
            diags.skip_files(1);
            return None;
        }
        if let Some(text) = read_text(source, f, limits.max_file_bytes, diags) {
            let mut cx = Ctx::new(SECRETS_FILE, diags);
            let parsed = yaml::parse::<raw::SecretsFile>(SECRETS_FILE, &text).and_then(|raw| {
                Ok((
                    raw,
                    yaml::parse::<sops_age::Value>(SECRETS_FILE, &text)?.value,
                ))
            });
            match parsed {
                Ok((parsed, tree)) => {
                    if let Some(w) = parsed.warning {
                        cx.diags.push(w);
                    }
                    rev.secrets =
                        validate::secrets(&mut cx, parsed.value, tree).map(std::sync::Arc::new);
                }
                Err(d) => cx.diags.push(d),
            }
        }
    }
    if diags.full_of_errors() {
        // Refused already, and every check across files would only add to what is not shown.
        return None;
    }
    if only_nodes.is_some() {
        // Node files alone: nothing across files to check.
        return Some(rev);
    }
    validate::cross_file(&rev, &origins, diags);
    Some(rev)
}

fn too_large(path: &str, size: u64, limits: &Limits) -> Diagnostic {
    Diagnostic::error(
        path,
        Pos::FILE,
        "",
        format!(
            "file is {size} bytes, over the limit of {} bytes",
            limits.max_file_bytes
        ),
    )
}

fn insert<T>(
    cx: &mut Ctx<'_>,
    items: &mut std::collections::BTreeMap<String, T>,
    origins: &mut std::collections::BTreeMap<String, validate::Origin>,
    name: String,
    item: T,
    origin: validate::Origin,
) {
    if let Some(first) = origins.get(&name) {
        // Two files, one name: refuse both rather than let file order pick (A7). The item
        // leaves the revision but its origin stays, so cross-file checks know the name exists
        // and do not pile "not found" errors on top. A third file with the name is reported
        // against the first only, so n files cost n diagnostics, not n².
        cx.err(
            origin.name_at,
            "metadata.name",
            format!(
                "this name is also declared by {}",
                escape_file_name(&first.file)
            ),
        );
        if items.remove(&name).is_some() {
            cx.diags.push(Diagnostic::error(
                &first.file,
                first.name_at,
                "metadata.name",
                format!(
                    "this name is also declared by {}",
                    escape_file_name(&origin.file)
                ),
            ));
        }
        return;
    }
    items.insert(name.clone(), item);
    origins.insert(name, origin);
}

fn parse_into<S: serde::de::DeserializeOwned>(
    cx: &mut Ctx<'_>,
    text: &str,
    f: impl FnOnce(&mut Ctx<'_>, raw::Envelope<S>) -> Option<()>,
) -> Option<()> {
    match yaml::parse::<raw::Envelope<S>>(cx.file, text) {
        Ok(parsed) => {
            if let Some(w) = parsed.warning {
                cx.diags.push(w);
            }
            f(cx, parsed.value);
            Some(())
        }
        Err(d) => {
            cx.diags.push(d);
            None
        }
    }
}

/// When a file fails to parse, say so if its `kind` belongs to another folder: "unknown
/// field" alone would send the user looking in the wrong place.
///
/// Read from the text, not by parsing again: a file that failed may be one built to make
/// the parser work hard. Only a top-level `kind:` line naming one of the three kinds counts.
fn hint_kind_mismatch(cx: &mut Ctx<'_>, text: &str, expected: &str) {
    let found = text.lines().find_map(|l| {
        let v = l.strip_prefix("kind:")?.trim();
        let v = v
            .split(" #")
            .next()
            .unwrap_or(v)
            .trim()
            .trim_matches(['"', '\'']);
        FOLDERS.iter().map(|(_, k)| *k).find(|k| *k == v)
    });
    if let Some(kind) = found
        && kind != expected
    {
        let folder = FOLDERS
            .iter()
            .find(|(_, k)| *k == expected)
            .map_or("?", |(f, _)| *f);
        cx.err(
            Pos::FILE,
            "kind",
            format!("this file declares kind `{kind}`, but {folder}/ holds `{expected}`"),
        );
    }
}

/// Lists the manifest files by the rules of [`walk`], applying the count and size caps
/// before any file is read. Returns `None` when the revision cannot even be listed. With
/// `only_nodes`, lists `nodes/` alone (that node's file, when it names one) and no
/// `secrets.yaml`.
fn list_manifests(
    tree: &mut Tree<'_>,
    limits: &Limits,
    only_nodes: Option<Option<&str>>,
    diags: &mut Diags,
) -> Option<(Vec<Manifest>, Option<Manifest>)> {
    let root = match tree.list("") {
        Ok(Some(entries)) => entries,
        Ok(None) => {
            diags.push(Diagnostic::error(
                ".",
                Pos::FILE,
                "",
                "repository root not found",
            ));
            return None;
        }
        Err(e) => {
            diags.push(Diagnostic::error(
                ".",
                Pos::FILE,
                "",
                format!("cannot list repository root: {}", io_reason(&e)),
            ));
            return None;
        }
    };
    let mut found = Vec::new();
    let mut total: u64 = 0;
    let mut any_folder = false;
    let mut named = 0usize;
    for (folder, kind) in FOLDERS {
        if only_nodes.is_some() && kind != "Node" {
            continue;
        }
        let Some(entry) = root.iter().find(|e| e.utf8 && e.name == folder) else {
            continue;
        };
        // A manifest folder that is anything but a folder is an error, never an empty
        // folder: that would silently empty the desired state (A12, B3).
        let not_a_folder = match &entry.kind {
            EntryKind::Dir => None,
            EntryKind::Link => Some("is a symbolic link; manifest folders must be real folders"),
            EntryKind::File { .. } => Some("is a file, not a folder"),
            EntryKind::Other { .. } => Some("is not a folder"),
        };
        if let Some(why) = not_a_folder {
            any_folder = true;
            diags.push(Diagnostic::error(folder, Pos::FILE, "", why));
            continue;
        }
        let entries = match tree.list(folder) {
            Ok(Some(e)) => {
                any_folder = true;
                e
            }
            Ok(None) => continue,
            Err(e) => {
                any_folder = true;
                diags.push(Diagnostic::error(
                    folder,
                    Pos::FILE,
                    "",
                    format!("cannot list folder: {}", io_reason(&e)),
                ));
                continue;
            }
        };
        for entry in entries.iter() {
            let path = format!("{folder}/{}", entry.name);
            if matches!(entry.kind, EntryKind::Dir) {
                if !entry.name.starts_with('.') {
                    diags.push(Diagnostic::warning(
                        &path,
                        Pos::FILE,
                        "",
                        "subfolders are not read; move manifests up one level",
                    ));
                }
                continue;
            }
            if !is_manifest_name(&entry.name) {
                continue;
            }
            if only_nodes.flatten().is_some_and(|n| stem(&entry.name) != n) {
                continue;
            }
            // The count cap comes before any link is followed or file read.
            named += 1;
            if named > limits.max_files {
                continue;
            }
            if !entry.utf8 {
                diags.push(Diagnostic::error(
                    &path,
                    Pos::FILE,
                    "",
                    "file name is not valid UTF-8",
                ));
                continue;
            }
            match tree.classify(folder, &entry.name, &entry.kind) {
                Ok(r) => {
                    total = total.saturating_add(r.size);
                    found.push(Manifest {
                        kind,
                        stem: stem(&entry.name).to_owned(),
                        path,
                        read_path: r.read_path,
                        size: r.size,
                    });
                }
                Err(why) => diags.push(Diagnostic::error(&path, Pos::FILE, "", why)),
            }
        }
    }
    let secrets = root
        .iter()
        .filter(|_| only_nodes.is_none())
        .find(|e| e.utf8 && e.name == SECRETS_FILE)
        .and_then(|e| match tree.classify("", &e.name, &e.kind) {
            Ok(r) => Some(Manifest {
                kind: "Secrets",
                stem: "secrets".to_owned(),
                path: SECRETS_FILE.to_owned(),
                read_path: r.read_path,
                size: r.size,
            }),
            Err(why) => {
                diags.push(Diagnostic::error(SECRETS_FILE, Pos::FILE, "", why));
                None
            }
        });
    if !any_folder && only_nodes.is_some() {
        // No nodes/ folder: the node is not declared, which the caller says in its words.
        return Some((found, None));
    }
    if !any_folder {
        diags.push(Diagnostic::error(
            ".",
            Pos::FILE,
            "",
            "no nodes/, deployments/ or services/ folder: this is not a manifest repository (or the path is wrong)",
        ));
        return None;
    }
    total = total.saturating_add(secrets.as_ref().map_or(0, |s| s.size));
    if named > limits.max_files {
        diags.push(Diagnostic::error(
            ".",
            Pos::FILE,
            "",
            format!(
                "{named} manifest files exceed the limit of {}",
                limits.max_files
            ),
        ));
        return None;
    }
    if total > limits.max_total_bytes {
        diags.push(Diagnostic::error(
            ".",
            Pos::FILE,
            "",
            format!(
                "manifests total {total} bytes, over the limit of {} bytes",
                limits.max_total_bytes
            ),
        ));
        return None;
    }
    for f in found.iter().chain(&secrets) {
        if f.size > limits.max_file_bytes {
            diags.push(too_large(&f.path, f.size, limits));
        }
    }
    found.retain(|f| f.size <= limits.max_file_bytes);
    let secrets = secrets.filter(|f| f.size <= limits.max_file_bytes);
    Some((found, secrets))
}

/// An I/O error in plain words: its kind (`permission denied`), never a path or detail.
fn io_reason(e: &std::io::Error) -> String {
    e.kind().to_string()
}

/// Reads a file as UTF-8 text, reporting size, encoding and LFS problems as diagnostics.
fn read_text(source: &dyn Source, f: &Manifest, limit: u64, diags: &mut Diags) -> Option<String> {
    let path = f.path.as_str();
    let bytes = match source.read(&f.read_path, limit) {
        Ok(b) => b,
        Err(ReadError::TooLarge { limit }) => {
            diags.push(Diagnostic::error(
                path,
                Pos::FILE,
                "",
                format!("file is larger than the limit of {limit} bytes"),
            ));
            return None;
        }
        Err(ReadError::Refused(reason)) => {
            diags.push(Diagnostic::error(path, Pos::FILE, "", reason));
            return None;
        }
        Err(ReadError::Io(e)) => {
            diags.push(Diagnostic::error(
                path,
                Pos::FILE,
                "",
                format!("cannot read file: {}", io_reason(&e)),
            ));
            return None;
        }
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = line_col(bytes, e.valid_up_to());
            diags.push(Diagnostic::error(
                path,
                Pos::new(line, column),
                "",
                "file is not valid UTF-8",
            ));
            return None;
        }
    };
    if text.starts_with("version https://git-lfs.github.com/spec/") {
        diags.push(Diagnostic::error(
            path,
            Pos::new(1, 1),
            "",
            "file is a Git LFS pointer, not a manifest; do not store manifests in LFS",
        ));
        return None;
    }
    if let Some(i) = text.find('\0') {
        let (line, column) = line_col(bytes, i);
        diags.push(Diagnostic::error(
            path,
            Pos::new(line, column),
            "",
            "file contains a NUL character",
        ));
        return None;
    }
    let meaningful = text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && t != "---" && t != "..."
    });
    if !meaningful {
        diags.push(Diagnostic::error(
            path,
            Pos::FILE,
            "",
            "file holds no manifest (it is empty)",
        ));
        return None;
    }
    Some(text.to_owned())
}

fn line_col(bytes: &[u8], offset: usize) -> (u64, u64) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() as u64 + 1;
    (line, col)
}

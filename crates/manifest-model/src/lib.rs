//! Strict reading, validation and per-node resolution of an orun manifest repository.
//!
//! `manifest-model` turns the files of one revision (`nodes/`, `deployments/`, `services/`,
//! `secrets.yaml`) into a validated [`Revision`], or refuses the revision whole with every
//! problem found, each with file, line, column and field. [`resolve()`] then says what one
//! node should run.
//!
//! It does not decrypt secrets, talk to Git or Docker, or decide what to change: files arrive
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
mod raw;
mod render;
mod resolve;
mod secret;
mod source;
mod validate;
pub mod values;
mod yaml;

pub use diag::{Diagnostic, Pos, Severity};
pub use error::ModelError;
pub use model::*;
pub use render::{render_file, render_revision};
pub use resolve::{DesiredContainer, DesiredNode, Environment, ResolvedService, resolve};
pub use secret::{AgeStanza, EnvValue, Secret, SecretsFile, SopsValue};
pub use source::{DirSource, Entry, EntryKind, MemSource, ReadError, Source};
pub use validate::targets;
pub use values::{ImageRef, ProbeTarget};

use validate::{Ctx, Origins};

/// Caps checked before any file is read (RELIABILITY A5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest file, in bytes (default 1 MiB).
    pub max_file_bytes: u64,
    /// Largest sum of all manifest files, in bytes (default 64 MiB).
    pub max_total_bytes: u64,
    /// Most manifest files in a revision (default 20 000).
    pub max_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 1 << 20,
            max_total_bytes: 64 << 20,
            max_files: 20_000,
        }
    }
}

/// The outcome of loading a revision: the revision when it has no errors, and every
/// diagnostic in stable order.
#[derive(Debug)]
pub struct Report {
    /// `Some` only when no diagnostic is an error.
    pub revision: Option<Revision>,
    /// Errors and warnings, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// The revision and its warnings, or the refusal.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] with all diagnostics when any is an error.
    pub fn into_result(self) -> Result<(Revision, Vec<Diagnostic>), ModelError> {
        match self.revision {
            Some(rev) => Ok((rev, self.diagnostics)),
            None => Err(ModelError::Invalid {
                diagnostics: self.diagnostics,
            }),
        }
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
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
/// Never panics on any input and never stops at the first problem. The revision is accepted
/// or refused whole (REFERENCE §1).
pub fn load(source: &dyn Source, limits: &Limits) -> Report {
    let mut diags = Vec::new();
    let revision = load_inner(source, limits, &mut diags);
    diag::sort(&mut diags);
    let revision = revision.filter(|_| !diags.iter().any(Diagnostic::is_error));
    Report {
        revision,
        diagnostics: diags,
    }
}

/// A manifest file found by listing, not yet read.
struct Found {
    folder: &'static str,
    kind: &'static str,
    name: String,
    path: String,
    size: u64,
}

fn load_inner(
    source: &dyn Source,
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
) -> Option<Revision> {
    let (found, secrets_size) = list_manifests(source, limits, diags)?;

    let mut rev = Revision::default();
    let mut origins = Origins::default();
    for f in &found {
        if f.size > limits.max_file_bytes {
            diags.push(too_large(&f.path, f.size, limits));
            continue;
        }
        let Some(text) = read_text(source, &f.path, limits.max_file_bytes, diags) else {
            continue;
        };
        let mut cx = Ctx::new(&f.path, diags);
        let stem = stem(&f.name);
        let parsed = match f.kind {
            "Node" => parse_into(&mut cx, &text, |cx, env| {
                validate::node(cx, env, stem).map(|(n, o)| {
                    insert(cx, &mut rev.nodes, &mut origins.nodes, n.name.clone(), n, o)
                })
            }),
            "Deployment" => parse_into(&mut cx, &text, |cx, env| {
                let name = env.metadata.name.value.clone();
                let valid = validate::deployment(cx, env, stem).map(|(d, o)| {
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
            if f.kind != "Node" {
                hint_kind_mismatch(&mut cx, &text, f.folder);
            }
        }
    }
    if let Some(size) = secrets_size
        && size > limits.max_file_bytes
    {
        diags.push(too_large(SECRETS_FILE, size, limits));
    } else if secrets_size.is_some()
        && let Some(text) = read_text(source, SECRETS_FILE, limits.max_file_bytes, diags)
    {
        let mut cx = Ctx::new(SECRETS_FILE, diags);
        match yaml::parse::<raw::SecretsFile>(SECRETS_FILE, &text) {
            Ok(raw) => rev.secrets = validate::secrets(&mut cx, raw),
            Err(d) => cx.diags.push(d),
        }
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
        // and do not pile "not found" errors on top.
        cx.err(
            origin.name_at,
            "metadata.name",
            format!("name `{name}` is also declared by {}", first.file),
        );
        cx.diags.push(Diagnostic::error(
            &first.file,
            first.name_at,
            "metadata.name",
            format!("name `{name}` is also declared by {}", origin.file),
        ));
        items.remove(&name);
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
        Ok(env) => {
            f(cx, env);
            Some(())
        }
        Err(d) => {
            cx.diags.push(d);
            None
        }
    }
}

/// When a file fails to parse, say so if its `kind` belongs to another folder: "unknown
/// field `deployment`" alone would send the user looking in the wrong place.
fn hint_kind_mismatch(cx: &mut Ctx<'_>, text: &str, folder: &str) {
    #[derive(serde::Deserialize)]
    struct Head {
        kind: Option<String>,
    }
    let Ok(head) = yaml::parse::<Head>(cx.file, text) else {
        return;
    };
    let Some(kind) = head.kind else { return };
    let expected = FOLDERS.iter().find(|(f, _)| *f == folder).map(|(_, k)| *k);
    if Some(kind.as_str()) != expected && FOLDERS.iter().any(|(_, k)| *k == kind) {
        cx.err(
            Pos::FILE,
            "kind",
            format!(
                "this file declares kind `{kind}`, but {folder}/ holds `{}`",
                expected.unwrap_or("?")
            ),
        );
    }
}

/// Lists the manifest files, applying name filters and the count and size caps before any
/// file is read. Returns `None` when the revision cannot even be listed.
fn list_manifests(
    source: &dyn Source,
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Vec<Found>, Option<u64>)> {
    let root = match source.list("") {
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
                format!("cannot list repository root: {e}"),
            ));
            return None;
        }
    };
    let mut found = Vec::new();
    let mut total: u64 = 0;
    let mut any_folder = false;
    for (folder, kind) in FOLDERS {
        let entries = match source.list(folder) {
            Ok(Some(e)) => {
                any_folder = true;
                e
            }
            Ok(None) => continue,
            Err(e) => {
                diags.push(Diagnostic::error(
                    folder,
                    Pos::FILE,
                    "",
                    format!("cannot list folder: {e}"),
                ));
                continue;
            }
        };
        for entry in entries {
            let path = format!("{folder}/{}", entry.name);
            match entry.kind {
                EntryKind::Dir => {
                    if !entry.name.starts_with('.') {
                        diags.push(Diagnostic::warning(
                            &path,
                            Pos::FILE,
                            "",
                            "subfolders are not read; move manifests up one level",
                        ));
                    }
                }
                _ if !is_manifest_name(&entry.name) => {}
                EntryKind::Refused { reason } => {
                    diags.push(Diagnostic::error(&path, Pos::FILE, "", reason))
                }
                EntryKind::File { size } => {
                    total = total.saturating_add(size);
                    found.push(Found {
                        folder,
                        kind,
                        name: entry.name,
                        path,
                        size,
                    });
                }
            }
        }
    }
    let secrets_size = root
        .iter()
        .find(|e| e.name == SECRETS_FILE)
        .and_then(|e| match &e.kind {
            EntryKind::File { size } => Some(*size),
            EntryKind::Refused { reason } => {
                diags.push(Diagnostic::error(
                    SECRETS_FILE,
                    Pos::FILE,
                    "",
                    reason.clone(),
                ));
                None
            }
            EntryKind::Dir => None,
        });
    if !any_folder {
        diags.push(Diagnostic::error(
            ".",
            Pos::FILE,
            "",
            "no nodes/, deployments/ or services/ folder: this is not a manifest repository (or the path is wrong)",
        ));
        return None;
    }
    total = total.saturating_add(secrets_size.unwrap_or(0));
    if found.len() > limits.max_files {
        diags.push(Diagnostic::error(
            ".",
            Pos::FILE,
            "",
            format!(
                "{} manifest files exceed the limit of {}",
                found.len(),
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
    Some((found, secrets_size))
}

/// Reads a file as UTF-8 text, reporting size, encoding and LFS problems as diagnostics.
fn read_text(
    source: &dyn Source,
    path: &str,
    limit: u64,
    diags: &mut Vec<Diagnostic>,
) -> Option<String> {
    let bytes = match source.read(path, limit) {
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
                format!("cannot read file: {e}"),
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

//! Build contexts: a folder of a [`Source`] packed into the tar Docker's `/build` takes, with
//! `.dockerignore` honoured, and a digest of exactly what was packed.
//!
//! The agent packs from the commit being applied (gitsync's tree source), never from a
//! folder on the node, so a build is a function of the commit. Nothing is followed out of
//! the folder: symbolic links go into the tar as links, for Docker to treat as it treats
//! any link in a context. The size and the number of entries are capped, so a hostile or
//! mistaken push costs bounded memory.

mod ignore;

use manifest_model::{EntryKind, ReadError, Source};
use sha2::{Digest as _, Sha256};

use ignore::Ignore;

use crate::RuntimeError;

/// Folders nested deeper than this refuse the context.
const MAX_DEPTH: usize = 64;
/// A path (relative to the context) longer than this refuses the context.
const MAX_PATH: usize = 1024;

/// Caps on what one context may hold.
#[derive(Clone, Copy, Debug)]
pub struct ContextLimits {
    /// Bytes of file content in all (the tar is held in memory).
    pub max_bytes: u64,
    /// Files, folders and links.
    pub max_entries: usize,
}

impl Default for ContextLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            max_entries: 100_000,
        }
    }
}

/// A packed context.
#[derive(Clone)]
pub struct Packed {
    /// The tar, uncompressed.
    pub tar: Vec<u8>,
    /// SHA-256 over every packed entry's path, kind, mode and content, in order: the same
    /// files give the same digest whatever the commit.
    pub digest: String,
    /// Files packed.
    pub files: usize,
    /// Entries left out because a context cannot hold them (submodules, devices).
    pub skipped: Vec<String>,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("tar_bytes", &self.tar.len())
            .field("digest", &self.digest)
            .field("files", &self.files)
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// Packs `context` (a folder of `src`, `""` for its root), with `dockerfile` relative to it.
///
/// # Errors
/// When the folder or the Dockerfile is missing, a cap is reached, `.dockerignore` is
/// unusable, or the source cannot be read.
pub fn pack(
    src: &dyn Source,
    context: &str,
    dockerfile: &str,
    limits: ContextLimits,
) -> Result<Packed, RuntimeError> {
    walk(src, context, dockerfile, limits, true)
}

/// [`pack`]'s digest, without the tar: what an `on-change` build is tagged by, read on every
/// revision without holding the context in memory.
///
/// # Errors
/// As [`pack`].
pub fn digest(
    src: &dyn Source,
    context: &str,
    dockerfile: &str,
    limits: ContextLimits,
) -> Result<String, RuntimeError> {
    walk(src, context, dockerfile, limits, false).map(|p| p.digest)
}

fn walk(
    src: &dyn Source,
    context: &str,
    dockerfile: &str,
    limits: ContextLimits,
    want_tar: bool,
) -> Result<Packed, RuntimeError> {
    let read_err =
        |path: String, e: std::io::Error| RuntimeError::Context(format!("cannot read {path}: {e}"));
    let Some(top) = src
        .list(context)
        .map_err(|e| read_err(context.to_owned(), e))?
    else {
        return Err(RuntimeError::Context(no_context(context)));
    };
    let ignore = match top.iter().find(|e| e.name == ".dockerignore") {
        Some(e) if matches!(e.kind, EntryKind::File { .. }) => {
            let bytes = src
                .read(&in_context(context, ".dockerignore"), 64 * 1024)
                .map_err(|e| read_error(in_context(context, ".dockerignore"), e))?;
            Ignore::parse(&String::from_utf8_lossy(&bytes)).map_err(RuntimeError::Context)?
        }
        _ => Ignore::default(),
    };

    let mut packer = Packer {
        src,
        context,
        limits,
        ignore,
        dockerfile,
        builder: want_tar.then(|| tar::Builder::new(Vec::new())),
        hash: Sha256::new(),
        files: 0,
        bytes: 0,
        entries: 0,
        skipped: Vec::new(),
        saw_dockerfile: false,
    };
    packer.walk("", &[], 0, top)?;
    if !packer.saw_dockerfile {
        return Err(RuntimeError::Context(no_dockerfile(dockerfile)));
    }
    let tar = match packer.builder {
        Some(b) => b
            .into_inner()
            .map_err(|e| read_err(context.to_owned(), e))?,
        None => Vec::new(),
    };
    Ok(Packed {
        tar,
        digest: format!("{:x}", packer.hash.finalize()),
        files: packer.files,
        skipped: packer.skipped,
    })
}

/// A build context that cannot be used: the deployment, the field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextProblem {
    /// The deployment.
    pub deployment: String,
    /// `spec.build.context` or `spec.build.dockerfile`.
    pub field: &'static str,
    /// Why, naming paths in the repository.
    pub message: String,
}

/// Fills in each built container's `build_input` from `src`, the revision being applied:
/// every context and Dockerfile must be there, an `on-change` context is digested, and an
/// `always` build takes `commit` (left unset when `None`, as for a working folder). Returns
/// one problem per deployment that cannot be built from this revision; a revision with any
/// is refused whole, like any invalid one.
pub fn fill_build_inputs(
    src: &dyn Source,
    node: &mut manifest_model::DesiredNode,
    commit: Option<&str>,
    limits: ContextLimits,
) -> Vec<ContextProblem> {
    use manifest_model::{BuildMode, ImageSource};
    let mut problems = Vec::new();
    // Deployments built from one context (a monorepo's services) read it once.
    let mut digests: std::collections::HashMap<(String, String), Result<String, String>> =
        std::collections::HashMap::new();
    for c in &mut node.containers {
        let ImageSource::Build(b) = &c.spec.source else {
            continue;
        };
        let problem = |field, message| ContextProblem {
            deployment: c.deployment.clone(),
            field,
            message,
        };
        if let Err((field, message)) = present(src, &b.context, &b.dockerfile) {
            problems.push(problem(field, message));
            continue;
        }
        match b.build_mode {
            BuildMode::BuildOnce => {}
            BuildMode::Always => c.build_input = commit.map(str::to_owned),
            // What is left to go wrong is a cap or a read, of the context as a whole.
            BuildMode::OnChange => match digests
                .entry((b.context.clone(), b.dockerfile.clone()))
                .or_insert_with(|| {
                    digest(src, &b.context, &b.dockerfile, limits).map_err(|e| e.to_string())
                })
                .clone()
            {
                Ok(d) => c.build_input = Some(d),
                Err(e) => problems.push(problem("spec.build.context", e)),
            },
        }
    }
    problems
}

/// The context is a folder of `src` and the Dockerfile a regular file in it: a cheap look,
/// naming the field at fault.
fn present(
    src: &dyn Source,
    context: &str,
    dockerfile: &str,
) -> Result<(), (&'static str, String)> {
    match src.list(context) {
        Ok(Some(_)) => {}
        _ => {
            return Err(("spec.build.context", no_context(context)));
        }
    }
    let path = in_context(context, dockerfile);
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", &path));
    let found = src.list(parent).ok().flatten().is_some_and(|es| {
        es.iter()
            .any(|e| e.name == name && matches!(e.kind, EntryKind::File { .. }))
    });
    if found {
        Ok(())
    } else {
        Err(("spec.build.dockerfile", no_dockerfile(dockerfile)))
    }
}

/// The path in the repository of `rel`, a path in the folder `context` (`""`: the root).
fn in_context(context: &str, rel: &str) -> String {
    if context.is_empty() {
        rel.to_owned()
    } else {
        format!("{context}/{rel}")
    }
}

/// The messages of a missing context or Dockerfile, the same from every check.
fn no_context(context: &str) -> String {
    format!("the build context `{context}` is not a folder of this commit")
}

fn no_dockerfile(dockerfile: &str) -> String {
    format!("the Dockerfile `{dockerfile}` is not a file in the build context")
}

fn read_error(path: String, e: ReadError) -> RuntimeError {
    let why = match e {
        ReadError::TooLarge { limit } => format!("larger than {limit} bytes"),
        ReadError::Refused(why) => why,
        ReadError::Io(e) => e.to_string(),
    };
    RuntimeError::Context(format!("cannot read {path}: {why}"))
}

struct Packer<'a> {
    src: &'a dyn Source,
    context: &'a str,
    limits: ContextLimits,
    ignore: Ignore,
    dockerfile: &'a str,
    /// `None` when only the digest is wanted.
    builder: Option<tar::Builder<Vec<u8>>>,
    hash: Sha256,
    files: usize,
    bytes: u64,
    entries: usize,
    skipped: Vec<String>,
    saw_dockerfile: bool,
}

impl Packer<'_> {
    fn in_repo(&self, rel: &str) -> String {
        in_context(self.context, rel)
    }

    fn too_large(&self, what: String) -> RuntimeError {
        RuntimeError::Context(format!("the build context `{}` {what}", self.context))
    }

    /// Packs the entries of the folder `dir` (relative to the context), sorted by name so
    /// the tar and the digest do not depend on the source's listing order. `matched` says
    /// which `.dockerignore` patterns matched `dir` or a folder above it. Every entry
    /// looked at counts against the cap, ignored or not: a tree that names one subtree
    /// again and again (cheap in Git) costs no more than the cap.
    fn walk(
        &mut self,
        dir: &str,
        matched: &[bool],
        depth: usize,
        mut entries: Vec<manifest_model::Entry>,
    ) -> Result<(), RuntimeError> {
        if depth > MAX_DEPTH {
            return Err(self.too_large(format!("nests folders more than {MAX_DEPTH} deep")));
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for entry in entries {
            self.count()?;
            let rel = if dir.is_empty() {
                entry.name.clone()
            } else {
                format!("{dir}/{}", entry.name)
            };
            if rel.len() > MAX_PATH {
                return Err(self.too_large(format!("holds a path longer than {MAX_PATH} bytes")));
            }
            let here = self.ignore.matches(matched, &rel);
            // Docker sends the Dockerfile and `.dockerignore` even when they are ignored.
            let always = rel == self.dockerfile || rel == ".dockerignore";
            let ignored = !always && self.ignore.excluded(&here);
            if !entry.utf8 {
                if ignored {
                    continue;
                }
                return Err(RuntimeError::Context(format!(
                    "cannot read {}: the name is not UTF-8",
                    self.in_repo(&rel)
                )));
            }
            match entry.kind {
                EntryKind::Dir => {
                    // An ignored folder is walked only when a `!` line may take something
                    // inside it back.
                    if ignored && !self.ignore.has_includes() {
                        continue;
                    }
                    let path = self.in_repo(&rel);
                    let inner = self
                        .src
                        .list(&path)
                        .map_err(|e| RuntimeError::Context(format!("cannot read {path}: {e}")))?
                        .unwrap_or_default();
                    if !ignored {
                        self.hash_entry(b'd', &rel, 0o755, &[]);
                        let mut h = header(tar::EntryType::Directory, 0o755, 0);
                        self.append(&rel, |b| {
                            b.append_data(&mut h, format!("{rel}/"), std::io::empty())
                        })?;
                    }
                    self.walk(&rel, &here, depth + 1, inner)?;
                }
                _ if ignored => {}
                EntryKind::File { size, exec } => {
                    let budget = self.limits.max_bytes.saturating_sub(self.bytes);
                    if size > budget {
                        return Err(self.too_large(format!(
                            "holds more than {} MiB of files",
                            self.limits.max_bytes / (1024 * 1024)
                        )));
                    }
                    let path = self.in_repo(&rel);
                    let bytes = self
                        .src
                        .read(&path, budget)
                        .map_err(|e| read_error(path, e))?;
                    let mode = if exec { 0o755 } else { 0o644 };
                    self.hash_entry(b'f', &rel, mode, &Sha256::digest(&bytes));
                    let mut h = header(tar::EntryType::Regular, mode, bytes.len() as u64);
                    self.append(&rel, |b| b.append_data(&mut h, &rel, bytes.as_slice()))?;
                    self.files += 1;
                    self.bytes += bytes.len() as u64;
                    if rel == self.dockerfile {
                        self.saw_dockerfile = true;
                    }
                }
                EntryKind::Link => {
                    let path = self.in_repo(&rel);
                    let target = self
                        .src
                        .read_link(&path)
                        .map_err(|e| read_error(path.clone(), e))?;
                    let target = String::from_utf8(target).map_err(|_| {
                        RuntimeError::Context(format!(
                            "cannot read {path}: the link's target is not UTF-8"
                        ))
                    })?;
                    self.hash_entry(b'l', &rel, 0o777, target.as_bytes());
                    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                    self.append(&rel, |b| b.append_link(&mut h, &rel, &target))?;
                }
                EntryKind::Other { what } => {
                    self.skipped
                        .push(format!("{} ({what})", self.in_repo(&rel)));
                }
            }
        }
        Ok(())
    }

    fn count(&mut self) -> Result<(), RuntimeError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.too_large(format!(
                "holds more than {} files and folders",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    /// Length-prefixed fields, so no two different entries hash alike.
    fn hash_entry(&mut self, kind: u8, rel: &str, mode: u32, content: &[u8]) {
        self.hash.update([kind]);
        self.hash.update((rel.len() as u64).to_le_bytes());
        self.hash.update(rel.as_bytes());
        self.hash.update(mode.to_le_bytes());
        self.hash.update((content.len() as u64).to_le_bytes());
        self.hash.update(content);
    }

    /// Adds an entry to the tar, when one is being made.
    fn append(
        &mut self,
        rel: &str,
        add: impl FnOnce(&mut tar::Builder<Vec<u8>>) -> std::io::Result<()>,
    ) -> Result<(), RuntimeError> {
        let Some(builder) = self.builder.as_mut() else {
            return Ok(());
        };
        add(builder)
            .map_err(|e| RuntimeError::Context(format!("cannot pack {}: {e}", self.in_repo(rel))))
    }
}

/// A header with fixed owner and times: the tar of the same files is the same bytes, and
/// Docker's cache (which looks at content and mode) hits across commits.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use manifest_model::MemSource;

    fn names(p: &Packed) -> Vec<String> {
        let mut ar = tar::Archive::new(p.tar.as_slice());
        ar.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    fn app() -> MemSource {
        MemSource::new()
            .with("app/Dockerfile", "FROM scratch\nCOPY . /\n")
            .with("app/.dockerignore", "*.log\nsecret/\n!secret/public.txt\n")
            .with("app/src/main.sh", "echo hi\n")
            .with("app/debug.log", "noise")
            .with("app/secret/key", "k")
            .with("app/secret/public.txt", "p")
            .with("deployments/app.yaml", "not in the context")
    }

    #[test]
    fn packs_the_folder_with_dockerignore_honoured() {
        let p = pack(&app(), "app", "Dockerfile", ContextLimits::default()).unwrap();
        assert_eq!(
            names(&p),
            [
                ".dockerignore",
                "Dockerfile",
                "secret/public.txt",
                "src/",
                "src/main.sh"
            ]
        );
        assert_eq!(p.files, 4);
    }

    #[test]
    fn the_digest_follows_content_and_ignores_ignored_files() {
        let base = pack(&app(), "app", "Dockerfile", ContextLimits::default()).unwrap();
        let noise = app().with("app/other.log", "more noise");
        let same = pack(&noise, "app", "Dockerfile", ContextLimits::default()).unwrap();
        assert_eq!(base.digest, same.digest);
        let outside = app().with("deployments/app.yaml", "changed");
        let same = pack(&outside, "app", "Dockerfile", ContextLimits::default()).unwrap();
        assert_eq!(base.digest, same.digest);
        let changed = app().with("app/src/main.sh", "echo bye\n");
        let other = pack(&changed, "app", "Dockerfile", ContextLimits::default()).unwrap();
        assert_ne!(base.digest, other.digest);
        // Digesting alone agrees with packing.
        let alone = digest(&app(), "app", "Dockerfile", ContextLimits::default()).unwrap();
        assert_eq!(alone, base.digest);
        // The tar is the same bytes for the same files.
        assert_eq!(
            base.tar,
            pack(&app(), "app", "Dockerfile", ContextLimits::default())
                .unwrap()
                .tar
        );
    }

    #[test]
    fn links_stay_links_and_missing_pieces_are_named() {
        let mut src = app();
        src.insert_link("app/escape", "../../../../etc/passwd");
        let p = pack(&src, "app", "Dockerfile", ContextLimits::default()).unwrap();
        let mut ar = tar::Archive::new(p.tar.as_slice());
        let link = ar
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().to_str() == Some("escape"))
            .unwrap();
        assert_eq!(link.header().entry_type(), tar::EntryType::Symlink);

        let err = pack(&app(), "nope", "Dockerfile", ContextLimits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the build context `nope` is not a folder of this commit"
        );
        let err = pack(&app(), "app", "Containerfile", ContextLimits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Dockerfile `Containerfile` is not a file in the build context"
        );
    }

    #[test]
    fn caps_bound_what_a_push_can_cost() {
        let big = app().with("app/big", vec![0u8; 2048]);
        let limits = ContextLimits {
            max_bytes: 1024,
            max_entries: 100,
        };
        let err = pack(&big, "app", "Dockerfile", limits).unwrap_err();
        assert!(err.to_string().contains("more than 0 MiB"), "{err}");
        let limits = ContextLimits {
            max_bytes: 1 << 20,
            max_entries: 3,
        };
        let err = pack(&app(), "app", "Dockerfile", limits).unwrap_err();
        assert!(err.to_string().contains("more than 3 files"), "{err}");
    }
}

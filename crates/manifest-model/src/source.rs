//! Where a revision's files come from: an abstract [`Source`], an in-memory one and a
//! directory reader that refuses to be led outside its root.
//!
//! The agent feeds revisions straight from Git objects through its own `Source`; the CLI reads
//! a working tree through [`DirSource`]. Either way the loader only ever sees repo-relative,
//! `/`-separated paths and never follows a link out of the tree.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// One name inside a listed folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The file name, without any folder.
    pub name: String,
    /// What the name is.
    pub kind: EntryKind,
}

/// What a listed name is, as far as the loader cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (or a link resolving to one inside the root) of this many bytes.
    File {
        /// Size in bytes, known before reading.
        size: u64,
    },
    /// A folder. Manifest folders are not read recursively.
    Dir,
    /// Something the source will not read, with the reason (a link leaving the tree, a loop,
    /// a link to a folder, a device or socket).
    Refused {
        /// Why; names no content of the target.
        reason: String,
    },
}

/// Why a read failed.
#[derive(Debug)]
pub enum ReadError {
    /// The file is larger than the limit; it was not read (or reading stopped at the limit).
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The source refused the file (see [`EntryKind::Refused`]).
    Refused(String),
    /// An operating-system error.
    Io(io::Error),
}

/// A tree of files the loader can list and read.
///
/// Paths are repo-relative and `/`-separated; `""` is the root. Implementations must not follow
/// links that leave the tree and must not read more than `limit` bytes of a file.
pub trait Source {
    /// Lists the names directly inside `dir`, or `Ok(None)` when `dir` does not exist.
    fn list(&self, dir: &str) -> io::Result<Option<Vec<Entry>>>;

    /// Reads the file at `path`, refusing it when it holds more than `limit` bytes.
    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, ReadError>;
}

/// An in-memory tree, for tests, fuzzing and sources that already hold the bytes.
#[derive(Clone, Debug, Default)]
pub struct MemSource {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemSource {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file; its folders exist implicitly.
    pub fn insert(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), bytes.into());
    }

    /// Builder form of [`MemSource::insert`].
    #[must_use]
    pub fn with(mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        self.insert(path, bytes);
        self
    }
}

impl Source for MemSource {
    fn list(&self, dir: &str) -> io::Result<Option<Vec<Entry>>> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut entries: BTreeMap<&str, EntryKind> = BTreeMap::new();
        for (path, bytes) in self.files.range(prefix.clone()..) {
            let Some(rest) = path.strip_prefix(&prefix) else {
                break;
            };
            match rest.split_once('/') {
                Some((sub, _)) => {
                    entries.insert(sub, EntryKind::Dir);
                }
                None => {
                    entries.insert(
                        rest,
                        EntryKind::File {
                            size: bytes.len() as u64,
                        },
                    );
                }
            }
        }
        if entries.is_empty() && !dir.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            entries
                .into_iter()
                .map(|(name, kind)| Entry {
                    name: name.to_owned(),
                    kind,
                })
                .collect(),
        ))
    }

    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        let bytes = self
            .files
            .get(path)
            .ok_or_else(|| ReadError::Io(io::Error::from(io::ErrorKind::NotFound)))?;
        if bytes.len() as u64 > limit {
            return Err(ReadError::TooLarge { limit });
        }
        Ok(bytes.clone())
    }
}

/// A working tree on disk.
///
/// # Guarantees
/// - A symbolic link is followed only when its fully resolved target lies inside the root and
///   is a regular file; its target is never opened otherwise (RELIABILITY B1, B2).
/// - Link loops and over-long chains are reported as refused entries, not errors (B3).
/// - Links to folders are never followed (B3).
/// - No more than `limit` bytes of a file are read, even if it grows while being read (A5).
/// - Files are opened from a handle on the root, one path component at a time, with
///   `O_NOFOLLOW` at each: a file or folder swapped for a link after it was checked
///   (RELIABILITY B4) makes the open fail instead of leaving the tree.
/// - A manifest folder that is itself a link is an error, never an empty folder (B3, A12).
/// - Entries that cannot be resolved are refused entries, so an odd link among files the
///   loader ignores cannot fail the revision.
#[derive(Clone, Debug)]
pub struct DirSource {
    root: PathBuf,
    canonical_root: PathBuf,
}

impl DirSource {
    /// Opens a tree rooted at `root`.
    ///
    /// # Errors
    /// When the root cannot be resolved (it does not exist or is unreadable).
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        let canonical_root = fs::canonicalize(&root)?;
        Ok(Self {
            root,
            canonical_root,
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// Classifies one directory entry without reading any file's content.
    fn classify(&self, path: &Path) -> io::Result<EntryKind> {
        self.inspect(path).map(|(kind, _)| kind)
    }

    /// Classifies an entry and, for files, says where inside the root its content lives
    /// (itself, or the in-tree target of its link), relative to the canonical root.
    fn inspect(&self, path: &Path) -> io::Result<(EntryKind, Option<PathBuf>)> {
        let meta = fs::symlink_metadata(path)?;
        if meta.file_type().is_file() {
            let rel = path.strip_prefix(&self.root).map(Path::to_path_buf).ok();
            return Ok((EntryKind::File { size: meta.len() }, rel));
        }
        let kind = self
            .classify_other(path, &meta)
            .unwrap_or_else(|e| EntryKind::Refused {
                reason: format!("cannot resolve symbolic link: {}", e.kind()),
            });
        let rel = match kind {
            EntryKind::File { .. } => fs::canonicalize(path).ok().and_then(|t| {
                t.strip_prefix(&self.canonical_root)
                    .map(Path::to_path_buf)
                    .ok()
            }),
            _ => None,
        };
        Ok((kind, rel))
    }

    /// Opens `rel` beneath the root without following any link on the way.
    fn open_beneath(&self, rel: &Path) -> Result<fs::File, ReadError> {
        use rustix::fs::{CWD, Mode, OFlags, openat};
        use std::path::Component;
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let swapped = |_| {
            ReadError::Refused(
                "file changed while being read: a symbolic link appeared on its path".to_owned(),
            )
        };
        let mut dir = openat(CWD, &self.canonical_root, dir_flags, Mode::empty())
            .map_err(|e| ReadError::Io(e.into()))?;
        let parts: Vec<Component<'_>> = rel.components().collect();
        let Some((Component::Normal(last), parents)) = parts.split_last() else {
            return Err(ReadError::Refused(
                "not a file in the repository".to_owned(),
            ));
        };
        for part in parents {
            let Component::Normal(name) = part else {
                return Err(ReadError::Refused("path leaves the repository".to_owned()));
            };
            dir = openat(&dir, *name, dir_flags | OFlags::NOFOLLOW, Mode::empty())
                .map_err(swapped)?;
        }
        // NONBLOCK: a FIFO swapped in must not hang the reader.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let file = fs::File::from(openat(&dir, *last, flags, Mode::empty()).map_err(swapped)?);
        if !file.metadata().map_err(ReadError::Io)?.is_file() {
            return Err(ReadError::Refused(
                "file changed while being read: not a regular file".to_owned(),
            ));
        }
        Ok(file)
    }

    fn classify_other(&self, path: &Path, meta: &fs::Metadata) -> io::Result<EntryKind> {
        let ft = meta.file_type();
        if ft.is_dir() {
            return Ok(EntryKind::Dir);
        }
        if !ft.is_symlink() {
            return Ok(EntryKind::Refused {
                reason: "not a regular file".to_owned(),
            });
        }
        // canonicalize resolves every link in the chain; the kernel stops loops and chains
        // longer than 40 links with ELOOP, which we report as a refusal.
        let target = match fs::canonicalize(path) {
            Ok(t) => t,
            Err(e) if e.raw_os_error() == Some(40) => {
                return Ok(EntryKind::Refused {
                    reason: "symbolic link loop or chain too long".to_owned(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(EntryKind::Refused {
                    reason: "dangling symbolic link".to_owned(),
                });
            }
            Err(e) => return Err(e),
        };
        if !target.starts_with(&self.canonical_root) {
            return Ok(EntryKind::Refused {
                reason: "symbolic link points outside the repository".to_owned(),
            });
        }
        let meta = fs::metadata(&target)?;
        if meta.is_dir() {
            return Ok(EntryKind::Refused {
                reason: "symbolic link to a folder is not followed".to_owned(),
            });
        }
        if !meta.is_file() {
            return Ok(EntryKind::Refused {
                reason: "symbolic link to something that is not a regular file".to_owned(),
            });
        }
        Ok(EntryKind::File { size: meta.len() })
    }
}

impl Source for DirSource {
    fn list(&self, dir: &str) -> io::Result<Option<Vec<Entry>>> {
        let path = self.path(dir);
        if !dir.is_empty() {
            // A manifest folder that is itself a link is not followed, and not taken for an
            // absent (empty) one either: that would silently empty the desired state.
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "is a symbolic link; manifest folders are not followed",
                    ));
                }
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let mut out = Vec::new();
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                // A name that is not UTF-8 cannot be a manifest name; skip it like any
                // other non-manifest file.
                continue;
            };
            let kind = self
                .classify(&entry.path())
                .unwrap_or_else(|e| EntryKind::Refused {
                    reason: format!("cannot inspect: {}", e.kind()),
                });
            out.push(Entry { name, kind });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(out))
    }

    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        let full = self.path(path);
        let rel = match self.inspect(&full).map_err(ReadError::Io)? {
            (EntryKind::File { size }, _) if size > limit => {
                return Err(ReadError::TooLarge { limit });
            }
            (EntryKind::File { .. }, Some(rel)) => rel,
            (EntryKind::Refused { reason }, _) => return Err(ReadError::Refused(reason)),
            _ => return Err(ReadError::Refused("not a regular file".to_owned())),
        };
        #[cfg(test)]
        tests::BEFORE_OPEN.with(|hook| {
            if let Some(f) = hook.borrow_mut().take() {
                f();
            }
        });
        let file = self.open_beneath(&rel)?;
        let mut bytes = Vec::new();
        // Read one byte past the limit so a file that grew after the size check is caught.
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(ReadError::Io)?;
        if bytes.len() as u64 > limit {
            return Err(ReadError::TooLarge { limit });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    thread_local! {
        /// Runs once between a read's check and its open, to stage a race deterministically.
        pub(super) static BEFORE_OPEN: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    }

    /// B4: the file is swapped for a link out of the tree after the read checked it but before
    /// it opened it. The open follows the link; the identity check refuses what it opened.
    #[test]
    fn swap_between_check_and_open_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        fs::create_dir_all(repo.join("deployments")).unwrap();
        let victim = repo.join("deployments/web.yaml");
        fs::write(&victim, "inside").unwrap();
        let outside = tmp.path().join("outside.yaml");
        fs::write(&outside, "outside").unwrap();
        let src = DirSource::new(&repo).unwrap();

        let (v, o) = (victim.clone(), outside.clone());
        BEFORE_OPEN.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                fs::remove_file(&v).unwrap();
                std::os::unix::fs::symlink(&o, &v).unwrap();
            }));
        });
        match src.read("deployments/web.yaml", 1024) {
            Err(ReadError::Refused(reason)) => {
                assert!(
                    reason.starts_with("file changed while being read"),
                    "{reason}"
                );
            }
            other => panic!("read through the swapped link: {other:?}"),
        }

        // Without a swap the same read succeeds: the check is not refusing everything.
        fs::remove_file(&victim).unwrap();
        fs::write(&victim, "inside").unwrap();
        assert_eq!(src.read("deployments/web.yaml", 1024).unwrap(), b"inside");
    }

    /// B4: the manifest folder itself is swapped for a link to a folder outside after the
    /// file in it was checked. Opening component by component without following links
    /// refuses it.
    #[test]
    fn folder_swapped_for_link_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        fs::create_dir_all(repo.join("deployments")).unwrap();
        fs::write(repo.join("deployments/web.yaml"), "inside").unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("web.yaml"), "outside").unwrap();
        let src = DirSource::new(&repo).unwrap();

        let (folder, out) = (repo.join("deployments"), outside.clone());
        BEFORE_OPEN.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                fs::rename(&folder, folder.with_extension("old")).unwrap();
                std::os::unix::fs::symlink(&out, &folder).unwrap();
            }));
        });
        match src.read("deployments/web.yaml", 1024) {
            Err(ReadError::Refused(reason)) => {
                assert!(
                    reason.starts_with("file changed while being read"),
                    "{reason}"
                );
            }
            other => panic!("read through the swapped folder: {other:?}"),
        }
    }
}

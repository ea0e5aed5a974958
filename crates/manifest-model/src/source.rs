//! Where a revision's files come from: an abstract [`Source`], an in-memory one and a
//! directory reader that never leaves its root.
//!
//! A source only reports facts (this name is a file of so many bytes, a folder, a link,
//! something else), reads regular files and reads a link's target when asked. Every rule
//! about what those facts mean (which links are followed, what a folder that is a file
//! means, which names count) lives in the loader (`walk.rs`), so the CLI reading a working
//! tree and the agent reading Git objects read a repository the same way.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The longest symbolic-link target a source reads, in bytes (Linux's `PATH_MAX`); a longer
/// one is refused by [`Source::read_link`] unread.
pub const MAX_LINK_TARGET: usize = 4096;

/// One name inside a listed folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name, without any folder; invalid UTF-8 replaced by `U+FFFD`.
    pub name: String,
    /// Whether the name as stored was valid UTF-8 (if not, `name` is only an approximation
    /// and the loader refuses to treat it as a manifest).
    pub utf8: bool,
    /// What the name is.
    pub kind: EntryKind,
}

impl Entry {
    /// An entry from a name as the file system or Git stores it (any bytes).
    pub fn new(name: &[u8], kind: EntryKind) -> Self {
        match std::str::from_utf8(name) {
            Ok(n) => Self {
                name: n.to_owned(),
                utf8: true,
                kind,
            },
            Err(_) => Self {
                name: String::from_utf8_lossy(name).into_owned(),
                utf8: false,
                kind,
            },
        }
    }
}

/// What a listed name is. Sources report it without following anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file of this many bytes.
    File {
        /// Size in bytes, known before reading.
        size: u64,
        /// Whether it is executable (Git's `100755`, any `x` bit on disk): a build context
        /// keeps it.
        exec: bool,
    },
    /// A folder.
    Dir,
    /// A symbolic link; its target is read only if the loader needs it
    /// ([`Source::read_link`]).
    Link,
    /// Anything else: a device, socket or FIFO, a submodule.
    Other {
        /// What it is, in a few words.
        what: &'static str,
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
    /// The source refused the file: it is not a regular file (any more).
    Refused(String),
    /// An operating-system or object-store error.
    Io(io::Error),
}

/// A tree of files the loader can list and read.
///
/// Paths are repo-relative and `/`-separated; `""` is the root.
///
/// # Contract
/// - `list` reports each name as it is, never following a link, and is only asked about
///   folders (the root, or a name a listing reported as [`EntryKind::Dir`]).
/// - `read` reads a regular file and follows no link on any component of its path: a path
///   that meets a link (say, a folder swapped for one since it was listed) is refused.
/// - `read_link` reads the stored target of the link at `path`, no more than
///   [`MAX_LINK_TARGET`] bytes of it, following no link on the way.
/// - None reads more than its limit.
pub trait Source {
    /// Lists the names directly inside `dir`, or `Ok(None)` when `dir` does not exist.
    fn list(&self, dir: &str) -> io::Result<Option<Vec<Entry>>>;

    /// Reads the regular file at `path`, refusing it when it holds more than `limit` bytes.
    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, ReadError>;

    /// Reads the target of the symbolic link at `path`, exactly as stored.
    fn read_link(&self, path: &str) -> Result<Vec<u8>, ReadError>;
}

/// An in-memory tree, for tests, fuzzing and sources that already hold the bytes.
#[derive(Clone, Debug, Default)]
pub struct MemSource {
    files: BTreeMap<String, MemEntry>,
}

#[derive(Clone, Debug)]
enum MemEntry {
    File(Vec<u8>),
    Link(Vec<u8>),
}

impl MemSource {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file; its folders exist implicitly.
    pub fn insert(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), MemEntry::File(bytes.into()));
    }

    /// Adds (or replaces) a symbolic link to `target`, stored as written.
    pub fn insert_link(&mut self, path: impl Into<String>, target: impl Into<Vec<u8>>) {
        self.files
            .insert(path.into(), MemEntry::Link(target.into()));
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
        for (path, entry) in self.files.range(prefix.clone()..) {
            let Some(rest) = path.strip_prefix(&prefix) else {
                break;
            };
            match rest.split_once('/') {
                Some((sub, _)) => {
                    entries.insert(sub, EntryKind::Dir);
                }
                None => {
                    let kind = match entry {
                        MemEntry::File(bytes) => EntryKind::File {
                            size: bytes.len() as u64,
                            exec: false,
                        },
                        MemEntry::Link(_) => EntryKind::Link,
                    };
                    entries.insert(rest, kind);
                }
            }
        }
        if entries.is_empty() && !dir.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            entries
                .into_iter()
                .map(|(name, kind)| Entry::new(name.as_bytes(), kind))
                .collect(),
        ))
    }

    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        match self.files.get(path) {
            None => Err(ReadError::Io(io::Error::from(io::ErrorKind::NotFound))),
            Some(MemEntry::Link(_)) => Err(ReadError::Refused(
                "is a symbolic link, not a regular file".to_owned(),
            )),
            Some(MemEntry::File(bytes)) if bytes.len() as u64 > limit => {
                Err(ReadError::TooLarge { limit })
            }
            Some(MemEntry::File(bytes)) => Ok(bytes.clone()),
        }
    }

    fn read_link(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        match self.files.get(path) {
            Some(MemEntry::Link(t)) if t.len() > MAX_LINK_TARGET => Err(ReadError::TooLarge {
                limit: MAX_LINK_TARGET as u64,
            }),
            Some(MemEntry::Link(t)) => Ok(t.clone()),
            Some(MemEntry::File(_)) => Err(ReadError::Refused("not a symbolic link".to_owned())),
            None => Err(ReadError::Io(io::Error::from(io::ErrorKind::NotFound))),
        }
    }
}

/// A working tree on disk.
///
/// # Guarantees
/// - Folders and files are opened from a handle on the root, one path component at a time,
///   with `O_NOFOLLOW` at each: no link is ever followed by the operating system, so a file
///   or folder swapped for a link after it was listed (RELIABILITY B4) makes the open fail
///   instead of leaving the tree. Links are reported with their target; the loader decides.
/// - No more than `limit` bytes of a file are read, even if it grows while being read (A5).
/// - A FIFO swapped in for a file does not block the reader.
#[derive(Clone, Debug)]
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// Opens a tree rooted at `root`.
    ///
    /// # Errors
    /// When the root cannot be resolved (it does not exist or is unreadable).
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        // The root itself may be reached through links (a user's `~/repo` may be one); what
        // lies beneath it is never followed.
        let root = std::fs::canonicalize(root.into())?;
        Ok(Self { root })
    }

    /// Opens the folder `rel` beneath the root without following any link on the way.
    fn open_dir(&self, rel: &str) -> Result<Option<rustix::fd::OwnedFd>, rustix::io::Errno> {
        use rustix::fs::{CWD, Mode, OFlags, openat};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut dir = openat(CWD, &self.root, flags, Mode::empty())?;
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            dir = match openat(&dir, part, flags | OFlags::NOFOLLOW, Mode::empty()) {
                Ok(d) => d,
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                Err(e) => return Err(e),
            };
        }
        Ok(Some(dir))
    }

    /// Opens the file `rel` beneath the root without following any link on the way.
    fn open_file(&self, rel: &str) -> Result<std::fs::File, ReadError> {
        use rustix::fs::{Mode, OFlags, openat};
        let swapped = |e: rustix::io::Errno| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => ReadError::Refused(
                "file changed while being read: a symbolic link appeared on its path".to_owned(),
            ),
            e => ReadError::Io(e.into()),
        };
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let dir = match self.open_dir(parent) {
            Ok(Some(d)) => d,
            Ok(None) => return Err(ReadError::Io(io::ErrorKind::NotFound.into())),
            Err(e) => return Err(swapped(e)),
        };
        #[cfg(test)]
        tests::BEFORE_OPEN.with(|hook| {
            if let Some(f) = hook.borrow_mut().take() {
                f();
            }
        });
        // NONBLOCK: a FIFO swapped in must not hang the reader.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let file = std::fs::File::from(openat(&dir, name, flags, Mode::empty()).map_err(swapped)?);
        if !file.metadata().map_err(ReadError::Io)?.is_file() {
            return Err(ReadError::Refused(
                "file changed while being read: not a regular file".to_owned(),
            ));
        }
        Ok(file)
    }
}

/// What one name in an open folder is, by `lstat` (never following it).
fn entry_kind(dir: &rustix::fd::OwnedFd, name: &std::ffi::CStr) -> io::Result<EntryKind> {
    use rustix::fs::{AtFlags, FileType, statat};
    let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => EntryKind::File {
            size: u64::try_from(st.st_size).unwrap_or(0),
            exec: st.st_mode & 0o111 != 0,
        },
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Link,
        _ => EntryKind::Other {
            what: "a device, socket or FIFO",
        },
    })
}

impl Source for DirSource {
    fn list(&self, dir: &str) -> io::Result<Option<Vec<Entry>>> {
        let Some(fd) = self.open_dir(dir)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd)? {
            let entry = entry?;
            let name = entry.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            // A name that vanished or cannot be inspected is something the loader cannot
            // read; it decides whether that matters (only for manifest names).
            let kind = entry_kind(&fd, name).unwrap_or(EntryKind::Other {
                what: "a name that cannot be inspected",
            });
            out.push(Entry::new(bytes, kind));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(out))
    }

    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        let file = self.open_file(path)?;
        let mut bytes = Vec::new();
        // Read one byte past the limit so a file that grew after it was listed is caught.
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(ReadError::Io)?;
        if bytes.len() as u64 > limit {
            return Err(ReadError::TooLarge { limit });
        }
        Ok(bytes)
    }

    fn read_link(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        self.link_target(path)
    }
}

impl DirSource {
    /// Reads a link's target beneath the root, following no link on the way.
    fn link_target(&self, rel: &str) -> Result<Vec<u8>, ReadError> {
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let dir = match self.open_dir(parent) {
            Ok(Some(d)) => d,
            Ok(None) => return Err(ReadError::Io(io::ErrorKind::NotFound.into())),
            Err(e) => return Err(ReadError::Io(e.into())),
        };
        let target = rustix::fs::readlinkat(&dir, name, Vec::new())
            .map_err(|e| ReadError::Io(e.into()))?
            .into_bytes();
        if target.len() > MAX_LINK_TARGET {
            return Err(ReadError::TooLarge {
                limit: MAX_LINK_TARGET as u64,
            });
        }
        Ok(target)
    }

    /// The root this source reads, resolved.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test helpers: a panic is the failure report"
    )]

    use std::cell::RefCell;
    use std::fs;

    use super::*;

    thread_local! {
        /// Runs once between a read's folder walk and its open, to stage a race
        /// deterministically.
        pub(super) static BEFORE_OPEN: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    }

    /// B4: the file is swapped for a link out of the tree after it was listed but before it
    /// is opened. The open does not follow the link.
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
    /// file in it was listed. Opening component by component without following links
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
        assert!(src.list("deployments").unwrap().is_some());

        let folder = repo.join("deployments");
        fs::rename(&folder, folder.with_extension("old")).unwrap();
        std::os::unix::fs::symlink(&outside, &folder).unwrap();
        match src.read("deployments/web.yaml", 1024) {
            Err(ReadError::Refused(reason)) => {
                assert!(
                    reason.starts_with("file changed while being read"),
                    "{reason}"
                );
            }
            other => panic!("read through the swapped folder: {other:?}"),
        }
        // Listing does not follow it either: the folder is reported as absent, never
        // as the outside folder's content.
        assert!(
            src.list("deployments").is_err(),
            "a linked folder must not be listed"
        );
    }

    /// Links are reported, not followed: the loader decides what they mean.
    #[test]
    fn links_are_reported_with_their_target() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("deployments")).unwrap();
        std::os::unix::fs::symlink("../x.yaml", tmp.path().join("deployments/a.yaml")).unwrap();
        let src = DirSource::new(tmp.path()).unwrap();
        let entries = src.list("deployments").unwrap().unwrap();
        assert_eq!(entries, vec![Entry::new(b"a.yaml", EntryKind::Link)]);
        assert_eq!(src.read_link("deployments/a.yaml").unwrap(), b"../x.yaml");
        assert!(matches!(
            src.read("deployments/a.yaml", 1024),
            Err(ReadError::Refused(_))
        ));
    }
}

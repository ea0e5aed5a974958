//! A commit's tree as a `manifest-model` [`Source`]: files are read straight from Git objects.
//!
//! There is no checkout, so a half-written work tree or a file swapped for a link mid-read
//! cannot change what is loaded (REFERENCE §3.3). Like every source it only reports what each
//! name is (a link with its stored target, a submodule as something else) and the loader's
//! one set of rules decides, so a tree reads the same here as checked out under
//! `orun validate`. Sizes come from the object header, so an oversized blob is refused before
//! it is inflated.

use std::io;
use std::path::Path;

use git2::{ObjectType, Repository, Tree};
use manifest_model::{Entry, EntryKind, MAX_LINK_TARGET, ReadError, Source};

const MODE_TREE: i32 = 0o040_000;
const MODE_BLOB: i32 = 0o100_644;
const MODE_EXEC: i32 = 0o100_755;
const MODE_LINK: i32 = 0o120_000;
const MODE_GITLINK: i32 = 0o160_000;

/// The files of one commit.
pub struct TreeSource<'r> {
    repo: &'r Repository,
    root: Tree<'r>,
}

impl<'r> TreeSource<'r> {
    pub(crate) fn new(repo: &'r Repository, root: Tree<'r>) -> Self {
        Self { repo, root }
    }

    /// The tree at `dir`, `Ok(None)` when there is none, an error when it is not a folder.
    fn subtree(&self, dir: &str) -> io::Result<Option<Tree<'r>>> {
        if dir.is_empty() {
            return Ok(Some(self.root.clone()));
        }
        let entry = match self.root.get_path(Path::new(dir)) {
            Ok(entry) => entry,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(io::Error::other(e.message().to_owned())),
        };
        match entry.filemode() {
            MODE_TREE => {
                let tree = self
                    .repo
                    .find_tree(entry.id())
                    .map_err(|e| io::Error::other(e.message().to_owned()))?;
                Ok(Some(tree))
            }
            MODE_LINK => Err(io::Error::other(
                "is a symbolic link; manifest folders must be real folders",
            )),
            MODE_GITLINK => Err(io::Error::other(
                "is a submodule; orun does not read submodules",
            )),
            _ => Err(io::Error::other("is a file, not a folder")),
        }
    }

    fn blob_size(&self, id: git2::Oid) -> io::Result<u64> {
        let odb = self
            .repo
            .odb()
            .map_err(|e| io::Error::other(e.message().to_owned()))?;
        let (size, kind) = odb
            .read_header(id)
            .map_err(|e| io::Error::other(e.message().to_owned()))?;
        if kind != ObjectType::Blob {
            return Err(io::Error::other(
                "the tree names an object that is not a file",
            ));
        }
        Ok(size as u64)
    }
}

impl Source for TreeSource<'_> {
    fn list(&self, dir: &str) -> io::Result<Option<Vec<Entry>>> {
        let Some(tree) = self.subtree(dir)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(tree.len());
        for entry in tree.iter() {
            let kind = match entry.filemode() {
                mode @ (MODE_BLOB | MODE_EXEC) => EntryKind::File {
                    size: self.blob_size(entry.id())?,
                    exec: mode == MODE_EXEC,
                },
                MODE_TREE => EntryKind::Dir,
                MODE_LINK => EntryKind::Link,
                MODE_GITLINK => EntryKind::Other {
                    what: "a submodule",
                },
                _ => EntryKind::Other {
                    what: "an unknown Git file mode",
                },
            };
            // Git allows any bytes in names; `Entry::new` marks those that are not UTF-8.
            out.push(Entry::new(entry.name_bytes(), kind));
        }
        Ok(Some(out))
    }

    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        let entry = self
            .root
            .get_path(Path::new(path))
            .map_err(|e| ReadError::Io(io::Error::other(e.message().to_owned())))?;
        if !matches!(entry.filemode(), MODE_BLOB | MODE_EXEC) {
            return Err(ReadError::Refused(
                "is a symbolic link or something else, not a regular file".to_owned(),
            ));
        }
        let size = self.blob_size(entry.id()).map_err(ReadError::Io)?;
        if size > limit {
            return Err(ReadError::TooLarge { limit });
        }
        let blob = self
            .repo
            .find_blob(entry.id())
            .map_err(|e| ReadError::Io(io::Error::other(e.message().to_owned())))?;
        Ok(blob.content().to_vec())
    }

    fn read_link(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        let entry = self
            .root
            .get_path(Path::new(path))
            .map_err(|e| ReadError::Io(io::Error::other(e.message().to_owned())))?;
        if entry.filemode() != MODE_LINK {
            return Err(ReadError::Refused("not a symbolic link".to_owned()));
        }
        // A link is a blob of its target: refuse one longer than a path before inflating it.
        if self.blob_size(entry.id()).map_err(ReadError::Io)? > MAX_LINK_TARGET as u64 {
            return Err(ReadError::TooLarge {
                limit: MAX_LINK_TARGET as u64,
            });
        }
        let blob = self
            .repo
            .find_blob(entry.id())
            .map_err(|e| ReadError::Io(io::Error::other(e.message().to_owned())))?;
        Ok(blob.content().to_vec())
    }
}

//! The one set of rules for reading a repository's tree, whatever [`Source`] it comes from.
//!
//! Sources only report facts; this module decides what they mean, so `orun validate` on a
//! working tree and the agent on Git objects accept and refuse exactly the same trees:
//! - a manifest folder must be a real folder: a link, a file or anything else in its place
//!   is an error, never an empty folder (RELIABILITY A12, B3);
//! - only `*.yaml` / `*.yml` names not starting with `.` are manifests (A13); a manifest
//!   name that is not valid UTF-8 is an error;
//! - a link is followed only to a regular file inside the repository, resolved here one
//!   component at a time against the source's own listings: never an absolute target, never
//!   above the root, never through a linked folder, never to a folder, at most 40 hops (B1–B3);
//! - anything else (a device, a submodule) named like a manifest is an error.
//!
//! Listings are cached, so resolving many links costs one listing per folder.

use std::collections::HashMap;
use std::io;

use crate::source::{Entry, EntryKind, Source};

/// Hops a chain of links may take, as the kernel allows (`ELOOP` beyond).
const MAX_HOPS: usize = 40;

/// A file the loader will read: where it was found and where its bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The path to read (the file itself, or the final target of its links).
    pub read_path: String,
    /// Its size, known before reading.
    pub size: u64,
}

/// What a name in the tree turned out to be, by the rules above.
pub(crate) enum Found {
    /// A regular file, directly or through in-tree links.
    File(Resolved),
    /// A folder.
    Dir,
    /// Something the loader will not read, and why.
    Refused(&'static str),
}

/// A source's listings, cached by folder.
pub(crate) struct Tree<'s> {
    source: &'s dyn Source,
    listings: HashMap<String, Option<HashMap<String, EntryKind>>>,
}

impl<'s> Tree<'s> {
    pub(crate) fn new(source: &'s dyn Source) -> Self {
        Self {
            source,
            listings: HashMap::new(),
        }
    }

    /// Lists `dir` in name order (for the loader's walk), caching it for link resolution.
    pub(crate) fn list(&mut self, dir: &str) -> io::Result<Option<Vec<Entry>>> {
        let entries = self.source.list(dir)?;
        if let Some(entries) = &entries {
            let map = entries
                .iter()
                .filter(|e| e.utf8)
                .map(|e| (e.name.clone(), e.kind.clone()))
                .collect();
            self.listings.insert(dir.to_owned(), Some(map));
        } else {
            self.listings.insert(dir.to_owned(), None);
        }
        Ok(entries.map(|mut e| {
            e.sort_by(|a, b| a.name.cmp(&b.name));
            e
        }))
    }

    /// What the entry `name` in folder `dir` is, following links by the rules above.
    pub(crate) fn classify(&mut self, dir: &str, name: &str, kind: &EntryKind) -> Found {
        match kind {
            EntryKind::File { size } => Found::File(Resolved {
                read_path: join(dir, name),
                size: *size,
            }),
            EntryKind::Dir => Found::Dir,
            EntryKind::Other { .. } => Found::Refused("not a regular file"),
            EntryKind::Link { target } => match self.follow(dir, target) {
                Ok(r) => Found::File(r),
                Err(why) => Found::Refused(why),
            },
        }
    }

    /// Resolves a link found in `dir` with `target`, to a regular file inside the tree.
    fn follow(&mut self, dir: &str, target: &[u8]) -> Result<Resolved, &'static str> {
        let mut base: Vec<String> = split(dir);
        let mut target = target.to_vec();
        for _ in 0..MAX_HOPS {
            let Ok(text) = std::str::from_utf8(&target) else {
                return Err("symbolic link target is not valid UTF-8");
            };
            if text.starts_with('/') {
                return Err("symbolic link points outside the repository");
            }
            let parts: Vec<&str> = text
                .split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .collect();
            let Some(last) = parts.len().checked_sub(1) else {
                return Err("dangling symbolic link");
            };
            let mut at = base.clone();
            let mut next = None;
            for (i, part) in parts.iter().enumerate() {
                if *part == ".." {
                    if at.pop().is_none() {
                        return Err("symbolic link points outside the repository");
                    }
                    if i == last {
                        return Err("symbolic link to a folder is not followed");
                    }
                    continue;
                }
                let folder = at.join("/");
                let kind = self.entry(&folder, part).ok_or("dangling symbolic link")?;
                match (kind, i == last) {
                    (EntryKind::Dir, false) => at.push((*part).to_owned()),
                    (EntryKind::Dir, true) => {
                        return Err("symbolic link to a folder is not followed");
                    }
                    (EntryKind::File { size }, true) => {
                        return Ok(Resolved {
                            read_path: join(&folder, part),
                            size,
                        });
                    }
                    (EntryKind::File { .. }, false) => return Err("dangling symbolic link"),
                    (EntryKind::Link { target }, true) => {
                        next = Some(target);
                        break;
                    }
                    (EntryKind::Link { .. }, false) => {
                        return Err("symbolic link through a linked folder is not followed");
                    }
                    (EntryKind::Other { .. }, _) => {
                        return Err("symbolic link to something that is not a regular file");
                    }
                }
            }
            match next {
                Some(t) => {
                    target = t;
                    base = at;
                }
                None => return Err("dangling symbolic link"),
            }
        }
        Err("symbolic link loop or chain too long")
    }

    /// The kind of `name` in `folder`, listing the folder once.
    fn entry(&mut self, folder: &str, name: &str) -> Option<EntryKind> {
        if !self.listings.contains_key(folder) {
            // A folder that cannot be listed holds nothing a link may reach.
            let _ = self.list(folder);
        }
        self.listings.get(folder)?.as_ref()?.get(name).cloned()
    }
}

fn split(dir: &str) -> Vec<String> {
    dir.split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test helpers: a panic is the failure report"
    )]

    use expect_test::expect;

    use super::*;
    use crate::MemSource;

    /// B1–B3 on an in-memory tree: every way a link can go, one line each.
    #[test]
    fn link_rules() {
        let mut src = MemSource::new();
        src.insert("shared/web.yaml", "x");
        src.insert("deployments/real.yaml", "xy");
        src.insert("empty/.keep", "");
        for (name, target) in [
            ("sibling", "real.yaml"),
            ("up", "../shared/web.yaml"),
            ("dotted", "./../shared/./web.yaml"),
            ("chain", "sibling.yaml"),
            ("absolute", "/etc/shadow"),
            ("above", "../../etc/shadow"),
            ("dangling", "nope.yaml"),
            ("folder", "../shared"),
            ("dotdot", "../shared/.."),
            ("loop", "loop.yaml"),
            ("via-linked-folder", "../linked/web.yaml"),
            ("through-file", "real.yaml/x"),
            ("empty", ""),
        ] {
            src.insert_link(format!("deployments/{name}.yaml"), target);
        }
        src.insert_link("linked", "shared");
        src.insert_link("deployments/bad-utf8.yaml", b"\xff".to_vec());
        let mut tree = Tree::new(&src);
        let entries = tree.list("deployments").unwrap().unwrap();
        let out: Vec<String> = entries
            .iter()
            .map(|e| {
                let what = match tree.classify("deployments", &e.name, &e.kind) {
                    Found::File(r) => format!("file {} ({} bytes)", r.read_path, r.size),
                    Found::Dir => "folder".to_owned(),
                    Found::Refused(why) => format!("refused: {why}"),
                };
                format!("{}: {what}", e.name)
            })
            .collect();
        expect![[r#"
            above.yaml: refused: symbolic link points outside the repository
            absolute.yaml: refused: symbolic link points outside the repository
            bad-utf8.yaml: refused: symbolic link target is not valid UTF-8
            chain.yaml: file deployments/real.yaml (2 bytes)
            dangling.yaml: refused: dangling symbolic link
            dotdot.yaml: refused: symbolic link to a folder is not followed
            dotted.yaml: file shared/web.yaml (1 bytes)
            empty.yaml: refused: dangling symbolic link
            folder.yaml: refused: symbolic link to a folder is not followed
            loop.yaml: refused: symbolic link loop or chain too long
            real.yaml: file deployments/real.yaml (2 bytes)
            sibling.yaml: file deployments/real.yaml (2 bytes)
            through-file.yaml: refused: dangling symbolic link
            up.yaml: file shared/web.yaml (1 bytes)
            via-linked-folder.yaml: refused: symbolic link through a linked folder is not followed"#]]
        .assert_eq(&out.join("\n"));
    }
}

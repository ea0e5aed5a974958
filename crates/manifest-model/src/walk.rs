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
//!   above the root, never through a linked folder or into `.git`, never to a folder, at
//!   most 40 links in a chain (B1–B3);
//! - anything else (a device, a submodule) named like a manifest is an error.
//!
//! # Cost
//! Each folder is listed once (failures included), each link's target read and resolved
//! once (results are remembered, with the length of their chain), and each step of a
//! resolution costs the length of one name: reading a tree is linear in its size however
//! its links are laid out.

use std::collections::{HashMap, HashSet};
use std::io;
use std::rc::Rc;

use crate::source::{Entry, EntryKind, ReadError, Source};

/// Hops a chain of links may take, as the kernel allows (`ELOOP` beyond).
const MAX_HOPS: usize = 40;

const OUTSIDE: &str = "symbolic link points outside the repository";
const DANGLING: &str = "dangling symbolic link";
const TO_FOLDER: &str = "symbolic link to a folder is not followed";
const LOOP: &str = "symbolic link loop or chain too long";

/// A file the loader will read: where its bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The path to read (the file itself, or the final target of its links).
    pub read_path: String,
    /// Its size, known before reading.
    pub size: u64,
}

/// A folder's entries in name order, shared by the walk and the lookups.
type Listing = Rc<[Entry]>;

/// A source's listings and resolved links, cached.
pub(crate) struct Tree<'s> {
    source: &'s dyn Source,
    /// By folder; `None` when the folder does not exist or cannot be listed.
    listings: HashMap<String, Option<Listing>>,
    /// Resolved links by path: the file and the links followed to reach it, or why not.
    links: HashMap<String, Result<(Resolved, usize), &'static str>>,
    /// Links being resolved, to tell a loop.
    resolving: HashSet<String>,
}

impl<'s> Tree<'s> {
    pub(crate) fn new(source: &'s dyn Source) -> Self {
        Self {
            source,
            listings: HashMap::new(),
            links: HashMap::new(),
            resolving: HashSet::new(),
        }
    }

    /// Lists `dir` in name order, once; later calls and lookups use the first answer.
    pub(crate) fn list(&mut self, dir: &str) -> io::Result<Option<Listing>> {
        if let Some(l) = self.listings.get(dir) {
            return Ok(l.clone());
        }
        let listed = self.source.list(dir);
        let listing = match &listed {
            Ok(Some(entries)) => {
                let mut entries = entries.clone();
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                Some(Listing::from(entries))
            }
            _ => None,
        };
        self.listings.insert(dir.to_owned(), listing.clone());
        listed.map(|_| listing)
    }

    /// The file the entry `name` in folder `dir` is or leads to by the rules above, or why
    /// it will not be read.
    pub(crate) fn classify(
        &mut self,
        dir: &str,
        name: &str,
        kind: &EntryKind,
    ) -> Result<Resolved, String> {
        match kind {
            EntryKind::File { size, .. } => Ok(Resolved {
                read_path: join(dir, name),
                size: *size,
            }),
            EntryKind::Dir => Err("is a folder, not a file".to_owned()),
            EntryKind::Other { what } => Err(format!("not a regular file ({what})")),
            EntryKind::Link => self
                .resolve(&join(dir, name), 1)
                .map(|(r, _)| r)
                .map_err(str::to_owned),
        }
    }

    /// Resolves the link at `path`, the `depth`-th of its chain: the file it leads to and the
    /// links followed from here, remembered for every later link that leads through it.
    fn resolve(&mut self, path: &str, depth: usize) -> Result<(Resolved, usize), &'static str> {
        if depth > MAX_HOPS {
            return Err(LOOP);
        }
        if let Some(known) = self.links.get(path) {
            return match known {
                Ok((_, hops)) if depth - 1 + hops > MAX_HOPS => Err(LOOP),
                other => other.clone(),
            };
        }
        if !self.resolving.insert(path.to_owned()) {
            return Err(LOOP);
        }
        let result = self.follow(path, depth);
        self.resolving.remove(path);
        // A chain too long from here may not be from a link nearer its end: only
        // depth-independent answers are remembered.
        let too_long = result == Err(LOOP) && depth > 1;
        if !too_long {
            self.links.insert(path.to_owned(), result.clone());
        }
        result
    }

    /// Reads the link at `path` and walks its target one component at a time.
    fn follow(&mut self, path: &str, depth: usize) -> Result<(Resolved, usize), &'static str> {
        let target = match self.source.read_link(path) {
            Ok(t) => t,
            Err(ReadError::TooLarge { .. }) => {
                return Err("symbolic link target is longer than a path may be");
            }
            Err(_) => return Err("cannot read symbolic link"),
        };
        let Ok(text) = std::str::from_utf8(&target) else {
            return Err("symbolic link target is not valid UTF-8");
        };
        if text.starts_with('/') {
            return Err(OUTSIDE);
        }
        // `file/` and `file/.` name a folder: the kernel refuses them (`ENOTDIR`).
        let wants_folder = text.ends_with('/') || text.ends_with("/.") || text == ".";
        let parts: Vec<&str> = text
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        let Some(last) = parts.len().checked_sub(1) else {
            return Err(DANGLING);
        };
        // Where the walk is: the folder as a string, and where each component starts, so
        // `..` and a new name cost the length of one name.
        let mut at = String::from(path.rsplit_once('/').map_or("", |(d, _)| d));
        let mut starts: Vec<usize> = component_starts(&at);
        for (i, part) in parts.iter().enumerate() {
            if *part == ".." {
                let start = starts.pop().ok_or(OUTSIDE)?;
                at.truncate(start.saturating_sub(1));
                if i == last {
                    return Err(TO_FOLDER);
                }
                continue;
            }
            if part.eq_ignore_ascii_case(".git") {
                return Err("symbolic link into .git is not followed");
            }
            let kind = self.entry(&at, part).ok_or(DANGLING)?;
            match (kind, i == last) {
                (EntryKind::Dir, false) => {
                    starts.push(if at.is_empty() { 0 } else { at.len() + 1 });
                    if !at.is_empty() {
                        at.push('/');
                    }
                    at.push_str(part);
                }
                (EntryKind::Dir, true) => return Err(TO_FOLDER),
                (EntryKind::File { .. }, true) if wants_folder => return Err(DANGLING),
                (EntryKind::File { size, .. }, true) => {
                    let read_path = join(&at, part);
                    return Ok((Resolved { read_path, size }, 1));
                }
                (EntryKind::File { .. }, false) => return Err(DANGLING),
                (EntryKind::Link, true) => {
                    let (r, hops) = self.resolve(&join(&at, part), depth + 1)?;
                    return Ok((r, hops + 1));
                }
                (EntryKind::Link, false) => {
                    return Err("symbolic link through a linked folder is not followed");
                }
                (EntryKind::Other { .. }, _) => {
                    return Err("symbolic link to something that is not a regular file");
                }
            }
        }
        Err(DANGLING)
    }

    /// The kind of `name` in `folder`, listing the folder once.
    fn entry(&mut self, folder: &str, name: &str) -> Option<EntryKind> {
        // A folder that cannot be listed holds nothing a link may reach.
        let listing = self.list(folder).ok().flatten()?;
        let i = listing
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .ok()?;
        listing[i].utf8.then(|| listing[i].kind.clone())
    }
}

/// Where each component of a folder path starts.
fn component_starts(dir: &str) -> Vec<usize> {
    if dir.is_empty() {
        return Vec::new();
    }
    std::iter::once(0)
        .chain(dir.match_indices('/').map(|(i, _)| i + 1))
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
            ("slash", "real.yaml/"),
            ("dot", "real.yaml/."),
            ("git", "../.git/config"),
        ] {
            src.insert_link(format!("deployments/{name}.yaml"), target);
        }
        src.insert_link("linked", "shared");
        src.insert(".git/config", "[core]");
        src.insert_link("deployments/bad-utf8.yaml", b"\xff".to_vec());
        src.insert_link("deployments/long.yaml", vec![b'a'; 5000]);
        let mut tree = Tree::new(&src);
        let entries = tree.list("deployments").unwrap().unwrap().to_vec();
        let out: Vec<String> = entries
            .iter()
            .map(|e| {
                let what = match tree.classify("deployments", &e.name, &e.kind) {
                    Ok(r) => format!("file {} ({} bytes)", r.read_path, r.size),
                    Err(why) => format!("refused: {why}"),
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
            dot.yaml: refused: dangling symbolic link
            dotdot.yaml: refused: symbolic link to a folder is not followed
            dotted.yaml: file shared/web.yaml (1 bytes)
            empty.yaml: refused: dangling symbolic link
            folder.yaml: refused: symbolic link to a folder is not followed
            git.yaml: refused: symbolic link into .git is not followed
            long.yaml: refused: symbolic link target is longer than a path may be
            loop.yaml: refused: symbolic link loop or chain too long
            real.yaml: file deployments/real.yaml (2 bytes)
            sibling.yaml: file deployments/real.yaml (2 bytes)
            slash.yaml: refused: dangling symbolic link
            through-file.yaml: refused: dangling symbolic link
            up.yaml: file shared/web.yaml (1 bytes)
            via-linked-folder.yaml: refused: symbolic link through a linked folder is not followed"#]]
        .assert_eq(&out.join("\n"));
    }
}

//! The data dir: its exclusive lock, and the state file written atomically (temporary file,
//! fsync, rename, fsync of the folder), so a crash or a full disk leaves the previous state
//! whole (RELIABILITY E8, E12).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use reconcile_core::History;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// Holds the data dir's lock for as long as it lives.
#[derive(Debug)]
pub(crate) struct DataDir {
    root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the data dir if needed and takes its lock; fails at once if another agent holds it.
    pub(crate) fn lock(root: &Path) -> Result<Self, EngineError> {
        fs::create_dir_all(root).map_err(EngineError::io("create data dir", root))?;
        let path = root.join("lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(EngineError::io("open", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                return Err(EngineError::Locked {
                    root: root.to_owned(),
                    holder: (!holder.is_empty()).then(|| holder.to_owned()),
                });
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(EngineError::io("lock", &path)(e));
            }
        }
        // The pid is informational (for the message above); the lock is what counts.
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(EngineError::io("write", &path))?;
        Ok(Self {
            root: root.to_owned(),
            _lock: file,
        })
    }

    /// The bare Git mirror.
    pub(crate) fn git_dir(&self) -> PathBuf {
        self.root.join("git")
    }

    fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// The saved state; a missing file is a fresh node.
    pub(crate) fn load_state(&self) -> Result<State, EngineError> {
        let path = self.state_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| EngineError::Damaged {
                path,
                advice: "move it away to start fresh (containers are kept)",
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(EngineError::io("read", path)(e)),
        }
    }

    /// Writes `state` so that either the old or the new file exists whole after a crash.
    pub(crate) fn save_state(&self, state: &State) -> Result<(), EngineError> {
        write_json(&self.state_path(), state)
    }

    /// A file in the data dir.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// Replaces `path` with `bytes` so that either the old or the new content exists whole after
/// a crash or a full disk: a temporary file beside it, fsync, rename, fsync of the folder.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let dir = path.parent().unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(EngineError::io("write", path))
}

/// [`write_atomic`] of `value` as pretty JSON.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), EngineError> {
    // Serializing plain structs and maps with string keys cannot fail.
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| EngineError::Internal(format!("cannot encode {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// What the agent remembers across restarts.
// Unknown fields are ignored and missing ones default, so a binary rolled back after an
// upgrade still starts from a newer state file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct State {
    /// The last commit converged without error.
    pub(crate) last_applied: Option<String>,
    /// The last commit loaded and accepted (the one running, converged or not).
    pub(crate) current: Option<String>,
    /// The branch `current` is of, so an agent told no branch resumes it before its first
    /// poll finds the branch again.
    pub(crate) branch: Option<String>,
    /// Failed rollouts, for backoff across restarts.
    pub(crate) history: History,
    /// Images orun pulled or built, by image id: the only ones retention may remove.
    pub(crate) brought: BTreeMap<String, Brought>,
    /// Each deployment's image now and the one before it, by id: kept for a fast rollback.
    pub(crate) image_history: BTreeMap<String, (String, Option<String>)>,
    /// Restarts orun made of each deployment's current container (liveness, unhealthy,
    /// stopped), by container id; Docker counts its own.
    pub(crate) restarts: BTreeMap<String, u64>,
}

/// An image orun put on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Brought {
    /// The references it was pulled as or tags it was built as (one id may be brought under
    /// several: two environments building the same files, two tags of one image).
    pub(crate) references: std::collections::BTreeSet<String>,
    /// The deployment it was brought for.
    pub(crate) deployment: String,
    /// When (Unix seconds).
    pub(crate) at: u64,
    /// Since when nothing uses it (Unix seconds); retention removes it a grace period later.
    pub(crate) unused_since: Option<u64>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let a = DataDir::lock(dir.path()).unwrap();
        let err = DataDir::lock(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another orun-agent"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");

        assert_eq!(a.load_state().unwrap(), State::default());
        let s = State {
            last_applied: Some("abc".into()),
            ..State::default()
        };
        a.save_state(&s).unwrap();
        assert_eq!(a.load_state().unwrap(), s);
        assert!(!dir.path().join("state.json.tmp").exists());
        drop(a);
        // Released with its holder.
        let b = DataDir::lock(dir.path()).unwrap();
        std::fs::write(dir.path().join("state.json"), "{").unwrap();
        let err = crate::error::report(&b.load_state().unwrap_err());
        assert!(err.contains("damaged"), "{err}");
    }
}

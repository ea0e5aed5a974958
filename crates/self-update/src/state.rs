//! The persisted update state (`<state_dir>/update.json`): the highest version seen, the
//! versions marked bad, and the update on probation. Written atomically; a corrupt file is
//! an error, never silently reset (a reset would forget the rollback floor, RELIABILITY F4).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{UpdateError, Version};

/// Largest state file read: versions and capped reasons take far less.
const MAX_STATE: u64 = 1 << 20;

/// What self-update remembers across restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateState {
    /// The highest version whose signature verified: nothing at or below it is installed
    /// again (the rollback floor).
    pub highest_seen: Option<Version>,
    /// Versions that failed their trial, with why; never offered again.
    pub bad: BTreeMap<Version, String>,
    /// The update swapped in and not yet confirmed ready.
    pub pending: Option<Pending>,
}

/// An update on probation: swapped in, not yet confirmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// The version swapped in.
    pub version: Version,
    /// The version it replaced.
    pub previous_version: Version,
    /// Where the replaced binary is kept (`<binary>.prev`).
    pub previous: PathBuf,
    /// When the swap was recorded, in Unix seconds.
    pub started_at_unix: u64,
    /// When the new binary must have confirmed it is ready, in Unix seconds.
    pub deadline_unix: u64,
    /// How many times the new version has started since the swap.
    pub starts: u32,
}

impl UpdateState {
    /// The state in `path`; the empty state when the file does not exist.
    ///
    /// # Errors
    /// [`UpdateError::Io`] when it cannot be read, [`UpdateError::State`] when it is not a
    /// valid state (or over 1 MiB).
    pub(crate) fn load(path: &Path) -> Result<Self, UpdateError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(UpdateError::io(format!("read {}", path.display()), e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_STATE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| UpdateError::io(format!("read {}", path.display()), e))?;
        if bytes.len() as u64 > MAX_STATE {
            return Err(UpdateError::State {
                path: path.to_owned(),
                source: serde::de::Error::custom("larger than 1 MiB"),
            });
        }
        let corrupt = |source| UpdateError::State {
            path: path.to_owned(),
            source,
        };
        // serde takes a struct from an array too, and `[]` would then read as an empty
        // state: a reset in disguise. Only an object is a state.
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(corrupt)?;
        if !value.is_object() {
            return Err(corrupt(serde::de::Error::custom("not a JSON object")));
        }
        serde_json::from_value(value).map_err(corrupt)
    }

    /// Writes the state to `path` atomically: a temporary file beside it, fsynced, renamed
    /// over it, and the directory fsynced, so a crash leaves the old or the new state whole.
    pub(crate) fn save(&self, path: &Path) -> Result<(), UpdateError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)
            .map_err(|e| UpdateError::io(format!("create {}", dir.display()), e))?;
        // Serializing plain strings, numbers and maps with string keys cannot fail.
        let mut json = serde_json::to_vec_pretty(self).unwrap_or_default();
        json.push(b'\n');
        let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            sync_dir(dir)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            UpdateError::io(format!("write {}", path.display()), e)
        })
    }
}

/// Makes a directory's entries (a rename, a new link) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/update.json");
        assert_eq!(UpdateState::load(&path).unwrap(), UpdateState::default());
        let mut state = UpdateState {
            highest_seen: Some(Version::new(0, 2, 0)),
            ..UpdateState::default()
        };
        state
            .bad
            .insert(Version::new(0, 3, 0), "crashed on start".into());
        state.pending = Some(Pending {
            version: Version::new(0, 2, 0),
            previous_version: Version::new(0, 1, 0),
            previous: "/b/orun.prev".into(),
            started_at_unix: 10,
            deadline_unix: 130,
            starts: 1,
        });
        state.save(&path).unwrap();
        assert_eq!(UpdateState::load(&path).unwrap(), state);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"highest_seen\": \"0.2.0\""), "{text}");
        assert!(text.contains("\"0.3.0\": \"crashed on start\""), "{text}");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

        for corrupt in [
            "",
            "{",
            "[]",
            r#"{"highest_seen":"x"}"#,
            r#"{"bad":{},"what":1}"#,
        ] {
            fs::write(&path, corrupt).unwrap();
            let err = UpdateState::load(&path).unwrap_err();
            assert!(
                matches!(err, UpdateError::State { .. }),
                "{corrupt:?}: {err:?}"
            );
        }
    }
}

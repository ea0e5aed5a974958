//! The node's secret-handling keys: where its age identity is, and the node-local key that
//! fingerprints secret values for spec hashes.
//!
//! The age key is looked for at `--age-key-path`, then `SOPS_AGE_KEY_FILE`, then
//! `<dataDir>/keys/age.key` (the binary resolves the first two into
//! [`crate::Settings::age_key`]). It is read each time a revision needs it, so a key
//! installed or replaced on a running node is used at the next poll, without a restart.

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use manifest_model::{Fingerprinter, Identities, SopsError};
use tracing::warn;

use crate::EngineError;

/// How many random bytes the fingerprint key holds.
const FINGERPRINT_KEY_BYTES: usize = 32;

/// What identifies one state of the age key file: a refusal for want of a key is tried again
/// when this changes. The change time and inode are in it, so a `chmod`, `chown` or a file
/// moved into place count too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyStamp(Option<(u64, Option<SystemTime>, i64, i64, u64, u64)>);

/// The node's keys.
#[derive(Debug)]
pub(crate) struct Keys {
    /// Where the age key file is (it may not exist: a node without secrets needs none).
    age_key: PathBuf,
    /// How that path was chosen, for messages.
    origin: &'static str,
    /// Keyed fingerprints of secret values.
    pub(crate) fingerprinter: Fingerprinter,
}

impl Keys {
    /// The keys of the data dir at `root`; creates the fingerprint key on first use.
    pub(crate) fn open(root: &Path, age_key: Option<&Path>) -> Result<Self, EngineError> {
        let (age_key, origin) = match age_key {
            Some(p) => {
                if !p.exists() {
                    // Not fatal: a node without secrets needs none, and the key may come later.
                    warn!(path = %p.display(), "the age key file given does not exist (yet); revisions with secrets are refused until it does");
                }
                (p.to_owned(), "--age-key-path or SOPS_AGE_KEY_FILE")
            }
            None => (root.join("keys").join("age.key"), "the data dir"),
        };
        let fingerprinter = fingerprinter(&root.join("keys"))?;
        Ok(Self {
            age_key,
            origin,
            fingerprinter,
        })
    }

    /// The node's age identities; `Ok(None)` when the key file does not exist.
    pub(crate) fn identities(&self) -> Result<Option<Identities>, SopsError> {
        if !self.age_key.exists() {
            return Ok(None);
        }
        if let Ok(meta) = fs::metadata(&self.age_key)
            && meta.permissions().mode() & 0o077 != 0
        {
            warn!(path = %self.age_key.display(), "the age key file is readable by other users; chmod 600 it");
        }
        Identities::read(&self.age_key).map(Some)
    }

    /// Where the age key is looked for, for a message that says what to install.
    pub(crate) fn where_(&self) -> String {
        format!("{} (from {})", self.age_key.display(), self.origin)
    }

    /// The key file's state now.
    pub(crate) fn stamp(&self) -> KeyStamp {
        KeyStamp(fs::metadata(&self.age_key).ok().map(|m| {
            (
                m.len(),
                m.modified().ok(),
                m.ctime(),
                m.ctime_nsec(),
                m.ino(),
                m.dev(),
            )
        }))
    }
}

/// The fingerprinter of the node's key, creating the key (mode 0600, from the kernel's
/// randomness) if there is none yet. Losing it only costs one restart of the containers that
/// hold secrets.
fn fingerprinter(dir: &Path) -> Result<Fingerprinter, EngineError> {
    let path = dir.join("fingerprint.key");
    if let Some(f) = Fingerprinter::read(&path) {
        return Ok(f);
    }
    if path.exists() {
        warn!(path = %path.display(), "the fingerprint key is unreadable or too short; making a new one");
    }
    fs::create_dir_all(dir).map_err(EngineError::io("create", dir))?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let mut key = vec![0u8; FINGERPRINT_KEY_BYTES];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(EngineError::io("read", Path::new("/dev/urandom")))?;
    let tmp = dir.join("fingerprint.key.tmp");
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&key)?;
            f.sync_all()
        })
        .map_err(EngineError::io("write", &tmp))?;
    fs::rename(&tmp, &path).map_err(EngineError::io("write", &path))?;
    Ok(Fingerprinter::new(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = Keys::open(dir.path(), None).unwrap();
        let b = Keys::open(dir.path(), None).unwrap();
        assert_eq!(a.fingerprinter.of(b"x"), b.fingerprinter.of(b"x"));
        let mode = fs::metadata(dir.path().join("keys/fingerprint.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Another data dir, another key: fingerprints do not travel between nodes.
        let other = tempfile::tempdir().unwrap();
        let c = Keys::open(other.path(), None).unwrap();
        assert_ne!(a.fingerprinter.of(b"x"), c.fingerprinter.of(b"x"));
        assert!(
            a.identities().unwrap().is_none(),
            "no age key installed yet"
        );
    }
}

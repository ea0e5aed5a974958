//! The intent journal: before each mutating step of a rollout the agent writes what it is
//! about to do, durably (temporary file, fsync, rename), so that after a crash at any moment
//! it can find the containers it made or moved and finish or undo the rollout (RELIABILITY E9).

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

pub(crate) use reconcile_core::{Intent, Phase};

use crate::error::EngineError;
use crate::state::write_json;

/// The journal file and its entries, by deployment.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    intents: BTreeMap<String, Intent>,
}

impl Journal {
    /// Reads the journal; a missing file is an empty journal.
    pub(crate) fn load(path: PathBuf) -> Result<Self, EngineError> {
        let intents = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(intents) => intents,
                Err(source) => {
                    return Err(EngineError::Damaged {
                        path,
                        advice: "containers left by interrupted rollouts are then cleaned up by their labels",
                        source,
                    });
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(EngineError::io("read", path)(e)),
        };
        Ok(Self { path, intents })
    }

    /// Records `intent` for `deployment` durably before the step it announces.
    pub(crate) fn set(&mut self, deployment: &str, intent: Intent) -> Result<(), EngineError> {
        let mut next = self.intents.clone();
        next.insert(deployment.to_owned(), intent);
        self.commit(next)
    }

    /// Forgets `deployment`'s rollout: it is finished or undone.
    pub(crate) fn clear(&mut self, deployment: &str) -> Result<(), EngineError> {
        if self.intents.contains_key(deployment) {
            let mut next = self.intents.clone();
            next.remove(deployment);
            self.commit(next)?;
        }
        Ok(())
    }

    /// The rollouts in progress (after a crash: the ones to resolve).
    pub(crate) fn entries(&self) -> &BTreeMap<String, Intent> {
        &self.intents
    }

    /// Memory follows the disk, never leads it: after a failed write both still hold the
    /// previous entries.
    fn commit(&mut self, next: BTreeMap<String, Intent>) -> Result<(), EngineError> {
        write_json(&self.path, &next)?;
        self.intents = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use reconcile_core::Kind;

    use super::*;

    #[test]
    fn intents_survive_a_reload_and_clearing_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intents.json");
        let mut j = Journal::load(path.clone()).unwrap();
        let intent = Intent {
            kind: Kind::StopFirst,
            phase: Phase::StoppingOld,
            spec_hash: "ab".into(),
            name: "web".into(),
            new_name: "web".into(),
            new_id: None,
            old_id: Some("c1".into()),
            old_name: Some("web".into()),
            old_running: true,
            aside: Some("web.orun-old".into()),
            commit: None,
        };
        j.set("web", intent.clone()).unwrap();
        let again = Journal::load(path.clone()).unwrap();
        assert_eq!(again.entries().get("web"), Some(&intent));
        j.clear("web").unwrap();
        assert!(Journal::load(path.clone()).unwrap().entries().is_empty());
        fs::write(&path, "{").unwrap();
        assert!(Journal::load(path).is_err());
    }
}

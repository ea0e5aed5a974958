//! Decrypts, in memory, the secret values one node's containers need, and says by what
//! identity each enters a spec.
//!
//! A node needs `secrets.yaml` when one of its containers is offered it or refers into it,
//! and a Deployment file's SOPS document when that deployment holds an inline `ENC[...]`
//! value. Each file is decrypted whole and its MAC verified, so one tampered value refuses
//! the revision. Values are held as [`Secret`] (prints `***`); what the planner sees of them
//! is a keyed fingerprint, so re-encrypting an unchanged value changes nothing and nobody
//! without the node's key can test a guess against a container label.

use std::collections::BTreeMap;

use sops_age::{Fingerprinter, Identities, Step};

use crate::diag::{Diagnostic, Pos};
use crate::resolve::{DesiredContainer, DesiredNode};
use crate::secret::{EnvValue, SealedFile, Secret};
use crate::values;

/// The identities of a node's secret values: what the planner compares, never the values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fingerprints {
    /// `secrets.yaml` keys.
    pub file: BTreeMap<String, String>,
    /// Inline values, by deployment and env name.
    pub inline: BTreeMap<(String, String), String>,
}

/// A node's decrypted secret values.
#[derive(Debug, Default)]
pub struct Unlocked {
    file: BTreeMap<String, Secret>,
    inline: BTreeMap<(String, String), Secret>,
    /// Their identities.
    pub fingerprints: Fingerprints,
}

/// The encrypted files a node's containers need opened.
#[derive(Debug, Default)]
pub struct Needs<'a> {
    /// `secrets.yaml`, when a container is offered it or refers into it.
    pub secrets: Option<&'a SealedFile>,
    /// Deployment files with inline values, by deployment.
    pub sealed: Vec<(&'a str, &'a SealedFile)>,
}

impl Needs<'_> {
    /// Nothing needs a key.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_none() && self.sealed.is_empty()
    }

    /// The files, for messages.
    pub fn files(&self) -> Vec<&str> {
        self.secrets
            .iter()
            .map(|s| s.file.as_str())
            .chain(self.sealed.iter().map(|(_, s)| s.file.as_str()))
            .collect()
    }
}

/// What `node` needs decrypted.
pub fn needs(node: &DesiredNode) -> Needs<'_> {
    let refers = |c: &DesiredContainer| {
        c.spec
            .env
            .values()
            .any(|v| matches!(v, EnvValue::SecretRef(_)))
    };
    let offered = node.node.spec.offer_secrets && !node.containers.is_empty();
    let secrets = node
        .secrets
        .as_deref()
        .filter(|_| offered || node.containers.iter().any(refers))
        .map(|f| &f.sealed);
    let sealed = node
        .containers
        .iter()
        .filter(|c| {
            c.spec
                .env
                .values()
                .any(|v| matches!(v, EnvValue::Encrypted(_)))
        })
        .filter_map(|c| Some((c.deployment.as_str(), node.sealed.get(&c.deployment)?)))
        .collect();
    Needs { secrets, sealed }
}

/// Decrypts what `node` needs with `ids`, fingerprinting each value with `fp`.
///
/// # Errors
/// One diagnostic per file that cannot be opened: no identity (`ids` is `None`) or none that
/// matches, a value that fails its tag, the MAC. Each names the file and the key, never a
/// value.
pub fn unlock(
    node: &DesiredNode,
    ids: Option<&Identities>,
    fp: &Fingerprinter,
) -> Result<Unlocked, Vec<Diagnostic>> {
    let needs = needs(node);
    let mut out = Unlocked::default();
    if needs.is_empty() {
        return Ok(out);
    }
    let Some(ids) = ids else {
        return Err(needs
            .files()
            .into_iter()
            .map(|f| {
                Diagnostic::error(
                    f,
                    Pos::FILE,
                    "sops",
                    "this node's containers need values from this file, and no age key was found to decrypt them",
                )
            })
            .collect());
    };
    let mut problems = Vec::new();
    if let Some(file) = needs.secrets {
        match open(file, ids) {
            Ok(leaves) => {
                for (path, value) in leaves {
                    if let [Step::Key(k)] = path.as_slice() {
                        out.fingerprints
                            .file
                            .insert(k.clone(), fp.of(value.expose().as_bytes()));
                        out.file.insert(k.clone(), value);
                    }
                }
            }
            Err(d) => problems.push(d),
        }
    }
    for (deployment, file) in needs.sealed {
        match open(file, ids) {
            Ok(leaves) => {
                for (path, value) in leaves {
                    if let [Step::Key(s), Step::Key(e), Step::Key(k)] = path.as_slice()
                        && s == "spec"
                        && e == "env"
                    {
                        let at = (deployment.to_owned(), k.clone());
                        out.fingerprints
                            .inline
                            .insert(at.clone(), fp.of(value.expose().as_bytes()));
                        out.inline.insert(at, value);
                    }
                }
            }
            Err(d) => problems.push(d),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// What a preview (`orun plan`) can say of a node's secrets with the keys it holds.
#[derive(Debug, Default)]
pub struct Preview {
    /// The fingerprints it could compute: all of them with both keys, none otherwise.
    pub fingerprints: Fingerprints,
    /// Files that do not decrypt with the age key given: the agent would refuse the revision.
    pub errors: Vec<Diagnostic>,
    /// What could not be checked, and why.
    pub notes: Vec<String>,
}

/// Decrypts what `node` needs as far as the keys given allow: with the age key, every value
/// is checked (and a failure is an error, as on the node); with the node's fingerprint key
/// too, the fingerprints match the agent's, so changed values show as changes.
pub fn preview(
    node: &DesiredNode,
    ids: Option<&Identities>,
    fp: Option<&Fingerprinter>,
) -> Preview {
    let needs = needs(node);
    let mut out = Preview::default();
    if needs.is_empty() {
        return out;
    }
    let files = needs.files().join(", ");
    let Some(ids) = ids else {
        out.notes.push(format!(
            "secret values in {files} were not checked: no age key (give --age-key-path); they are taken as unchanged"
        ));
        return out;
    };
    // Without the node's own key a fingerprint would differ from the agent's: decrypt to
    // check, under a key of no consequence, and compare nothing.
    let local = Fingerprinter::new(&[0; 32]);
    match unlock(node, Some(ids), fp.unwrap_or(&local)) {
        Ok(unlocked) if fp.is_some() => out.fingerprints = unlocked.fingerprints,
        Ok(_) => out.notes.push(format!(
            "secret values in {files} decrypt; whether they changed was not checked without the node's fingerprint key (<dataDir>/keys/fingerprint.key); they are taken as unchanged"
        )),
        Err(errors) => out.errors = errors,
    }
    out
}

/// Decrypts every sops-encrypted file of a revision with `ids`: what `orun validate` checks
/// when given a key. One diagnostic per file that does not open.
pub fn check_all(rev: &crate::Revision, ids: &Identities) -> Vec<Diagnostic> {
    rev.secrets
        .iter()
        .map(|s| &s.sealed)
        .chain(rev.sealed.values())
        .filter_map(|f| open(f, ids).err())
        .collect()
}

/// Decrypts one file whole (verifying its MAC) into text values by path.
fn open(file: &SealedFile, ids: &Identities) -> Result<Vec<(Vec<Step>, Secret)>, Diagnostic> {
    let decrypted = file.document.decrypt(ids).map_err(|e| match e {
        sops_age::SopsError::Value { path, reason } => {
            Diagnostic::error(&file.file, Pos::FILE, &path, reason)
        }
        other => Diagnostic::error(&file.file, Pos::FILE, "sops", other.to_string()),
    })?;
    decrypted
        .leaves
        .into_iter()
        .map(|leaf| {
            let field = show(&leaf.path);
            let text = String::from_utf8(leaf.value.expose().to_vec()).map_err(|_| {
                Diagnostic::error(
                    &file.file,
                    Pos::FILE,
                    &field,
                    "decrypts to bytes that are not text; an env var must be text",
                )
            })?;
            values::check_docker_string(&text)
                .map_err(|r| Diagnostic::error(&file.file, Pos::FILE, &field, r))?;
            Ok((leaf.path, Secret::new(text)))
        })
        .collect()
}

fn show(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl Unlocked {
    /// The plaintext env a container gets beyond its plain values, by env name: its inline
    /// and referenced secrets and, when `offered`, every `secrets.yaml` key its own `env` does
    /// not set.
    pub fn env_for(&self, c: &DesiredContainer, offered: bool) -> BTreeMap<String, Secret> {
        let mut out = BTreeMap::new();
        for (k, v) in &c.spec.env {
            let value = match v {
                EnvValue::Plain(_) => None,
                EnvValue::Encrypted(_) => self.inline.get(&(c.deployment.clone(), k.clone())),
                EnvValue::SecretRef(key) => self.file.get(key),
            };
            if let Some(value) = value {
                out.insert(k.clone(), value.clone());
            }
        }
        if offered {
            for (k, v) in &self.file {
                if !c.spec.env.contains_key(k) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        out
    }

    /// Every value, for masking what orun writes.
    pub fn values(&self) -> impl Iterator<Item = &Secret> {
        self.file.values().chain(self.inline.values())
    }
}

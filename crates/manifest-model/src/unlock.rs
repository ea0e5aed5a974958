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

use sops_age::{Fingerprinter, Identities};

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
        let held = node.secrets.as_deref().map(|f| &f.entries);
        match open(file, ids, &[], |k| {
            held.is_some_and(|e| matches!(e.get(k), Some(EnvValue::Encrypted(_))))
        }) {
            Ok(values) => {
                for (k, value) in values {
                    out.fingerprints
                        .file
                        .insert(k.clone(), fp.of(value.expose().as_bytes()));
                    out.file.insert(k, value);
                }
            }
            Err(d) => problems.push(d),
        }
    }
    for (deployment, file) in needs.sealed {
        let env = node
            .containers
            .iter()
            .find(|c| c.deployment == deployment)
            .map(|c| &c.spec.env);
        let sealed_env =
            |k: &str| env.is_some_and(|e| matches!(e.get(k), Some(EnvValue::Encrypted(_))));
        match open(file, ids, &["spec", "env"], sealed_env) {
            Ok(values) => {
                for (k, value) in values {
                    // Only what the model holds as encrypted is a secret; a cleartext value
                    // of the same file is its plain env.
                    if !sealed_env(&k) {
                        continue;
                    }
                    let at = (deployment.to_owned(), k);
                    out.fingerprints
                        .inline
                        .insert(at.clone(), fp.of(value.expose().as_bytes()));
                    out.inline.insert(at, value);
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
    let mine = ids.recipients();
    let foreign: Vec<&str> = needs
        .secrets
        .iter()
        .copied()
        .chain(needs.sealed.iter().map(|(_, f)| *f))
        .filter(|f| !f.document.recipients().any(|r| mine.iter().any(|m| m == r)))
        .map(|f| f.file.as_str())
        .collect();
    if !foreign.is_empty() {
        // Not this node's key, perhaps: the agent holds its own. Nothing can be said.
        out.notes.push(format!(
            "secret values in {} were not checked: they are not encrypted to the age key given; they are taken as unchanged",
            foreign.join(", ")
        ));
        return out;
    }
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

/// Decrypts every sops-encrypted file of a revision that is encrypted to one of `ids`' public
/// keys. Returns one diagnostic per such file
/// that does not open, and the files encrypted to other keys only (another node's, say),
/// which a key that is not theirs cannot check.
fn check_all(rev: &crate::Revision, ids: &Identities) -> (Vec<Diagnostic>, Vec<String>) {
    let mine = ids.recipients();
    let (mut errors, mut others) = (Vec::new(), Vec::new());
    for f in rev
        .secrets
        .iter()
        .map(|s| &s.sealed)
        .chain(rev.sealed.values())
    {
        if f.document.recipients().any(|r| mine.iter().any(|m| m == r)) {
            errors.extend(open(f, ids, &[], |_| false).err());
        } else {
            others.push(f.file.clone());
        }
    }
    (errors, others)
}

/// What a valid revision would still meet on a node, for `orun validate`: given `ids`,
/// errors for encrypted files that do not decrypt with them; a warning for each encrypted
/// file not checked (no key given, or encrypted to other keys only).
pub fn runnable(rev: &crate::Revision, ids: Option<&Identities>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    let (unchecked, why) = match ids {
        Some(ids) => {
            let (bad, others) = check_all(rev, ids);
            out.extend(bad);
            (others, "not encrypted to the age key given")
        }
        None => (
            rev.secrets
                .iter()
                .map(|s| s.sealed.file.clone())
                .chain(rev.sealed.values().map(|s| s.file.clone()))
                .collect(),
            "no age key given (--age-key-path)",
        ),
    };
    out.extend(unchecked.iter().map(|f| {
        Diagnostic::warning(
            f,
            Pos::FILE,
            "sops",
            format!("encrypted values not checked: {why}"),
        )
    }));
    out
}

/// Decrypts one file whole (verifying its MAC) and returns the text values directly under
/// the mapping at `under`. A key for which `sealed` says the model holds an `ENC[...]` value
/// must have been encrypted under the file's rule: an `ENC[...]` text in a place the rule
/// keeps in clear would otherwise reach the container as literal text.
fn open(
    file: &SealedFile,
    ids: &Identities,
    under: &[&str],
    sealed: impl Fn(&str) -> bool,
) -> Result<Vec<(String, Secret)>, Diagnostic> {
    let decrypted = file.document.decrypt(ids).map_err(|e| match e {
        sops_age::SopsError::Value { path, reason } => {
            Diagnostic::error(&file.file, Pos::FILE, &path, reason)
        }
        other => Diagnostic::error(&file.file, Pos::FILE, "sops", other.to_string()),
    })?;
    let field = |k: &str| {
        under
            .iter()
            .copied()
            .chain([k])
            .collect::<Vec<_>>()
            .join(".")
    };
    decrypted
        .children(under)
        .map(|(k, leaf)| {
            if leaf.kind.is_none() && sealed(k) {
                return Err(Diagnostic::error(
                    &file.file,
                    Pos::FILE,
                    &field(k),
                    "holds an encrypted value where the file's rule keeps values in clear; it cannot be decrypted",
                ));
            }
            let text = String::from_utf8(leaf.value.expose().to_vec()).map_err(|_| {
                Diagnostic::error(
                    &file.file,
                    Pos::FILE,
                    &field(k),
                    "decrypts to bytes that are not text; an env var must be text",
                )
            })?;
            values::check_docker_string(&text)
                .map_err(|r| Diagnostic::error(&file.file, Pos::FILE, &field(k), r))?;
            Ok((k.to_owned(), Secret::new(text)))
        })
        .collect()
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

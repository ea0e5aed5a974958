//! Secrets as the model holds them: SOPS ciphertext kept opaque, and a [`Secret`] type that
//! cannot be printed by accident.
//!
//! Loading only recognises SOPS values, checks their shape and keeps each encrypted file's
//! document whole; [`crate::unlock`] decrypts them in memory, given a node's age key.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// A secret value (plaintext or not) whose `Debug` and `Display` print `***`.
///
/// # Guarantees
/// Formatting never reveals the value; only [`Secret::expose`] does, so every place that
/// reads the value is one `grep expose` away.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself. Call only to hand it to Docker or a cipher, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A SOPS-encrypted value: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SopsValue {
    text: Secret,
    /// The SOPS type of the plaintext (`str`, `int`, `float`, `bool`, `bytes`, `time`).
    pub kind: String,
}

impl SopsValue {
    /// Recognises a SOPS value; `Ok(None)` when `s` is not one at all.
    ///
    /// # Errors
    /// When `s` starts like a SOPS value but is malformed (a truncated paste, a bad IV).
    pub fn parse(s: &str) -> Result<Option<Self>, String> {
        if !sops_age::looks_sealed(s) {
            return Ok(None);
        }
        let sealed = sops_age::Sealed::parse(s)?;
        let kind = match sealed.kind {
            sops_age::Kind::Str => "str",
            sops_age::Kind::Int => "int",
            sops_age::Kind::Float => "float",
            sops_age::Kind::Bool => "bool",
            sops_age::Kind::Bytes => "bytes",
            sops_age::Kind::Time => "time",
            sops_age::Kind::Comment => "comment",
        };
        Ok(Some(Self {
            text: Secret::new(s),
            kind: kind.to_owned(),
        }))
    }

    /// The full `ENC[...]` text, for the decryptor.
    pub fn ciphertext(&self) -> &str {
        self.text.expose()
    }
}

impl fmt::Debug for SopsValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ENC[{},***]", self.kind)
    }
}

impl Serialize for SopsValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.ciphertext())
    }
}

/// An env value: plain text, or SOPS ciphertext decrypted in place by the agent.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum EnvValue {
    /// Plain text from the manifest. Still never echoed in diagnostics.
    Plain(String),
    /// An inline `ENC[...]` value, decrypted with its own file's SOPS data key.
    Encrypted(SopsValue),
    /// `{secretRef: key}`: the value of `key` in `secrets.yaml`.
    SecretRef(String),
}

/// Env values are not printed even in debug output: plain values often hold secrets too
/// (RELIABILITY A15).
impl fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvValue::Plain(_) => f.write_str("Plain(***)"),
            EnvValue::Encrypted(v) => write!(f, "Encrypted({v:?})"),
            EnvValue::SecretRef(k) => write!(f, "SecretRef({k})"),
        }
    }
}

impl Serialize for EnvValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EnvValue::Plain(v) => s.serialize_str(v),
            EnvValue::Encrypted(v) => v.serialize(s),
            EnvValue::SecretRef(k) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("secretRef", k)?;
                m.end()
            }
        }
    }
}

/// A file sops encrypted (`secrets.yaml`, or a Deployment whose `env` holds `ENC[...]`
/// values): its whole document, held once and shared, for the decryptor.
#[derive(Clone, Debug)]
pub struct SealedFile {
    /// The file, relative to the repository root.
    pub file: String,
    /// The parsed document and its `sops` metadata.
    pub document: Arc<sops_age::Document>,
}

/// One file is one document: equal when they are the same parse of the same file.
impl PartialEq for SealedFile {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file && Arc::ptr_eq(&self.document, &other.document)
    }
}

impl SealedFile {
    /// The age recipients its data key is wrapped for.
    pub fn recipients(&self) -> Vec<String> {
        self.document.recipients().map(str::to_owned).collect()
    }
}

/// `secrets.yaml`: key/value pairs offered to deployments as env vars, still encrypted.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretsFile {
    /// Values by key; cleartext only for keys the file's rule leaves in clear.
    pub entries: BTreeMap<String, EnvValue>,
    /// The whole file, for the decryptor (which verifies its MAC).
    pub sealed: SealedFile,
}

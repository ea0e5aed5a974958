//! Secrets as the model holds them: SOPS ciphertext kept opaque, and a [`Secret`] type that
//! cannot be printed by accident.
//!
//! Decryption is not this crate's job; it only recognises SOPS values, checks their shape and
//! keeps them whole so the agent can decrypt them in memory later.

use std::collections::BTreeMap;
use std::fmt;

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
        let Some(body) = s.strip_prefix("ENC[") else {
            return Ok(None);
        };
        let Some(body) = body.strip_suffix(']') else {
            return Err("SOPS value is not closed by `]`".into());
        };
        let mut parts = body.split(',');
        if parts.next() != Some("AES256_GCM") {
            return Err("SOPS value must use AES256_GCM".into());
        }
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for part in parts {
            let Some((k, v)) = part.split_once(':') else {
                return Err("SOPS value has a field without `:`".into());
            };
            if fields.insert(k, v).is_some() {
                return Err("SOPS value repeats a field".into());
            }
        }
        for (field, len) in [("data", None), ("iv", Some(32)), ("tag", Some(16))] {
            let Some(v) = fields.get(field) else {
                return Err(format!("SOPS value lacks `{field}`"));
            };
            let n = base64_len(v).ok_or_else(|| format!("SOPS `{field}` is not valid base64"))?;
            if let Some(want) = len
                && n != want
            {
                return Err(format!("SOPS `{field}` must be {want} bytes, found {n}"));
            }
        }
        let kind = *fields
            .get("type")
            .ok_or_else(|| "SOPS value lacks `type`".to_owned())?;
        if !matches!(
            kind,
            "str" | "int" | "float" | "bool" | "bytes" | "time" | "comment"
        ) {
            return Err("SOPS value has an unknown type".into());
        }
        if fields
            .keys()
            .any(|k| !matches!(*k, "data" | "iv" | "tag" | "type"))
        {
            return Err("SOPS value has an unknown field".into());
        }
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

/// Decoded length of standard, padded base64, or `None` when `s` is not such base64.
fn base64_len(s: &str) -> Option<usize> {
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let pad = s.bytes().rev().take_while(|b| *b == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &s[..s.len() - pad];
    if !body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return None;
    }
    Some(s.len() / 4 * 3 - pad)
}

/// An env value: plain text, or SOPS ciphertext decrypted in place by the agent.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum EnvValue {
    /// Plain text from the manifest. Still never echoed in diagnostics.
    Plain(String),
    /// An inline `ENC[...]` value.
    Encrypted(SopsValue),
}

/// Env values are not printed even in debug output: plain values often hold secrets too
/// (RELIABILITY A15).
impl fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvValue::Plain(_) => f.write_str("Plain(***)"),
            EnvValue::Encrypted(v) => write!(f, "Encrypted({v:?})"),
        }
    }
}

impl Serialize for EnvValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EnvValue::Plain(v) => s.serialize_str(v),
            EnvValue::Encrypted(v) => v.serialize(s),
        }
    }
}

/// `secrets.yaml`: key/value pairs offered to deployments as env vars, still encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretsFile {
    /// Values by key; cleartext only for keys with the unencrypted suffix.
    pub entries: BTreeMap<String, EnvValue>,
    /// Age recipients with their wrapped data keys.
    pub age: Vec<AgeStanza>,
    /// SOPS `lastmodified`, the MAC's additional data.
    pub last_modified: String,
    /// The encrypted MAC over all values.
    pub mac: SopsValue,
    /// Keys ending with this stay cleartext (default `_unencrypted`).
    pub unencrypted_suffix: String,
}

/// One age recipient of a SOPS file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgeStanza {
    /// `age1…` public key.
    pub recipient: String,
    /// The armored, age-encrypted data key.
    pub enc: String,
}

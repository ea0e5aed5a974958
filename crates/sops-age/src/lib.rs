//! Reads SOPS files encrypted to age recipients, in memory: unwraps the data key with an
//! age identity, decrypts every value, and verifies the file's MAC before returning anything.
//!
//! This is the envelope of SOPS (getsops/sops) as its own files show it (see
//! `shared/testdata/sops/README.md`): a top-level `sops` mapping holds the data key wrapped
//! for each age recipient (armored), the encryption rule, `lastmodified` and the MAC; every
//! other leaf is `ENC[AES256_GCM,…]` (32-byte IV, the key path `a:b:` as additional data) or
//! cleartext under the rule. The MAC is SHA-512 over every leaf's plaintext in document
//! order, itself encrypted with `lastmodified` as additional data.
//!
//! No maintained Rust crate reads this envelope for SOPS 3.7–3.11 files (rops writes its own
//! dialect), so it is written here and held to the real vectors; age itself is the `age`
//! crate (rage). Only X25519 identities are read: plugin identities would run programs, and
//! passphrase (scrypt) stanzas are never tried, so a hostile file cannot buy CPU time with a
//! work factor.
//!
//! Errors name key paths (which SOPS keeps in clear) and never a value.

mod cipher;
mod tree;

use std::fmt;
use std::io::Read as _;
use std::path::Path;
use std::str::FromStr as _;

use hmac::{Hmac, Mac as _};
use regex::Regex;
use sha2::{Digest as _, Sha256, Sha512};
use zeroize::Zeroizing;

pub use cipher::{Kind, Sealed, looks_sealed};
pub use tree::Value;

/// The top-level key that holds SOPS metadata.
pub const METADATA_KEY: &str = "sops";

/// The unencrypted suffix SOPS uses when a file names no rule.
pub const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// More age recipients than this in one file is refused before any is tried.
pub const MAX_RECIPIENTS: usize = 64;

/// The largest key file read.
const MAX_KEY_FILE_BYTES: u64 = 1 << 20;

/// Why a file could not be read or decrypted. Names keys and paths, never values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SopsError {
    /// The `sops` metadata is missing a field or holds a bad one.
    #[error("sops metadata: {0}")]
    Metadata(String),
    /// The file uses a SOPS feature orun does not read.
    #[error("unsupported SOPS feature: {0}")]
    Unsupported(String),
    /// None of the identities held unwraps the data key.
    #[error(
        "no age identity held by this node can decrypt the file (it is encrypted to {recipients}); give the node the key of one of them"
    )]
    NoMatchingKey {
        /// The file's recipients, comma-separated.
        recipients: String,
    },
    /// A value does not decrypt or is not what its path requires.
    #[error("`{path}`: {reason}")]
    Value {
        /// The value's key path, `a.b[1]`.
        path: String,
        /// What is wrong (never the value).
        reason: String,
    },
    /// The values decrypt but do not hash to the file's MAC.
    #[error("MAC mismatch: a value was changed, added or removed after sops encrypted the file")]
    MacMismatch,
    /// The age key file cannot be used.
    #[error("age key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong with it (never a key).
        reason: String,
    },
}

/// Decrypted bytes: printed as `***`, zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes. Hand them to their consumer; never print them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The X25519 identities of one node (an age key file).
pub struct Identities(Vec<age::x25519::Identity>);

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.recipients()).finish()
    }
}

impl Identities {
    /// Parses an age key file: `AGE-SECRET-KEY-1…` lines, `#` comments and blank lines.
    /// `origin` names the file in errors.
    ///
    /// # Errors
    /// A line that is not an X25519 identity (a plugin identity is refused: it would run a
    /// program), or a file with none.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SopsError> {
        let err = |reason: String| SopsError::KeyFile {
            path: origin.to_owned(),
            reason,
        };
        let mut ids = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with("AGE-PLUGIN-") {
                return Err(err(format!(
                    "line {}: plugin identities are not supported (they run a program); use an X25519 key from age-keygen",
                    i + 1
                )));
            }
            let id = age::x25519::Identity::from_str(line).map_err(|_| {
                err(format!(
                    "line {} is not an age X25519 identity (AGE-SECRET-KEY-1…)",
                    i + 1
                ))
            })?;
            ids.push(id);
        }
        if ids.is_empty() {
            return Err(err("holds no age identity".into()));
        }
        Ok(Self(ids))
    }

    /// Reads and parses an age key file.
    ///
    /// # Errors
    /// When it cannot be read, is over 1 MiB, or does not parse.
    pub fn read(path: &Path) -> Result<Self, SopsError> {
        let origin = path.display().to_string();
        let mut text = Zeroizing::new(String::new());
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_KEY_FILE_BYTES + 1).read_to_string(&mut text))
            .map_err(|e| SopsError::KeyFile {
                path: origin.clone(),
                reason: e.kind().to_string(),
            })?;
        if text.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(SopsError::KeyFile {
                path: origin,
                reason: "is larger than 1 MiB; that is no age key file".into(),
            });
        }
        Self::parse(&text, &origin)
    }

    /// The public keys (`age1…`) of these identities.
    pub fn recipients(&self) -> Vec<String> {
        self.0.iter().map(|i| i.to_public().to_string()).collect()
    }
}

/// The rule that says which leaves are encrypted.
#[derive(Debug)]
enum Rule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(Regex),
    EncryptedRegex(Regex),
}

impl Rule {
    /// Whether one key of a path matches the rule's suffix or regex.
    fn matches(&self, key: &str) -> bool {
        match self {
            Rule::UnencryptedSuffix(s) | Rule::EncryptedSuffix(s) => key.ends_with(s.as_str()),
            Rule::UnencryptedRegex(r) | Rule::EncryptedRegex(r) => r.is_match(key),
        }
    }

    /// Whether a leaf is encrypted, given whether any key on its path matches.
    fn encrypts_if(&self, any_matches: bool) -> bool {
        match self {
            Rule::UnencryptedSuffix(_) | Rule::UnencryptedRegex(_) => !any_matches,
            Rule::EncryptedSuffix(_) | Rule::EncryptedRegex(_) => any_matches,
        }
    }

    /// Whether a leaf under `path` (its mapping keys) is encrypted.
    fn encrypts(&self, path: &[&str]) -> bool {
        self.encrypts_if(path.iter().any(|k| self.matches(k)))
    }
}

/// The `sops` metadata of a file, as far as age decryption needs it.
#[derive(Debug)]
struct Metadata {
    /// `(recipient, armored data key)` per age recipient.
    age: Vec<(String, String)>,
    last_modified: String,
    mac: Sealed,
    rule: Rule,
    mac_only_encrypted: bool,
}

/// A SOPS file: its tree (without `sops`) and its metadata.
#[derive(Debug)]
pub struct Document {
    tree: Value,
    meta: Metadata,
}

/// What [`walk_tree`] calls for each leaf, with its node in the path table.
type OnLeaf<'a> = dyn FnMut(&Walk<'_>, usize, &Value) -> Result<(), SopsError> + 'a;

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A mapping key.
    Key(String),
    /// A list index.
    Index(usize),
}

impl From<&str> for Step {
    fn from(k: &str) -> Self {
        Step::Key(k.to_owned())
    }
}

impl From<usize> for Step {
    fn from(i: usize) -> Self {
        Step::Index(i)
    }
}

/// A path for people: `a.b[1]`.
fn show_path(path: &[Step]) -> String {
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

/// One leaf of a decrypted file.
#[derive(Debug)]
pub struct Leaf {
    /// Where it is: a node of [`Decrypted`]'s path table.
    at: usize,
    /// Its type when it was encrypted; `None` for a cleartext leaf.
    pub kind: Option<Kind>,
    /// Its text as `sops -d` prints a scalar (`true`, `1.5`, the string itself).
    pub value: Plaintext,
}

/// Every leaf of a file, decrypted and verified, in document order.
///
/// Paths are kept as a table of steps with parents, one entry per mapping entry or list
/// item, so a file costs memory linear in its size however deep or long its keys.
#[derive(Debug)]
pub struct Decrypted {
    /// `(parent, step)` per node of the tree.
    steps: Vec<(Option<usize>, Step)>,
    /// The leaves.
    pub leaves: Vec<Leaf>,
}

impl Decrypted {
    /// The path of `leaf`.
    pub fn path(&self, leaf: &Leaf) -> Vec<Step> {
        let mut out = Vec::new();
        let mut at = Some(leaf.at);
        while let Some(i) = at {
            let (parent, step) = &self.steps[i];
            out.push(step.clone());
            at = *parent;
        }
        out.reverse();
        out
    }

    /// The leaf at `path`.
    pub fn get(&self, path: &[Step]) -> Option<&Leaf> {
        self.leaves.iter().find(|l| self.path(l) == path)
    }

    /// The leaves directly under the mapping at `prefix` (mapping keys only), with their
    /// keys: `&[]` for the top-level keys, `&["spec", "env"]` for a Deployment's env. Costs
    /// at most `prefix.len() + 1` steps per leaf.
    pub fn children<'a>(&'a self, prefix: &'a [&str]) -> impl Iterator<Item = (&'a str, &'a Leaf)> {
        self.leaves.iter().filter_map(move |leaf| {
            let (parent, Step::Key(key)) = &self.steps[leaf.at] else {
                return None;
            };
            let mut at = *parent;
            for want in prefix.iter().rev() {
                let (up, Step::Key(k)) = &self.steps[at?] else {
                    return None;
                };
                if k != want {
                    return None;
                }
                at = *up;
            }
            at.is_none().then_some((key.as_str(), leaf))
        })
    }
}

/// The longest key path (keys joined by `:`, the values' additional data) a file may hold:
/// each encrypted value authenticates its path, so a path's length is paid per value.
pub const MAX_PATH_BYTES: usize = 16 * 1024;

/// The state of one walk over a document.
struct Walk<'a> {
    rule: &'a Rule,
    steps: Vec<(Option<usize>, Step)>,
    /// The current path's keys as additional data: `a:b:`.
    aad: String,
    /// Per key on the current path: whether it or a key above it matches the rule.
    matched: Vec<bool>,
}

impl Walk<'_> {
    /// `path` for people, from node `at`, cut short if long.
    fn show(&self, at: Option<usize>) -> String {
        let mut steps = Vec::new();
        let mut at = at;
        while let Some(i) = at {
            steps.push(self.steps[i].1.clone());
            at = self.steps[i].0;
        }
        steps.reverse();
        let mut shown = show_path(&steps);
        if shown.len() > 200 {
            let mut cut = 200;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push('…');
        }
        shown
    }
}

impl Document {
    /// Splits a parsed file into its tree and its `sops` metadata; `Ok(None)` when it has
    /// no `sops` key at all.
    ///
    /// # Errors
    /// When the metadata is malformed or uses a feature not read here (key groups, comment
    /// rules, no age recipient).
    pub fn parse(doc: Value) -> Result<Option<Self>, SopsError> {
        let Value::Map(mut entries) = doc else {
            return Ok(None);
        };
        let Some(at) = entries.iter().position(|(k, _)| k == METADATA_KEY) else {
            return Ok(None);
        };
        let (_, meta) = entries.remove(at);
        let meta = Metadata::parse(&meta)?;
        Ok(Some(Self {
            tree: Value::Map(entries),
            meta,
        }))
    }

    /// Whether the file's rule encrypts a leaf under these mapping keys.
    pub fn encrypts(&self, keys: &[&str]) -> bool {
        self.meta.rule.encrypts(keys)
    }

    /// The age recipients the data key is wrapped for.
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.meta.age.iter().map(|(r, _)| r.as_str())
    }

    /// Decrypts every value and verifies the MAC.
    ///
    /// # Errors
    /// No identity unwraps the data key; a value fails its tag (tampered, moved, or sealed
    /// with another key); a leaf the rule encrypts is in clear; the MAC does not match.
    pub fn decrypt(&self, ids: &Identities) -> Result<Decrypted, SopsError> {
        let key = self.data_key(ids)?;
        let mut hash = Sha512::new();
        if self.meta.mac_only_encrypted {
            // sops.go's MACOnlyEncryptedInitialization: sha256("sops"), so a MAC over only
            // the encrypted leaves never equals one over all of them.
            hash.update(Sha256::digest(b"sops"));
        }
        let mut leaves = Vec::new();
        let mut walk = Walk {
            rule: &self.meta.rule,
            steps: Vec::new(),
            aad: String::new(),
            matched: Vec::new(),
        };
        let mac_only = self.meta.mac_only_encrypted;
        walk_tree(&self.tree, None, &mut walk, &mut |walk, at, leaf| {
            let encrypted = walk
                .rule
                .encrypts_if(walk.matched.last().copied().unwrap_or(false));
            let fail = |walk: &Walk<'_>, reason: &str| SopsError::Value {
                path: walk.show(Some(at)),
                reason: reason.to_owned(),
            };
            let (kind, mac_bytes, text) = if encrypted {
                let Value::Str(s) = leaf else {
                    return Err(fail(walk, "is in clear where the file's rule encrypts it"));
                };
                if s.is_empty() {
                    // SOPS stores an empty string as it is.
                    (Some(Kind::Str), Vec::new(), Vec::new())
                } else {
                    let sealed = Sealed::parse(s).map_err(|_| {
                        fail(
                            walk,
                            "is not an encrypted value where the file's rule encrypts it",
                        )
                    })?;
                    let plain = sealed.open(&key, &walk.aad).ok_or_else(|| {
                        fail(walk, "does not decrypt: the value was tampered with, moved to another key, or sealed with another file's key")
                    })?;
                    let (mac, text) = canonical(sealed.kind, plain.expose()).ok_or_else(|| {
                        fail(walk, "decrypts to text that does not match its type")
                    })?;
                    (Some(sealed.kind), mac, text)
                }
            } else {
                let (mac, text) = clear_bytes(leaf);
                (None, mac, text)
            };
            if kind != Some(Kind::Comment) && (encrypted || !mac_only) {
                hash.update(&mac_bytes);
            }
            leaves.push(Leaf {
                at,
                kind,
                value: Plaintext::new(text),
            });
            Ok(())
        })?;
        let computed = hex_upper(&hash.finalize());
        let aad = rfc3339_seconds(&self.meta.last_modified);
        let stored = self
            .meta
            .mac
            .open(&key, &aad)
            .ok_or(SopsError::MacMismatch)?;
        if stored.expose() != computed.as_bytes() {
            return Err(SopsError::MacMismatch);
        }
        Ok(Decrypted {
            steps: walk.steps,
            leaves,
        })
    }

    /// Decrypts one encrypted YAML comment (`#ENC[...,type:comment]`), whose additional data
    /// is the path of its enclosing mapping. orun reads no comments; this exists so the
    /// comments of the reference vectors can be checked too.
    ///
    /// # Errors
    /// As [`Document::decrypt`] for the data key; a comment that does not open.
    pub fn decrypt_comment(
        &self,
        ids: &Identities,
        sealed: &str,
        enclosing: &[&str],
    ) -> Result<Plaintext, SopsError> {
        let key = self.data_key(ids)?;
        let fail = |reason: String| SopsError::Value {
            path: enclosing.join("."),
            reason,
        };
        let sealed = Sealed::parse(sealed).map_err(fail)?;
        let aad: String = enclosing.iter().map(|k| format!("{k}:")).collect();
        sealed
            .open(&key, &aad)
            .ok_or_else(|| fail("the comment does not decrypt".into()))
    }

    /// Unwraps the 32-byte data key from the first age stanza an identity opens.
    fn data_key(&self, ids: &Identities) -> Result<Zeroizing<[u8; 32]>, SopsError> {
        for (_, enc) in &self.meta.age {
            let Ok(decryptor) = age::Decryptor::new(age::armor::ArmoredReader::new(enc.as_bytes()))
            else {
                continue;
            };
            // Passphrase stanzas are never tried: only X25519 identities are offered, and a
            // scrypt stanza's work factor is the sender's to choose.
            if decryptor.is_scrypt() {
                continue;
            }
            let Ok(mut reader) = decryptor.decrypt(ids.0.iter().map(|i| i as &dyn age::Identity))
            else {
                continue;
            };
            let mut key = Zeroizing::new(Vec::new());
            // A data key is 32 bytes; reading one more tells a longer payload apart.
            if (&mut reader).take(33).read_to_end(&mut key).is_err() {
                continue;
            }
            if let Ok(k) = <[u8; 32]>::try_from(key.as_slice()) {
                return Ok(Zeroizing::new(k));
            }
            return Err(SopsError::Metadata(
                "the age-encrypted data key is not 32 bytes".into(),
            ));
        }
        Err(SopsError::NoMatchingKey {
            recipients: self.recipients().collect::<Vec<_>>().join(", "),
        })
    }
}

/// Calls `leaf` for every non-null scalar under `v`, in document order, with its node in
/// the path table; keeps the walk's additional data and rule matches current, each key
/// judged once however many leaves lie beneath it.
fn walk_tree(
    v: &Value,
    at: Option<usize>,
    walk: &mut Walk<'_>,
    leaf: &mut OnLeaf<'_>,
) -> Result<(), SopsError> {
    match v {
        Value::Map(entries) => {
            for (k, v) in entries {
                let before = walk.aad.len();
                walk.aad.push_str(k);
                walk.aad.push(':');
                if walk.aad.len() > MAX_PATH_BYTES {
                    return Err(SopsError::Value {
                        path: walk.show(at),
                        reason: format!("holds a key path longer than {MAX_PATH_BYTES} bytes"),
                    });
                }
                let above = walk.matched.last().copied().unwrap_or(false);
                walk.matched.push(above || walk.rule.matches(k));
                walk.steps.push((at, Step::Key(k.clone())));
                let me = walk.steps.len() - 1;
                walk_tree(v, Some(me), walk, leaf)?;
                walk.matched.pop();
                walk.aad.truncate(before);
            }
            Ok(())
        }
        Value::List(items) => {
            for (i, v) in items.iter().enumerate() {
                // List indices are not part of the additional data.
                walk.steps.push((at, Step::Index(i)));
                let me = walk.steps.len() - 1;
                walk_tree(v, Some(me), walk, leaf)?;
            }
            Ok(())
        }
        // SOPS skips nulls: neither encrypted nor hashed.
        Value::Null => Ok(()),
        _ => match at {
            Some(at) => leaf(walk, at, v),
            // A document that is one scalar has nothing SOPS encrypts.
            None => Ok(()),
        },
    }
}

/// A decrypted value's bytes for the MAC (as SOPS' `ToBytes` of its parsed form) and its
/// text as `sops -d` prints it; `None` when the bytes do not parse as the type says.
fn canonical(kind: Kind, bytes: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let text = || std::str::from_utf8(bytes).ok();
    Some(match kind {
        Kind::Int => {
            let n: i128 = text()?.parse().ok()?;
            let s = n.to_string().into_bytes();
            (s.clone(), s)
        }
        Kind::Float => {
            let f: f64 = text()?.parse().ok()?;
            let s = tree::go_float(f).into_bytes();
            (s.clone(), s)
        }
        Kind::Bool => {
            // Go's strconv.ParseBool.
            let b = match text()? {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                _ => return None,
            };
            (
                if b { "True" } else { "False" }.as_bytes().to_vec(),
                b.to_string().into_bytes(),
            )
        }
        Kind::Str | Kind::Bytes | Kind::Time | Kind::Comment => (bytes.to_vec(), bytes.to_vec()),
    })
}

/// A cleartext leaf's bytes for the MAC and its text.
fn clear_bytes(v: &Value) -> (Vec<u8>, Vec<u8>) {
    match v {
        Value::Str(s) => (s.as_bytes().to_vec(), s.as_bytes().to_vec()),
        Value::Int(n) => (n.to_string().into_bytes(), n.to_string().into_bytes()),
        Value::Float(f) => (
            tree::go_float(*f).into_bytes(),
            tree::go_float(*f).into_bytes(),
        ),
        Value::Bool(b) => (
            if *b { "True" } else { "False" }.as_bytes().to_vec(),
            b.to_string().into_bytes(),
        ),
        Value::Map(_) | Value::List(_) | Value::Null => (Vec::new(), Vec::new()),
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `lastmodified` as Go re-formats it for the MAC's additional data: RFC 3339 to the
/// second (`time.RFC3339` drops fractional seconds).
fn rfc3339_seconds(s: &str) -> String {
    match s.find('.') {
        Some(dot) if s[..dot].contains('T') => {
            let rest = &s[dot + 1..];
            let zone = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{}{zone}", &s[..dot])
        }
        _ => s.to_owned(),
    }
}

impl Metadata {
    fn parse(v: &Value) -> Result<Self, SopsError> {
        let bad = |m: &str| SopsError::Metadata(m.to_owned());
        let Value::Map(_) = v else {
            return Err(bad("`sops` is not a mapping"));
        };
        let text = |field: &str| -> Result<Option<&str>, SopsError> {
            match v.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Str(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(SopsError::Metadata(format!("`{field}` is not a string"))),
            }
        };
        if matches!(v.get("key_groups"), Some(Value::List(l)) if !l.is_empty()) {
            return Err(SopsError::Unsupported(
                "key groups (shamir_threshold); encrypt to age recipients directly".into(),
            ));
        }
        for field in ["unencrypted_comment_regex", "encrypted_comment_regex"] {
            if text(field)?.is_some_and(|s| !s.is_empty()) {
                return Err(SopsError::Unsupported(format!(
                    "`{field}` (orun does not read comments); use a key suffix or key regex"
                )));
            }
        }
        let mut age = Vec::new();
        match v.get("age") {
            None | Some(Value::Null) => {}
            Some(Value::List(items)) => {
                if items.len() > MAX_RECIPIENTS {
                    return Err(bad("more than 64 age recipients"));
                }
                for item in items {
                    let recipient = item.get("recipient").and_then(Value::as_str);
                    let enc = item.get("enc").and_then(Value::as_str);
                    let (Some(recipient), Some(enc)) = (recipient, enc) else {
                        return Err(bad("an `age` entry lacks `recipient` or `enc`"));
                    };
                    age.push((recipient.to_owned(), enc.to_owned()));
                }
            }
            Some(_) => return Err(bad("`age` is not a list")),
        }
        if age.is_empty() {
            return Err(SopsError::Unsupported(
                "the file has no age recipient (PGP, KMS and Vault keys are not read by orun); add one with `sops updatekeys` or `sops -r --add-age`".into(),
            ));
        }
        let last_modified = text("lastmodified")?
            .ok_or_else(|| bad("`lastmodified` is missing"))?
            .to_owned();
        let mac = text("mac")?.ok_or_else(|| bad("`mac` is missing"))?;
        let mac = Sealed::parse(mac).map_err(|e| SopsError::Metadata(format!("`mac`: {e}")))?;
        let regex = |field: &str, s: &str| {
            Regex::new(s)
                .map_err(|_| SopsError::Metadata(format!("`{field}` is not a valid regex")))
        };
        let mut rules = Vec::new();
        if let Some(s) = text("unencrypted_suffix")?.filter(|s| !s.is_empty()) {
            rules.push(Rule::UnencryptedSuffix(s.to_owned()));
        }
        if let Some(s) = text("encrypted_suffix")?.filter(|s| !s.is_empty()) {
            rules.push(Rule::EncryptedSuffix(s.to_owned()));
        }
        if let Some(s) = text("unencrypted_regex")?.filter(|s| !s.is_empty()) {
            rules.push(Rule::UnencryptedRegex(regex("unencrypted_regex", s)?));
        }
        if let Some(s) = text("encrypted_regex")?.filter(|s| !s.is_empty()) {
            rules.push(Rule::EncryptedRegex(regex("encrypted_regex", s)?));
        }
        if rules.len() > 1 {
            return Err(bad("more than one encryption rule (sops allows one)"));
        }
        let rule = rules
            .pop()
            .unwrap_or_else(|| Rule::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.to_owned()));
        // sops reads this flag with strconv.ParseBool, so a quoted "true" counts.
        let mac_only_encrypted = match v.get("mac_only_encrypted") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Str(s)) => match s.as_str() {
                "" | "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                _ => return Err(bad("`mac_only_encrypted` is not a boolean")),
            },
            Some(_) => return Err(bad("`mac_only_encrypted` is not a boolean")),
        };
        Ok(Self {
            age,
            last_modified,
            mac,
            rule,
            mac_only_encrypted,
        })
    }
}

/// The identity a secret enters a spec by: HMAC-SHA256 of its plaintext under a node-local
/// key, so equal plaintexts (however often re-encrypted) give equal identities, and nobody
/// without the node's key can test a guess against a container label.
#[derive(Clone)]
pub struct Fingerprinter(Zeroizing<Vec<u8>>);

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprinter(***)")
    }
}

impl Fingerprinter {
    /// A fingerprinter keyed with `key` (at least 32 bytes of randomness, kept on the node).
    pub fn new(key: &[u8]) -> Self {
        Self(Zeroizing::new(key.to_vec()))
    }

    /// The fingerprinter of the key file at `path`; `None` when it cannot be read or is
    /// shorter than 32 bytes.
    pub fn read(path: &Path) -> Option<Self> {
        let key = Zeroizing::new(std::fs::read(path).ok()?);
        (key.len() >= 32).then(|| Self::new(&key))
    }

    /// `hmac-sha256:<hex>` of `value`.
    pub fn of(&self, value: &[u8]) -> String {
        // An HMAC accepts keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(value);
        let out = mac.finalize().into_bytes();
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        format!("hmac-sha256:{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_seconds_are_dropped_as_go_does() {
        for (given, want) in [
            ("2022-03-15T22:11:15Z", "2022-03-15T22:11:15Z"),
            ("2024-01-01T00:00:00.123456Z", "2024-01-01T00:00:00Z"),
            ("2024-01-01T00:00:00.5+01:00", "2024-01-01T00:00:00+01:00"),
        ] {
            assert_eq!(rfc3339_seconds(given), want);
        }
    }

    #[test]
    fn rules_test_every_key_on_the_path() {
        let suffix = Rule::UnencryptedSuffix("_unencrypted".into());
        assert!(suffix.encrypts(&["a", "b"]));
        assert!(!suffix.encrypts(&["nested_unencrypted", "b"]));
        let regex = Rule::EncryptedRegex(Regex::new("^env$").unwrap());
        assert!(regex.encrypts(&["spec", "env", "DB"]));
        assert!(!regex.encrypts(&["spec", "image"]));
    }

    #[test]
    fn fingerprints_are_keyed() {
        let a = Fingerprinter::new(&[1; 32]);
        let b = Fingerprinter::new(&[2; 32]);
        assert_eq!(a.of(b"x"), a.of(b"x"));
        assert_ne!(a.of(b"x"), a.of(b"y"));
        assert_ne!(a.of(b"x"), b.of(b"x"));
        assert!(a.of(b"x").starts_with("hmac-sha256:"));
        assert_eq!(format!("{a:?}"), "Fingerprinter(***)");
    }
}

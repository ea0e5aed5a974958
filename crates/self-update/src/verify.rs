//! Checking a staged binary: its SHA-256 against the feed, its minisign signature against the
//! pinned public key, and the signature's trusted comment against the release it claims to be.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use minisign_verify::{PublicKey, Signature};
use sha2::{Digest, Sha256};

use crate::{UpdateError, cap};

/// Largest public key file read: a key is two short lines.
const MAX_KEY_FILE: u64 = 4 << 10;

/// The pinned release key and its id.
pub(crate) struct TrustedKey {
    key: PublicKey,
    id: [u8; 8],
}

impl TrustedKey {
    /// The key in `path`, as minisign writes it: the base64 line, optionally after its
    /// `untrusted comment:` line.
    pub(crate) fn load(path: &Path) -> Result<Self, UpdateError> {
        let bad = |reason: String| UpdateError::Key {
            path: path.to_owned(),
            reason,
        };
        let mut text = String::new();
        File::open(path)
            .and_then(|f| f.take(MAX_KEY_FILE + 1).read_to_string(&mut text))
            .map_err(|e| bad(e.to_string()))?;
        if text.len() as u64 > MAX_KEY_FILE {
            return Err(bad("larger than 4 KiB".into()));
        }
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let mut line = lines.next().ok_or_else(|| bad("empty".into()))?;
        if line.starts_with("untrusted comment:") {
            line = lines
                .next()
                .ok_or_else(|| bad("no key after the comment line".into()))?;
        }
        if lines.next().is_some() {
            return Err(bad("more than a key and its comment".into()));
        }
        let key = PublicKey::from_base64(line)
            .map_err(|e| bad(format!("not a minisign public key: {e}")))?;
        // minisign's public key: 2 bytes of algorithm, 8 of key id, 32 of Ed25519 key; the
        // crate checked the length, and this decode repeats its own.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(line)
            .map_err(|e| bad(format!("not a minisign public key: {e}")))?;
        let id = key_id(&raw).ok_or_else(|| bad("not a minisign public key".into()))?;
        Ok(Self { key, id })
    }

    /// The key id as minisign prints it (uppercase hex).
    pub(crate) fn id(&self) -> String {
        print_key_id(self.id)
    }

    /// Verifies that `signature_text` (a `.minisig` file) signs the file at `path` with this
    /// key and carries exactly `trusted_comment`, and that the file's SHA-256 is `sha256`;
    /// the file is read once for both.
    ///
    /// The checksum is checked first, so a corrupted download is reported as such rather
    /// than as a bad signature; every check must pass.
    pub(crate) fn verify_file(
        &self,
        path: &Path,
        sha256: &[u8; 32],
        signature_text: &[u8],
        trusted_comment: &str,
    ) -> Result<(), UpdateError> {
        let bad_sig = |reason: String| UpdateError::Signature { reason };
        let text = std::str::from_utf8(signature_text)
            .map_err(|_| bad_sig("the signature file is not text".into()))?;
        let signature = Signature::decode(text)
            .map_err(|e| bad_sig(format!("not a minisign signature: {e}")))?;
        // The signature's second line: 2 bytes of algorithm, 8 of key id, 64 of signature
        // (decode above checked its shape, so the line is there).
        let signed_by = text
            .lines()
            .nth(1)
            .and_then(|l| {
                base64::engine::general_purpose::STANDARD
                    .decode(l.trim())
                    .ok()
            })
            .and_then(|raw| key_id(&raw))
            .ok_or_else(|| bad_sig("not a minisign signature".into()))?;
        if signed_by != self.id {
            return Err(UpdateError::UnknownKey {
                key_id: print_key_id(signed_by),
                trusted: self.id(),
            });
        }
        let mut verifier = self.key.verify_stream(&signature).map_err(|e| {
            bad_sig(match e {
                minisign_verify::Error::UnsupportedLegacyMode => {
                    "a legacy (non-prehashed) signature: sign with minisign's default mode".into()
                }
                other => other.to_string(),
            })
        })?;
        let mut hasher = Sha256::new();
        let mut file =
            File::open(path).map_err(|e| UpdateError::io(format!("read {}", path.display()), e))?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UpdateError::io(format!("read {}", path.display()), e)),
            };
            hasher.update(&buf[..n]);
            verifier.update(&buf[..n]);
        }
        let actual: [u8; 32] = hasher.finalize().into();
        if &actual != sha256 {
            return Err(UpdateError::Checksum {
                expected: crate::feed::encode_hex(sha256),
                actual: crate::feed::encode_hex(&actual),
            });
        }
        verifier
            .finalize()
            .map_err(|e| bad_sig(format!("does not verify: {e}")))?;
        // Only now is the trusted comment known to come from the key holder.
        if signature.trusted_comment() != trusted_comment {
            return Err(UpdateError::TrustedComment {
                expected: trusted_comment.to_owned(),
                found: cap(signature.trusted_comment()),
            });
        }
        Ok(())
    }
}

/// The key id in a decoded minisign key or signature line (bytes 2..10).
fn key_id(raw: &[u8]) -> Option<[u8; 8]> {
    raw.get(2..10)?.try_into().ok()
}

/// A key id as minisign prints it: the 8 bytes read as a little-endian number, in uppercase
/// hex without leading zeros (minisign's `%" PRIX64 "`), so it can be compared with the
/// `minisign public key ...` comment line.
fn print_key_id(id: [u8; 8]) -> String {
    format!("{:X}", u64::from_le_bytes(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_key_ids_as_minisign_does() {
        assert_eq!(
            print_key_id(0xC38B_A4D8_BE40_22A0u64.to_le_bytes()),
            "C38BA4D8BE4022A0"
        );
        assert_eq!(
            print_key_id(0x02DE_F5FF_D64E_C65Bu64.to_le_bytes()),
            "2DEF5FFD64EC65B"
        );
    }
}

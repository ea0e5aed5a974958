//! SOPS values: the `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` text and its AES-256-GCM.
//!
//! SOPS uses a 32-byte IV, not GCM's usual 12, and authenticates each value with its key
//! path as additional data, so a value moved to another key fails its tag.

use aes_gcm::AesGcm;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::generic_array::typenum::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::Plaintext;

/// AES-256-GCM with SOPS' 32-byte nonce.
type SopsGcm = AesGcm<Aes256, U32>;

/// The type a SOPS value decrypts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Text.
    Str,
    /// An integer, in decimal.
    Int,
    /// A float, in Go's shortest form.
    Float,
    /// `True` or `False`.
    Bool,
    /// Raw bytes.
    Bytes,
    /// An RFC 3339 timestamp.
    Time,
    /// A YAML comment (never part of the MAC).
    Comment,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "str" => Kind::Str,
            "int" => Kind::Int,
            "float" => Kind::Float,
            "bool" => Kind::Bool,
            "bytes" => Kind::Bytes,
            "time" => Kind::Time,
            "comment" => Kind::Comment,
            _ => return None,
        })
    }
}

/// The parts of an `ENC[...]` value, decoded.
#[derive(Clone)]
pub struct Sealed {
    data: Vec<u8>,
    iv: [u8; 32],
    tag: [u8; 16],
    /// What the plaintext is.
    pub kind: Kind,
}

/// Only the type is printed: the ciphertext is no one's business in a log.
impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ENC[{:?},***]", self.kind)
    }
}

/// Whether `s` is written as a SOPS value at all (it may still be malformed).
pub fn looks_sealed(s: &str) -> bool {
    s.starts_with("ENC[")
}

impl Sealed {
    /// Parses an `ENC[...]` value. The error says what is wrong with its shape, never what
    /// it holds.
    ///
    /// # Errors
    /// When `s` is not a well-formed SOPS AES256_GCM value.
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some(body) = s.strip_prefix("ENC[") else {
            return Err("not a SOPS value (`ENC[...]`)".into());
        };
        let Some(body) = body.strip_suffix(']') else {
            return Err("SOPS value is not closed by `]`".into());
        };
        let mut parts = body.split(',');
        if parts.next() != Some("AES256_GCM") {
            return Err("SOPS value must use AES256_GCM".into());
        }
        let (mut data, mut iv, mut tag, mut kind) = (None, None, None, None);
        for part in parts {
            let Some((k, v)) = part.split_once(':') else {
                return Err("SOPS value has a field without `:`".into());
            };
            let slot = match k {
                "data" => &mut data,
                "iv" => &mut iv,
                "tag" => &mut tag,
                "type" => &mut kind,
                _ => return Err("SOPS value has an unknown field".into()),
            };
            if slot.replace(v).is_some() {
                return Err("SOPS value repeats a field".into());
            }
        }
        let decode = |field: &str, v: Option<&str>| -> Result<Vec<u8>, String> {
            let v = v.ok_or_else(|| format!("SOPS value lacks `{field}`"))?;
            STANDARD
                .decode(v)
                .map_err(|_| format!("SOPS `{field}` is not valid base64"))
        };
        let data = decode("data", data)?;
        let iv = decode("iv", iv)?;
        let tag = decode("tag", tag)?;
        let iv: [u8; 32] = iv
            .try_into()
            .map_err(|v: Vec<u8>| format!("SOPS `iv` must be 32 bytes, found {}", v.len()))?;
        let tag: [u8; 16] = tag
            .try_into()
            .map_err(|v: Vec<u8>| format!("SOPS `tag` must be 16 bytes, found {}", v.len()))?;
        let kind = kind.ok_or_else(|| "SOPS value lacks `type`".to_owned())?;
        let kind = Kind::parse(kind).ok_or_else(|| "SOPS value has an unknown type".to_owned())?;
        Ok(Self {
            data,
            iv,
            tag,
            kind,
        })
    }

    /// Decrypts with the file's data key; `aad` is the value's key path (`a:b:`).
    ///
    /// `None` when the tag does not verify: a tampered value, a value moved to another key, or
    /// another file's data key.
    pub(crate) fn open(&self, key: &[u8; 32], aad: &str) -> Option<Plaintext> {
        let cipher = SopsGcm::new(GenericArray::from_slice(key));
        let mut msg = Vec::with_capacity(self.data.len() + self.tag.len());
        msg.extend_from_slice(&self.data);
        msg.extend_from_slice(&self.tag);
        cipher
            .decrypt(
                GenericArray::from_slice(&self.iv),
                Payload {
                    msg: &msg,
                    aad: aad.as_bytes(),
                },
            )
            .ok()
            .map(Plaintext::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_checked_without_quoting_the_value() {
        let iv = STANDARD.encode([0u8; 32]);
        let tag = STANDARD.encode([0u8; 16]);
        let ok = format!("ENC[AES256_GCM,data:AAAA,iv:{iv},tag:{tag},type:str]");
        assert_eq!(Sealed::parse(&ok).unwrap().kind, Kind::Str);
        for (bad, why) in [
            ("plain".to_owned(), "not a SOPS value (`ENC[...]`)"),
            (
                "ENC[AES256_GCM,data:AAAA".to_owned(),
                "SOPS value is not closed by `]`",
            ),
            (
                "ENC[PGP,data:AAAA]".to_owned(),
                "SOPS value must use AES256_GCM",
            ),
            (
                ok.replace("type:str", "type:blob"),
                "SOPS value has an unknown type",
            ),
            (ok.replace(",type:str", ""), "SOPS value lacks `type`"),
            (
                ok.replace("data:AAAA", "data:A!A="),
                "SOPS `data` is not valid base64",
            ),
            (
                ok.replace(&iv, &STANDARD.encode([0u8; 12])),
                "SOPS `iv` must be 32 bytes, found 12",
            ),
            (
                ok.replace("type:str", "type:str,x:1"),
                "SOPS value has an unknown field",
            ),
            (
                ok.replace("type:str", "type:str,type:int"),
                "SOPS value repeats a field",
            ),
        ] {
            assert_eq!(Sealed::parse(&bad).err().as_deref(), Some(why), "{bad}");
        }
    }
}

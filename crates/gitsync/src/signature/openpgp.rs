//! OpenPGP public keyrings and checking an OpenPGP commit signature against them: which key
//! or subkey made it, and whether that key was bound, unexpired and unrevoked when it signed.

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{RevocationCode, Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, Tag};

use super::{MAX_KEYRING, SignatureKind, SignatureRefusal, Signer, Trust};

/// Parses an armoured (one or more blocks) or binary keyring; errors name the block's line
/// or the key's position.
pub(super) fn parse_keyring(bytes: &[u8], name: &str) -> Result<Vec<SignedPublicKey>, String> {
    if bytes.len() > MAX_KEYRING {
        return Err(format!("{name}: larger than the {MAX_KEYRING}-byte cap"));
    }
    let Some(&first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err(format!("{name}: empty"));
    };
    let mut keys = Vec::new();
    if first & 0x80 != 0 {
        // Binary: OpenPGP packets begin with the high bit set; text never does here.
        let parsed = SignedPublicKey::from_bytes_many(bytes).map_err(|e| {
            format!(
                "{name}: not an OpenPGP keyring: {}",
                super::library_says(&e)
            )
        })?;
        for (i, key) in parsed.enumerate() {
            let key =
                key.map_err(|e| format!("{name}: key {}: {}", i + 1, super::library_says(&e)))?;
            check_certificate(&key).map_err(|e| format!("{name}: key {}: {e}", i + 1))?;
            keys.push(key);
        }
    } else {
        for (line, block) in armour_blocks(bytes).map_err(|e| format!("{name}:{e}"))? {
            let (parsed, _headers) = SignedPublicKey::from_armor_many(block)
                .map_err(|e| format!("{name}:{line}: {}", super::library_says(&e)))?;
            for key in parsed {
                let key = key.map_err(|e| format!("{name}:{line}: {}", super::library_says(&e)))?;
                check_certificate(&key).map_err(|e| format!("{name}:{line}: {e}"))?;
                keys.push(key);
            }
        }
    }
    if keys.is_empty() {
        return Err(format!("{name}: no OpenPGP public key"));
    }
    Ok(keys)
}

/// The public key blocks of an armoured file with the line each begins on; text between
/// blocks is ignored, as gpg ignores it. Errors read `line: why`.
fn armour_blocks(bytes: &[u8]) -> Result<Vec<(usize, &[u8])>, String> {
    const BEGIN: &[u8] = b"-----BEGIN PGP PUBLIC KEY BLOCK-----";
    const END: &[u8] = b"-----END PGP PUBLIC KEY BLOCK-----";
    let mut blocks = Vec::new();
    let mut open: Option<(usize, usize)> = None;
    let mut offset = 0;
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let start = offset;
        offset += line.len() + 1;
        let text = line.trim_ascii();
        match open {
            None if text == BEGIN => open = Some((i + 1, start)),
            None if text.starts_with(b"-----BEGIN PGP PRIVATE KEY BLOCK") => {
                return Err(format!(
                    "{}: a private key; give public keys only (gpg --armor --export)",
                    i + 1
                ));
            }
            None if text.starts_with(b"-----BEGIN ") => {
                return Err(format!("{}: not an OpenPGP public key block", i + 1));
            }
            Some((first, from)) if text == END => {
                blocks.push((first, &bytes[from..offset.min(bytes.len())]));
                open = None;
            }
            _ => {}
        }
    }
    if let Some((first, _)) = open {
        return Err(format!("{first}: the key block has no END line"));
    }
    if blocks.is_empty() {
        return Err("1: no \"-----BEGIN PGP PUBLIC KEY BLOCK-----\" found".to_owned());
    }
    Ok(blocks)
}

/// A keyring entry must at least be bound to itself: one valid self-signature.
fn check_certificate(key: &SignedPublicKey) -> Result<(), String> {
    if newest_self_signature(key).is_none() {
        return Err(format!(
            "key {:X} has no valid self-signature",
            key.primary_key.fingerprint()
        ));
    }
    Ok(())
}

/// Checks one armoured OpenPGP signature over `data`: exactly one signature packet over
/// binary or text data with a strong hash, by a trusted primary key or signing subkey valid
/// at the signature's creation time.
pub(super) fn verify_openpgp(
    armour: &[u8],
    data: &[u8],
    trust: &Trust,
) -> Result<Signer, SignatureRefusal> {
    let malformed = |e: pgp::errors::Error| {
        SignatureRefusal::Malformed(format!("OpenPGP: {}", super::library_says(&e)))
    };
    let (parsed, _headers) = DetachedSignature::from_armor_many(armour).map_err(malformed)?;
    let mut only = None;
    for sig in parsed {
        let sig = sig.map_err(malformed)?;
        if only.replace(sig.signature).is_some() {
            return Err(SignatureRefusal::Unsupported(
                "more than one OpenPGP signature in one block".to_owned(),
            ));
        }
    }
    let Some(sig) = only else {
        return Err(SignatureRefusal::Malformed(
            "the OpenPGP armour holds no signature orun can read".to_owned(),
        ));
    };
    match sig.typ() {
        Some(SignatureType::Binary | SignatureType::Text) => {}
        other => {
            return Err(SignatureRefusal::Malformed(format!(
                "an OpenPGP signature of type {other:?} is not a signature over data"
            )));
        }
    }
    match sig.hash_alg() {
        Some(
            HashAlgorithm::Sha256
            | HashAlgorithm::Sha384
            | HashAlgorithm::Sha512
            | HashAlgorithm::Sha224
            | HashAlgorithm::Sha3_256
            | HashAlgorithm::Sha3_512,
        ) => {}
        Some(weak) => {
            return Err(SignatureRefusal::Unsupported(format!(
                "OpenPGP signatures over the hash {weak}"
            )));
        }
        None => {
            return Err(SignatureRefusal::Unsupported(
                "OpenPGP signature version".into(),
            ));
        }
    }
    let Some(created) = sig.created() else {
        return Err(SignatureRefusal::Malformed(
            "the OpenPGP signature has no creation time".to_owned(),
        ));
    };
    let at = i64::from(created.as_secs());
    let fingerprints = sig.issuer_fingerprint();
    let key_ids = sig.issuer_key_id();
    let issuer = match (fingerprints.first(), key_ids.first()) {
        (Some(fp), _) => format!("{fp:X}"),
        (None, Some(id)) => hex_upper(id.as_ref()),
        (None, None) => {
            return Err(SignatureRefusal::Malformed(
                "the OpenPGP signature names no issuer key".to_owned(),
            ));
        }
    };
    let names = |k: &dyn KeyDetails| {
        fingerprints.iter().any(|&f| *f == k.fingerprint())
            || key_ids.iter().any(|&id| *id == k.legacy_key_id())
    };
    // A refusal from a key whose signature verified outranks one from a key that did not.
    let mut best: Option<(bool, SignatureRefusal)> = None;
    let mut note = |verified: bool, refusal: SignatureRefusal| {
        if best.as_ref().is_none_or(|(v, _)| verified && !v) {
            best = Some((verified, refusal));
        }
    };
    for cert in &trust.openpgp {
        if names(&cert.primary_key) {
            let fingerprint = format!("{:X}", cert.primary_key.fingerprint());
            if sig.verify(&cert.primary_key, data).is_err() {
                note(false, bad_openpgp(fingerprint));
            } else {
                match primary_valid(cert, at, true) {
                    Ok(principal) => {
                        return Ok(Signer {
                            kind: SignatureKind::OpenPgp,
                            principal,
                            fingerprint,
                        });
                    }
                    Err(refusal) => note(true, refusal),
                }
            }
        }
        for sub in &cert.public_subkeys {
            if !names(&sub.key) {
                continue;
            }
            let fingerprint = format!("{:X}", sub.key.fingerprint());
            if sig.verify(&sub.key, data).is_err() {
                note(false, bad_openpgp(fingerprint));
                continue;
            }
            match subkey_valid(cert, sub, at) {
                Ok(principal) => {
                    return Ok(Signer {
                        kind: SignatureKind::OpenPgp,
                        principal,
                        fingerprint,
                    });
                }
                Err(refusal) => note(true, refusal),
            }
        }
    }
    Err(best.map_or(
        SignatureRefusal::UnknownKey {
            kind: SignatureKind::OpenPgp,
            fingerprint: issuer,
        },
        |(_, refusal)| refusal,
    ))
}

fn bad_openpgp(fingerprint: String) -> SignatureRefusal {
    SignatureRefusal::BadSignature {
        kind: SignatureKind::OpenPgp,
        fingerprint,
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The self-signature that says what the primary key is for and when it expires: the newest
/// valid user id certification or direct key signature (as gpg reads it).
fn newest_self_signature(cert: &SignedPublicKey) -> Option<&Signature> {
    let primary = &cert.primary_key;
    let certifications = cert.details.users.iter().flat_map(|user| {
        user.signatures.iter().filter(move |s| {
            s.typ() != Some(SignatureType::CertRevocation)
                && s.is_certification()
                && s.verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
        })
    });
    let direct = cert
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::Key) && s.verify_key(primary).is_ok());
    certifications
        .chain(direct)
        .max_by_key(|s| s.created().map(|t| t.as_secs()))
}

/// The primary key's user id to name the signer by: a valid, unrevoked one marked primary,
/// else the first valid one.
fn principal(cert: &SignedPublicKey) -> String {
    let primary = &cert.primary_key;
    let valid = cert.details.users.iter().filter(|user| {
        let certified = |typ: SignatureType| {
            user.signatures.iter().any(|s| {
                s.typ() == Some(typ)
                    && s.verify_certification(primary, Tag::UserId, &user.id)
                        .is_ok()
            })
        };
        !certified(SignatureType::CertRevocation)
            && [
                SignatureType::CertPositive,
                SignatureType::CertGeneric,
                SignatureType::CertCasual,
                SignatureType::CertPersona,
            ]
            .into_iter()
            .any(certified)
    });
    let users: Vec<_> = valid.collect();
    users
        .iter()
        .find(|u| u.is_primary())
        .or(users.first())
        .map_or_else(
            || "(no user id)".to_owned(),
            |u| String::from_utf8_lossy(u.id.id()).into_owned(),
        )
}

/// Whether the primary key was valid at `at` (created, not expired, not revoked) and, when
/// it made the signature itself, certified for signing. Gives the signer's user id.
fn primary_valid(
    cert: &SignedPublicKey,
    at: i64,
    signs_itself: bool,
) -> Result<String, SignatureRefusal> {
    let primary = &cert.primary_key;
    let fingerprint = format!("{:X}", primary.fingerprint());
    let created = i64::from(primary.created_at().as_secs());
    let revocations =
        cert.details.revocation_signatures.iter().filter(|s| {
            s.typ() == Some(SignatureType::KeyRevocation) && s.verify_key(primary).is_ok()
        });
    revoked(revocations, at, &fingerprint)?;
    let Some(binding) = newest_self_signature(cert) else {
        return Err(SignatureRefusal::Unsupported(format!(
            "OpenPGP key {fingerprint} has no valid self-signature"
        )));
    };
    valid_period(binding, created, at, &fingerprint)?;
    if signs_itself && declares_flags(binding) && !binding.key_flags().sign() {
        return Err(SignatureRefusal::Unsupported(format!(
            "OpenPGP key {fingerprint} is not certified for signing"
        )));
    }
    Ok(principal(cert))
}

/// Whether a signing subkey was valid at `at`: its primary valid, bound by the primary for
/// signing with the subkey's back-signature, not expired, not revoked.
fn subkey_valid(
    cert: &SignedPublicKey,
    sub: &SignedPublicSubKey,
    at: i64,
) -> Result<String, SignatureRefusal> {
    let principal = primary_valid(cert, at, false)?;
    let primary = &cert.primary_key;
    let fingerprint = format!("{:X}", sub.key.fingerprint());
    let by_primary = |s: &&Signature, typ| {
        s.typ() == Some(typ) && s.verify_subkey_binding(primary, &sub.key).is_ok()
    };
    let revocations = sub
        .signatures
        .iter()
        .filter(|s| by_primary(s, SignatureType::SubkeyRevocation));
    revoked(revocations, at, &fingerprint)?;
    let binding = sub
        .signatures
        .iter()
        .filter(|s| by_primary(s, SignatureType::SubkeyBinding))
        .max_by_key(|s| s.created().map(|t| t.as_secs()));
    let Some(binding) = binding else {
        return Err(SignatureRefusal::Unsupported(format!(
            "OpenPGP subkey {fingerprint} is not bound to its primary key"
        )));
    };
    // A signing subkey must sign its primary back, or anyone could claim someone's subkey.
    let backsigned = binding
        .embedded_signature()
        .is_some_and(|b| b.verify_primary_key_binding(&sub.key, primary).is_ok());
    if !binding.key_flags().sign() || !backsigned {
        return Err(SignatureRefusal::Unsupported(format!(
            "OpenPGP subkey {fingerprint} is not certified for signing"
        )));
    }
    let created = i64::from(sub.key.created_at().as_secs());
    valid_period(binding, created, at, &fingerprint)?;
    Ok(principal)
}

/// Whether a self-signature carries a key flags subpacket at all (old keys may not, and are
/// then usable for anything).
fn declares_flags(sig: &Signature) -> bool {
    sig.config().is_some_and(|c| {
        c.hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    })
}

/// Refuses a key created after `at` or expired by then, per its binding signature.
fn valid_period(
    binding: &Signature,
    created: i64,
    at: i64,
    fingerprint: &str,
) -> Result<(), SignatureRefusal> {
    if at < created {
        return Err(SignatureRefusal::NotYetValid {
            kind: SignatureKind::OpenPgp,
            fingerprint: fingerprint.to_owned(),
            valid_from: created,
            at,
        });
    }
    let lifetime = binding.key_expiration_time().map_or(0, |d| d.as_secs());
    // Zero means "does not expire".
    if lifetime > 0 {
        let expired = created.saturating_add(i64::from(lifetime));
        if at >= expired {
            return Err(SignatureRefusal::Expired {
                kind: SignatureKind::OpenPgp,
                fingerprint: fingerprint.to_owned(),
                expired,
                at,
            });
        }
    }
    Ok(())
}

/// A revocation retiring or superseding a key stops signatures made after it; any other
/// (compromise, or no reason) stops every signature, as the key may have been stolen long
/// before.
fn revoked<'a>(
    revocations: impl Iterator<Item = &'a Signature>,
    at: i64,
    fingerprint: &str,
) -> Result<(), SignatureRefusal> {
    for rev in revocations {
        let since = rev.created().map_or(0, |t| i64::from(t.as_secs()));
        let (soft, words) = match rev.revocation_reason_code() {
            Some(RevocationCode::KeySuperseded) => (true, "superseded"),
            Some(RevocationCode::KeyRetired) => (true, "retired"),
            Some(RevocationCode::KeyCompromised) => (false, "compromised"),
            _ => (false, "no reason given"),
        };
        if !soft || at >= since {
            let text = rev
                .revocation_reason_string()
                .map(|s| String::from_utf8_lossy(s).trim().to_owned())
                .filter(|s| !s.is_empty());
            return Err(SignatureRefusal::Revoked {
                fingerprint: fingerprint.to_owned(),
                reason: match text {
                    Some(text) => format!("{words}: {text}"),
                    None => words.to_owned(),
                },
            });
        }
    }
    Ok(())
}

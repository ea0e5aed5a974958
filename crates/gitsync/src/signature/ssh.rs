//! Git's allowed signers file (`gpg.ssh.allowedSignersFile`, as `ssh-keygen` reads it) and
//! checking an SSHSIG commit signature against it.

use std::collections::BTreeSet;

use ssh_key::{Algorithm, HashAlg, PublicKey, SshSig};

use super::{
    MAX_ALLOWED_SIGNERS, MAX_ALLOWED_SIGNERS_LINES, SignatureKind, SignatureRefusal, Signer, Trust,
    civil_from_days, days_from_civil,
};

/// The only SSHSIG namespace a commit signature may use, as `git` signs and verifies.
const NAMESPACE: &str = "git";
/// Smallest RSA modulus accepted, in bytes (2048 bits, ssh-key's own floor for verifying).
const MIN_RSA_BYTES: usize = 256;

/// One line of an allowed signers file.
#[derive(Clone, Debug)]
pub(super) struct AllowedSigner {
    pub(super) principals: String,
    /// The `namespaces=` pattern list, if the line restricts them.
    pub(super) namespaces: Option<String>,
    pub(super) valid_after: Option<i64>,
    pub(super) valid_before: Option<i64>,
    pub(super) key: PublicKey,
    pub(super) fingerprint: String,
}

/// A line's complaint, at most 200 bytes: it may quote the line (an unknown option, a bad
/// time), and a line of the file can be a megabyte long (found by the `commit_signature`
/// fuzz target).
fn bounded(why: &str) -> String {
    if why.len() <= 200 {
        return why.to_owned();
    }
    let mut end = 200;
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &why[..end])
}

/// Parses an allowed signers file; errors read `{name}:{line}: why`.
pub(super) fn parse_allowed_signers(text: &str, name: &str) -> Result<Vec<AllowedSigner>, String> {
    if text.len() > MAX_ALLOWED_SIGNERS {
        return Err(format!(
            "{name}: larger than the {MAX_ALLOWED_SIGNERS}-byte cap"
        ));
    }
    let mut signers = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if i >= MAX_ALLOWED_SIGNERS_LINES {
            return Err(format!(
                "{name}: more than {MAX_ALLOWED_SIGNERS_LINES} lines"
            ));
        }
        match parse_signer_line(line) {
            Ok(Some(signer)) => signers.push(signer),
            Ok(None) => {}
            Err(why) => return Err(format!("{name}:{}: {}", i + 1, bounded(&why))),
        }
    }
    Ok(signers)
}

/// Splits `s` at its first space or tab.
fn word(s: &str) -> (&str, &str) {
    s.split_once([' ', '\t']).unwrap_or((s, ""))
}

fn skip_blanks(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// The key types an allowed signers line may name: those OpenSSH signs with. Whether each is
/// checked is decided once the key is parsed.
fn is_key_type(token: &str) -> bool {
    matches!(
        token,
        "ssh-ed25519"
            | "ssh-rsa"
            | "ssh-dss"
            | "ecdsa-sha2-nistp256"
            | "ecdsa-sha2-nistp384"
            | "ecdsa-sha2-nistp521"
            | "sk-ssh-ed25519@openssh.com"
            | "sk-ecdsa-sha2-nistp256@openssh.com"
    ) || token.ends_with("-cert-v01@openssh.com")
}

/// One line: `None` for a blank line or a comment.
pub(super) fn parse_signer_line(line: &str) -> Result<Option<AllowedSigner>, String> {
    let line = skip_blanks(line.strip_suffix('\r').unwrap_or(line));
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    // Principals: one word, or a double-quoted list (which may then hold blanks).
    let (principals, rest) = if let Some(quoted) = line.strip_prefix('"') {
        let (inside, after) = quoted
            .split_once('"')
            .ok_or("the quoted principals have no closing quote")?;
        if !(after.is_empty() || after.starts_with([' ', '\t'])) {
            return Err("a blank must follow the quoted principals".to_owned());
        }
        (inside, after)
    } else {
        word(line)
    };
    if principals.is_empty() || principals.split(',').any(str::is_empty) {
        return Err("empty principal".to_owned());
    }
    let rest = skip_blanks(rest);
    if rest.is_empty() {
        return Err("no key after the principals".to_owned());
    }
    // As ssh-keygen: a key type here means no options; anything else is the options.
    let (options, rest) = if is_key_type(word(rest).0) {
        (None, rest)
    } else {
        let (options, after) = options_token(rest)?;
        (Some(options), skip_blanks(after))
    };
    let options = match options {
        Some(options) => parse_options(options)?,
        None => Options::default(),
    };
    let (key_type, rest) = word(rest);
    if key_type.is_empty() {
        return Err("no key after the options".to_owned());
    }
    if key_type.ends_with("-cert-v01@openssh.com") {
        return Err(format!(
            "{key_type} is a certificate; list the signer's plain public key"
        ));
    }
    if !is_key_type(key_type) {
        return Err(format!("unknown key type {key_type:?}"));
    }
    let (base64, _comment) = word(skip_blanks(rest));
    if base64.is_empty() {
        return Err(format!("no key data after {key_type}"));
    }
    let key = PublicKey::from_openssh(&format!("{key_type} {base64}"))
        .map_err(|e| format!("invalid {key_type} key: {}", super::library_says(&e)))?;
    check_ssh_key(&key)?;
    Ok(Some(AllowedSigner {
        principals: principals.to_owned(),
        namespaces: options.namespaces,
        valid_after: options.valid_after,
        valid_before: options.valid_before,
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        key,
    }))
}

/// The options word: up to the first blank outside double quotes.
fn options_token(s: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return Ok((&s[..i], &s[i..])),
            _ => {}
        }
    }
    if quoted {
        return Err("an option's quoted value has no closing quote".to_owned());
    }
    Ok((s, ""))
}

/// What a line's options say.
#[derive(Default)]
struct Options {
    namespaces: Option<String>,
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

fn parse_options(options: &str) -> Result<Options, String> {
    let mut out = Options::default();
    // Split at commas outside quotes: `namespaces="git,file"` is one option.
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in options.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&options[start..]);
    let mut seen = BTreeSet::new();
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n, Some(unquote(v)?)),
            None => (part, None),
        };
        let lower = name.to_ascii_lowercase();
        if !seen.insert(lower.clone()) {
            return Err(format!("option {name:?} given twice"));
        }
        let value_of = |v: Option<&str>| {
            v.filter(|v| !v.is_empty())
                .ok_or_else(|| format!("option {name:?} needs a value"))
                .map(str::to_owned)
        };
        match lower.as_str() {
            "cert-authority" => {
                return Err(
                    "cert-authority lines are not supported: orun trusts signers' own \
                            keys, not certificate authorities; list each signer's key instead"
                        .to_owned(),
                );
            }
            "namespaces" => out.namespaces = Some(value_of(value)?),
            "valid-after" => out.valid_after = Some(parse_time(&value_of(value)?)?),
            "valid-before" => out.valid_before = Some(parse_time(&value_of(value)?)?),
            "" => return Err("empty option".to_owned()),
            _ => return Err(format!("unknown option {name:?} (or unknown key type)")),
        }
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<&str, String> {
    match v.strip_prefix('"') {
        Some(inner) => inner
            .strip_suffix('"')
            .filter(|i| !i.contains('"'))
            .ok_or_else(|| format!("badly quoted option value {v:?}")),
        None if v.contains('"') => Err(format!("badly quoted option value {v:?}")),
        None => Ok(v),
    }
}

/// Refuses keys that ssh-key cannot verify with, so such a line fails at load instead of
/// every signature by it reading as forged.
fn check_ssh_key(key: &PublicKey) -> Result<(), String> {
    let data = key.key_data();
    if let Some(rsa) = data.rsa() {
        let bytes = rsa.n.as_positive_bytes().map_or(0, <[u8]>::len);
        if bytes < MIN_RSA_BYTES {
            return Err(format!(
                "RSA key of {} bits: orun requires at least 2048",
                bytes * 8
            ));
        }
        return Ok(());
    }
    match data.algorithm() {
        Algorithm::Ed25519
        | Algorithm::Ecdsa { .. }
        | Algorithm::SkEd25519
        | Algorithm::SkEcdsaSha2NistP256 => Ok(()),
        other => Err(format!("{} keys are not supported", other.as_str())),
    }
}

/// `YYYYMMDD[HHMM[SS]]Z`, as ssh-keygen reads `valid-after`/`valid-before`. ssh-keygen reads
/// a time without `Z` in the host's time zone; orun refuses it rather than guess that zone.
pub(super) fn parse_time(value: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "invalid time {value:?}: expected YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS ending \
             in Z (UTC)"
        )
    };
    let Some(digits) = value.strip_suffix(['Z', 'z']) else {
        return Err(format!(
            "time {value:?} has no time zone: add Z and give it in UTC (orun does not read \
             times in the host's local zone)"
        ));
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| digits.get(r).and_then(|s| s.parse::<i64>().ok());
    let (y, mo, d) = (num(0..4), num(4..6), num(6..8));
    let (h, mi, s) = (
        num(8..10).unwrap_or(0),
        num(10..12).unwrap_or(0),
        num(12..14).unwrap_or(0),
    );
    let (Some(y), Some(mo), Some(d)) = (y, mo, d) else {
        return Err(bad());
    };
    let days = days_from_civil(y, mo, d);
    if !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || civil_from_days(days) != (y, mo, d)
        || h > 23
        || mi > 59
        || s > 59
    {
        return Err(bad());
    }
    Ok(days * 86_400 + h * 3_600 + mi * 60 + s)
}

/// OpenSSH's `match_pattern_list` for one name: comma-separated `*`/`?` patterns, a `!`
/// pattern that matches vetoes.
pub(super) fn matches_pattern_list(name: &str, list: &str) -> bool {
    let mut positive = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if glob(pattern.as_bytes(), name.as_bytes()) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `*` and `?` wildcard match, iterative so a hostile pattern costs at most
/// pattern × text steps, with no recursion.
pub(super) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Checks one armoured SSHSIG over `data`: by a key in the allowed signers, for namespace
/// `git`, cryptographically valid, and accepted by one of that key's lines at `commit_time`.
pub(super) fn verify_ssh(
    armour: &[u8],
    data: &[u8],
    commit_time: i64,
    trust: &Trust,
) -> Result<Signer, SignatureRefusal> {
    let sig = SshSig::from_pem(armour.trim_ascii()).map_err(|e| {
        SignatureRefusal::Malformed(format!("SSH signature: {}", super::library_says(&e)))
    })?;
    let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256).to_string();
    let lines: Vec<&AllowedSigner> = trust
        .ssh
        .iter()
        .filter(|s| s.key.key_data() == sig.public_key())
        .collect();
    let Some(first) = lines.first() else {
        return Err(SignatureRefusal::UnknownKey {
            kind: SignatureKind::Ssh,
            fingerprint,
        });
    };
    if sig.namespace() != NAMESPACE {
        return Err(SignatureRefusal::WrongNamespace {
            fingerprint,
            namespace: sig.namespace().to_owned(),
            trusted_for: None,
        });
    }
    // The same key on every matching line: one cryptographic check serves them all.
    first
        .key
        .verify(NAMESPACE, data, &sig)
        .map_err(|e| match e {
            ssh_key::Error::AlgorithmUnsupported { algorithm } => SignatureRefusal::Unsupported(
                format!("SSH signature algorithm {}", algorithm.as_str()),
            ),
            _ => SignatureRefusal::BadSignature {
                kind: SignatureKind::Ssh,
                fingerprint: fingerprint.clone(),
            },
        })?;
    // Any line that trusts this key for `git` at the commit's time accepts it; otherwise the
    // first line's objection is reported.
    let mut objection = None;
    for line in &lines {
        match judge_line(line, commit_time) {
            Ok(()) => {
                return Ok(Signer {
                    kind: SignatureKind::Ssh,
                    principal: line.principals.clone(),
                    fingerprint,
                });
            }
            Err(refusal) => {
                objection.get_or_insert(refusal);
            }
        }
    }
    Err(objection.unwrap_or(SignatureRefusal::UnknownKey {
        kind: SignatureKind::Ssh,
        fingerprint,
    }))
}

/// Whether one allowed signers line accepts a `git` signature at `time` (ssh-keygen's rules:
/// `valid-after` inclusive, `valid-before` inclusive).
pub(super) fn judge_line(line: &AllowedSigner, time: i64) -> Result<(), SignatureRefusal> {
    if let Some(list) = &line.namespaces
        && !matches_pattern_list(NAMESPACE, list)
    {
        return Err(SignatureRefusal::WrongNamespace {
            fingerprint: line.fingerprint.clone(),
            namespace: NAMESPACE.to_owned(),
            trusted_for: Some(list.clone()),
        });
    }
    if let Some(from) = line.valid_after
        && time < from
    {
        return Err(SignatureRefusal::NotYetValid {
            kind: SignatureKind::Ssh,
            fingerprint: line.fingerprint.clone(),
            valid_from: from,
            at: time,
        });
    }
    if let Some(until) = line.valid_before
        && time > until
    {
        return Err(SignatureRefusal::Expired {
            kind: SignatureKind::Ssh,
            fingerprint: line.fingerprint.clone(),
            expired: until,
            at: time,
        });
    }
    Ok(())
}

//! Which keys a node trusts to sign the commits it applies ([`Trust`]), and checking one
//! commit's own signature against them ([`verify_signed_object`], [`crate::Mirror::verify_commit`]).
//!
//! Two kinds of signature are understood, the two `git commit -S` makes: SSH signatures
//! (`gpg.format=ssh`, an SSHSIG in namespace `git`) judged against an allowed signers file, and
//! OpenPGP signatures judged against a public keyring. Both are checked in pure Rust over the
//! bytes Git signed (the commit object without its `gpgsig` header); no `ssh-keygen` or `gpg`
//! runs and no agent or trust database is consulted. A signature copied from another object
//! fails, because the bytes differ. One signature counts once: a `gpgsig` block holding more
//! than one OpenPGP signature, or an SSH armour with trailing data, is refused, not counted.
//!
//! Making the files: for SSH, one line per signer in Git's `gpg.ssh.allowedSignersFile` format,
//! e.g. `dev@example.com namespaces="git" ssh-ed25519 AAAA…` (the key is the signer's
//! `~/.ssh/id_ed25519.pub`; `valid-after=`/`valid-before=` take `YYYYMMDD[HHMM[SS]]Z` and are
//! judged against the commit's committer time; `cert-authority` lines are refused). For
//! OpenPGP, `gpg --armor --export FINGERPRINT… > keyring.asc` (public keys only; several
//! armoured blocks may be concatenated). Either file may be given alone.
//!
//! Inputs are hostile: nothing here panics on them, parsing is linear, and sizes are capped
//! before parsing ([`MAX_SIGNATURE`], [`MAX_KEYRING`], [`MAX_ALLOWED_SIGNERS`] and
//! [`MAX_ALLOWED_SIGNERS_LINES`]).

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::path::Path;

use pgp::composed::SignedPublicKey;

use crate::GitError;

mod openpgp;
mod ssh;

/// What a parsing library said, made fit for a message: its first clause only, at most 160
/// characters, no control characters. Some libraries' errors carry the input they choked
/// on (rpgp's armor errors hold the rest of the block as a byte list): a hostile signature
/// must not be echoed, unbounded, into logs and `/status`.
pub(crate) fn library_says(e: &dyn fmt::Display) -> String {
    let text = e.to_string();
    let cut = text.find(['(', '[', '{', '\n']).unwrap_or(text.len());
    text[..cut]
        .trim_end()
        .chars()
        .filter(|c| !c.is_control())
        .take(160)
        .collect()
}

use openpgp::{parse_keyring, verify_openpgp};
use ssh::{AllowedSigner, parse_allowed_signers, verify_ssh};

/// Largest signature block (the `gpgsig` header) looked at.
pub const MAX_SIGNATURE: usize = 64 << 10;
/// Largest OpenPGP keyring file read.
pub const MAX_KEYRING: usize = 1 << 20;
/// Largest allowed signers file read.
pub const MAX_ALLOWED_SIGNERS: usize = 1 << 20;
/// Most lines an allowed signers file may have.
pub const MAX_ALLOWED_SIGNERS_LINES: usize = 10_000;

/// Which kind of signature a commit carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureKind {
    /// An SSHSIG made by `ssh-keygen -Y sign` (`gpg.format=ssh`).
    Ssh,
    /// An OpenPGP detached signature (`gpg.format=openpgp`, Git's default).
    OpenPgp,
}

impl fmt::Display for SignatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureKind::Ssh => "SSH",
            SignatureKind::OpenPgp => "OpenPGP",
        })
    }
}

/// Who signed a verified commit, for logs and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// SSH or OpenPGP.
    pub kind: SignatureKind,
    /// The allowed signers line's principals, or the key's primary OpenPGP user id.
    pub principal: String,
    /// `SHA256:…` for SSH; the signing (sub)key's fingerprint in upper-case hex for OpenPGP.
    pub fingerprint: String,
}

/// Why a commit's signature is refused. Its `Display` is the predicate of a sentence about
/// the commit ("is not signed"), which [`GitError::Signature`] completes with the commit id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureRefusal {
    /// The commit carries no signature.
    Unsigned,
    /// The signing key is in neither the allowed signers nor the keyring.
    UnknownKey {
        /// SSH or OpenPGP.
        kind: SignatureKind,
        /// The key's fingerprint (or, for an OpenPGP signature naming only a key id, that id).
        fingerprint: String,
    },
    /// The signature does not verify over the commit: it was changed after signing, or the
    /// signature was copied from another object.
    BadSignature {
        /// SSH or OpenPGP.
        kind: SignatureKind,
        /// The trusted key the signature names.
        fingerprint: String,
    },
    /// An SSH signature made for another namespace than `git`, or by a key the allowed
    /// signers trust only for other namespaces.
    WrongNamespace {
        /// The key.
        fingerprint: String,
        /// The signature's namespace.
        namespace: String,
        /// The allowed signers' `namespaces=` list, when that is what excludes `git`.
        trusted_for: Option<String>,
    },
    /// The key had expired (OpenPGP expiry, or the allowed signers' `valid-before`) at the
    /// time the signature is judged at.
    Expired {
        /// SSH or OpenPGP.
        kind: SignatureKind,
        /// The key.
        fingerprint: String,
        /// When it expired (Unix seconds).
        expired: i64,
        /// When the signature dates from: the committer time for SSH (as Git judges it), the
        /// signature's creation time for OpenPGP.
        at: i64,
    },
    /// The key was not valid yet (OpenPGP creation time, or the allowed signers'
    /// `valid-after`) at the time the signature is judged at.
    NotYetValid {
        /// SSH or OpenPGP.
        kind: SignatureKind,
        /// The key.
        fingerprint: String,
        /// When it becomes valid (Unix seconds).
        valid_from: i64,
        /// When the signature dates from, as for [`SignatureRefusal::Expired`].
        at: i64,
    },
    /// The OpenPGP key or subkey is revoked (at the signature's time, for a key retired or
    /// superseded; always, for one compromised or revoked without a reason).
    Revoked {
        /// The key.
        fingerprint: String,
        /// The revocation's reason, in words.
        reason: String,
    },
    /// A signature of a kind or algorithm orun does not check (X.509, DSA, a weak hash, a
    /// key not certified for signing).
    Unsupported(String),
    /// The signature block cannot be parsed.
    Malformed(String),
}

impl fmt::Display for SignatureRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureRefusal::Unsigned => f.write_str("is not signed"),
            SignatureRefusal::UnknownKey { kind, fingerprint } => write!(
                f,
                "is signed by {kind} key {fingerprint} which is not in the {}",
                match kind {
                    SignatureKind::Ssh => "allowed signers",
                    SignatureKind::OpenPgp => "OpenPGP keyring",
                }
            ),
            SignatureRefusal::BadSignature { kind, fingerprint } => write!(
                f,
                "has a {kind} signature by key {fingerprint} that does not match it: the commit \
                 was changed after signing, or the signature was copied from another object"
            ),
            SignatureRefusal::WrongNamespace {
                fingerprint,
                namespace,
                trusted_for: None,
            } => write!(
                f,
                "is signed by SSH key {fingerprint} for the namespace {namespace:?}, not \"git\""
            ),
            SignatureRefusal::WrongNamespace {
                fingerprint,
                trusted_for: Some(list),
                ..
            } => write!(
                f,
                "is signed by SSH key {fingerprint}, which the allowed signers trust only for \
                 the namespaces {list:?}, not \"git\""
            ),
            SignatureRefusal::Expired {
                kind,
                fingerprint,
                expired,
                at,
            } => write!(
                f,
                "is signed by {kind} key {fingerprint}, which expired at {}; the signature dates \
                 from {}",
                utc(*expired),
                utc(*at)
            ),
            SignatureRefusal::NotYetValid {
                kind,
                fingerprint,
                valid_from,
                at,
            } => write!(
                f,
                "is signed by {kind} key {fingerprint}, which is valid only from {}; the \
                 signature dates from {}",
                utc(*valid_from),
                utc(*at)
            ),
            SignatureRefusal::Revoked {
                fingerprint,
                reason,
            } => write!(
                f,
                "is signed by OpenPGP key {fingerprint}, which is revoked ({reason})"
            ),
            SignatureRefusal::Unsupported(what) => {
                write!(f, "has a signature orun cannot check: {what}")
            }
            SignatureRefusal::Malformed(what) => write!(f, "has a malformed signature: {what}"),
        }
    }
}

/// Which keys a node trusts to sign the commits it applies. Loaded from node-local files.
#[derive(Clone)]
pub struct Trust {
    ssh: Vec<AllowedSigner>,
    openpgp: Vec<SignedPublicKey>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Trust({})", self.describe())
    }
}

impl Trust {
    /// Reads the trust files. `allowed_signers`: Git's `gpg.ssh.allowedSignersFile` format
    /// (`principals [options] keytype base64-key [comment]`, see `man ssh-keygen`). Options
    /// `namespaces=` (must match `git` when present), `valid-after=` and `valid-before=`
    /// (judged against the committer time) are honoured; `cert-authority` is refused.
    /// `openpgp_keys`: an armoured or binary OpenPGP public keyring.
    ///
    /// # Errors
    /// [`GitError::Config`] naming the file (and line) when neither file is given, a file
    /// cannot be read, is larger than its cap, or does not parse, and when the files list no
    /// key at all.
    pub fn load(
        allowed_signers: Option<&Path>,
        openpgp_keys: Option<&Path>,
    ) -> Result<Self, GitError> {
        if allowed_signers.is_none() && openpgp_keys.is_none() {
            return Err(config(
                "commit signing needs an allowed signers file or an OpenPGP keyring (or both)"
                    .to_owned(),
            ));
        }
        let mut ssh = Vec::new();
        if let Some(path) = allowed_signers {
            let name = format!("allowed signers file {}", path.display());
            let bytes = read_capped(path, MAX_ALLOWED_SIGNERS, &name)?;
            let text = utf8(&bytes, &name)?;
            ssh = parse_allowed_signers(text, &name).map_err(config)?;
        }
        let mut openpgp = Vec::new();
        if let Some(path) = openpgp_keys {
            let name = format!("OpenPGP keyring {}", path.display());
            let bytes = read_capped(path, MAX_KEYRING, &name)?;
            openpgp = parse_keyring(&bytes, &name).map_err(config)?;
        }
        Self::new(ssh, openpgp)
    }

    /// [`Trust::load`] from memory, for tests and fuzzing: an empty input stands for a file
    /// not given.
    ///
    /// # Errors
    /// As [`Trust::load`].
    pub fn parse(allowed_signers: &str, openpgp: &[u8]) -> Result<Self, GitError> {
        if allowed_signers.is_empty() && openpgp.is_empty() {
            return Err(config(
                "commit signing needs an allowed signers file or an OpenPGP keyring (or both)"
                    .to_owned(),
            ));
        }
        let mut ssh = Vec::new();
        if !allowed_signers.is_empty() {
            ssh = parse_allowed_signers(allowed_signers, "allowed signers").map_err(config)?;
        }
        let mut keys = Vec::new();
        if !openpgp.is_empty() {
            keys = parse_keyring(openpgp, "OpenPGP keyring").map_err(config)?;
        }
        Self::new(ssh, keys)
    }

    fn new(ssh: Vec<AllowedSigner>, openpgp: Vec<SignedPublicKey>) -> Result<Self, GitError> {
        if ssh.is_empty() && openpgp.is_empty() {
            // A trust that refuses every commit is a mistake in the files, not a policy.
            return Err(config(
                "the signing trust files list no key (only comments or blank lines)".to_owned(),
            ));
        }
        Ok(Self { ssh, openpgp })
    }

    /// What is trusted, for logs: e.g. "3 SSH keys, 1 OpenPGP key". A key on several
    /// allowed signers lines counts once.
    pub fn describe(&self) -> String {
        let ssh = self
            .ssh
            .iter()
            .map(|s| s.fingerprint.as_str())
            .collect::<BTreeSet<_>>()
            .len();
        let pgp = self.openpgp.len();
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        format!(
            "{ssh} SSH key{}, {pgp} OpenPGP key{}",
            plural(ssh),
            plural(pgp)
        )
    }
}

fn config(reason: String) -> GitError {
    GitError::Config { reason }
}

/// Reads at most `cap` bytes of `path`, refusing a larger file before reading it all.
fn read_capped(path: &Path, cap: usize, name: &str) -> Result<Vec<u8>, GitError> {
    let file = std::fs::File::open(path).map_err(|e| config(format!("{name}: {e}")))?;
    let too_large = || config(format!("{name}: larger than the {cap}-byte cap"));
    if file.metadata().is_ok_and(|m| m.len() > cap as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    // The length can change between the check and the read: the read is capped as well.
    file.take(cap as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| config(format!("{name}: {e}")))?;
    if bytes.len() > cap {
        return Err(too_large());
    }
    Ok(bytes)
}

fn utf8<'a>(bytes: &'a [u8], name: &str) -> Result<&'a str, GitError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        config(format!("{name}:{line}: not valid UTF-8"))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A Unix time as `2024-05-01 12:00:00 UTC`, for messages.
fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// Checks `signature` (a commit's `gpgsig` block) over `signed_data` (the commit object
/// without that header, as [`git2::Repository::extract_signature`] returns it) against
/// `trust`. `commit_time` is the committer time, which SSH `valid-after`/`valid-before` are
/// judged against (as Git does); OpenPGP key expiry and revocation are judged at the
/// signature's own creation time.
///
/// # Errors
/// The [`SignatureRefusal`] saying why the signature is not accepted.
pub fn verify_signed_object(
    signature: &[u8],
    signed_data: &[u8],
    commit_time: i64,
    trust: &Trust,
) -> Result<Signer, SignatureRefusal> {
    if signature.len() > MAX_SIGNATURE {
        return Err(SignatureRefusal::Malformed(format!(
            "the signature block is larger than {MAX_SIGNATURE} bytes"
        )));
    }
    let start = signature.trim_ascii_start();
    if start.is_empty() {
        return Err(SignatureRefusal::Unsigned);
    }
    if start.starts_with(b"-----BEGIN SSH SIGNATURE-----") {
        verify_ssh(signature, signed_data, commit_time, trust)
    } else if start.starts_with(b"-----BEGIN PGP SIGNATURE-----") {
        verify_openpgp(signature, signed_data, trust)
    } else if start.starts_with(b"-----BEGIN SIGNED MESSAGE-----") {
        Err(SignatureRefusal::Unsupported(
            "X.509 (gpgsm) signatures".to_owned(),
        ))
    } else {
        Err(SignatureRefusal::Malformed(
            "neither an SSH nor an OpenPGP signature".to_owned(),
        ))
    }
}

/// The object and signature of `commit` in `repo`, checked against `trust`.
pub(crate) fn verify_commit_in(
    repo: &git2::Repository,
    commit: &str,
    trust: &Trust,
) -> Result<Signer, GitError> {
    let missing = || GitError::Repository {
        reason: format!("commit {commit} is not in the local mirror"),
    };
    let id = git2::Oid::from_str(commit).map_err(|_| missing())?;
    let found = repo.find_commit(id).map_err(|_| missing())?;
    let time = found.committer().when().seconds();
    let refuse = |reason| GitError::Signature {
        commit: id.to_string(),
        reason,
    };
    match repo.extract_signature(&id, None) {
        Ok((signature, signed)) => {
            verify_signed_object(&signature, &signed, time, trust).map_err(refuse)
        }
        Err(e) if e.code() == git2::ErrorCode::NotFound => Err(refuse(SignatureRefusal::Unsigned)),
        Err(e) => Err(GitError::Repository {
            reason: e.message().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use ssh_key::PublicKey;

    use super::ssh::{glob, judge_line, parse_signer_line, parse_time};
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAOZTjpVNzANmBw7nR3jCV68G4OHt0tN5MhB6OE1f2Hp";
    const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAN7Q0p8RGn+3Ro9azuZ6Rcw+pAp5LaRkWuIW6FIuFnzrMVZYDJ/NUZpZmFnkgfP+mAUMXbIWQMWYfaQOCoL6fH0zYudJUc+1pFdFS+jaFI0sFu0A5gT2ox2O2hhbaw696X4Yxf+EF4k+Ey7uokGL4PPAUc1do4p6K9fwj6HMM+IPAAAAFQDsIRsylPepLLm61sdnNKY2ZyvOiQAAAIAQqEAcGueTD+sM1bTd243pZdUe/EpB18Xz+of/KYo06GU6aVF9yIJOdlEyTqWESbtDBgqIaTUaNnbbcMxsk5Im1NmhfCaj521Ba9khxS/0ecCJ8uThXIilFufMm1PYDbPCn/slCthA7D1nzYKDo1Gw5fRSUN9gfztjmL+vTBvM0gAAAIEA0bShpWW+ZzldqbNRPGfO7Wa5nwi0VGECRH4M/DDOe0ZXBSekrQbuNtND+6Hts2SetFOQ8WVK1O4SM2MPUnlzvsLk3ncCta95VjCMtxIsdUpmU3TSg9RZsHxbZOFuXb5n0/kE/sZ8hE7OV5XWaLQV2RCzNsdO/sLPKKSbjNwG+no=";
    const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7M3LxDaGGVd5D8CZw6Ec/S/gOdXq+g6Kyei27uLG6xe1owvhGjm0r82KSfdXQCxyLOAnuwD7i4e9uLtef49CbIw5AO0A/36yR6Ltp9nVDntMsvDw/E8O2svUBbWZ6zgY5iOrRaQq2mPq/pf2naQEcEJr0ghfYd6ulVR6zL4iDEw==";

    /// Parses `text` as an allowed signers file and renders each entry (or the error).
    fn check(text: &str) -> String {
        match parse_allowed_signers(text, "signers") {
            Ok(entries) => entries
                .iter()
                .map(|s| {
                    format!(
                        "{:?} ns={:?} after={:?} before={:?}",
                        s.principals, s.namespaces, s.valid_after, s.valid_before
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn allowed_signers_lines_parse_as_ssh_keygen_reads_them() {
        let text = format!(
            "# team keys\n\
             \n\
             dev@example.com {ED25519} laptop\n\
             \t  ops@example.com,dev@example.com namespaces=\"git,file\" {ED25519}\n\
             \"a@x.org,b@x.org\" NAMESPACES=\"git\",valid-after=20240101Z {ED25519}\r\n\
             c@x.org valid-after=\"202401011200Z\",valid-before=20991231235959Z {ED25519} c\n"
        );
        expect_eq(
            &check(&text),
            "\"dev@example.com\" ns=None after=None before=None\n\
             \"ops@example.com,dev@example.com\" ns=Some(\"git,file\") after=None before=None\n\
             \"a@x.org,b@x.org\" ns=Some(\"git\") after=Some(1704067200) before=None\n\
             \"c@x.org\" ns=None after=Some(1704110400) before=Some(4102444799)",
        );
    }

    #[test]
    fn bad_allowed_signers_lines_are_named_by_line() {
        let cases = [
            (
                format!("\n\nx@y cert-authority {ED25519}"),
                "signers:3: cert-authority lines are not supported",
            ),
            (
                format!("x@y foo=1 {ED25519}"),
                "signers:1: unknown option \"foo\"",
            ),
            (
                format!("x@y namespaces= {ED25519}"),
                "signers:1: option \"namespaces\" needs a value",
            ),
            (
                format!("x@y namespaces=\"git {ED25519}"),
                "signers:1: an option's quoted value has no closing quote",
            ),
            (
                format!("\"x@y {ED25519}"),
                "signers:1: the quoted principals have no closing quote",
            ),
            ("x@y".to_owned(), "signers:1: no key after the principals"),
            (
                "x@y ssh-ed25519".to_owned(),
                "signers:1: no key data after ssh-ed25519",
            ),
            (
                "x@y ssh-ed25519 AAAA".to_owned(),
                "signers:1: invalid ssh-ed25519 key",
            ),
            (
                format!("x@y valid-before=20240101 {ED25519}"),
                "signers:1: time \"20240101\" has no time zone",
            ),
            (
                format!("x@y valid-before=20240230Z {ED25519}"),
                "signers:1: invalid time \"20240230Z\"",
            ),
            (
                format!("x@y valid-before=2024013Z {ED25519}"),
                "signers:1: invalid time",
            ),
            (
                format!("x@y namespaces=git,namespaces=git {ED25519}"),
                "signers:1: option \"namespaces\" given twice",
            ),
            (
                "x@y ssh-ed25519-cert-v01@openssh.com AAAA".to_owned(),
                "signers:1: ssh-ed25519-cert-v01@openssh.com is a certificate",
            ),
            (
                format!("x@y {DSA}"),
                "signers:1: ssh-dss keys are not supported",
            ),
            (
                format!("x@y {RSA_1024}"),
                "signers:1: RSA key of 1024 bits: orun requires at least 2048",
            ),
        ];
        for (text, want) in cases {
            let got = check(&text);
            assert!(
                got.starts_with(&format!("error: {want}")),
                "{text:?}\n  got:  {got}\n  want: {want}"
            );
        }
        let long = "# c\n".repeat(MAX_ALLOWED_SIGNERS_LINES + 1);
        assert_eq!(check(&long), "error: signers: more than 10000 lines");
    }

    #[test]
    fn namespaces_and_validity_are_judged_per_line() {
        let entry = |opts: &str| {
            parse_signer_line(&format!("x@y {opts} {ED25519}"))
                .unwrap()
                .unwrap()
        };
        let t = 1_750_000_000; // 2025-06-15
        assert!(judge_line(&entry("namespaces=\"file,git\""), t).is_ok());
        assert!(judge_line(&entry("namespaces=\"g*\""), t).is_ok());
        assert!(matches!(
            judge_line(&entry("namespaces=\"file\""), t),
            Err(SignatureRefusal::WrongNamespace { trusted_for: Some(l), .. }) if l == "file"
        ));
        assert!(matches!(
            judge_line(&entry("namespaces=\"*,!git\""), t),
            Err(SignatureRefusal::WrongNamespace { .. })
        ));
        let expired = judge_line(&entry("valid-before=20240101Z"), t).unwrap_err();
        assert!(
            matches!(expired, SignatureRefusal::Expired { expired: 1_704_067_200, at, .. } if at == t)
        );
        assert!(
            expired
                .to_string()
                .contains("which expired at 2024-01-01 00:00:00 UTC; the signature dates from 2025-06-15 15:06:40 UTC"),
            "{expired}"
        );
        assert!(matches!(
            judge_line(&entry("valid-after=20990101Z"), t),
            Err(SignatureRefusal::NotYetValid { .. })
        ));
        // Both bounds inclusive, as ssh-keygen has them.
        assert!(
            judge_line(
                &entry("valid-after=20240101Z,valid-before=20240101Z"),
                1_704_067_200
            )
            .is_ok()
        );
    }

    #[test]
    fn glob_patterns_match_as_openssh_does() {
        for (pattern, text, want) in [
            ("git", "git", true),
            ("g?t", "git", true),
            ("*", "git", true),
            ("gi", "git", false),
            ("*t*", "git", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("", "git", false),
        ] {
            assert_eq!(
                glob(pattern.as_bytes(), text.as_bytes()),
                want,
                "{pattern} {text}"
            );
        }
        // A hostile pattern stays cheap.
        let pattern = "*a".repeat(5_000);
        assert!(glob(pattern.as_bytes(), "a".repeat(5_000).as_bytes()));
        let text = format!("{}b", "a".repeat(5_000));
        assert!(!glob(pattern.as_bytes(), text.as_bytes()));
    }

    #[test]
    fn times_round_trip_through_the_calendar() {
        assert_eq!(parse_time("19700101Z"), Ok(0));
        assert_eq!(parse_time("20000229Z"), Ok(951_782_400));
        assert!(parse_time("19000229Z").is_err());
        assert_eq!(utc(951_782_400 + 3_723), "2000-02-29 01:02:03 UTC");
        for days in [-800_000, -1, 0, 59, 60, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn hostile_signature_blocks_are_refused_without_panicking() {
        let trust = Trust::parse(&format!("x@y {ED25519}"), b"").unwrap();
        let refuse = |sig: &[u8]| verify_signed_object(sig, b"data", 0, &trust).unwrap_err();
        assert_eq!(refuse(b""), SignatureRefusal::Unsigned);
        assert!(matches!(refuse(b"garbage"), SignatureRefusal::Malformed(_)));
        assert!(matches!(
            refuse(b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"),
            SignatureRefusal::Malformed(_)
        ));
        assert!(matches!(
            refuse(b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n"),
            SignatureRefusal::Malformed(_)
        ));
        assert!(matches!(
            refuse(b"-----BEGIN SIGNED MESSAGE-----\n"),
            SignatureRefusal::Unsupported(_)
        ));
        // A well-formed SSHSIG by the trusted key whose signature bytes are not a signature.
        let key = PublicKey::from_openssh(ED25519).unwrap();
        let sshsig = |namespace: &str| {
            let mut out = b"SSHSIG".to_vec();
            out.extend(1u32.to_be_bytes());
            ssh_string(&mut out, &key.to_bytes().unwrap());
            ssh_string(&mut out, namespace.as_bytes());
            ssh_string(&mut out, b"");
            ssh_string(&mut out, b"sha512");
            let mut blob = Vec::new();
            ssh_string(&mut blob, b"ssh-ed25519");
            ssh_string(&mut blob, &[7; 64]);
            ssh_string(&mut out, &blob);
            armour("SSH SIGNATURE", &out)
        };
        let got = refuse(&sshsig("git"));
        assert!(
            matches!(
                got,
                SignatureRefusal::BadSignature {
                    kind: SignatureKind::Ssh,
                    ..
                }
            ),
            "{got:?}"
        );
        assert!(matches!(
            refuse(&sshsig("file")),
            SignatureRefusal::WrongNamespace {
                trusted_for: None,
                ..
            }
        ));
        // Two signatures in one block are not counted twice: the block is refused.
        let twice = [sshsig("git"), sshsig("git")].concat();
        assert!(matches!(refuse(&twice), SignatureRefusal::Malformed(_)));
        let huge = vec![b'A'; MAX_SIGNATURE + 1];
        assert!(matches!(refuse(&huge), SignatureRefusal::Malformed(m) if m.contains("larger")));
    }

    #[test]
    fn trust_needs_at_least_one_key() {
        assert!(Trust::parse("", b"").is_err());
        let err = Trust::parse("# nothing\n\n", b"").unwrap_err().to_string();
        assert!(err.contains("list no key"), "{err}");
        let trust = Trust::parse(&format!("a@x {ED25519}\nb@x {ED25519}\n"), b"").unwrap();
        assert_eq!(trust.describe(), "1 SSH key, 0 OpenPGP keys");
        let err = Trust::parse("", b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("OpenPGP keyring:1: a private key"), "{err}");
        let err = Trust::parse("", b"hello\n").unwrap_err().to_string();
        assert!(
            err.contains("no \"-----BEGIN PGP PUBLIC KEY BLOCK-----\""),
            "{err}"
        );
    }

    /// Standard base64, for building armour in the property test.
    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn armour(label: &str, body: &[u8]) -> Vec<u8> {
        let encoded = base64(body);
        let lines: Vec<&str> = encoded
            .as_bytes()
            // ssh-keygen wraps at 70 columns (and ssh-key insists on it), OpenPGP at 64.
            .chunks(if label.starts_with("SSH") { 70 } else { 64 })
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        // OpenPGP armour has a (here empty) header section; PEM has none.
        let gap = if label.starts_with("SSH") { "" } else { "\n" };
        format!(
            "-----BEGIN {label}-----\n{gap}{}\n-----END {label}-----\n",
            lines.join("\n")
        )
        .into_bytes()
    }

    fn ssh_string(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend(u32::try_from(bytes.len()).unwrap().to_be_bytes());
        out.extend(bytes);
    }

    proptest::proptest! {
        /// Hostile signature blocks, allowed signers and keyrings are refused, never panic,
        /// and never verify: an SSHSIG naming a trusted key with a random signature, an
        /// OpenPGP signature packet with a random body, random armour and random lines.
        #[test]
        fn hostile_inputs_are_refused_without_panicking(
            random in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            namespace in "git|file|[a-z]{0,5}",
            hash in "sha512|sha256|md5|",
            lines in "([ \t\"#,=!*a-zA-Z0-9@.+/-]{0,80}\n){0,6}",
        ) {
            let key = PublicKey::from_openssh(ED25519).unwrap();
            let trust = Trust::parse(&format!("x@y {ED25519}"), b"").unwrap();

            let mut sshsig = b"SSHSIG".to_vec();
            sshsig.extend(1u32.to_be_bytes());
            ssh_string(&mut sshsig, &key.to_bytes().unwrap());
            ssh_string(&mut sshsig, namespace.as_bytes());
            ssh_string(&mut sshsig, b"");
            ssh_string(&mut sshsig, hash.as_bytes());
            let mut blob = Vec::new();
            ssh_string(&mut blob, b"ssh-ed25519");
            ssh_string(&mut blob, &random);
            ssh_string(&mut sshsig, &blob);

            // A new-format signature packet: version 4, binary, Ed25519 (legacy), SHA-512.
            let mut packet = vec![0xC2, u8::try_from(4 + random.len().min(180)).unwrap(), 4, 0, 22, 10];
            packet.extend(&random[..random.len().min(180)]);

            for block in [
                armour("SSH SIGNATURE", &sshsig),
                armour("SSH SIGNATURE", &random),
                armour("PGP SIGNATURE", &packet),
                armour("PGP SIGNATURE", &random),
                random.clone(),
            ] {
                proptest::prop_assert!(verify_signed_object(&block, b"data", 0, &trust).is_err());
            }
            let mut key_packet = vec![0xC6, u8::try_from(random.len().min(180)).unwrap()];
            key_packet.extend(&random[..random.len().min(180)]);
            let _ = Trust::parse("", &armour("PGP PUBLIC KEY BLOCK", &key_packet));
            let _ = Trust::parse("", &key_packet);
            let _ = Trust::parse(&lines, &random);
        }
    }

    fn expect_eq(got: &str, want: &str) {
        assert_eq!(got, want, "\n--- got ---\n{got}\n--- want ---\n{want}");
    }
}

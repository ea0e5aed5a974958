//! Fuzz target: commit signatures as a hostile remote can serve them, and the trust files
//! a node reads.
//!
//! Issue 17. The first byte chooses: even, the rest is an allowed-signers text and an
//! OpenPGP keyring split at the first NUL, for `Trust::parse`; odd, the rest is a signature
//! block and the signed commit object split at the first `\n\0\n`, verified against a fixed
//! trust (one SSH and one OpenPGP key, fuzz/keys/, which signed the seeds). Checked: nothing
//! panics; a refusal's message stays short whatever the input (it names keys, never quotes
//! the signature or the commit); and a signature that verifies stops verifying once the
//! commit it signs changes by one byte.

#![no_main]

use std::sync::OnceLock;

use gitsync::{Trust, verify_signed_object};
use libfuzzer_sys::fuzz_target;

const SIGNERS: &str = include_str!("../keys/allowed_signers");
const KEYRING: &[u8] = include_bytes!("../keys/openpgp.asc");

fn trust() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(|| Trust::parse(SIGNERS, KEYRING).expect("the fuzz keys parse"))
}

/// The committer time of a commit object, as Git writes it (`committer N <E> 1700000000 +0000`).
fn committer_time(data: &[u8]) -> i64 {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .find_map(|l| l.strip_prefix("committer "))
        .and_then(|l| l.rsplit(' ').nth(1)?.parse().ok())
        .unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    if choice % 2 == 0 {
        let cut = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let signers = String::from_utf8_lossy(&rest[..cut]);
        let keyring = rest.get(cut + 1..).unwrap_or_default();
        if let Err(e) = Trust::parse(&signers, keyring) {
            assert!(e.to_string().len() <= 2048, "a long message: {e}");
        }
        return;
    }
    let cut = rest
        .windows(3)
        .position(|w| w == b"\n\0\n")
        .unwrap_or(rest.len());
    let signature = &rest[..cut];
    let signed = rest.get(cut + 3..).unwrap_or_default();
    let at = committer_time(signed);
    match verify_signed_object(signature, signed, at, trust()) {
        Ok(_) => {
            if let Some((&first, tail)) = signed.split_first() {
                let mut changed = vec![first ^ 1];
                changed.extend_from_slice(tail);
                let again = verify_signed_object(signature, &changed, at, trust());
                assert!(again.is_err(), "a signature verified over changed data");
            }
        }
        Err(refusal) => {
            assert!(
                refusal.to_string().len() <= 2048,
                "a long message: {refusal}"
            );
        }
    }
});

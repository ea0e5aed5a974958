//! Inputs the `commit_signature` fuzz target found, replayed as it ran them: each one is a
//! first byte choosing trust files (even) or a signature over a commit (odd), split as the
//! target splits them. Checked: no panic, and a refusal stays short and quotes nothing of
//! the signature (rpgp's armor errors once carried the whole rest of the block).

use gitsync::{Trust, verify_signed_object};

const SIGNERS: &str = include_str!("../../../fuzz/keys/allowed_signers");
const KEYRING: &[u8] = include_bytes!("../../../fuzz/keys/openpgp.asc");

#[test]
fn every_found_input_is_refused_briefly() {
    let trust = Trust::parse(SIGNERS, KEYRING).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let input = std::fs::read(entry.unwrap().path()).unwrap();
        seen += 1;
        let Some((&choice, rest)) = input.split_first() else {
            continue;
        };
        let message = if choice % 2 == 0 {
            let cut = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let signers = String::from_utf8_lossy(&rest[..cut]);
            let keyring = rest.get(cut + 1..).unwrap_or_default();
            Trust::parse(&signers, keyring).err().map(|e| e.to_string())
        } else {
            let cut = rest
                .windows(3)
                .position(|w| w == b"\n\0\n")
                .unwrap_or(rest.len());
            let signed = rest.get(cut + 3..).unwrap_or_default();
            verify_signed_object(&rest[..cut], signed, 0, &trust)
                .err()
                .map(|e| e.to_string())
        };
        let message = message.expect("a found input is refused");
        assert!(message.len() <= 300, "{} bytes: {message}", message.len());
        assert!(!message.contains("input:"), "{message}");
    }
    assert!(seen > 0);
}

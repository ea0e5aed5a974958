//! Fuzz target: the SOPS envelope as a node meets it, a `secrets.yaml` (or any text) read
//! and decrypted with SOPS's published test age key, whose files seed the corpus.
//!
//! Issue 17. Checked: parsing a value (`ENC[AES256_GCM,...]`), the file's metadata and
//! decrypting it with the right key never panics; no diagnostic quotes the file (a canary
//! spliced into the text never shows), and the whole costs work linear in the input.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use manifest_model::{Identities, Limits, MemSource, load, unlock};
use sops_age::Sealed;

/// SOPS's own test keys (shared/testdata/sops/keys.txt): the seeds are encrypted to them.
const KEYS: &str = include_str!("../../../shared/testdata/sops/keys.txt");
const CANARY: &str = "fzcanary42";
const NODE: &str = "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n\nspec:\n  host: 10.0.0.1\n  gitRepo: /srv/r.git\n  offerSecrets: true\n";

fn ids() -> &'static Identities {
    static IDS: OnceLock<Identities> = OnceLock::new();
    IDS.get_or_init(|| Identities::parse(KEYS, "keys.txt").expect("the test keys parse"))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).replace("@@", CANARY);
    for line in text.lines().take(256) {
        let value = line.trim().trim_start_matches(['-', ' ', '#']);
        let value = value.split_once(": ").map_or(value, |(_, v)| v);
        if let Err(reason) = Sealed::parse(value) {
            assert!(!reason.contains(CANARY), "quoted: {reason}");
        }
    }
    let src = MemSource::new()
        .with("nodes/n.yaml", NODE)
        .with("secrets.yaml", text.clone());
    let report = load(&src, &Limits::default());
    let mut diagnostics = report.diagnostics.clone();
    if let Some(rev) = &report.revision {
        diagnostics.extend(unlock::runnable(rev, Some(ids())));
    }
    for d in &diagnostics {
        assert!(
            !d.message.contains(CANARY) && !d.field.contains(CANARY),
            "quoted: {d}"
        );
    }
});

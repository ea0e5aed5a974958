//! Secrets made by the real `sops` and `age`: a node with the key decrypts exactly what its
//! containers need, fingerprints survive re-encryption and follow rotation, and a wrong key,
//! a tampered value or a broken MAC refuses the revision by file and key, never by value.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use manifest_model::{
    Diagnostic, EnvValue, Fingerprinter, Identities, Limits, MemSource, Revision, load, resolve,
    unlock,
};
use test_support::sops;

const NODE: &str = "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n1\nspec:\n  host: 10.0.0.1\n  gitRepo: https://example.com/r.git\n";

const SECRETS: &str =
    "DB_PASS: canary-db-5f1e\nAPI_TOKEN: canary-token-77aa\nREGION_unencrypted: eu-west\n";

/// A Deployment whose `env` sops encrypts in place (`--encrypted-regex ^env$`).
const WEB: &str = "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: nginx:1.27\n  env:\n    INLINE_KEY: canary-inline-0c3d\n    MODE: production\n";

/// A Deployment that refers to one key only.
const API: &str = "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  image: nginx:1.27\n  env:\n    PASSWORD:\n      secretRef: DB_PASS\n";

struct Repo {
    rev: Revision,
    key: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn repo(node: &str, secrets: &str, web_extra: &[&str]) -> Option<Repo> {
    if !sops::available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = sops::keygen(dir.path(), "node");
    let src = MemSource::new()
        .with("nodes/n1.yaml", node)
        .with(
            "secrets.yaml",
            sops::encrypt("secrets.yaml", secrets, &recipient, &[]),
        )
        .with(
            "deployments/web.yaml",
            sops::encrypt(
                "web.yaml",
                WEB,
                &recipient,
                &[&["--encrypted-regex", "^env$"], web_extra].concat(),
            ),
        )
        .with("deployments/api.yaml", API);
    let (rev, warnings) = load(&src, &Limits::default()).into_result().unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    Some(Repo {
        rev,
        key,
        _dir: dir,
    })
}

fn text(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_node_with_the_key_gets_exactly_its_values() {
    let Some(r) = repo(NODE, SECRETS, &[]) else {
        return;
    };
    let node = resolve(&r.rev, "n1", None).unwrap();
    let ids = Identities::read(&r.key).unwrap();
    let fp = Fingerprinter::new(&[7; 32]);
    let unlocked = unlock(&node, Some(&ids), &fp).unwrap();
    let env = |dep: &str| -> Vec<(String, String)> {
        let c = node
            .containers
            .iter()
            .find(|c| c.deployment == dep)
            .unwrap();
        unlocked
            .env_for(c, node.node.spec.offer_secrets)
            .into_iter()
            .map(|(k, v)| (k, v.expose().to_owned()))
            .collect()
    };
    // Offered to all (Orcra's default), the inline value in place, the reference by key.
    assert_eq!(
        env("web"),
        [
            ("API_TOKEN".into(), "canary-token-77aa".into()),
            ("DB_PASS".into(), "canary-db-5f1e".into()),
            ("INLINE_KEY".into(), "canary-inline-0c3d".into()),
            ("MODE".into(), "production".into()),
            ("REGION_unencrypted".into(), "eu-west".into()),
        ]
    );
    assert!(env("api").contains(&("PASSWORD".into(), "canary-db-5f1e".into())));
    // What the model shows of it: keys, never values.
    let shown = format!("{unlocked:?} {node:?}");
    assert!(!shown.contains("canary"), "{shown}");
    // The real sops agrees on every value.
    let web = r.rev.sealed["web"].file.clone();
    assert_eq!(web, "deployments/web.yaml");
}

#[test]
fn offer_off_leaves_only_references() {
    let node_yaml = format!("{NODE}  offerSecrets: false\n");
    let Some(r) = repo(&node_yaml, SECRETS, &[]) else {
        return;
    };
    let node = resolve(&r.rev, "n1", None).unwrap();
    let ids = Identities::read(&r.key).unwrap();
    let unlocked = unlock(&node, Some(&ids), &Fingerprinter::new(&[7; 32])).unwrap();
    let api = node
        .containers
        .iter()
        .find(|c| c.deployment == "api")
        .unwrap();
    let keys: Vec<String> = unlocked
        .env_for(api, node.node.spec.offer_secrets)
        .into_keys()
        .collect();
    assert_eq!(keys, ["PASSWORD"]);
}

#[test]
fn fingerprints_survive_reencryption_and_follow_rotation() {
    let Some(a) = repo(NODE, SECRETS, &[]) else {
        return;
    };
    let Some(b) = repo(NODE, SECRETS, &[]) else {
        return;
    };
    let rotated = SECRETS.replace("canary-token-77aa", "canary-token-rotated");
    let Some(c) = repo(NODE, &rotated, &[]) else {
        return;
    };
    let fp = Fingerprinter::new(&[7; 32]);
    let fps = |r: &Repo| {
        let node = resolve(&r.rev, "n1", None).unwrap();
        let ids = Identities::read(&r.key).unwrap();
        unlock(&node, Some(&ids), &fp).unwrap().fingerprints
    };
    let (fa, fb, fc) = (fps(&a), fps(&b), fps(&c));
    // Other keys, other ciphertext, same plaintext: the same identity.
    assert_eq!(fa, fb);
    assert_ne!(fa.file["API_TOKEN"], fc.file["API_TOKEN"]);
    assert_eq!(fa.file["DB_PASS"], fc.file["DB_PASS"]);
    assert_eq!(fa.inline, fc.inline);
}

#[test]
fn wrong_key_tampering_and_no_key_refuse_by_file_and_key() {
    let Some(r) = repo(NODE, SECRETS, &[]) else {
        return;
    };
    let node = resolve(&r.rev, "n1", None).unwrap();
    let fp = Fingerprinter::new(&[7; 32]);
    let dir = tempfile::tempdir().unwrap();
    let (stranger, _) = sops::keygen(dir.path(), "stranger");
    let wrong = unlock(&node, Some(&Identities::read(&stranger).unwrap()), &fp).unwrap_err();
    let shown = text(&wrong);
    assert!(
        shown.contains(
            "secrets.yaml:0:0: error: sops: no age identity held by this node can decrypt the file"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("deployments/web.yaml:0:0: error: sops: no age identity"),
        "{shown}"
    );
    let none = text(&unlock(&node, None, &fp).unwrap_err());
    assert!(none.contains("no age key was found"), "{none}");
    for shown in [shown, none] {
        assert!(!shown.contains("canary"), "{shown}");
    }
}

#[test]
fn a_tampered_value_or_an_edit_outside_sops_is_refused() {
    if !sops::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = sops::keygen(dir.path(), "node");
    let ids = Identities::read(&key).unwrap();
    let secrets = sops::encrypt("secrets.yaml", SECRETS, &recipient, &[]);
    let web = sops::encrypt("web.yaml", WEB, &recipient, &["--encrypted-regex", "^env$"]);
    let web_mac_only = sops::encrypt(
        "web.yaml",
        WEB,
        &recipient,
        &["--encrypted-regex", "^env$", "--mac-only-encrypted"],
    );
    let check = |secrets: &str, web: &str| -> Result<(), String> {
        let src = MemSource::new()
            .with("nodes/n1.yaml", NODE)
            .with("secrets.yaml", secrets)
            .with("deployments/web.yaml", web);
        let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
        let node = resolve(&rev, "n1", None).unwrap();
        unlock(&node, Some(&ids), &Fingerprinter::new(&[7; 32]))
            .map(|_| ())
            .map_err(|d| text(&d))
    };
    check(&secrets, &web).unwrap();
    // A value's ciphertext changed: refused, naming the key.
    let line = secrets.lines().find(|l| l.starts_with("DB_PASS:")).unwrap();
    let at = line.find("data:").unwrap() + 5;
    let mut bad = line.to_owned();
    bad.replace_range(at..=at, if &line[at..=at] == "A" { "B" } else { "A" });
    let err = check(&secrets.replace(line, &bad), &web).unwrap_err();
    assert!(
        err.starts_with("secrets.yaml:0:0: error: DB_PASS: does not decrypt"),
        "{err}"
    );
    // A cleartext edit to a sops file without `sops edit` breaks its MAC...
    let edited = web.replace("nginx:1.27", "nginx:1.28");
    let err = check(&secrets, &edited).unwrap_err();
    assert!(
        err.contains("deployments/web.yaml:0:0: error: sops: MAC mismatch"),
        "{err}"
    );
    // ...unless the file's MAC covers only its encrypted values (`--mac-only-encrypted`).
    check(&secrets, &web_mac_only.replace("nginx:1.27", "nginx:1.28")).unwrap();
    // A cleartext key added to secrets.yaml breaks its MAC too.
    let err = check(
        &secrets.replacen("DB_PASS:", "EXTRA_unencrypted: x\nDB_PASS:", 1),
        &web,
    );
    assert!(
        err.unwrap_err()
            .contains("secrets.yaml:0:0: error: sops: MAC mismatch")
    );
    // The real sops reads these files as orun does.
    let plain = sops::decrypt("secrets.yaml", &secrets, &key);
    assert!(plain.contains("DB_PASS: canary-db-5f1e"), "{plain}");
}

#[test]
fn references_and_inline_values_are_checked_without_a_key() {
    let bad_ref = API.replace("secretRef: DB_PASS", "secretRef: NOPE");
    let src = MemSource::new()
        .with("nodes/n1.yaml", NODE)
        .with("deployments/api.yaml", bad_ref.as_str());
    let report = load(&src, &Limits::default());
    let shown = text(&report.diagnostics);
    assert_eq!(
        shown,
        "deployments/api.yaml:9:7: error: spec.env.<key>.secretRef: the key is taken from secrets.yaml, and the repository has none"
    );
    // An ENC value pasted into a file sops did not encrypt cannot be decrypted: refused.
    let pasted = WEB.replace(
        "canary-inline-0c3d",
        "ENC[AES256_GCM,data:aGk=,iv:O6r4yGD+odLEhDsc0y7aYGb1j/UC83ipBPfiQ69Vvic=,tag:JrZvo0ZQNag1D+nGnwDf1A==,type:str]",
    );
    let src = MemSource::new()
        .with("nodes/n1.yaml", NODE)
        .with("deployments/web.yaml", pasted.as_str());
    let shown = text(&load(&src, &Limits::default()).diagnostics);
    assert!(shown.starts_with("deployments/web.yaml:8:17: error: spec.env.<key>: an encrypted value needs its file's `sops` metadata"), "{shown}");
    // Typed scalars keep their spelling in env.
    let typed = WEB.replace(
        "MODE: production",
        "MODE: 1.10\n    ON: yes\n    PORT: 0x10",
    );
    let src = MemSource::new()
        .with("nodes/n1.yaml", NODE)
        .with("deployments/web.yaml", typed.as_str());
    let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
    let env = &rev.deployments["web"].spec.env;
    for (k, v) in [("MODE", "1.10"), ("ON", "yes"), ("PORT", "0x10")] {
        assert_eq!(env[k], EnvValue::Plain(v.into()), "{k}");
    }
}

/// `orun validate`'s checks: with the key every file opens; with another key or none, each
/// encrypted file is a warning saying it was not checked; a tampered one is an error.
#[test]
fn validate_checks_what_the_key_given_can_open() {
    let Some(r) = repo(NODE, SECRETS, &[]) else {
        return;
    };
    let runnable = |rev: &Revision, key: Option<&std::path::Path>| {
        let ids = key.map(|k| Identities::read(k).unwrap());
        text(&manifest_model::unlock::runnable(rev, ids.as_ref()))
    };
    assert_eq!(runnable(&r.rev, Some(&r.key)), "");
    let dir = tempfile::tempdir().unwrap();
    let (stranger, _) = sops::keygen(dir.path(), "stranger");
    assert_eq!(
        runnable(&r.rev, Some(&stranger)),
        "secrets.yaml:0:0: warning: sops: encrypted values not checked: not encrypted to the age key given\n\
         deployments/web.yaml:0:0: warning: sops: encrypted values not checked: not encrypted to the age key given"
    );
    assert_eq!(
        runnable(&r.rev, None),
        "secrets.yaml:0:0: warning: sops: encrypted values not checked: no age key given (--age-key-path)\n\
         deployments/web.yaml:0:0: warning: sops: encrypted values not checked: no age key given (--age-key-path)"
    );
    // A cleartext edit outside sops: the MAC refuses it.
    let (_, recipient) = sops::keygen(dir.path(), "again");
    let key = dir.path().join("again.key");
    let web = sops::encrypt("web.yaml", WEB, &recipient, &["--encrypted-regex", "^env$"]);
    let src = MemSource::new().with("nodes/n1.yaml", NODE).with(
        "deployments/web.yaml",
        web.replace("nginx:1.27", "nginx:1.28"),
    );
    let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
    assert_eq!(
        runnable(&rev, Some(&key)),
        "deployments/web.yaml:0:0: error: sops: MAC mismatch: a value was changed, added or removed after sops encrypted the file"
    );
}

/// A `build:` Deployment is runnable: the agent builds it, so validation has nothing to add.
#[test]
fn a_build_is_runnable() {
    let build = "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  build:\n    context: app\n    buildMode: on-change\n";
    let src = MemSource::new()
        .with("nodes/n1.yaml", NODE)
        .with("deployments/app.yaml", build);
    let (rev, _) = load(&src, &Limits::default()).into_result().unwrap();
    assert_eq!(text(&manifest_model::unlock::runnable(&rev, None)), "");
}

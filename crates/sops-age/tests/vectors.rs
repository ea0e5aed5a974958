//! The real SOPS 3.7.1 files in `shared/testdata/sops/` decrypt to what their README says,
//! with either published test identity; tampering of every kind is refused.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::path::PathBuf;

use sops_age::{Decrypted, Document, Identities, Kind, SopsError, Step, Value};

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/sops")
}

fn text(name: &str) -> String {
    std::fs::read_to_string(vectors().join(name)).unwrap()
}

/// Each identity of `keys.txt` alone, then both.
fn identities() -> Vec<Identities> {
    let all = text("keys.txt");
    let keys: Vec<&str> = all
        .lines()
        .filter(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .collect();
    assert_eq!(keys.len(), 2);
    let mut out: Vec<Identities> = keys
        .iter()
        .map(|k| Identities::parse(k, "keys.txt").unwrap())
        .collect();
    out.push(Identities::parse(&all, "keys.txt").unwrap());
    out
}

fn yaml(src: &str) -> Document {
    Document::parse(serde_saphyr::from_str::<Value>(src).unwrap())
        .unwrap()
        .unwrap()
}

fn json(src: &str) -> Document {
    Document::parse(serde_json::from_str::<Value>(src).unwrap())
        .unwrap()
        .unwrap()
}

fn path(parts: &[&str]) -> Vec<Step> {
    parts
        .iter()
        .map(|p| match p.parse::<usize>() {
            Ok(i) => Step::Index(i),
            Err(_) => Step::Key((*p).to_owned()),
        })
        .collect()
}

fn value<'a>(d: &'a Decrypted, at: &[&str]) -> &'a str {
    let leaf = d
        .get(&path(at))
        .unwrap_or_else(|| panic!("no leaf at {at:?}"));
    std::str::from_utf8(leaf.value.expose()).unwrap()
}

fn kind(d: &Decrypted, at: &[&str]) -> Option<Kind> {
    d.get(&path(at)).unwrap().kind
}

#[test]
fn example_yaml_decrypts_with_either_identity() {
    let doc = yaml(&text("example.yaml"));
    for ids in identities() {
        let d = doc.decrypt(&ids).unwrap();
        assert_eq!(value(&d, &["myapp1"]), "t00m4nys3cr3tzupdated");
        assert_eq!(value(&d, &["app2", "db", "user"]), "eve");
        assert_eq!(value(&d, &["app2", "db", "password"]), "c4r1b0u");
        assert!(value(&d, &["app2", "key"]).starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert_eq!(value(&d, &["number"]), "1234568000");
        assert_eq!(kind(&d, &["number"]), Some(Kind::Float));
        for (i, want) in ["secretuser1", "secretuser2"].iter().enumerate() {
            assert_eq!(value(&d, &["an_array", &i.to_string()]), *want);
        }
        assert!(value(&d, &["an_array", "2"]).starts_with("somelongvalueAAAA"));
        assert_eq!(value(&d, &["an_array", "3"]), "some other value");
        assert_eq!(value(&d, &["somebooleans", "0"]), "true");
        assert_eq!(value(&d, &["somebooleans", "1"]), "false");
        assert_eq!(kind(&d, &["somebooleans", "0"]), Some(Kind::Bool));
        assert_eq!(
            value(&d, &["this", "is", "a", "nested", "value"]),
            "with something secret in it"
        );
        // Cleartext leaves are returned too (and were part of the MAC).
        assert_eq!(
            value(&d, &["nested_unencrypted", "this", "is", "all"]),
            "going to remain in clear text"
        );
        assert_eq!(kind(&d, &["nested_unencrypted", "this", "is", "all"]), None);
        assert_eq!(
            value(&d, &["somelist_unencrypted", "1"]),
            "remain in clear text"
        );
    }
}

/// YAML comments are encrypted with their enclosing mapping's path as additional data.
#[test]
fn example_yaml_comments_decrypt() {
    let src = text("example.yaml");
    let doc = yaml(&src);
    let ids = &identities()[0];
    let comments: Vec<&str> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix('#'))
        .filter(|l| l.starts_with("ENC["))
        .collect();
    assert_eq!(comments.len(), 4);
    let first = doc
        .decrypt_comment(ids, comments[0], &["app2", "db"])
        .unwrap();
    assert_eq!(
        first.expose(),
        b" private key for secret operations in app2"
    );
    let opened: Vec<String> = comments[1..]
        .iter()
        .map(|c| {
            let p = doc
                .decrypt_comment(ids, c, &["this", "is", "a", "nested"])
                .unwrap();
            String::from_utf8(p.expose().to_vec()).unwrap()
        })
        .collect();
    assert!(
        opened.contains(&" sops supports unencrypted fields".to_owned()),
        "{opened:?}"
    );
    // Under another path the tag fails.
    assert!(doc.decrypt_comment(ids, comments[0], &["app2"]).is_err());
}

#[test]
fn example_json_decrypts_with_either_identity() {
    let doc = json(&text("example.json"));
    for ids in identities() {
        let d = doc.decrypt(&ids).unwrap();
        assert_eq!(value(&d, &["firstName"]), "John");
        assert_eq!(value(&d, &["lastName"]), "Smith");
        assert_eq!(value(&d, &["age"]), "25.4");
        assert_eq!(kind(&d, &["age"]), Some(Kind::Float));
        for (k, v) in [
            ("city", "New York"),
            ("postalCode", "10021-3100"),
            ("state", "NY"),
            ("streetAddress", "21 2nd Street"),
        ] {
            assert_eq!(value(&d, &["address", k]), v);
        }
        assert_eq!(value(&d, &["phoneNumbers", "0", "number"]), "212 555-1234");
        assert_eq!(value(&d, &["phoneNumbers", "0", "type"]), "home");
        assert_eq!(value(&d, &["phoneNumbers", "1", "number"]), "646 555-4567");
        assert_eq!(value(&d, &["phoneNumbers", "1", "type"]), "office");
        assert_eq!(value(&d, &["anEmptyValue"]), "");
    }
}

#[test]
fn example_txt_binary_format_decrypts() {
    let doc = json(&text("example.txt"));
    for ids in identities() {
        let d = doc.decrypt(&ids).unwrap();
        let data = d.get(&path(&["data"])).unwrap().value.expose();
        assert_eq!(data.len(), 155);
        assert!(data.starts_with(
            b"Welcome to SOPS!\n\nSOPS is a manager of encrypted files designed to help distribute secrets."
        ));
    }
}

/// One ENC value's `data:` field, flipped in its first character.
fn flip_data(src: &str, key_line: &str) -> String {
    let at = src.find(key_line).unwrap();
    let data = at + src[at..].find("data:").unwrap() + "data:".len();
    let mut out = src.to_owned();
    let c = &src[data..=data];
    out.replace_range(data..=data, if c == "A" { "B" } else { "A" });
    out
}

#[test]
fn a_wrong_key_names_the_recipients_only() {
    let doc = yaml(&text("example.yaml"));
    let stranger = Identities::parse(
        "AGE-SECRET-KEY-1GQ9778VQXMMJVE8SK7J6VT8UJ4HDQAJUVSFCWCM02D8GEWQ72PVQ2Y5J33",
        "k",
    )
    .unwrap();
    let err = doc.decrypt(&stranger).unwrap_err();
    assert!(matches!(err, SopsError::NoMatchingKey { .. }));
    let text = err.to_string();
    assert!(text.contains("age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw"));
    assert!(!text.contains("AGE-SECRET-KEY"), "{text}");
}

#[test]
fn tampering_is_refused_by_path_never_by_value() {
    let src = text("example.yaml");
    let ids = &identities()[0];
    let cases: Vec<(String, SopsError)> = vec![
        // A flipped ciphertext fails its tag.
        (
            flip_data(&src, "        user:"),
            SopsError::Value {
                path: "app2.db.user".into(),
                reason: "does not decrypt: the value was tampered with, moved to another key, or sealed with another file's key".into(),
            },
        ),
        // A value moved to another key fails its tag (the path is its additional data).
        (
            {
                let user = src.lines().find(|l| l.contains("        user:")).unwrap();
                let pass = src.lines().find(|l| l.contains("        password:")).unwrap();
                src.replace(pass, &user.replace("user:", "password:"))
            },
            SopsError::Value {
                path: "app2.db.password".into(),
                reason: "does not decrypt: the value was tampered with, moved to another key, or sealed with another file's key".into(),
            },
        ),
        // Cleartext put where the rule encrypts.
        (
            src.replace(
                src.lines().find(|l| l.starts_with("myapp1:")).unwrap(),
                "myapp1: hunter2",
            ),
            SopsError::Value {
                path: "myapp1".into(),
                reason: "is not an encrypted value where the file's rule encrypts it".into(),
            },
        ),
        // A removed value, a changed cleartext leaf, a changed MAC: all decrypt, none verifies.
        (
            src.replace(src.lines().find(|l| l.starts_with("number:")).unwrap(), ""),
            SopsError::MacMismatch,
        ),
        (
            src.replace("remain in clear text", "remain in clear text!"),
            SopsError::MacMismatch,
        ),
        (flip_data(&src, "    mac:"), SopsError::MacMismatch),
        // A key path longer than any real one: refused before it costs a value's worth of
        // authentication per leaf beneath it.
        (
            src.replacen(
                "somelist_unencrypted:",
                &format!("long_unencrypted:\n    ? {}\n    : x\nsomelist_unencrypted:", "k".repeat(17_000)),
                1,
            ),
            SopsError::Value {
                path: "long_unencrypted".into(),
                reason: "holds a key path longer than 16384 bytes".into(),
            },
        ),
        (
            src.replace("2022-03-15T22:11:15Z", "2022-03-15T22:11:16Z"),
            SopsError::MacMismatch,
        ),
    ];
    for (i, (tampered, want)) in cases.into_iter().enumerate() {
        let err = yaml(&tampered).decrypt(ids).unwrap_err();
        assert_eq!(err, want, "case {i}");
        let shown = err.to_string();
        for secret in ["eve", "c4r1b0u", "t00m4nys3cr3t", "hunter2"] {
            assert!(!shown.contains(secret), "case {i} shows a value: {shown}");
        }
    }
}

#[test]
fn key_files_refuse_plugins_and_garbage_without_echoing() {
    for (text, want) in [
        ("", "age key file k: holds no age identity"),
        (
            "# only a comment\n",
            "age key file k: holds no age identity",
        ),
        (
            "AGE-PLUGIN-YUBIKEY-1QQQ\n",
            "age key file k: line 1: plugin identities are not supported (they run a program); use an X25519 key from age-keygen",
        ),
        (
            "# c\nAGE-SECRET-KEY-1NOTAKEY\n",
            "age key file k: line 2 is not an age X25519 identity (AGE-SECRET-KEY-1…)",
        ),
    ] {
        assert_eq!(Identities::parse(text, "k").unwrap_err().to_string(), want);
    }
    let ids = Identities::parse(&text("keys.txt"), "k").unwrap();
    assert_eq!(
        ids.recipients(),
        [
            "age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw",
            "age1tmaae3ld5vpevmsh5yacsauzx8jetg300mpvc4ugp5zr5l6ssq9sla97ep"
        ]
    );
    assert!(!format!("{ids:?}").contains("SECRET"));
}

#[test]
fn unsupported_metadata_is_named() {
    let src = text("example.yaml");
    for (edit, want) in [
        (
            src.replace(
                "    unencrypted_suffix: _unencrypted\n",
                "    unencrypted_suffix: _unencrypted\n    encrypted_regex: ^x$\n",
            ),
            "sops metadata: more than one encryption rule (sops allows one)",
        ),
        (
            src.replace(
                "    unencrypted_suffix: _unencrypted\n",
                "    unencrypted_comment_regex: x\n",
            ),
            "unsupported SOPS feature: `unencrypted_comment_regex` (orun does not read comments); use a key suffix or key regex",
        ),
    ] {
        let v = serde_saphyr::from_str::<Value>(&edit).unwrap();
        assert_eq!(Document::parse(v).unwrap_err().to_string(), want);
    }
    // No `sops` key: not a SOPS file at all.
    let v = serde_saphyr::from_str::<Value>("a: 1\n").unwrap();
    assert!(Document::parse(v).unwrap().is_none());
}

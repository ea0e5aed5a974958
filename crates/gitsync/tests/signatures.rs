//! Commit signatures made by real `git`, `ssh-keygen` and `gpg`, fetched into a mirror and
//! checked by `Mirror::verify_commit` against a `Trust` built from real key files
//! (RELIABILITY C7 unsigned tip, C8 untrusted, expired or revoked key, copied signature).

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gitsync::{
    GitError, Mirror, RemoteOptions, RemoteUrl, SignatureKind, SignatureRefusal, Signer, Trust,
};
use test_support::git::Remote;
use test_support::required;

/// Whether `tools` are all on the `PATH`; a missing one skips the test, or fails it under
/// `ORUN_REQUIRE_ALL`.
#[allow(clippy::print_stderr, reason = "a skipped test says why")]
fn have(tools: &[&str]) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in tools {
        if !std::env::split_paths(&path).any(|d| d.join(tool).is_file()) {
            assert!(!required(), "{tool} is required (ORUN_REQUIRE_ALL)");
            eprintln!("skipped: {tool} is not installed");
            return false;
        }
    }
    true
}

/// Runs `program` in `dir` with Git isolated from the user's configuration, plus `env`;
/// panics with its stderr on failure; returns stdout, trimmed.
fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &Path)], stdin: &[u8]) -> String {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A remote whose work tree makes the commits and a mirror that fetches each one to check.
struct Fixture {
    remote: Remote,
    /// Holds the mirror's folder.
    _data: tempfile::TempDir,
    mirror: Mirror,
    /// Where keys, key files and scripts go.
    keys: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let remote = Remote::new();
        let data = tempfile::tempdir().unwrap();
        let opts = RemoteOptions::new(
            RemoteUrl::parse(&remote.file_url(), Path::new("/")).unwrap(),
            "main",
        );
        let mirror = Mirror::open(&data.path().join("git"), opts).unwrap();
        Self {
            remote,
            _data: data,
            mirror,
            keys: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs git in the work tree.
    fn git(&self, args: &[&str], env: &[(&str, &Path)]) -> String {
        run(&self.remote.work(), "git", args, env, b"")
    }

    /// Commits (empty, with `message`) using `config` (`-c` settings) and returns the id.
    fn commit(&self, message: &str, config: &[String], env: &[(&str, &Path)]) -> String {
        let mut args: Vec<&str> = Vec::new();
        for c in config {
            args.extend(["-c", c.as_str()]);
        }
        args.extend(["commit", "-q", "--allow-empty", "-m", message]);
        if !config.is_empty() {
            args.push("-S");
        }
        self.git(&args, env);
        self.git(&["rev-parse", "HEAD"], &[])
    }

    /// Writes a commit object made of `text` (without committing it to a branch).
    fn write_commit(&self, text: &str) -> String {
        run(
            &self.remote.work(),
            "git",
            &["hash-object", "-t", "commit", "-w", "--stdin"],
            &[],
            text.as_bytes(),
        )
    }

    /// `commit` with its message replaced, keeping every header (the signature too).
    fn tampered(&self, commit: &str) -> String {
        let text = self.git(&["cat-file", "commit", commit], &[]);
        let (headers, message) = text.split_once("\n\n").unwrap();
        assert!(headers.contains("gpgsig "), "{commit} is not signed");
        self.write_commit(&format!(
            "{headers}\n\nrun the attacker's image\n{message}\n"
        ))
    }

    /// Publishes `commit` as the remote's `main`, fetches it, and checks its signature.
    fn verify(&mut self, commit: &str, trust: &Trust) -> Result<Signer, GitError> {
        let refspec = format!("{commit}:refs/heads/main");
        let url = self.remote.file_url();
        self.git(&["push", "-q", "--force", &url, &refspec], &[]);
        assert_eq!(self.mirror.sync().unwrap().head, commit);
        self.mirror.verify_commit(commit, trust)
    }

    /// The refusal for `commit`, which must be refused.
    fn refusal(&mut self, commit: &str, trust: &Trust) -> (SignatureRefusal, String) {
        match self.verify(commit, trust) {
            Err(e @ GitError::Signature { .. }) => {
                let text = e.to_string();
                let GitError::Signature { commit: c, reason } = e else {
                    unreachable!()
                };
                assert_eq!(c, commit);
                assert!(
                    text.starts_with(&format!("commit {} ", &commit[..8])),
                    "{text}"
                );
                (reason, text)
            }
            other => panic!("{commit} should be refused, got {other:?}"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.keys.path().join(name)
    }

    /// A fresh SSH key pair; returns the private key's path and the `.pub` line.
    fn ssh_key(&self, name: &str, kind: &[&str]) -> (PathBuf, String) {
        let key = self.path(name);
        let mut args = vec!["-q", "-N", "", "-C", name, "-f", key.to_str().unwrap()];
        args.extend(kind);
        run(self.keys.path(), "ssh-keygen", &args, &[], b"");
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        (key, public.trim().to_owned())
    }

    /// Writes `text` to a file among the keys and returns its path.
    fn file(&self, name: &str, text: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn ssh_config(key: &Path) -> Vec<String> {
    vec![
        "gpg.format=ssh".to_owned(),
        format!("user.signingkey={}", key.display()),
    ]
}

/// Drops the `comment` word of a `.pub` line: `keytype base64`.
fn key_only(public: &str) -> &str {
    let mut parts = public.splitn(3, ' ');
    let (ty, b64) = (parts.next().unwrap(), parts.next().unwrap());
    &public[..ty.len() + 1 + b64.len()]
}

/// Signed by ed25519, ECDSA and RSA keys in the allowed signers: accepted, naming the
/// principal and the key's fingerprint. An unsigned commit and one signed by a key not in the
/// file are refused (C7, C8).
#[test]
fn ssh_signed_commits_are_verified_against_allowed_signers() {
    if !have(&["git", "ssh-keygen"]) {
        return;
    }
    let mut f = Fixture::new();
    let kinds: [(&str, &[&str]); 3] = [
        ("ed", &["-t", "ed25519"]),
        ("ecdsa", &["-t", "ecdsa", "-b", "256"]),
        ("rsa", &["-t", "rsa", "-b", "3072"]),
    ];
    let mut lines = String::from("# who may sign commits for this node\n\n");
    let mut signed = Vec::new();
    for (name, kind) in kinds {
        let (key, public) = f.ssh_key(name, kind);
        lines.push_str(&format!("{name}@example.com namespaces=\"git\" {public}\n"));
        let fingerprint = run(
            f.keys.path(),
            "ssh-keygen",
            &["-l", "-E", "sha256", "-f", key.to_str().unwrap()],
            &[],
            b"",
        );
        let fingerprint = fingerprint.split(' ').nth(1).unwrap().to_owned();
        signed.push((name, f.commit(name, &ssh_config(&key), &[]), fingerprint));
    }
    let signers = f.file("allowed_signers", lines.as_bytes());
    let trust = Trust::load(Some(&signers), None).unwrap();
    assert_eq!(trust.describe(), "3 SSH keys, 0 OpenPGP keys");

    // Git itself accepts them against the same file: the file is what git reads too.
    let git_trust = format!("gpg.ssh.allowedSignersFile={}", signers.display());
    for (name, commit, fingerprint) in &signed {
        f.git(&["-c", &git_trust, "verify-commit", commit], &[]);
        let signer = f.verify(commit, &trust).unwrap();
        assert_eq!(
            signer,
            Signer {
                kind: SignatureKind::Ssh,
                principal: format!("{name}@example.com"),
                fingerprint: fingerprint.clone(),
            }
        );
    }

    let unsigned = f.commit("unsigned", &[], &[]);
    let (reason, text) = f.refusal(&unsigned, &trust);
    assert_eq!(reason, SignatureRefusal::Unsigned);
    assert_eq!(text, format!("commit {} is not signed", &unsigned[..8]));

    let (stranger, _) = f.ssh_key("stranger", &["-t", "ed25519"]);
    let foreign = f.commit("by a stranger", &ssh_config(&stranger), &[]);
    let (reason, text) = f.refusal(&foreign, &trust);
    assert!(
        matches!(&reason, SignatureRefusal::UnknownKey { kind: SignatureKind::Ssh, fingerprint } if fingerprint.starts_with("SHA256:")),
        "{reason:?}"
    );
    assert!(
        text.ends_with("which is not in the allowed signers"),
        "{text}"
    );
}

/// The allowed signers' options are honoured against the signed commit: a key trusted for
/// other namespaces only, or outside its validity window at the committer time, is refused;
/// a signature made for another namespace than `git` is refused (C8).
#[test]
fn ssh_namespaces_and_validity_windows_are_enforced() {
    if !have(&["git", "ssh-keygen"]) {
        return;
    }
    let mut f = Fixture::new();
    let (key, public) = f.ssh_key("dev", &["-t", "ed25519"]);
    let commit = f.commit("signed", &ssh_config(&key), &[]);
    let public = key_only(&public);
    let trust = |options: &str| {
        Trust::parse(&format!("dev@example.com {options} {public}\n"), b"").unwrap()
    };

    assert!(f.verify(&commit, &trust("namespaces=\"file,git\"")).is_ok());
    assert!(
        f.verify(
            &commit,
            &trust("valid-after=20000101Z,valid-before=20990101Z")
        )
        .is_ok()
    );
    let (reason, text) = f.refusal(&commit, &trust("namespaces=\"file\""));
    assert!(
        matches!(&reason, SignatureRefusal::WrongNamespace { trusted_for: Some(l), .. } if l == "file"),
        "{reason:?}"
    );
    assert!(
        text.contains("trust only for the namespaces \"file\", not \"git\""),
        "{text}"
    );
    let (reason, text) = f.refusal(&commit, &trust("valid-before=20200101Z"));
    assert!(
        matches!(
            reason,
            SignatureRefusal::Expired {
                expired: 1_577_836_800,
                ..
            }
        ),
        "{reason:?}"
    );
    assert!(
        text.contains("which expired at 2020-01-01 00:00:00 UTC"),
        "{text}"
    );
    let (reason, _) = f.refusal(&commit, &trust("valid-after=20990101Z"));
    assert!(
        matches!(reason, SignatureRefusal::NotYetValid { .. }),
        "{reason:?}"
    );

    // The same key on a second line for `git` wins over a line that excludes it.
    let two = Trust::parse(
        &format!("ci@example.com namespaces=\"file\" {public}\ndev@example.com {public}\n"),
        b"",
    )
    .unwrap();
    assert_eq!(
        f.verify(&commit, &two).unwrap().principal,
        "dev@example.com"
    );

    // Sign the same commit body for the `file` namespace with ssh-keygen, and put that
    // signature in the commit's gpgsig header, as git would have for `git`.
    let unsigned = f.commit("to sign by hand", &[], &[]);
    let body = f.git(&["cat-file", "commit", &unsigned], &[]) + "\n";
    let message = f.file("body", body.as_bytes());
    run(
        f.keys.path(),
        "ssh-keygen",
        &[
            "-Y",
            "sign",
            "-q",
            "-n",
            "file",
            "-f",
            key.to_str().unwrap(),
            message.to_str().unwrap(),
        ],
        &[],
        b"",
    );
    let armour = std::fs::read_to_string(message.with_extension("sig")).unwrap();
    let (headers, rest) = body.split_once("\n\n").unwrap();
    let gpgsig = armour.trim_end().replace('\n', "\n ");
    let wrong = f.write_commit(&format!("{headers}\ngpgsig {gpgsig}\n\n{rest}"));
    let (reason, text) = f.refusal(&wrong, &trust(""));
    assert!(
        matches!(&reason, SignatureRefusal::WrongNamespace { namespace, trusted_for: None, .. } if namespace == "file"),
        "{reason:?}"
    );
    assert!(
        text.contains("for the namespace \"file\", not \"git\""),
        "{text}"
    );
}

/// A signed commit whose message was changed (the gpgsig header kept, so the signature is
/// copied onto another object) fails the signature check (C8).
#[test]
fn an_ssh_signature_copied_onto_a_changed_commit_is_refused() {
    if !have(&["git", "ssh-keygen"]) {
        return;
    }
    let mut f = Fixture::new();
    let (key, public) = f.ssh_key("dev", &["-t", "ed25519"]);
    let trust = Trust::parse(&format!("dev@example.com {public}\n"), b"").unwrap();
    let good = f.commit("deploy web 1.2", &ssh_config(&key), &[]);
    assert!(f.verify(&good, &trust).is_ok());
    let forged = f.tampered(&good);
    let (reason, text) = f.refusal(&forged, &trust);
    assert!(
        matches!(
            reason,
            SignatureRefusal::BadSignature {
                kind: SignatureKind::Ssh,
                ..
            }
        ),
        "{reason:?}"
    );
    assert!(text.contains("copied from another object"), "{text}");
}

/// A temporary GnuPG home; stops its agent when dropped.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Self {
        // gpg-agent's socket path must stay short: a folder straight under /tmp.
        let home = tempfile::Builder::new()
            .prefix("orun-gpg")
            .tempdir_in("/tmp")
            .unwrap();
        Self { home }
    }

    fn env(&self) -> [(&'static str, &Path); 1] {
        [("GNUPGHOME", self.home.path())]
    }

    fn gpg(&self, args: &[&str], stdin: &[u8]) -> String {
        let mut all = vec!["--batch", "--quiet", "--no-tty"];
        all.extend(args);
        run(self.home.path(), "gpg", &all, &self.env(), stdin)
    }

    /// Makes a key for `uid` (`extra` before the arguments, e.g. a faked time) and returns
    /// its fingerprint.
    fn key(&self, uid: &str, algo: &str, usage: &str, extra: &[&str]) -> String {
        let mut args = extra.to_vec();
        args.extend([
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            algo,
            usage,
            "never",
        ]);
        self.gpg(&args, b"");
        self.fingerprint(uid)
    }

    fn fingerprint(&self, uid: &str) -> String {
        let listing = self.gpg(&["--with-colons", "--list-keys", uid], b"");
        listing
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_owned())
            })
            .unwrap()
    }

    /// The fingerprint of the last subkey of `fpr`.
    fn last_subkey(&self, fpr: &str) -> String {
        let listing = self.gpg(&["--with-colons", "--list-keys", fpr], b"");
        let mut last = None;
        let mut in_sub = false;
        for line in listing.lines() {
            in_sub = match line.split(':').next() {
                Some("sub") => true,
                Some("fpr") if in_sub => {
                    last = Some(line.trim_start_matches("fpr:").trim_matches(':').to_owned());
                    false
                }
                Some("fpr") => false,
                _ => in_sub,
            };
        }
        last.unwrap()
    }

    fn export(&self, fprs: &[&str]) -> Vec<u8> {
        let mut args = vec!["--armor", "--export"];
        args.extend(fprs);
        let mut out = self.gpg(&args, b"").into_bytes();
        out.push(b'\n');
        out
    }

    fn config(&self, fpr: &str, program: &str) -> Vec<String> {
        vec![
            format!("gpg.program={program}"),
            format!("user.signingkey={fpr}"),
        ]
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", self.home.path())
            .status();
    }
}

/// OpenPGP commits signed by gpg through git: an ed25519 primary key and an RSA key's
/// signing subkey are accepted; a key not in the keyring is refused by its fingerprint; a
/// changed commit keeping the signature is refused (C8).
#[test]
fn openpgp_signed_commits_are_verified_against_the_keyring() {
    if !have(&["git", "gpg", "gpgconf"]) {
        return;
    }
    let mut f = Fixture::new();
    let g = Gpg::new();
    let env = g.env();
    let dev = g.key("Dev <dev@example.com>", "ed25519", "sign", &[]);
    // A certify-only primary with a separate signing subkey, as careful users set up.
    let ops = g.key("Ops <ops@example.com>", "rsa3072", "cert", &[]);
    g.gpg(
        &[
            "--passphrase",
            "",
            "--quick-add-key",
            &ops,
            "ed25519",
            "sign",
            "never",
        ],
        b"",
    );
    let ops_sub = g.last_subkey(&ops);
    let eve = g.key("Eve <eve@example.com>", "ed25519", "sign", &[]);
    let keyring = f.file("keyring.asc", &g.export(&[&dev, &ops]));
    let trust = Trust::load(None, Some(&keyring)).unwrap();
    assert_eq!(trust.describe(), "0 SSH keys, 2 OpenPGP keys");

    let by_dev = f.commit("by dev", &g.config(&dev, "gpg"), &env);
    assert_eq!(
        f.verify(&by_dev, &trust).unwrap(),
        Signer {
            kind: SignatureKind::OpenPgp,
            principal: "Dev <dev@example.com>".to_owned(),
            fingerprint: dev.clone(),
        }
    );
    let by_ops = f.commit("by ops", &g.config(&ops, "gpg"), &env);
    let signer = f.verify(&by_ops, &trust).unwrap();
    assert_eq!(signer.principal, "Ops <ops@example.com>");
    assert_eq!(signer.fingerprint, ops_sub);

    let by_eve = f.commit("by eve", &g.config(&eve, "gpg"), &env);
    let (reason, text) = f.refusal(&by_eve, &trust);
    assert_eq!(
        reason,
        SignatureRefusal::UnknownKey {
            kind: SignatureKind::OpenPgp,
            fingerprint: eve.clone()
        }
    );
    assert!(
        text.ends_with(&format!(
            "is signed by OpenPGP key {eve} which is not in the OpenPGP keyring"
        )),
        "{text}"
    );

    let forged = f.tampered(&by_dev);
    let (reason, _) = f.refusal(&forged, &trust);
    assert_eq!(
        reason,
        SignatureRefusal::BadSignature {
            kind: SignatureKind::OpenPgp,
            fingerprint: dev.clone()
        }
    );

    // A binary keyring reads the same.
    let mut out = Vec::new();
    let mut child = Command::new("gpg")
        .args(["--batch", "--export", &dev])
        .env("GNUPGHOME", g.home.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Read::read_to_end(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(child.wait().unwrap().success());
    let trust = Trust::parse("", &out).unwrap();
    assert!(f.verify(&by_dev, &trust).is_ok());
}

/// Keys judged at the signature's time: a signature made after the key expired is refused,
/// and after the key is revoked (its revocation certificate imported, no reason given) so is
/// a signature made before (C8).
#[test]
fn expired_and_revoked_openpgp_keys_are_refused() {
    if !have(&["git", "gpg", "gpgconf"]) {
        return;
    }
    let mut f = Fixture::new();
    let g = Gpg::new();
    let env = g.env();
    // gpg will not sign with an expired key, so the clock is moved instead: made in 2020,
    // signs in 2021, and (from 2020-02) expires 2020-06.
    let old = g.key(
        "Old <old@example.com>",
        "ed25519",
        "sign",
        &["--faked-system-time", "20200101T000000!"],
    );
    let script = f.file(
        "gpg-2021",
        b"#!/bin/sh\nexec gpg --faked-system-time 20210101T000000! \"$@\"\n",
    );
    let mut perms = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).unwrap();
    let late = f.commit("late", &g.config(&old, script.to_str().unwrap()), &env);
    let trust = Trust::parse("", &g.export(&[&old])).unwrap();
    assert!(
        f.verify(&late, &trust).is_ok(),
        "valid before the expiry is set"
    );
    g.gpg(
        &[
            "--faked-system-time",
            "20200201T000000!",
            "--quick-set-expire",
            &old,
            "2020-06-01",
        ],
        b"",
    );
    let trust = Trust::parse("", &g.export(&[&old])).unwrap();
    let (reason, text) = f.refusal(&late, &trust);
    assert!(
        matches!(&reason, SignatureRefusal::Expired { kind: SignatureKind::OpenPgp, fingerprint, .. } if *fingerprint == old),
        "{reason:?}"
    );
    assert!(text.contains("which expired at 2020-06-01"), "{text}");
    assert!(
        text.contains("the signature dates from 2021-01-01 00:00:00 UTC"),
        "{text}"
    );

    let dev = g.key("Dev <dev@example.com>", "ed25519", "sign", &[]);
    let signed = f.commit("before the revocation", &g.config(&dev, "gpg"), &env);
    assert!(
        f.verify(&signed, &Trust::parse("", &g.export(&[&dev])).unwrap())
            .is_ok()
    );
    // gpg stores a revocation certificate for every new key, its armour line guarded by ':'.
    let certificate =
        std::fs::read_to_string(g.home.path().join(format!("openpgp-revocs.d/{dev}.rev"))).unwrap();
    let certificate = certificate.replace(":-----BEGIN", "-----BEGIN");
    g.gpg(&["--import"], certificate.as_bytes());
    let trust = Trust::parse("", &g.export(&[&dev])).unwrap();
    let (reason, text) = f.refusal(&signed, &trust);
    assert!(
        matches!(&reason, SignatureRefusal::Revoked { fingerprint, .. } if *fingerprint == dev),
        "{reason:?}"
    );
    assert!(text.contains("which is revoked"), "{text}");
}

/// A node configured with both kinds trusts each; the files' errors name the file and line.
#[test]
fn trust_files_load_from_disk_with_located_errors() {
    if !have(&["ssh-keygen"]) {
        return;
    }
    let f = Fixture::new();
    let (_, public) = f.ssh_key("dev", &["-t", "ed25519"]);
    let bad = f.file(
        "bad_signers",
        format!("# ok\ndev@example.com {public}\nops@example.com bogus=1 {public}\n").as_bytes(),
    );
    let err = Trust::load(Some(&bad), None).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "allowed signers file {}:3: unknown option \"bogus\" (or unknown key type)",
            bad.display()
        )
    );
    let missing = f.path("missing.asc");
    let err = Trust::load(None, Some(&missing)).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("OpenPGP keyring {}: ", missing.display())),
        "{err}"
    );
    assert!(Trust::load(None, None).is_err());
    let big = f.file("big", &vec![b'#'; gitsync::MAX_ALLOWED_SIGNERS + 1]);
    let err = Trust::load(Some(&big), None).unwrap_err().to_string();
    assert!(err.contains("larger than the 1048576-byte cap"), "{err}");
}

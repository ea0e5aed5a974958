//! Self-update end to end against the real `minisign` CLI: releases are small shell scripts
//! published into a feed directory, signed with fresh keys, and taken through
//! check → stage → swap → start → confirm/revert; every RELIABILITY F-row has a test here.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "test helpers: a panic is the failure report, and a skip is said on stdout"
)]

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use self_update::{
    FeedLocation, Offer, Refusal, Release, StartCheck, TARGET, UpdateConfig, UpdateError, Updater,
    Version,
};
use sha2::{Digest, Sha256};

/// Set (to a fixture's root) in the child process of the crash tests.
const CHILD_VAR: &str = "ORUN_UPDATE_TEST_CHILD";

fn minisign_available() -> bool {
    test_support::minisign::available()
}

fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

/// A release binary: a shell script that prints `orun <version>` for `--version`, fails
/// `--fail`, and succeeds otherwise.
fn script(version: &str) -> Vec<u8> {
    format!(
        "#!/bin/sh\ncase \"$1\" in\n  --version) echo \"orun {version}\" ;;\n  --fail) exit 1 ;;\nesac\nexit 0\n"
    )
    .into_bytes()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A minisign key pair in `dir`: (public key file, secret key file, key id).
fn keypair(dir: &Path) -> (PathBuf, PathBuf, String) {
    let k = test_support::minisign::keypair(dir);
    (k.public, k.secret, k.id)
}

/// How to publish a release, with the faults the tests inject.
struct Publish<'a> {
    version: &'a str,
    bytes: Vec<u8>,
    /// The size written in the feed (default: the real one).
    size: Option<u64>,
    /// The checksum written in the feed (default: the real one).
    sha256: Option<String>,
    /// The trusted comment signed (default: `orun <version> <target>`).
    comment: Option<String>,
    /// Sign these bytes instead of the published ones.
    sign_other: Option<Vec<u8>>,
    /// Sign with this secret key instead of the trusted one.
    key: Option<PathBuf>,
    /// Publish no signature file.
    no_signature: bool,
}

impl<'a> Publish<'a> {
    fn new(version: &'a str) -> Self {
        Self {
            version,
            bytes: script(version),
            size: None,
            sha256: None,
            comment: None,
            sign_other: None,
            key: None,
            no_signature: false,
        }
    }
}

/// A node with an installed `orun` 0.1.0, a feed directory, a trusted key and a state dir.
struct Fixture {
    _dir: Option<tempfile::TempDir>,
    root: PathBuf,
    secret: PathBuf,
}

const OLD: &str = "0.1.0";

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let (_, secret, _) = keypair(&root.join("keys"));
        fs::create_dir_all(root.join("feed")).unwrap();
        fs::create_dir_all(root.join("bin")).unwrap();
        let fixture = Self {
            _dir: Some(dir),
            root,
            secret,
        };
        fs::write(fixture.binary(), script(OLD)).unwrap();
        fs::set_permissions(fixture.binary(), fs::Permissions::from_mode(0o755)).unwrap();
        fixture
    }

    /// The fixture a parent test made, seen from its child process.
    fn reopen(root: PathBuf) -> Self {
        Self {
            _dir: None,
            secret: root.join("keys/key.sec"),
            root,
        }
    }

    fn binary(&self) -> PathBuf {
        self.root.join("bin/orun")
    }

    fn prev(&self) -> PathBuf {
        self.root.join("bin/orun.prev")
    }

    fn state_file(&self) -> PathBuf {
        self.root.join("state/update.json")
    }

    fn feed(&self) -> PathBuf {
        self.root.join("feed/release.json")
    }

    fn config(&self, current: &str) -> UpdateConfig {
        UpdateConfig {
            feed: FeedLocation::Path(self.feed()),
            public_key: self.root.join("keys/key.pub"),
            binary: self.binary(),
            name: "orun".into(),
            current: v(current),
            state_dir: self.root.join("state"),
            ca_file: None,
            self_test: vec![vec![
                OsString::from("start"),
                OsString::from("--check-config"),
            ]],
            probation: Duration::from_secs(120),
        }
    }

    fn updater(&self, current: &str) -> Updater {
        Updater::new(self.config(current)).unwrap()
    }

    /// Writes the release's files into the feed directory and the feed pointing at them.
    fn publish(&self, p: Publish) {
        let feed = self.root.join("feed");
        let file = format!("orun-{}-{TARGET}", p.version);
        fs::write(feed.join(&file), &p.bytes).unwrap();
        let signed = match &p.sign_other {
            Some(other) => {
                let path = feed.join(format!("{file}.other"));
                fs::write(&path, other).unwrap();
                path
            }
            None => feed.join(&file),
        };
        let sig = feed.join(format!("{file}.minisig"));
        let _ = fs::remove_file(&sig);
        if !p.no_signature {
            let comment = p
                .comment
                .unwrap_or_else(|| format!("orun {} {TARGET}", p.version));
            test_support::minisign::sign(
                p.key.as_ref().unwrap_or(&self.secret),
                &signed,
                &comment,
                &sig,
            );
        }
        let json = serde_json::json!({
            "version": p.version,
            "artifacts": [{
                "name": "orun",
                "target": TARGET,
                "url": file,
                "size": p.size.unwrap_or(p.bytes.len() as u64),
                "sha256": p.sha256.unwrap_or_else(|| sha256_hex(&p.bytes)),
                "signature": format!("{file}.minisig"),
            }]
        });
        fs::write(self.feed(), serde_json::to_vec(&json).unwrap()).unwrap();
    }

    /// The release the feed offers to a binary at `current`.
    fn offered(&self, current: &str) -> Release {
        match self.updater(current).check().unwrap() {
            Offer::Available(release) => release,
            other => panic!("nothing offered: {other:?}"),
        }
    }

    /// What `--version` of the installed binary prints.
    fn installed_version(&self) -> String {
        // A binary this process just wrote can be briefly busy (ETXTBSY): another test's
        // thread may have forked while the file was open for writing.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let out = loop {
            match Command::new(self.binary()).arg("--version").output() {
                Err(e)
                    if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other.unwrap(),
            }
        };
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// The files beside the installed binary, sorted.
    fn bin_dir(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root.join("bin"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Asserts the installed binary is still the original 0.1.0 and nothing was staged.
    fn assert_untouched(&self) {
        assert_eq!(fs::read(self.binary()).unwrap(), script(OLD));
        assert_eq!(self.bin_dir(), ["orun"]);
    }

    /// Stages the published release from 0.1.0 and expects it refused; returns the error.
    fn stage_fails(&self) -> UpdateError {
        let release = self.offered(OLD);
        let err = self.updater(OLD).stage(&release).unwrap_err();
        self.assert_untouched();
        err
    }
}

/// A good release is staged, self-tested and swapped in; the new binary starts on probation
/// and its confirmation removes the kept old one (RELIABILITY F6, F7, F8).
#[test]
fn good_release_is_staged_swapped_and_confirmed() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    f.publish(Publish::new("0.2.0"));
    let mut updater = f.updater(OLD);
    assert_eq!(updater.on_start().unwrap(), StartCheck::Normal);
    let release = match updater.check().unwrap() {
        Offer::Available(release) => release,
        other => panic!("{other:?}"),
    };
    assert_eq!(release.version, v("0.2.0"));
    let staged = updater.stage(&release).unwrap();
    assert_eq!(staged.path(), f.root.join("bin/.orun.staged-0.2.0"));
    assert_eq!(updater.state().highest_seen, Some(v("0.2.0")));
    // Staging does not touch the installed binary.
    assert_eq!(f.installed_version(), "orun 0.1.0");
    updater.swap(staged).unwrap();
    assert_eq!(f.installed_version(), "orun 0.2.0");
    assert_eq!(fs::read(f.prev()).unwrap(), script(OLD));
    assert_eq!(f.bin_dir(), ["orun", "orun.prev"]);
    let pending = updater.state().pending.clone().unwrap();
    assert_eq!(
        (pending.version, pending.previous_version, pending.starts),
        (v("0.2.0"), v(OLD), 0)
    );
    assert_eq!(pending.deadline_unix - pending.started_at_unix, 120);

    // The re-executed process: the new version, on probation.
    let mut new = f.updater("0.2.0");
    match new.on_start().unwrap() {
        StartCheck::Probation { version, deadline } => {
            assert_eq!(version, v("0.2.0"));
            assert!(deadline > SystemTime::now());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(new.state().pending.as_ref().unwrap().starts, 1);
    new.confirm().unwrap();
    assert_eq!(new.state().pending, None);
    assert_eq!(f.bin_dir(), ["orun"]);
    // Persisted: a fresh updater sees the same, and the feed is now up to date.
    let fresh = f.updater("0.2.0");
    assert_eq!(fresh.state().pending, None);
    assert_eq!(
        fresh.check().unwrap(),
        Offer::UpToDate { latest: v("0.2.0") }
    );
}

/// A download shorter than the signed size is refused and discarded (RELIABILITY F1).
#[test]
fn truncated_download_is_refused() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    let mut p = Publish::new("0.2.0");
    p.size = Some(p.bytes.len() as u64 + 10);
    f.publish(p);
    let err = f.stage_fails();
    assert!(
        matches!(err, UpdateError::SizeMismatch { expected, got } if expected == got + 10),
        "{err:?}"
    );
}

/// A download larger than the signed size stops at that size (RELIABILITY F5).
#[test]
fn download_larger_than_signed_size_is_refused() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    let mut p = Publish::new("0.2.0");
    p.size = Some(p.bytes.len() as u64 - 10);
    f.publish(p);
    let err = f.stage_fails();
    assert!(
        matches!(&err, UpdateError::TooLarge { what, .. } if what == "binary"),
        "{err:?}"
    );
}

/// A checksum that does not match is fatal (RELIABILITY F2).
#[test]
fn bad_checksum_is_refused() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    let mut p = Publish::new("0.2.0");
    p.sha256 = Some(sha256_hex(b"something else"));
    f.publish(p);
    let err = f.stage_fails();
    assert!(matches!(err, UpdateError::Checksum { .. }), "{err:?}");
    assert!(err.to_string().starts_with("SHA-256 mismatch"), "{err}");
}

/// A missing signature file is a failure, never "nothing to verify" (RELIABILITY F2).
#[test]
fn missing_signature_is_refused() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    let mut p = Publish::new("0.2.0");
    p.no_signature = true;
    f.publish(p);
    let err = f.stage_fails();
    assert!(
        matches!(&err, UpdateError::Io { action, source } if action.contains("signature") && source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
}

/// A valid signature of other bytes does not verify this binary (RELIABILITY F3).
#[test]
fn signature_of_other_bytes_is_refused() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    let mut p = Publish::new("0.2.0");
    p.sign_other = Some(script("0.2.1"));
    f.publish(p);
    let err = f.stage_fails();
    assert!(matches!(err, UpdateError::Signature { .. }), "{err:?}");
    assert!(err.to_string().contains("does not verify"), "{err}");
}

/// A signature by a key other than the pinned one is refused, naming its key id
/// (RELIABILITY F3).
#[test]
fn signature_by_unknown_key_is_refused() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    let (_, other_secret, other_id) = keypair(&f.root.join("other-keys"));
    let trusted_id = {
        let text = fs::read_to_string(f.root.join("keys/key.pub")).unwrap();
        text.lines()
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    let mut p = Publish::new("0.2.0");
    p.key = Some(other_secret);
    f.publish(p);
    let err = f.stage_fails();
    match &err {
        UpdateError::UnknownKey { key_id, trusted } => {
            assert_eq!(key_id, &other_id);
            assert_eq!(trusted, &trusted_id);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&other_id), "{err}");
}

/// An old signed binary relabelled as a new release: the signature is valid but its trusted
/// comment names another version (RELIABILITY F3, F4).
#[test]
fn relabelled_old_binary_is_refused() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    let mut p = Publish::new("0.3.0");
    // The bytes and signature of a genuine 0.2.0 release, offered as 0.3.0.
    p.bytes = script("0.3.0");
    p.comment = Some(format!("orun 0.2.0 {TARGET}"));
    f.publish(p);
    let err = f.stage_fails();
    match &err {
        UpdateError::TrustedComment { expected, found } => {
            assert_eq!(expected, &format!("orun 0.3.0 {TARGET}"));
            assert_eq!(found, &format!("orun 0.2.0 {TARGET}"));
        }
        other => panic!("{other:?}"),
    }
    // Refused before the version was recorded as seen.
    assert_eq!(f.updater(OLD).state().highest_seen, None);
}

/// After a verified stage, an older version is refused by the persisted highest version
/// seen, even to a fresh updater of the old binary (RELIABILITY F4); the same version stays
/// installable (a stage that did not end in a swap is tried again).
#[test]
fn downgrade_is_refused_by_highest_seen_and_the_same_version_is_offered_again() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    f.publish(Publish::new("0.1.5"));
    let older = f.offered(OLD);
    f.publish(Publish::new("0.2.0"));
    let release = f.offered(OLD);
    let staged = f.updater(OLD).stage(&release).unwrap();
    assert!(staged.path().exists());

    // A fresh process of the old binary (the swap never happened).
    let fresh = f.updater(OLD);
    assert_eq!(fresh.state().highest_seen, Some(v("0.2.0")));
    f.publish(Publish::new("0.2.0"));
    assert_eq!(f.offered(OLD).version, v("0.2.0"));
    for again in ["0.1.9", "0.1.5"] {
        f.publish(Publish::new(again));
        let err = f.updater(OLD).check().unwrap_err();
        assert!(
            matches!(&err, UpdateError::Refused { version, reason: Refusal::NotNewer { highest } }
                if *version == v(again) && *highest == v("0.2.0")),
            "{again}: {err:?}"
        );
        assert!(
            err.to_string()
                .contains("older than the highest version seen"),
            "{err}"
        );
    }
    // Below the running version: a downgrade.
    f.publish(Publish::new("0.0.9"));
    let err = f.updater(OLD).check().unwrap_err();
    assert!(
        matches!(
            &err,
            UpdateError::Refused {
                reason: Refusal::Downgrade { .. },
                ..
            }
        ),
        "{err:?}"
    );
    // The running version itself is not an error.
    f.publish(Publish::new(OLD));
    assert_eq!(
        f.updater(OLD).check().unwrap(),
        Offer::UpToDate { latest: v(OLD) }
    );
    // stage() refuses on its own too, whatever check() said earlier.
    let err = f.updater(OLD).stage(&older).unwrap_err();
    assert!(
        matches!(
            err,
            UpdateError::Refused {
                reason: Refusal::NotNewer { .. },
                ..
            }
        ),
        "{err:?}"
    );
    // The highest version itself is staged again.
    f.publish(Publish::new("0.2.0"));
    f.updater(OLD).stage(&release).unwrap();
}

/// A staged binary that fails `--version` is refused (RELIABILITY F6).
#[test]
fn self_test_failing_version_is_refused() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    let mut p = Publish::new("0.2.0");
    p.bytes =
        b"#!/bin/sh\necho 'orun 0.2.0'\necho 'cannot start: wrong arch' >&2\nexit 1\n".to_vec();
    f.publish(p);
    let err = f.stage_fails();
    assert!(matches!(err, UpdateError::SelfTest { .. }), "{err:?}");
    assert!(err.to_string().contains("wrong arch"), "{err}");
}

/// A staged binary that prints another version than its release's is refused
/// (RELIABILITY F6).
#[test]
fn self_test_wrong_version_is_refused() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    let mut p = Publish::new("0.2.0");
    p.bytes = script("0.1.9");
    f.publish(p);
    let err = f.stage_fails();
    assert!(
        err.to_string().contains("does not print version 0.2.0"),
        "{err}"
    );
}

/// Garbage bytes (a truncated ELF, another architecture) cannot run and are refused
/// (RELIABILITY F6).
#[test]
fn self_test_garbage_binary_is_refused() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    let mut p = Publish::new("0.2.0");
    p.bytes = b"\x7fELF\x02\x01\x01\0garbage, cut short".to_vec();
    f.publish(p);
    let err = f.stage_fails();
    assert!(matches!(err, UpdateError::SelfTest { .. }), "{err:?}");
}

/// A configured self-test that fails refuses the release (RELIABILITY F6).
#[test]
fn self_test_failing_configured_check_is_refused() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    f.publish(Publish::new("0.2.0"));
    let release = f.offered(OLD);
    let mut config = f.config(OLD);
    config.self_test = vec![vec![OsString::from("--fail")]];
    let err = Updater::new(config).unwrap().stage(&release).unwrap_err();
    f.assert_untouched();
    assert!(err.to_string().contains("failed `--fail`"), "{err}");
}

/// `mark_bad` after a failed trial removes the staged file and the version is never
/// offered again (RELIABILITY F7).
#[test]
fn marked_bad_version_is_not_offered_again() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    f.publish(Publish::new("0.2.0"));
    let release = f.offered(OLD);
    let mut updater = f.updater(OLD);
    let staged = updater.stage(&release).unwrap();
    assert!(staged.path().exists());
    updater.mark_bad(&v("0.2.0"), "trial failed").unwrap();
    f.assert_untouched();
    let err = f.updater(OLD).check().unwrap_err();
    assert!(
        matches!(&err, UpdateError::Refused { reason: Refusal::MarkedBad { reason }, .. } if reason == "trial failed"),
        "{err:?}"
    );
}

/// Swaps 0.2.0 in from 0.1.0 and returns the updater of the new process.
fn swapped(f: &Fixture) -> Updater {
    f.publish(Publish::new("0.2.0"));
    let release = f.offered(OLD);
    let mut updater = f.updater(OLD);
    let staged = updater.stage(&release).unwrap();
    updater.swap(staged).unwrap();
    assert_eq!(f.installed_version(), "orun 0.2.0");
    f.updater("0.2.0")
}

/// `revert` restores the old binary byte for byte and marks the version bad; it is refused
/// as bad afterwards (RELIABILITY F7).
#[test]
fn revert_restores_the_old_binary_and_marks_the_version_bad() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    let mut new = swapped(&f);
    assert!(matches!(
        new.on_start().unwrap(),
        StartCheck::Probation { .. }
    ));
    new.revert("never reported ready").unwrap();
    f.assert_untouched();
    assert_eq!(
        new.state().bad.get(&v("0.2.0")).map(String::as_str),
        Some("never reported ready")
    );
    assert_eq!(new.state().pending, None);
    // The old binary, started again, finds nothing pending and is offered nothing.
    let mut old = f.updater(OLD);
    assert_eq!(old.on_start().unwrap(), StartCheck::Normal);
    let err = old.check().unwrap_err();
    assert!(
        matches!(
            &err,
            UpdateError::Refused {
                reason: Refusal::MarkedBad { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("marked bad: never reported ready"),
        "{err}"
    );
    // Nothing left to revert.
    assert!(matches!(old.revert("again"), Err(UpdateError::NoPending)));
}

/// A new version that keeps restarting without confirming is reverted on its fourth start
/// (RELIABILITY F7).
#[test]
fn too_many_starts_mean_revert_now() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    swapped(&f);
    for start in 1..=3 {
        let check = f.updater("0.2.0").on_start().unwrap();
        assert!(
            matches!(check, StartCheck::Probation { .. }),
            "start {start}: {check:?}"
        );
    }
    let mut fourth = f.updater("0.2.0");
    match fourth.on_start().unwrap() {
        StartCheck::RevertNow { reason } => assert!(reason.contains("started 4 times"), "{reason}"),
        other => panic!("{other:?}"),
    }
    fourth.revert("crash loop").unwrap();
    f.assert_untouched();
}

/// A new version not confirmed by its deadline is reverted (RELIABILITY F7); time is
/// injected, not waited for.
#[test]
fn deadline_passed_means_revert_now() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    swapped(&f);
    let late = SystemTime::now() + Duration::from_secs(121);
    match f.updater("0.2.0").on_start_at(late).unwrap() {
        StartCheck::RevertNow { reason } => assert!(reason.contains("deadline"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Before the deadline it is still on probation (the start above counted as one).
    let early = SystemTime::now() + Duration::from_secs(60);
    let mut updater = f.updater("0.2.0");
    assert!(matches!(
        updater.on_start_at(early).unwrap(),
        StartCheck::Probation { .. }
    ));
    assert_eq!(updater.state().pending.as_ref().unwrap().starts, 2);
}

/// An unreachable feed (a missing path, https to a closed port) is an error and changes
/// nothing: the state file stays byte-identical (RELIABILITY F1, F2).
#[test]
fn unreachable_feed_changes_nothing() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    f.updater(OLD)
        .mark_bad(&v("9.9.9"), "a state to keep")
        .unwrap();
    let before = fs::read(f.state_file()).unwrap();

    let mut config = f.config(OLD);
    config.feed = FeedLocation::Path(f.root.join("feed/missing.json"));
    let err = Updater::new(config).unwrap().check().unwrap_err();
    assert!(
        matches!(&err, UpdateError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = f.config(OLD);
    config.feed = FeedLocation::parse(&format!("https://127.0.0.1:{closed}/release.json")).unwrap();
    let mut updater = Updater::new(config).unwrap();
    let err = updater.check().unwrap_err();
    assert!(matches!(err, UpdateError::Fetch { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot fetch the feed"), "{err}");
    assert_eq!(updater.on_start().unwrap(), StartCheck::Normal);

    assert!(FeedLocation::parse("http://127.0.0.1/release.json").is_err());
    assert_eq!(fs::read(f.state_file()).unwrap(), before);
    f.assert_untouched();
}

/// A corrupt state file is an error, not a silent reset of the rollback floor
/// (RELIABILITY F4).
#[test]
fn corrupt_state_is_an_error() {
    if !minisign_available() {
        return;
    }
    let f = Fixture::new();
    fs::create_dir_all(f.root.join("state")).unwrap();
    fs::write(f.state_file(), b"{\"highest_seen\": \"0.2").unwrap();
    let err = Updater::new(f.config(OLD)).err().unwrap();
    assert!(matches!(err, UpdateError::State { .. }), "{err:?}");
}

/// The steps of an update, in order, with the version installed after a crash right after
/// each: until the rename, the old binary; from it on, the new.
const STEPS: [(&str, &str); 7] = [
    ("downloaded", OLD),
    ("verified", OLD),
    ("self-tested", OLD),
    ("recorded", OLD),
    ("linked-prev", OLD),
    ("swapped", "0.2.0"),
    ("confirm", "0.2.0"),
];

/// Not a test on its own: the child process of `a_crash_after_any_step_leaves_one_complete_binary`,
/// which runs a whole update (and the new version's start and confirmation) in the fixture
/// named by its environment. Without that variable it does nothing.
#[test]
fn child_process_for_failpoints() {
    let Some(root) = std::env::var_os(CHILD_VAR) else {
        return;
    };
    let f = Fixture::reopen(PathBuf::from(root));
    let mut updater = f.updater(OLD);
    assert_eq!(updater.on_start().unwrap(), StartCheck::Normal);
    let Offer::Available(release) = updater.check().unwrap() else {
        panic!("nothing offered");
    };
    let staged = updater.stage(&release).unwrap();
    updater.swap(staged).unwrap();
    let mut new = f.updater("0.2.0");
    assert!(matches!(
        new.on_start().unwrap(),
        StartCheck::Probation { .. }
    ));
    new.confirm().unwrap();
}

/// A crash (abort) right after any step leaves exactly one complete binary, the old or the
/// new; the next start cleans up and the state parses (RELIABILITY F8).
#[test]
fn a_crash_after_any_step_leaves_one_complete_binary() {
    if !minisign_available() {
        return;
    }
    let child = |f: &Fixture, failpoint: Option<&str>| {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "child_process_for_failpoints",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_VAR, &f.root)
        .env_remove("ORUN_UPDATE_FAILPOINT");
        if let Some(step) = failpoint {
            cmd.env("ORUN_UPDATE_FAILPOINT", step);
        }
        cmd.output().unwrap()
    };
    // Without a failpoint, the child completes the whole update.
    let f = Fixture::new();
    f.publish(Publish::new("0.2.0"));
    let out = child(&f, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(f.installed_version(), "orun 0.2.0");
    assert_eq!(f.bin_dir(), ["orun"]);

    for (step, installed) in STEPS {
        let f = Fixture::new();
        f.publish(Publish::new("0.2.0"));
        let out = child(&f, Some(step));
        assert!(
            std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(6),
            "{step}: the child did not abort: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(f.installed_version(), format!("orun {installed}"), "{step}");
        // The state file parses, and the next start of whatever is installed cleans up.
        let mut next = f.updater(installed);
        match next.on_start().unwrap() {
            StartCheck::Probation { .. } => {
                assert_eq!(step, "swapped");
                next.confirm().unwrap();
            }
            StartCheck::Normal => {}
            other => panic!("{step}: {other:?}"),
        }
        assert_eq!(f.bin_dir(), ["orun"], "{step}");
        assert_eq!(next.state().pending, None, "{step}");
        let state = f.updater(installed).state().clone();
        // Once the signature verified, the version counts as seen.
        let seen = step != "downloaded";
        assert_eq!(state.highest_seen == Some(v("0.2.0")), seen, "{step}");
    }
}

//! The real `sops` and `age` for the secrets tests: fresh age keys from `age-keygen`, and
//! files encrypted by `sops` itself, so what orun decrypts is what users' repositories hold.
//!
//! `cargo xtask test` installs both (`sops` in a venv under `target/tools/sops`); elsewhere
//! a test skips without them unless `ORUN_REQUIRE_ALL` is set.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::which;

/// The `sops` program: `ORUN_SOPS`, else the one xtask installs, else `sops` on the PATH.
pub fn program() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORUN_SOPS") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/sops/bin/sops");
    if venv.is_file() {
        return Some(venv);
    }
    which("sops")
}

/// Whether `sops` and `age-keygen` are here; panics when they must be (`ORUN_REQUIRE_ALL`).
#[allow(clippy::print_stderr, reason = "a skipped test says why")]
pub fn available() -> bool {
    let ok = program().is_some() && which("age-keygen").is_some();
    if !ok {
        assert!(
            !crate::required(),
            "sops or age-keygen is missing (cargo xtask test installs them)"
        );
        eprintln!("skipped: sops or age-keygen is missing (cargo xtask test installs them)");
    }
    ok
}

/// A fresh age identity in `dir/<name>.key`; returns the file and its public key.
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}.key"));
    let out = Command::new("age-keygen")
        .args(["-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "age-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    assert!(public.status.success());
    (
        path,
        String::from_utf8(public.stdout).unwrap().trim().to_owned(),
    )
}

/// `plaintext` encrypted by the real `sops` to `recipient`, as a file named `name` (its
/// extension picks the format); `extra` are more `sops --encrypt` flags
/// (`--encrypted-regex ^env$`).
pub fn encrypt(name: &str, plaintext: &str, recipient: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, plaintext).unwrap();
    let out = Command::new(program().unwrap())
        .args(["--encrypt", "--age", recipient])
        .args(extra)
        .arg("--in-place")
        .arg(&path)
        // No config file of the user's, and no update check worth waiting for.
        .current_dir(dir.path())
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sops: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&path).unwrap()
}

/// What the real `sops -d` makes of `encrypted` with the key at `key`.
pub fn decrypt(name: &str, encrypted: &str, key: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, encrypted).unwrap();
    let out = Command::new(program().unwrap())
        .arg("--decrypt")
        .arg(&path)
        .env("SOPS_AGE_KEY_FILE", key)
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sops -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

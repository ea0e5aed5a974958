//! The real `minisign` CLI for self-update tests: key pairs and signatures with a trusted
//! comment, as `cargo xtask release` makes them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the CLI is here; without it a test skips (saying so), unless `ORUN_REQUIRE_ALL`
/// asks for every component.
pub fn available() -> bool {
    let found = Command::new("minisign").arg("-v").output().is_ok();
    assert!(
        found || !crate::required(),
        "minisign is missing and ORUN_REQUIRE_ALL is set"
    );
    if !found {
        #[allow(clippy::print_stdout, reason = "a skipped test says why")]
        {
            println!("skipped: the minisign CLI is not installed (apt-get install -y minisign)");
        }
    }
    found
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key pair made without a password.
pub struct KeyPair {
    /// `key.pub`.
    pub public: PathBuf,
    /// `key.sec`.
    pub secret: PathBuf,
    /// The key id, as minisign prints it.
    pub id: String,
}

/// Makes a key pair in `dir` (created).
pub fn keypair(dir: &Path) -> KeyPair {
    std::fs::create_dir_all(dir).unwrap();
    let (public, secret) = (dir.join("key.pub"), dir.join("key.sec"));
    run_ok(
        Command::new("minisign")
            .args(["-G", "-W", "-p"])
            .arg(&public)
            .arg("-s")
            .arg(&secret),
    );
    let text = std::fs::read_to_string(&public).unwrap();
    let id = text
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    KeyPair { public, secret, id }
}

/// Signs `file` with `secret` into `signature`, with `comment` as the trusted comment.
pub fn sign(secret: &Path, file: &Path, comment: &str, signature: &Path) {
    let _ = std::fs::remove_file(signature);
    run_ok(
        Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(secret)
            .arg("-m")
            .arg(file)
            .args(["-t", comment, "-x"])
            .arg(signature),
    );
}

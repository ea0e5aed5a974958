//! The real-Docker tests' helpers: the docker CLI, and a guard that removes a test's
//! containers by label even when the test fails.

use std::process::Command;

/// Runs the docker CLI and returns its trimmed stdout; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Removes every container carrying the label `key=value` it holds, when dropped.
pub struct Guard(
    /// The `key=value` label every container of the test carries.
    pub String,
);

impl Drop for Guard {
    fn drop(&mut self) {
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label={}", self.0)])
            .output()
            .unwrap();
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
    }
}

/// Runs the docker CLI; its trimmed stdout when it succeeds, `None` when it fails.
pub fn docker_ok(args: &[&str]) -> Option<String> {
    let out = Command::new("docker").args(args).output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds `tag` from `dockerfile` and a context of `files` (name, contents), for an image
/// made to measure (a layer of a known size); panics with Docker's output on failure.
pub fn build(tag: &str, dockerfile: &str, files: &[(&str, &[u8])]) {
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
    for (name, contents) in files {
        std::fs::write(context.path().join(name), contents).unwrap();
    }
    // `--force-rm`: a failed step leaves no stopped container behind.
    let out = Command::new("docker")
        .args(["build", "--force-rm", "--tag", tag])
        .arg(context.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build --tag {tag}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `len` bytes that do not compress (xorshift from `seed`): a layer whose download is its
/// full size, and whose digest differs with the seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Removes the images it names when dropped, with every `repo@digest` reference a pull left
/// on their repositories (a tag moved away leaves one), so a test leaves no image behind.
pub struct Images(pub Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let last = image.rsplit('/').next().unwrap_or(image);
            let repo = match last.rsplit_once(':') {
                Some((_, tag)) => &image[..image.len() - tag.len() - 1],
                None => image,
            };
            let format = "{{.Repository}}@{{.Digest}}";
            let digests = docker_ok(&["images", "--digests", "--format", format, repo]);
            let digests = digests.unwrap_or_default();
            let refs = digests.lines().filter(|d| !d.ends_with("@<none>"));
            // Already gone is fine: the goal is that it is gone.
            for name in std::iter::once(image.as_str()).chain(refs) {
                let _ = docker_ok(&["rmi", "-f", name]);
            }
        }
    }
}

/// Whether a Docker daemon answers; a test without one skips (saying so), unless
/// `ORUN_REQUIRE_ALL` asks for every component, when this panics.
pub fn available() -> bool {
    let ok = docker_ok(&["info", "--format", "{{.ServerVersion}}"]).is_some();
    assert!(
        ok || !crate::required(),
        "a Docker daemon is required (ORUN_REQUIRE_ALL)"
    );
    if !ok {
        #[allow(clippy::print_stderr, reason = "a skipped test says why")]
        {
            eprintln!("skipped: no Docker daemon answers `docker info`");
        }
    }
    ok
}

//! A real Docker registry (Debian's `docker-registry`, the CNCF distribution) on loopback with
//! htpasswd auth, for tests that pull: started in its own temporary folder, waited for with a
//! deadline, killed on drop; plus a Docker config logged in to it and a push through it.
//!
//! Docker treats `127.0.0.0/8` registries as insecure by default, so plain HTTP is enough.
//! `cargo xtask test` installs `docker-registry` and `htpasswd` (package `apache2-utils`);
//! elsewhere a test skips without them unless `ORUN_REQUIRE_ALL` is set
//! ([`Registry::available`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::wait::wait;
use crate::{free_port, which};

/// How long a start may take: the registry listens within a second on an idle machine, but
/// the tests share two cores with a build.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A running `docker-registry serve` on `127.0.0.1`, requiring a login, killed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Either may fail only because the process is already gone, which is the goal.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// The user the registry accepts.
    pub const USER: &'static str = "orun";
    /// That user's password.
    pub const PASSWORD: &'static str = "s3cret-pass";

    /// Whether `docker-registry` and `htpasswd` are installed; panics when they must be
    /// (`ORUN_REQUIRE_ALL`).
    #[allow(clippy::print_stderr, reason = "a skipped test says why")]
    pub fn available() -> bool {
        for (program, package) in [
            ("docker-registry", "docker-registry"),
            ("htpasswd", "apache2-utils"),
        ] {
            if which(program).is_none() {
                assert!(
                    !crate::required(),
                    "{program} is required (ORUN_REQUIRE_ALL; Debian package {package})"
                );
                eprintln!("skipped: {program} is not installed (apt-get install {package})");
                return false;
            }
        }
        true
    }

    /// Starts a registry on a free loopback port, its storage and htpasswd file in a
    /// temporary folder, accepting [`Registry::USER`] with [`Registry::PASSWORD`], and waits
    /// until it listens.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", Self::USER, Self::PASSWORD])
            .output()
            .unwrap();
        assert!(htpasswd.status.success(), "htpasswd: {htpasswd:?}");
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        std::fs::write(
            dir.path().join("config.yml"),
            format!(
                "version: 0.1\n\
                 storage: {{filesystem: {{rootdirectory: {root}}}, delete: {{enabled: true}}}}\n\
                 http: {{addr: 127.0.0.1:{port}}}\n\
                 auth: {{htpasswd: {{realm: r, path: {pw}}}}}\n",
                root = dir.path().join("data").display(),
                pw = dir.path().join("htpasswd").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let registry = Self { child, port, dir };
        let log = registry.dir.path().join("registry.log");
        wait("the registry to listen", START_LIMIT)
            .explain(|| std::fs::read_to_string(&log).unwrap_or_default())
            .until(|| std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        registry
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`: the registry part of an image reference, and its login key.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its temporary folder, removed on drop: a place for a test's own files too.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A Docker config folder (`DOCKER_CONFIG`) logged in to this registry by `docker login`,
    /// created once under [`Registry::dir`]; its `config.json` holds the login inline.
    pub fn login_config(&self) -> PathBuf {
        let config = self.dir().join("docker-config");
        if config.join("config.json").exists() {
            return config;
        }
        std::fs::create_dir_all(&config).unwrap();
        let mut login = Command::new("docker")
            .env("DOCKER_CONFIG", &config)
            .args(["login", "--username", Self::USER, "--password-stdin"])
            .arg(self.host())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        login
            .stdin
            .take()
            .unwrap()
            .write_all(Self::PASSWORD.as_bytes())
            .unwrap();
        let out = login.wait_with_output().unwrap();
        assert!(out.status.success(), "docker login: {}", said(&out));
        config
    }

    /// Tags `local_image` as `reference` (which names this registry), pushes it with the
    /// [`Registry::login_config`] login and returns the manifest digest the push printed
    /// (`sha256:…`). The host's tags are left as they were: `reference` names the image it
    /// named before, or nothing (so a later pull of it really pulls).
    pub fn push(&self, local_image: &str, reference: &str) -> String {
        assert!(
            reference.starts_with(&format!("{}/", self.host())),
            "{reference} is not in this registry ({})",
            self.host()
        );
        let before =
            crate::docker::docker_ok(&["image", "inspect", "--format", "{{.Id}}", reference]);
        crate::docker::docker(&["tag", local_image, reference]);
        let out = Command::new("docker")
            .env("DOCKER_CONFIG", self.login_config())
            .args(["push", reference])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker push {reference}: {}",
            said(&out)
        );
        match before {
            Some(id) => crate::docker::docker(&["tag", &id, reference]),
            None => crate::docker::docker(&["rmi", reference]),
        };
        // The last line: `<tag>: digest: sha256:… size: 527`.
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .split_whitespace()
            .skip_while(|w| *w != "digest:")
            .nth(1)
            .unwrap_or_else(|| panic!("no digest in what docker push printed: {stdout}"))
            .to_owned()
    }
}

/// A failed command's stdout and stderr, for an assertion message.
fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes `text` as `<dir>/<name>/config.json` (a Docker client config) and returns that
/// file.
pub fn config_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("config.json");
    std::fs::write(&file, text).unwrap();
    file
}

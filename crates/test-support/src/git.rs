//! Real Git remotes: bare repos driven by the `git` CLI, `git daemon` and `sshd` on loopback
//! ports, each stopped when its guard drops.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;
use crate::wait::wait;

/// Runs `git` isolated from the user's configuration, panicking on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare remote plus a work tree that pushes to it.
pub struct Remote {
    /// Holds `m.git` (the bare remote) and `work` (a clone that pushes to it).
    pub dir: tempfile::TempDir,
}

impl Remote {
    /// An empty remote with branch `main`.
    #[expect(
        clippy::new_without_default,
        reason = "creating folders is not a default"
    )]
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("m.git")).unwrap();
        git(
            &dir.path().join("m.git"),
            &["init", "-q", "--bare", "-b", "main"],
        );
        std::fs::create_dir(dir.path().join("work")).unwrap();
        git(&dir.path().join("work"), &["init", "-q", "-b", "main"]);
        Self { dir }
    }

    /// The bare repository.
    pub fn bare(&self) -> PathBuf {
        self.dir.path().join("m.git")
    }

    /// The work tree that commits and pushes.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// The bare repository as a `file://` URL.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare().display())
    }

    /// Writes `files`, commits everything and pushes; returns the commit id.
    pub fn commit(&self, message: &str, files: &[(&str, &str)]) -> String {
        let id = self.commit_local(message, files);
        self.push(false);
        id
    }

    /// Writes `files` and commits everything without pushing; returns the commit id.
    pub fn commit_local(&self, message: &str, files: &[(&str, &str)]) -> String {
        for (path, text) in files {
            let p = self.work().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git(&self.work(), &["add", "-A"]);
        git(
            &self.work(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work(), &["rev-parse", "HEAD"])
    }

    /// Pushes `main` to the bare remote; `force` for a force-push.
    pub fn push(&self, force: bool) {
        let url = self.file_url();
        let mut args = vec!["push", "-q"];
        if force {
            args.push("--force");
        }
        args.extend([url.as_str(), "main"]);
        git(&self.work(), &args);
    }
}

/// A child process killed on drop.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// The loopback port it listens on.
    pub port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(port: u16) {
    wait("a listening port", Duration::from_secs(10))
        .until(|| TcpStream::connect(("127.0.0.1", port)).ok());
}

/// `git daemon` serving the folder holding `m.git`.
pub fn git_daemon(remote: &Remote) -> Daemon {
    git_daemon_on(remote, free_port())
}

/// `git daemon` on a given port (a remote coming back where it was). The `git-daemon` program
/// is started directly: `git daemon` would fork it, and killing `git` would leave it serving.
pub fn git_daemon_on(remote: &Remote, port: u16) -> Daemon {
    let exec_path = git(Path::new("/"), &["--exec-path"]);
    let start = Instant::now();
    loop {
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", remote.dir.path().display()),
            ])
            .arg(remote.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut d = Daemon { child, port };
        // It either listens, or exits because the port is still held; then try again.
        let up = wait("git daemon", Duration::from_secs(10)).until(|| {
            if let Ok(Some(_)) = d.child.try_wait() {
                return Some(false);
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| true)
        });
        if up {
            return d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "git daemon cannot listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sshd binary, if installed.
pub fn sshd_binary() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// [`sshd_binary`] for a test: `None` (the test skips, saying so) when sshd is missing,
/// unless `ORUN_REQUIRE_ALL` asks for every component, when this panics.
pub fn sshd() -> Option<PathBuf> {
    let found = sshd_binary();
    assert!(
        found.is_some() || !crate::required(),
        "sshd is required (ORUN_REQUIRE_ALL)"
    );
    if found.is_none() {
        #[allow(clippy::print_stderr, reason = "a skipped test says why")]
        {
            eprintln!("skipped: sshd is not installed (apt-get install openssh-server)");
        }
    }
    found
}

/// An sshd on loopback with a fresh host key, accepting `client` keys for the current user.
pub struct Sshd {
    /// The sshd process.
    pub daemon: Daemon,
    /// Its config, host key, client keys (`client`, `stranger`) and `known_hosts`.
    pub dir: tempfile::TempDir,
}

impl Sshd {
    /// Starts `sshd` (the binary) on a free port.
    pub fn start(sshd: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host"));
        keygen(&d.join("client"));
        keygen(&d.join("stranger"));
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n\
             UsePAM no\nPidFile {pid}\nPermitRootLogin prohibit-password\n",
            host = d.join("host").display(),
            auth = d.join("authorized_keys").display(),
            pid = d.join("sshd.pid").display(),
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        std::fs::create_dir_all("/run/sshd").ok();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let daemon = Daemon { child, port };
        wait_listening(port);
        let host_pub = std::fs::read_to_string(d.join("host.pub")).unwrap();
        let mut fields = host_pub.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )
        .unwrap();
        Self { daemon, dir }
    }

    /// A file in its folder (`client`, `known_hosts`, …).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `ssh://` URL of `remote` through this sshd.
    pub fn url(&self, remote: &Remote) -> String {
        let user = whoami();
        format!(
            "ssh://{user}@127.0.0.1:{}{}",
            self.daemon.port,
            remote.bare().display()
        )
    }
}

/// The current user's name (`id -un`).
pub fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

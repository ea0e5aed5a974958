//! The real Caddy and the real `pebble` (Let's Encrypt's ACME test server) on loopback, for
//! the ingress tests: each in its own temporary folder, started and waited for with a
//! deadline, killed on drop.
//!
//! `cargo xtask test` installs both (Debian packages `caddy` and `pebble`); elsewhere a test
//! skips without them unless `ORUN_REQUIRE_ALL` is set ([`Caddy::available`],
//! [`Pebble::available`]).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::wait;
use crate::{free_port, which};

/// How long a start may take: Caddy and pebble listen within a second on an idle machine,
/// but the tests share two cores with a build.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Whether `program` is here; panics when it must be (`ORUN_REQUIRE_ALL`).
#[allow(clippy::print_stderr, reason = "a skipped test says why")]
fn available(program: &str, package: &str) -> bool {
    let ok = which(program).is_some();
    if !ok {
        assert!(
            !crate::required(),
            "{program} is required (ORUN_REQUIRE_ALL; Debian package {package})"
        );
        eprintln!("skipped: {program} is not installed (apt-get install {package})");
    }
    ok
}

/// The tail of a log file, for a failure message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Kills `child` and reaps it; either may fail only because it is already gone.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A real `caddy run` whose admin API listens on a free loopback port, with its home, data
/// and config folders in a temporary folder, killed on drop.
pub struct Caddy {
    child: Option<Child>,
    dir: tempfile::TempDir,
    admin: SocketAddr,
    http_port: u16,
    https_port: u16,
}

impl Caddy {
    /// Whether `caddy` is installed; panics when it must be (`ORUN_REQUIRE_ALL`).
    pub fn available() -> bool {
        available("caddy", "caddy")
    }

    /// Starts Caddy with nothing but its admin API (`{"admin":{"listen":...}}`) and waits
    /// until that answers. The HTTP and HTTPS ports are picked free for the test; Caddy binds
    /// them only once a config that names them is loaded.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let init = init_config(admin);
        std::fs::write(dir.path().join("init.json"), init).unwrap();
        let mut caddy = Self {
            child: None,
            dir,
            admin,
            http_port: free_port(),
            https_port: free_port(),
        };
        caddy.spawn();
        caddy
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        // Appended to, so a restart keeps the earlier run's lines for a failure message.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("caddy.log"))
            .unwrap();
        let child = Command::new("caddy")
            .arg("run")
            .arg("--config")
            .arg(d.join("init.json"))
            // Caddy keeps certificates under XDG_DATA_HOME (else HOME) and autosaves its
            // config under XDG_CONFIG_HOME: all of it stays in this test's folder.
            .env("HOME", d.join("home"))
            .env("XDG_DATA_HOME", d.join("data"))
            .env("XDG_CONFIG_HOME", d.join("config"))
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let admin = self.admin;
        let log_path = d.join("caddy.log");
        wait("Caddy's admin API to answer", START_LIMIT)
            .explain(|| tail(&log_path))
            .until_true(|| {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    panic!("caddy exited with {status}:\n{}", tail(&log_path));
                }
                admin_answers(admin)
            });
    }

    /// The admin API's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The HTTP port picked for this test (Caddy listens there once a config says so).
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The HTTPS port picked for this test.
    pub fn https_port(&self) -> u16 {
        self.https_port
    }

    /// `127.0.0.1:<http_port>`.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.http_port))
    }

    /// `127.0.0.1:<https_port>`.
    pub fn https_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.https_port))
    }

    /// Caddy's storage (`$XDG_DATA_HOME/caddy`): certificates, keys, ACME accounts.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data").join("caddy")
    }

    /// The last lines Caddy logged (of every run), for failure messages.
    pub fn log(&self) -> String {
        tail(&self.dir.path().join("caddy.log"))
    }

    /// Kills Caddy (SIGKILL, as a crash would); it stays down until [`Caddy::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }

    /// Kills Caddy if it runs and starts it again as at first, with only its admin API
    /// configured, on the same admin port and the same data folder (certificates persist).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The initial config, written by hand: test-support needs no JSON library for one object.
fn init_config(admin: SocketAddr) -> String {
    format!(r#"{{"admin":{{"listen":"{admin}"}}}}"#)
}

/// Whether `GET /config/` on the admin API answers 200 (a raw request: test-support does
/// not depend on the crates it helps test).
fn admin_answers(admin: SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect_timeout(&admin, Duration::from_secs(1)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /config/ HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    if tcp.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

/// A real `pebble` ACME server on loopback, serving its API over TLS with a fresh
/// self-signed certificate for `127.0.0.1` and `localhost`; killed on drop.
///
/// It runs with `PEBBLE_VA_ALWAYS_VALID=1` (every challenge passes: the names tested do not
/// resolve to this host), `PEBBLE_VA_NOSLEEP=1` (no artificial delays) and
/// `PEBBLE_WFE_NONCEREJECT=0` (no nonce is rejected at random), so an issuance takes the
/// real ACME flow, account, order, authorization, finalize, download, without its waits.
/// Each start makes a new root and intermediate CA (`Pebble Intermediate CA <hex>`).
pub struct Pebble {
    child: Child,
    dir: tempfile::TempDir,
    listen: SocketAddr,
    management: SocketAddr,
}

impl Pebble {
    /// Whether `pebble` is installed; panics when it must be (`ORUN_REQUIRE_ALL`).
    pub fn available() -> bool {
        available("pebble", "pebble")
    }

    /// Starts pebble on free loopback ports and waits until its API listens.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(d.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(d.join("key.pem"), key.serialize_pem()).unwrap();
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let management = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        // httpPort and tlsPort are where pebble would validate challenges; with every
        // challenge valid it never connects, but free ports keep it from knocking anywhere.
        let config = format!(
            r#"{{"pebble":{{"listenAddress":"{listen}","managementListenAddress":"{management}","certificate":"{cert}","privateKey":"{key}","httpPort":{http},"tlsPort":{tls},"ocspResponderURL":"","externalAccountBindingRequired":false}}}}"#,
            cert = d.join("cert.pem").display(),
            key = d.join("key.pem").display(),
            http = free_port(),
            tls = free_port(),
        );
        std::fs::write(d.join("pebble.json"), config).unwrap();
        let log = std::fs::File::create(d.join("pebble.log")).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(d.join("pebble.json"))
            .arg("-strict=false")
            .env("PEBBLE_VA_ALWAYS_VALID", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_VA_NOSLEEP", "1")
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut pebble = Self {
            child,
            dir,
            listen,
            management,
        };
        let log_path = pebble.dir.path().join("pebble.log");
        // Pebble logs the directory's URL once its TLS listener is up; a connection to it is
        // then answered (test-support speaks no TLS itself).
        wait("pebble's ACME API to listen", START_LIMIT)
            .explain(|| tail(&log_path))
            .until_true(|| {
                if let Ok(Some(status)) = pebble.child.try_wait() {
                    panic!("pebble exited with {status}:\n{}", tail(&log_path));
                }
                std::fs::read_to_string(&log_path)
                    .is_ok_and(|l| l.contains("ACME directory available at"))
                    && TcpStream::connect(listen).is_ok()
            });
        pebble
    }

    /// The ACME directory's URL, `https://127.0.0.1:<port>/dir`.
    pub fn directory(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    /// The PEM certificate pebble's API serves (self-signed): an ACME client must trust it
    /// to talk to pebble at all. It is not the CA that signs the certificates issued.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The management API (`/roots/0`, `/intermediates/0`, ...).
    pub fn management(&self) -> SocketAddr {
        self.management
    }

    /// How many certificates pebble has issued since it started, from its log.
    pub fn issued(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("pebble.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Issued certificate serial"))
            .count()
    }

    /// The last lines pebble logged, for failure messages.
    pub fn log(&self) -> String {
        tail(&self.dir.path().join("pebble.log"))
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caddy_restarts_on_its_admin_port_and_is_gone_after_drop() {
        if !Caddy::available() {
            return;
        }
        let mut caddy = Caddy::start();
        let admin = caddy.admin();
        assert!(admin_answers(admin));
        caddy.kill();
        assert!(!admin_answers(admin));
        caddy.restart();
        assert!(admin_answers(admin));
        let pid = caddy.child.as_ref().unwrap().id();
        drop(caddy);
        // Killed and reaped: no process, not even a zombie, is left.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn pebble_listens_with_the_certificate_it_names() {
        if !Pebble::available() {
            return;
        }
        let pebble = Pebble::start();
        assert!(pebble.directory().starts_with("https://127.0.0.1:"));
        let pem = std::fs::read_to_string(pebble.ca_cert_path()).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert!(TcpStream::connect(pebble.management()).is_ok());
        assert_eq!(pebble.issued(), 0);
    }
}

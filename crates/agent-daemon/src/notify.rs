//! sd_notify: READY, WATCHDOG, STOPPING and STATUS to systemd, over the datagram socket a
//! `Type=notify` unit names in `NOTIFY_SOCKET`, with std alone (no libsystemd).
//!
//! Notifying is best effort: a message systemd does not get is logged (once at `warn`, then at
//! `debug`) and never stops the agent. Without `NOTIFY_SOCKET` every call is a no-op.
//!
//! # Children
//!
//! libsystemd's `sd_notify(unset_environment = 1)` removes the three variables from the
//! process environment so that children do not speak for the service. Removing a variable is
//! `unsafe` in edition 2024 (another thread may read the environment) and the workspace
//! forbids `unsafe_code`, so the variables stay, and **every child the agent spawns must be
//! started with [`CHILD_ENV_REMOVE`] removed** (`Command::env_remove`): a staged binary on
//! trial that found `NOTIFY_SOCKET` would send `READY=1` or `WATCHDOG=1` as if it were the
//! service (with `NotifyAccess=main` systemd drops them, but `STATUS=` lines would be lost
//! for nothing, and with `NotifyAccess=all` they would count). A re-exec of the agent itself
//! after a self-update keeps them on purpose: it keeps the PID, so it is still the main
//! process and must go on notifying.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{debug, warn};

/// The environment variables through which systemd talks to the service's main process.
/// Children must be spawned without them (see the module documentation).
pub(crate) const CHILD_ENV_REMOVE: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// The longest `STATUS=` text sent, in bytes: `systemctl status` shows it on one line, and a
/// status built from an error message could otherwise be as long as the error.
const STATUS_MAX: usize = 200;

/// systemd's notification socket, when the process runs under a `Type=notify` unit.
#[derive(Debug)]
pub(crate) struct Notifier {
    /// Where to send; `None` when not under systemd (every call is then a no-op).
    target: Option<SocketAddr>,
    /// How often to send `WATCHDOG=1`, when systemd watches this process.
    watchdog: Option<Duration>,
    /// Whether a failed send has been logged at `warn` already: a socket that is gone stays
    /// gone, and a warning every watchdog period would drown the journal.
    warned: AtomicBool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` once.
    ///
    /// The variables stay in the environment (removing them is `unsafe` in edition 2024):
    /// children must be spawned with [`CHILD_ENV_REMOVE`] removed, so that a child (the
    /// agent runs a staged binary on trial) does not talk to systemd as the service.
    pub(crate) fn from_env() -> Self {
        let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
            return Self::inactive();
        };
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        let watchdog = watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id());
        Self::to_socket(socket, watchdog)
    }

    /// A notifier sending to `socket`, written as `NOTIFY_SOCKET` is: an absolute path, or
    /// `@name` for a socket in the abstract namespace. `watchdog` is how often to send
    /// `WATCHDOG=1` (already half of `WatchdogSec`), as [`Self::watchdog_interval`] returns it.
    ///
    /// Any other form (a relative path, systemd 253's `vsock:`) is logged and the notifier is
    /// inactive: the agent then runs as if not under systemd, and systemd times its start out,
    /// which names the problem better than a crash would.
    pub(crate) fn to_socket(socket: impl AsRef<OsStr>, watchdog: Option<Duration>) -> Self {
        let socket = socket.as_ref();
        match socket_addr(socket) {
            Ok(addr) => Self {
                target: Some(addr),
                watchdog,
                warned: AtomicBool::new(false),
            },
            Err(reason) => {
                warn!(
                    socket = %socket.to_string_lossy(),
                    "ignoring NOTIFY_SOCKET: {reason}; systemd will not hear from the agent"
                );
                Self::inactive()
            }
        }
    }

    /// Not under systemd: every call is a no-op.
    fn inactive() -> Self {
        Self {
            target: None,
            watchdog: None,
            warned: AtomicBool::new(false),
        }
    }

    /// Whether systemd listens (`NOTIFY_SOCKET` was set and usable).
    #[cfg(test)]
    pub(crate) fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// The service is up: `READY=1` with a `STATUS=` line.
    pub(crate) fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// The one-line status `systemctl status` shows.
    pub(crate) fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// The service is shutting down: `STOPPING=1`.
    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// The service is alive: `WATCHDOG=1`. Send it every [`Self::watchdog_interval`].
    pub(crate) fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// How often to send [`Self::watchdog`]: half of `WATCHDOG_USEC`, as `sd_watchdog_enabled`
    /// advises, when it is set and `WATCHDOG_PID` is unset or this process. `None` when systemd
    /// does not watch this process.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one datagram; failures are logged, never returned (see the module documentation).
    fn send(&self, message: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(e) = send_to(target, message.as_bytes()) {
            let first = !self.warned.swap(true, Ordering::Relaxed);
            // Only the variable name is logged: a `STATUS=` text can quote anything.
            let what = message.split('=').next().unwrap_or(message);
            if first {
                warn!(
                    error = %e,
                    "cannot notify systemd ({what}); the service may be restarted by its \
                     watchdog or start timeout; further failures are logged at debug"
                );
            } else {
                debug!(error = %e, "cannot notify systemd ({what})");
            }
        }
    }
}

/// Sends `message` to `target` from a fresh unbound socket, as libsystemd does: nothing stays
/// open between messages, and a socket never leaks into a child.
fn send_to(target: &SocketAddr, message: &[u8]) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    // systemd drains the socket quickly, but a full queue must not block the thread that
    // runs the agent's async tasks: libsystemd sends with MSG_DONTWAIT for the same reason.
    socket.set_nonblocking(true)?;
    let sent = socket.send_to_addr(message, target)?;
    if sent != message.len() {
        // Datagrams are all or nothing; this would be a kernel oddity, reported all the same.
        return Err(std::io::Error::other(format!(
            "sent {sent} of {} bytes",
            message.len()
        )));
    }
    Ok(())
}

/// The address `NOTIFY_SOCKET` names, or why it names none this agent can use.
fn socket_addr(socket: &OsStr) -> Result<SocketAddr, String> {
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(socket).map_err(|e| e.to_string()),
        Some(b'@') => abstract_addr(&bytes[1..]),
        _ => Err("not an absolute path nor an @abstract name".to_owned()),
    }
}

/// An address in Linux's abstract namespace (no file; `@` in `NOTIFY_SOCKET`).
#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> Result<SocketAddr, String> {
    use std::os::linux::net::SocketAddrExt as _;
    SocketAddr::from_abstract_name(name).map_err(|e| e.to_string())
}

/// Abstract sockets exist on Linux only; systemd never names one elsewhere.
#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> Result<SocketAddr, String> {
    Err("abstract sockets exist on Linux only".to_owned())
}

/// How often to send `WATCHDOG=1`, from `WATCHDOG_USEC` and `WATCHDOG_PID` as systemd sets
/// them and this process's id: half the period, as `sd_watchdog_enabled(3)` advises, so that
/// one late ping does not kill the service.
///
/// `None` when the period is unset, not a positive number of microseconds, or meant for another
/// process (`WATCHDOG_PID` names someone else: the variables were inherited from a parent,
/// which is the very case `sd_watchdog_enabled` guards against). An unparsable `WATCHDOG_PID`
/// also gives `None`, as in libsystemd.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok()?;
    // 0 is "off"; u64::MAX is systemd's USEC_INFINITY, which libsystemd rejects too.
    if usec == 0 || usec == u64::MAX {
        return None;
    }
    if let Some(pid) = pid {
        let pid: u32 = pid.trim().parse().ok()?;
        if pid != own_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec) / 2)
}

/// `status` as one `STATUS=` line: control characters (CR and LF first, which would start a
/// new variable, and NUL, which systemd refuses) become spaces, and the text is cut to
/// [`STATUS_MAX`] bytes on a character boundary.
fn one_line(status: &str) -> String {
    let mut out = String::with_capacity(status.len().min(STATUS_MAX));
    for c in status.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > STATUS_MAX {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

    use super::*;

    /// A datagram socket bound in a fresh temp dir, standing in for systemd's.
    struct Listener {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        socket: UnixDatagram,
    }

    fn listener() -> Listener {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        // A deadline, not a synchronisation: a datagram sent on a unix socket is queued by the
        // time `send_to` returns, so `recv` returns at once or the test fails.
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Listener {
            _dir: dir,
            path,
            socket,
        }
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// Nothing more is queued.
    fn assert_empty(socket: &UnixDatagram) {
        socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        let e = socket.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    }

    #[test]
    fn sends_each_message_as_one_datagram() {
        let l = listener();
        let n = Notifier::to_socket(&l.path, Some(Duration::from_secs(30)));
        assert!(n.is_active());
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(30)));

        n.ready("running");
        n.status("syncing abc123");
        n.watchdog();
        n.stopping();

        assert_eq!(recv(&l.socket), "READY=1\nSTATUS=running");
        assert_eq!(recv(&l.socket), "STATUS=syncing abc123");
        assert_eq!(recv(&l.socket), "WATCHDOG=1");
        assert_eq!(recv(&l.socket), "STOPPING=1");
        assert_empty(&l.socket);
    }

    /// A status cannot smuggle a second variable (`READY=1`) in through a newline, nor grow
    /// past the cap.
    #[test]
    fn status_is_one_capped_line() {
        let l = listener();
        let n = Notifier::to_socket(&l.path, None);

        n.status("failed:\r\nREADY=1\0x");
        assert_eq!(recv(&l.socket), "STATUS=failed:  READY=1 x");

        // 199 ASCII bytes, then a 2-byte character that would cross the cap: cut before it.
        let long = format!("{}é{}", "a".repeat(199), "b".repeat(500));
        n.ready(&long);
        assert_eq!(
            recv(&l.socket),
            format!("READY=1\nSTATUS={}", "a".repeat(199))
        );
        // Exactly at the cap: kept whole.
        n.status(&"c".repeat(300));
        assert_eq!(recv(&l.socket), format!("STATUS={}", "c".repeat(200)));
        assert_empty(&l.socket);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        // Unique per process: the abstract namespace is shared by everything in the network
        // namespace, other test runs included.
        let name = format!("orun-notify-test-{}", std::process::id());
        let socket =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();

        let n = Notifier::to_socket(format!("@{name}"), None);
        assert!(n.is_active());
        n.ready("up");
        assert_eq!(recv(&socket), "READY=1\nSTATUS=up");
        assert_empty(&socket);
    }

    /// Forms `NOTIFY_SOCKET` may take that this agent cannot use leave it inactive, and an
    /// inactive notifier sends nothing and does not fail.
    #[test]
    fn unusable_sockets_leave_the_notifier_inactive() {
        for s in ["", "relative/notify", "vsock:2:1234"] {
            let n = Notifier::to_socket(s, Some(Duration::from_secs(1)));
            assert!(!n.is_active(), "{s:?}");
            assert_eq!(n.watchdog_interval(), None, "{s:?}");
            n.ready("x");
            n.watchdog();
            assert!(!n.warned.load(Ordering::Relaxed));
        }
    }

    /// A socket that is gone is not fatal, and is warned about once.
    #[test]
    fn a_missing_socket_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::to_socket(dir.path().join("gone"), None);
        assert!(n.is_active());
        assert!(!n.warned.load(Ordering::Relaxed));
        n.watchdog();
        assert!(n.warned.load(Ordering::Relaxed));
        n.watchdog();
        assert!(n.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn watchdog_interval_is_half_the_period_for_this_process_only() {
        fn check(usec: Option<&str>, pid: Option<&str>) -> Option<Duration> {
            watchdog_interval(usec, pid, 1234)
        }
        assert_eq!(check(Some("60000000"), None), Some(Duration::from_secs(30)));
        assert_eq!(
            check(Some("60000000"), Some("1234")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(check(Some("3"), None), Some(Duration::from_nanos(1500)));
        // Meant for another process: inherited from a parent.
        assert_eq!(check(Some("60000000"), Some("999")), None);
        assert_eq!(check(Some("60000000"), Some("not-a-pid")), None);
        assert_eq!(check(None, Some("1234")), None);
        assert_eq!(check(None, None), None);
        assert_eq!(check(Some("0"), None), None);
        assert_eq!(check(Some("-5"), None), None);
        assert_eq!(check(Some("1.5"), None), None);
        assert_eq!(check(Some(&u64::MAX.to_string()), None), None);
    }
}

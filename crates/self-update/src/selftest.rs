//! Running the staged binary before it is trusted (RELIABILITY F6): each run bounded in time
//! (killed after the timeout) and in how much of its output is kept.

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{FAILPOINT_VAR, UpdateError, cap};

/// How long one self-test run may take before it is killed.
pub(crate) const SELF_TEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of each output stream is kept; the rest is read and dropped, so a chatty
/// binary cannot block on a full pipe nor fill memory.
const OUTPUT_CAP: usize = 64 << 10;
/// The pause between two looks at a running self-test.
const POLL: Duration = Duration::from_millis(10);

/// What one run produced.
pub(crate) struct Outcome {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

/// Runs `binary args` with no input and waits at most `timeout`.
pub(crate) fn run(
    binary: &Path,
    args: &[OsString],
    timeout: Duration,
) -> Result<Outcome, UpdateError> {
    let shown = render(args);
    let failed = |reason: String| UpdateError::SelfTest {
        args: shown.clone(),
        reason,
    };
    let mut command = Command::new(binary);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The test hook is this process's; the binary under test must not inherit it.
        .env_remove(FAILPOINT_VAR);
    // Nor systemd's notify socket and watchdog, which speak for the service's main process.
    for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        command.env_remove(var);
    }
    let mut child = spawn(&mut command).map_err(|e| failed(format!("cannot start: {e}")))?;
    let (tx, rx) = mpsc::channel();
    for (stream, is_stdout) in [
        (
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            true,
        ),
        (
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            false,
        ),
    ] {
        let Some(stream) = stream else { continue };
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send((is_stdout, read_capped(stream)));
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "still running after {} s, killed",
                    timeout.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Err(failed(format!("cannot wait for it: {e}"))),
        }
    };
    // The child has exited; its pipes close unless it left a process behind holding them,
    // which is given little time before its output is abandoned.
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let output_deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..2 {
        let left = output_deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, out)) => stdout = out,
            Ok((false, out)) => stderr = out,
            Err(_) => break,
        }
    }
    Ok(Outcome {
        status,
        stdout,
        stderr,
    })
}

/// Spawns `command`, retrying while the kernel says the file is busy: a file just written
/// can be briefly open for writing in a child another thread forked (ETXTBSY).
fn spawn(command: &mut Command) -> std::io::Result<std::process::Child> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match command.spawn() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(POLL);
            }
            other => return other,
        }
    }
}

/// Reads `stream` to its end, keeping the first [`OUTPUT_CAP`] bytes.
fn read_capped(mut stream: impl Read) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return kept,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return kept,
        }
    }
}

/// The arguments as one line, for messages.
pub(crate) fn render(args: &[OsString]) -> String {
    cap(&args
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" "))
}

/// Whether some line of `stdout` ends with exactly `version` as its own word (`orun 0.2.0`,
/// or `orun v0.2.0`), so `0.2.0` does not match `10.2.0` nor `0.2.0-rc.1`.
pub(crate) fn prints_version(stdout: &[u8], version: &str) -> bool {
    String::from_utf8_lossy(stdout).lines().any(|line| {
        line.split_whitespace()
            .last()
            .is_some_and(|word| word == version || word.strip_prefix('v') == Some(version))
    })
}

/// The end of a run's output, for an error message.
pub(crate) fn tail(outcome: &Outcome) -> String {
    let pick = if outcome.stderr.is_empty() {
        &outcome.stdout
    } else {
        &outcome.stderr
    };
    let text = String::from_utf8_lossy(pick);
    let text = text.trim();
    // The last 200 bytes say most about a failure; cut on a character boundary.
    let mut start = text.len().saturating_sub(200);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_version_as_the_last_word_of_a_line() {
        assert!(prints_version(b"orun 0.2.0\n", "0.2.0"));
        assert!(prints_version(b"starting\norun v0.2.0", "0.2.0"));
        assert!(prints_version(b"0.2.0", "0.2.0"));
        assert!(!prints_version(b"orun 10.2.0", "0.2.0"));
        assert!(!prints_version(b"orun 0.2.0-rc.1", "0.2.0"));
        assert!(!prints_version(b"orun 0.2.0 (abc)", "0.2.0"));
        assert!(!prints_version(b"", "0.2.0"));
    }

    #[test]
    fn kills_a_run_that_outlives_its_timeout() {
        let started = Instant::now();
        let err = run(
            Path::new("/bin/sh"),
            &["-c".into(), "exec sleep 30".into()],
            Duration::from_millis(200),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn keeps_a_bounded_part_of_a_flood() {
        let out = run(
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "head -c 1000000 /dev/zero; echo done >&2".into(),
            ],
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), OUTPUT_CAP);
        assert_eq!(out.stderr, b"done\n");
    }
}

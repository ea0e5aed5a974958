//! The system `ssh` client as bootstrap and fleet use it: one master connection per node
//! (authenticated once), remote steps as single-quoted `sh -c` strings, and local ports
//! forwarded to the node's loopback through the master.

use std::io::{Read as _, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use manifest_model::Node;

use crate::SetupError;
use crate::bootstrap::{say, shell_quote};

/// How to reach nodes: the operator's extra `ssh` options, the port, and how long a step may
/// take.
#[derive(Clone, Debug)]
pub(crate) struct SshOptions {
    /// `-o` options, given before orun's own so that they win.
    pub(crate) options: Vec<String>,
    /// The SSH port, when not ssh's default.
    pub(crate) port: Option<u16>,
    /// Longest connect or step.
    pub(crate) timeout: Duration,
}

/// Where stderr tails are cut: enough to see the error, not a flood.
pub(crate) const TAIL: usize = 2048;

pub(crate) fn tail(s: &str) -> String {
    let s = s.trim();
    if s.len() <= TAIL {
        return s.to_owned();
    }
    let mut start = s.len() - TAIL;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

/// What a file on the node is made from.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// Text bootstrap rendered (config, unit, known_hosts).
    Text(String),
    /// A local file, streamed (binary, keys).
    File(PathBuf),
}

/// The SSH options every call shares: the operator's first (ssh keeps the first value of an
/// option), then bootstrap's.
pub(crate) fn ssh_base(opts: &SshOptions, node: &Node) -> Vec<String> {
    let mut v = Vec::new();
    for o in &opts.options {
        v.push("-o".to_owned());
        v.push(o.clone());
    }
    for o in [
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "IdentitiesOnly=yes",
        "ServerAliveInterval=15",
    ] {
        v.push("-o".to_owned());
        v.push(o.to_owned());
    }
    v.push("-i".to_owned());
    v.push(expand_home(&node.spec.ssh_key_path));
    if let Some(port) = opts.port {
        v.push("-p".to_owned());
        v.push(port.to_string());
    }
    v
}

pub(crate) fn expand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{}/{rest}", home.trim_end_matches('/')),
        _ => p.to_owned(),
    }
}

/// What a remote command returned.
pub(crate) struct Output {
    pub(crate) status: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// An SSH master connection to the node; every step goes through its control socket.
pub(crate) struct Ssh {
    /// Private (0700) folder of the control socket and the master's log.
    dir: tempfile::TempDir,
    master: Option<Child>,
    base: Vec<String>,
    target: String,
    pub(crate) timeout: Duration,
    /// Not root under systemd: each step through `sudo -n`.
    sudo: bool,
}

impl Ssh {
    fn control(&self) -> PathBuf {
        self.dir.path().join("cm")
    }

    /// Opens the master connection (authenticating once) and waits until it answers.
    pub(crate) fn connect(
        opts: &SshOptions,
        node: &Node,
        sudo: bool,
        out: &mut dyn Write,
    ) -> Result<Self, SetupError> {
        let spec = &node.spec;
        let target = format!("{}@{}", spec.user, spec.host);
        if spec.user.starts_with('-') || spec.host.starts_with('-') {
            return Err(SetupError::Usage(format!(
                "{target} is not a user and host ssh takes"
            )));
        }
        let dir = tempfile::Builder::new()
            .prefix("orun-ssh")
            .tempdir()
            .map_err(|source| SetupError::Local {
                what: "cannot make a temporary folder in",
                path: std::env::temp_dir(),
                source,
            })?;
        let mut ssh = Self {
            base: ssh_base(opts, node),
            dir,
            master: None,
            target,
            timeout: opts.timeout,
            sudo: sudo && spec.user != "root",
        };
        say(out, &format!("connecting to {}", ssh.target));
        let log = ssh.dir.path().join("master.log");
        let log_file = std::fs::File::create(&log).map_err(SetupError::Spawn)?;
        let child = Command::new("ssh")
            .args(&ssh.base)
            .args([
                "-o",
                "ControlMaster=yes",
                "-o",
                "ControlPersist=no",
                "-N",
                "-S",
            ])
            .arg(ssh.control())
            .arg("--")
            .arg(&ssh.target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(SetupError::Spawn)?;
        ssh.master = Some(child);
        let deadline = Instant::now() + ssh.timeout;
        loop {
            if let Some(m) = ssh.master.as_mut()
                && let Ok(Some(_)) = m.try_wait()
            {
                let stderr = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(SetupError::Connect {
                    target: ssh.target.clone(),
                    stderr: tail(&stderr),
                });
            }
            let ok = Command::new("ssh")
                .arg("-S")
                .arg(ssh.control())
                .args(["-O", "check", "--", &ssh.target])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(SetupError::Spawn)?
                .success();
            if ok {
                return Ok(ssh);
            }
            if Instant::now() >= deadline {
                return Err(SetupError::Connect {
                    target: ssh.target.clone(),
                    stderr: format!("no connection within {:?}", ssh.timeout),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new("ssh");
        c.args(&self.base)
            .args(["-o", "ControlMaster=no", "-S"])
            .arg(self.control());
        c
    }

    /// Runs `script` with `sh -c` on the node (through `sudo -n` when needed), feeding it
    /// `input`, within `timeout`.
    pub(crate) fn exec_with(
        &self,
        what: &str,
        script: &str,
        input: Option<&Content>,
        timeout: Duration,
    ) -> Result<Output, SetupError> {
        let sh = format!("sh -c {}", shell_quote(script));
        let remote = if self.sudo {
            format!("sudo -n {sh}")
        } else {
            sh
        };
        let mut child = self
            .command()
            .arg("--")
            .arg(&self.target)
            .arg(remote)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(SetupError::Spawn)?;
        let writer = match (input, child.stdin.take()) {
            (Some(content), Some(mut stdin)) => {
                let content = content.clone();
                Some(std::thread::spawn(move || -> std::io::Result<()> {
                    match content {
                        Content::Text(t) => stdin.write_all(t.as_bytes()),
                        Content::File(p) => {
                            std::io::copy(&mut std::fs::File::open(p)?, &mut stdin).map(drop)
                        }
                    }
                }))
            }
            _ => None,
        };
        let read = |r: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let stdout = read(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        );
        let stderr = read(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        );
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait().map_err(SetupError::Spawn)? {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(SetupError::Timeout {
                        what: what.to_owned(),
                        timeout,
                    });
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        // A failed write shows as the remote's failure (the checksum differs).
        if let Some(w) = writer {
            let _ = w.join();
        }
        Ok(Output {
            status: status.code(),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }

    /// [`Ssh::exec_with`] that must succeed.
    pub(crate) fn run(&self, what: &str, script: &str) -> Result<String, SetupError> {
        let o = self.exec_with(what, script, None, self.timeout)?;
        ok(what, o)
    }

    /// A local port forwarded to `remote` on the node, through the master.
    pub(crate) fn forward(&self, remote: SocketAddr) -> Result<u16, SetupError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(SetupError::Spawn)?
            .port();
        let spec = format!("127.0.0.1:{port}:{}:{}", remote.ip(), remote.port());
        let o = self
            .command()
            .args(["-O", "forward", "-L", &spec, "--", &self.target])
            .stdout(Stdio::null())
            .output()
            .map_err(SetupError::Spawn)?;
        if !o.status.success() {
            return Err(SetupError::Connect {
                target: self.target.clone(),
                stderr: format!(
                    "cannot forward a port to {remote}: {}",
                    tail(&String::from_utf8_lossy(&o.stderr))
                ),
            });
        }
        Ok(port)
    }

    /// Ends the master connection (and its forwards).
    pub(crate) fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(mut m) = self.master.take() {
            let _ = self
                .command()
                .args(["-O", "exit", "--", &self.target])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn ok(what: &str, o: Output) -> Result<String, SetupError> {
    if o.status == Some(0) {
        return Ok(o.stdout);
    }
    Err(SetupError::Remote {
        what: what.to_owned(),
        status: match o.status {
            Some(255) => "ssh exit 255: the connection failed".to_owned(),
            Some(c) => format!("exit {c}"),
            None => "killed".to_owned(),
        },
        stderr: tail(&o.stderr),
    })
}

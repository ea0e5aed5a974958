//! Helpers shared by the end-to-end suites: the built binaries, one agent process with its
//! status API and log, and Docker lookups. Every wait polls with a deadline.

#![allow(dead_code, reason = "each suite uses a different subset")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
pub(crate) use test_support::docker::docker_ok;
use test_support::wait::{Wait, wait};

pub(crate) const WAIT: Duration = Duration::from_secs(90);

pub(crate) fn bin(name: &str) -> PathBuf {
    test_support::built(name)
}

/// One running agent process, killed on drop.
pub(crate) struct Agent {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn spawn_agent(url: &str, node: &str, data: &Path, port: u16, extra: &[&str]) -> Agent {
    spawn_agent_with_path(url, node, data, port, extra, None)
}

/// [`spawn_agent`], with `path` first on the agent's `PATH` when given (credential helpers
/// are looked for on the agent's own `PATH`).
pub(crate) fn spawn_agent_with_path(
    url: &str,
    node: &str,
    data: &Path,
    port: u16,
    extra: &[&str],
    path: Option<&Path>,
) -> Agent {
    let log = data.with_extension("log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let mut command = Command::new(bin("orun-agent"));
    command
        .args(["--repo", url, "--node", node, "--poll-interval", "300ms"])
        .arg("--data-dir")
        .arg(data)
        .args(["--status-addr", &format!("127.0.0.1:{port}")])
        .args(extra)
        // Caddy on the host's ports 80 and 443 is the ingress tests' business only.
        .args(if extra.contains(&"--ingress") {
            &[][..]
        } else {
            &["--ingress", "off"][..]
        })
        .env("ORUN_LOG", "debug")
        .env("ORUN_LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(file);
    if let Some(first) = path {
        let mut dirs = vec![first.to_path_buf()];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        command.env("PATH", std::env::join_paths(dirs).unwrap());
    }
    let child = command.spawn().unwrap();
    Agent {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        log,
    }
}

impl Agent {
    pub(crate) fn get(&self, path: &str) -> Option<status_http::Answer> {
        status_http::get(self.addr, path, Duration::from_secs(2)).ok()
    }

    pub(crate) fn status(&self) -> Option<Value> {
        serde_json::from_str(&self.get("/status")?.body).ok()
    }

    /// The deployment's event history (`/events`), empty when it cannot be read.
    pub(crate) fn events(&self, deployment: &str) -> Vec<Value> {
        self.get(&format!("/events?deployment={deployment}"))
            .and_then(|a| serde_json::from_str::<Value>(&a.body).ok())
            .and_then(|v| v["events"].as_array().cloned())
            .unwrap_or_default()
    }

    /// `orun_passes_total` from `/metrics`, 0 when it cannot be read.
    pub(crate) fn passes(&self) -> u64 {
        self.get("/metrics")
            .and_then(|m| {
                m.body
                    .lines()
                    .find_map(|l| l.strip_prefix("orun_passes_total ")?.parse::<f64>().ok())
            })
            .map_or(0, |n| n as u64)
    }

    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A wait of at most [`WAIT`] that, on timeout, shows this agent's status and log.
    pub(crate) fn wait<'a>(&'a self, what: &'a str) -> Wait<'a> {
        wait(what, WAIT)
            .every(Duration::from_millis(100))
            .explain(|| {
                format!(
                    "status: {:?}\n--- agent log ---\n{}",
                    self.status(),
                    tail(&self.logs())
                )
            })
    }

    /// Waits until `/readyz` is 200 with `commit` applied, returning `/status`. The two are
    /// separate requests: `/status` is read before and after, so a `/readyz` of an earlier
    /// snapshot (the previous commit, ready) is never taken for this commit's.
    pub(crate) fn converged(&self, commit: &str) -> Value {
        self.wait(&format!("convergence to {commit}")).until(|| {
            let before = self.status()?;
            let ready = self.get("/readyz")?.code == 200;
            let after = self.status()?;
            (ready && before["node"]["git_head"] == commit && after["node"]["git_head"] == commit)
                .then_some(after)
        })
    }

    pub(crate) fn wait_status(&self, what: &str, mut f: impl FnMut(&Value) -> bool) -> Value {
        self.wait(what).until(|| self.status().filter(|s| f(s)))
    }
}

pub(crate) fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

pub(crate) fn node_yaml(node: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: {node}\nspec:\n  host: 127.0.0.1\n  gitRepo: git@example.invalid:org/manifests.git\n  gitBranch: main\n  pollInterval: 5s\n"
    )
}

pub(crate) fn container(name: &str) -> Option<(String, String)> {
    docker_ok(&[
        "inspect",
        "-f",
        "{{.Id}} {{.State.StartedAt}} {{.State.Running}}",
        name,
    ])
    .and_then(|s| {
        let mut f = s.split_whitespace();
        let id = f.next()?.to_owned();
        let started = f.next()?.to_owned();
        (f.next()? == "true").then_some((id, started))
    })
}

//! `orun fleet`: every node of the manifest repository at a glance, from the operator's
//! machine. Each node's status API is read through an SSH tunnel to its loopback (the
//! operator's key; nothing is opened on the node), all nodes at once, each within a deadline.
//!
//! The branch head a node's applied commit is compared with is the operator's checkout's
//! (`origin/<branch>` as last fetched, else the local branch): `git fetch` first for the
//! remote's newest.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use manifest_model::Node;
use serde::Serialize;
use status_http::{ContainerPhase, DeploymentState};

use crate::SetupError;
use crate::ssh::{Ssh, SshOptions};

/// The flags of `orun fleet`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The manifest repository's working tree.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo_root: PathBuf,
    /// Where each node's status API listens, on the node.
    #[arg(long, default_value = "127.0.0.1:9100", value_name = "ADDR")]
    pub status_addr: SocketAddr,
    /// Where one node's status API listens, when not at `--status-addr`; may be repeated.
    #[arg(long = "node-status-addr", value_name = "NODE=ADDR", value_parser = parse_node_addr)]
    pub node_status_addrs: Vec<(String, SocketAddr)>,
    /// A file holding the status API's bearer token, when nodes require one.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// How long each node may take to answer, connection included.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Print JSON (one object per node) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The nodes' SSH port [default: ssh's, usually 22].
    #[arg(long, value_name = "N")]
    pub ssh_port: Option<u16>,
    /// An option for `ssh` (`-o UserKnownHostsFile=...`); may be repeated.
    #[arg(short = 'o', long = "ssh-option", value_name = "OPT")]
    pub ssh_options: Vec<String>,
}

fn parse_node_addr(s: &str) -> Result<(String, SocketAddr), String> {
    let (node, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NODE=ADDR"))?;
    let addr = addr
        .parse()
        .map_err(|e| format!("{addr:?} is not an address: {e}"))?;
    Ok((node.to_owned(), addr))
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    manifest_model::values::parse_duration(s).map_err(|e| e.to_string())
}

/// One node's line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    /// The node's name.
    pub node: String,
    /// The branch it follows (its manifest's `gitBranch`).
    pub branch: String,
    /// The commit it runs, as its agent reports.
    pub applied: Option<String>,
    /// The branch's tip in the operator's checkout.
    pub head: Option<String>,
    /// `/readyz` answered 200: the applied commit is converged and healthy.
    pub converged: bool,
    /// Deployments that are failed, missing or not running, with their state.
    pub failing: Vec<String>,
    /// When the agent last synced with Git (RFC 3339).
    pub last_sync: Option<String>,
    /// Seconds since then.
    pub last_sync_age_secs: Option<u64>,
    /// The agent's version.
    pub agent_version: Option<String>,
    /// The agent's sync error, or why the node could not be read.
    pub error: Option<String>,
}

impl NodeRow {
    /// Runs the branch head and is converged.
    pub fn up_to_date(&self) -> bool {
        self.converged && self.error.is_none() && self.head.is_some() && self.applied == self.head
    }
}

/// Runs `orun fleet`, printing to `out`. Returns whether every node runs its branch head,
/// converged.
///
/// # Errors
/// [`SetupError::Manifest`] for a repository that cannot be read, [`SetupError::Local`] for
/// the token file; a node that cannot be reached is a row with its error, not an error.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<bool, SetupError> {
    let nodes = crate::load_nodes(&args.repo_root, out)?;
    let token = match &args.token_file {
        Some(path) => Some(
            status_http::BearerToken::load(path)
                .map_err(|e| SetupError::Usage(format!("--token-file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let opts = SshOptions {
        options: args.ssh_options.clone(),
        port: args.ssh_port,
        timeout: args.timeout,
    };
    // Each branch's tip once, however many nodes follow it.
    let mut heads = std::collections::BTreeMap::new();
    for node in &nodes {
        let branch = &node.spec.git_branch;
        if !heads.contains_key(branch) {
            heads.insert(branch.clone(), gitsync::branch_tip(&args.repo_root, branch));
        }
    }
    let rows: Vec<NodeRow> = std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|node| {
                let (opts, token) = (&opts, token.as_ref());
                let head = heads.get(&node.spec.git_branch).cloned().flatten();
                scope.spawn(move || read_node(args, opts, token, node, head))
            })
            .collect();
        handles
            .into_iter()
            .zip(&nodes)
            .map(|(h, node)| {
                h.join().unwrap_or_else(|_| NodeRow {
                    node: node.name.clone(),
                    error: Some("reading it failed (a bug: please report it)".to_owned()),
                    ..NodeRow::default()
                })
            })
            .collect()
    });
    let text = if args.json {
        let mut t = serde_json::to_string_pretty(&rows).unwrap_or_default();
        t.push('\n');
        t
    } else {
        render(&rows)
    };
    out.write_all(text.as_bytes())
        .map_err(|source| SetupError::Local {
            what: "cannot write to",
            path: PathBuf::from("stdout"),
            source,
        })?;
    Ok(rows.iter().all(NodeRow::up_to_date))
}

/// One node: a tunnel to its status API, `/readyz` and `/status`.
fn read_node(
    args: &Args,
    opts: &SshOptions,
    token: Option<&status_http::BearerToken>,
    node: &Node,
    head: Option<String>,
) -> NodeRow {
    let mut row = NodeRow {
        node: node.name.clone(),
        branch: node.spec.git_branch.clone(),
        head,
        ..NodeRow::default()
    };
    let fail = |mut row: NodeRow, e: String| {
        row.error = Some(e);
        row
    };
    let mut sink = std::io::sink();
    let ssh = match Ssh::connect(opts, node, false, &mut sink) {
        Ok(ssh) => ssh,
        Err(e) => return fail(row, e.to_string()),
    };
    let mut remote = args
        .node_status_addrs
        .iter()
        .rev()
        .find(|(n, _)| *n == node.name)
        .map_or(args.status_addr, |(_, a)| *a);
    if remote.ip().is_unspecified() {
        remote.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let local = match ssh.forward(remote) {
        Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        Err(e) => return fail(row, e.to_string()),
    };
    let each = args.timeout.min(Duration::from_secs(5));
    let readyz = status_http::get_authorized(local, "/readyz", token, each);
    let status = status_http::get_authorized(local, "/status", token, each);
    ssh.close();
    match readyz {
        Ok(a) => row.converged = a.code == 200,
        Err(e) => return fail(row, format!("no status API at {remote} on the node: {e}")),
    }
    let snap = match status {
        Ok(a) if a.code == 200 => match serde_json::from_str::<status_http::Snapshot>(&a.body) {
            Ok(snap) => snap,
            Err(e) => return fail(row, format!("unreadable /status: {e}")),
        },
        Ok(a) => return fail(row, format!("/status answered {}", a.code)),
        Err(e) => return fail(row, format!("/status: {e}")),
    };
    fill(&mut row, &snap, SystemTime::now());
    row
}

/// The row's parts that come from the agent's `/status`.
fn fill(row: &mut NodeRow, snap: &status_http::Snapshot, now: SystemTime) {
    row.applied = snap.node.git_head.clone();
    row.last_sync = snap.node.last_sync_time.clone();
    row.last_sync_age_secs = snap
        .node
        .last_sync_time
        .as_deref()
        .and_then(status_http::parse_rfc3339)
        .and_then(|t| {
            let now = now.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
            now.checked_sub(u64::try_from(t).ok()?)
        });
    row.agent_version = snap.node.agent_version.clone();
    row.error = snap.node.sync_error.clone();
    row.failing = snap
        .deployments
        .values()
        .filter(|d| failing(&d.state))
        .map(|d| format!("{} ({})", d.name, d.state))
        .collect();
}

/// A deployment not doing its job: failed, missing, or its container not running. One
/// rolling out or suspended on purpose is not.
fn failing(state: &DeploymentState) -> bool {
    match state {
        DeploymentState::Failed | DeploymentState::FailedRolledBack | DeploymentState::Missing => {
            true
        }
        DeploymentState::Current(phase) | DeploymentState::Outdated(phase) => {
            *phase != ContainerPhase::Running
        }
        DeploymentState::RollingOut | DeploymentState::Suspended | DeploymentState::Other(_) => {
            false
        }
    }
}

fn short(commit: Option<&str>) -> String {
    commit.map_or_else(|| "-".to_owned(), |c| c.chars().take(8).collect())
}

fn age(secs: Option<u64>) -> String {
    secs.map_or_else(
        || "-".to_owned(),
        |s| status_http::span(i64::try_from(s).unwrap_or(i64::MAX)),
    )
}

/// `text` with control characters (ESC, CR, …) shown as `?`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The table: one line per node, then each node's error on its own line.
pub fn render(rows: &[NodeRow]) -> String {
    let mut table = vec![[
        "NODE".to_owned(),
        "BRANCH".to_owned(),
        "APPLIED".to_owned(),
        "HEAD".to_owned(),
        "CONVERGED".to_owned(),
        "FAILING".to_owned(),
        "LAST SYNC".to_owned(),
        "VERSION".to_owned(),
    ]];
    for r in rows {
        let applied = short(r.applied.as_deref());
        let applied = if r.head.is_some() && r.applied != r.head {
            format!("{applied} (behind)")
        } else {
            applied
        };
        table.push([
            r.node.clone(),
            r.branch.clone(),
            applied,
            short(r.head.as_deref()),
            if r.error.is_some() && r.applied.is_none() {
                "?".to_owned()
            } else if r.converged {
                "yes".to_owned()
            } else {
                "no".to_owned()
            },
            if r.failing.is_empty() {
                "-".to_owned()
            } else {
                r.failing.join(", ")
            },
            age(r.last_sync_age_secs),
            r.agent_version.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    // Names, versions and errors come from the nodes: no escape sequence reaches the
    // operator's terminal.
    for line in &mut table {
        for cell in line.iter_mut() {
            *cell = printable(cell);
        }
    }
    let mut widths = [0usize; 8];
    for line in &table {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for r in rows.iter().filter(|r| r.error.is_some()) {
        if let Some(e) = &r.error {
            out.push_str(&format!("{}: {}\n", printable(&r.node), printable(e)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use status_http::{DeploymentStatus, Snapshot};

    #[test]
    fn a_row_says_what_is_behind_failing_and_how_old() {
        let mut snap = Snapshot::default();
        snap.node.git_head = Some("aaaaaaaaaaaa".into());
        snap.node.last_sync_time = Some("2026-12-01T10:00:00Z".into());
        snap.node.agent_version = Some("0.2.0".into());
        snap.deployments.insert(
            "web".into(),
            DeploymentStatus {
                name: "web".into(),
                state: DeploymentState::Failed,
                ..Default::default()
            },
        );
        snap.deployments.insert(
            "db".into(),
            DeploymentStatus {
                name: "db".into(),
                state: DeploymentState::Current(ContainerPhase::Running),
                ..Default::default()
            },
        );
        let now = std::time::UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(status_http::parse_rfc3339("2026-12-01T10:03:30Z").unwrap()).unwrap(),
            );
        let mut row = NodeRow {
            node: "n1".into(),
            branch: "main".into(),
            head: Some("bbbbbbbbbbbb".into()),
            ..NodeRow::default()
        };
        fill(&mut row, &snap, now);
        assert_eq!(row.last_sync_age_secs, Some(210));
        assert_eq!(row.failing, ["web (failed)"]);
        assert!(!row.up_to_date());
        let text = render(&[row.clone()]);
        let line = text.lines().nth(1).unwrap();
        assert!(line.contains("aaaaaaaa (behind)"), "{text}");
        assert!(
            line.contains("web (failed)") && line.contains("3m"),
            "{text}"
        );
        assert!(line.contains("0.2.0"), "{text}");

        row.head = row.applied.clone();
        row.converged = true;
        row.failing.clear();
        assert!(row.up_to_date());
        row.error = Some("remote unreachable".into());
        assert!(!row.up_to_date());
        assert!(render(&[row.clone()]).ends_with("n1: remote unreachable\n"));
        row.error = Some("\u{1b}]0;pwned\u{7}boom".into());
        row.agent_version = Some("\u{1b}[31m1.0".into());
        let text = render(&[row]);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(
            text.contains("?]0;pwned?boom") && text.contains("?[31m1.0"),
            "{text:?}"
        );
    }
}

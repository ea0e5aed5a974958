//! `orun bootstrap`: installs the agent on a node over SSH, from the node's manifest, so that
//! it runs `orun start` under systemd (or detached, without systemd) and converges.
//!
//! SSH goes through the system `ssh` client, so the operator's own `~/.ssh/config`, agent and
//! known_hosts apply, with one master connection (authenticated once) that every step reuses.
//! Each remote step is one `sh -c` string built from single-quoted words ([`shell_quote`]),
//! so no path or name from a manifest can add a command.
//!
//! # Guarantees
//! - Idempotent: a file is uploaded only when its SHA-256 differs from the node's copy, and
//!   the agent is restarted only when something changed (or it does not run).
//! - Uploads are atomic: a temporary file in the destination's folder (umask 077), checked
//!   against the local SHA-256, given its mode, then renamed over the old one.
//! - Key material (deploy key, age key) is never printed or logged: messages name files.
//! - The Git host key is never trusted on first use: it comes from a file, or the operator
//!   confirms its fingerprint on a terminal or with `--accept-git-host-key`.

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use manifest_model::Node;
use sha2::{Digest as _, Sha256};

use crate::SetupError;
use crate::ssh::{Content, Ssh, SshOptions, ok, ssh_base, tail};
use crate::unit::{UNIT_NAME, UnitParams};

/// The flags of `orun bootstrap`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The node's manifest, relative to the repository root (`nodes/<name>.yaml`). Without
    /// one, asks for the node's settings on a terminal and writes that file first.
    pub node_file: Option<PathBuf>,
    /// The manifest repository's working tree.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo_root: PathBuf,
    /// Prefix every path written on the node with this folder (a trial install, or a
    /// chroot); the config written names the prefixed paths.
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<PathBuf>,
    /// No systemd: run the agent as the SSH user, detached, with a pid file and a log file.
    #[arg(long)]
    pub no_systemd: bool,
    /// Connect to nothing; print every step (remote commands, files with destination and
    /// mode) and exit.
    #[arg(long, conflicts_with = "check")]
    pub dry_run: bool,
    /// Run the installed `orun doctor` on the node and print its report; exit as it does.
    #[arg(long)]
    pub check: bool,
    /// A known_hosts file pinning the Git remote's host key (ssh remotes).
    #[arg(long, value_name = "FILE")]
    pub git_known_hosts: Option<PathBuf>,
    /// Pin the Git remote's host key that has this fingerprint (from `ssh-keygen -l`), as
    /// scanned from the node; may be repeated, one per key type.
    #[arg(long, value_name = "SHA256:...")]
    pub accept_git_host_key: Vec<String>,
    /// The deploy key the agent reads the Git remote with (required for ssh remotes).
    #[arg(long, value_name = "FILE")]
    pub deploy_key: Option<PathBuf>,
    /// The age key that decrypts the repository's SOPS secrets on the node.
    #[arg(long, value_name = "FILE")]
    pub age_key: Option<PathBuf>,
    /// Where the agent's status API listens on the node.
    #[arg(long, default_value = "127.0.0.1:9100", value_name = "ADDR")]
    pub status_addr: SocketAddr,
    /// The node's SSH port [default: ssh's, usually 22].
    #[arg(long, value_name = "N")]
    pub ssh_port: Option<u16>,
    /// An option for `ssh` (`-o UserKnownHostsFile=...`); may be repeated. Given before
    /// bootstrap's own options, so it wins over them.
    #[arg(short = 'o', long = "ssh-option", value_name = "OPT")]
    pub ssh_options: Vec<String>,
    /// The orun binary to install [default: this one].
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// How long each SSH step, and the wait for the agent to converge, may take.
    #[arg(long, default_value = "120s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

impl Args {
    fn ssh(&self) -> SshOptions {
        SshOptions {
            options: self.ssh_options.clone(),
            port: self.ssh_port,
            timeout: self.timeout,
        }
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    manifest_model::values::parse_duration(s).map_err(|e| e.to_string())
}

/// Top-level folders that are never a data dir (`""` is `/` itself).
const SYSTEM_DIRS: [&str; 20] = [
    "", "bin", "boot", "dev", "etc", "home", "lib", "lib64", "media", "mnt", "opt", "proc", "root",
    "run", "sbin", "srv", "sys", "tmp", "usr", "var",
];

/// The service user `orun bootstrap` creates under systemd.
pub const SERVICE_USER: &str = "orun";

/// Quotes `s` as one word for a POSIX shell: single quotes, with each `'` written `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The SHA256 fingerprint of an SSH public key given as its base64 blob (the second field of
/// a known_hosts or `.pub` line), as `ssh-keygen -l` prints it: `SHA256:` and the unpadded
/// base64 of the blob's SHA-256. `None` when `blob` is not base64.
pub fn fingerprint(blob: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(blob.trim())
        .ok()?;
    let digest = Sha256::digest(&raw);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

/// Where everything goes on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The agent's binary.
    pub binary: PathBuf,
    /// The agent's TOML config.
    pub config: PathBuf,
    /// The folder of the config and keys.
    pub etc: PathBuf,
    /// The deploy key for ssh remotes.
    pub deploy_key: PathBuf,
    /// The known_hosts file pinning the Git remote's host key.
    pub known_hosts: PathBuf,
    /// The age key.
    pub age_key: PathBuf,
    /// The systemd unit.
    pub unit: PathBuf,
    /// The node's data dir.
    pub data_dir: PathBuf,
    /// Without systemd: the agent's log.
    pub log: PathBuf,
    /// Without systemd: the agent's pid.
    pub pidfile: PathBuf,
}

impl Layout {
    /// The layout for a node whose `dataDir` is `data_dir`, every path under `prefix`.
    ///
    /// # Errors
    /// [`SetupError::Usage`] when the prefix or the data dir is not absolute.
    pub fn new(prefix: Option<&Path>, data_dir: &str) -> Result<Self, SetupError> {
        if let Some(p) = prefix
            && !p.is_absolute()
        {
            return Err(SetupError::Usage(format!(
                "--prefix {} must be an absolute path (it is a folder on the node)",
                p.display()
            )));
        }
        if !data_dir.starts_with('/') {
            return Err(SetupError::Usage(format!(
                "the node's dataDir {data_dir:?} must be an absolute path"
            )));
        }
        // Bootstrap gives the data dir to the agent (mode 0750, owner orun): never a system
        // folder, nor one reached through `..`.
        let parts: Vec<&str> = data_dir.split('/').filter(|c| !c.is_empty()).collect();
        if parts.iter().any(|c| *c == "." || *c == "..")
            || parts.len() < 2 && SYSTEM_DIRS.contains(&parts.first().copied().unwrap_or(""))
        {
            return Err(SetupError::Usage(format!(
                "the node's dataDir {data_dir:?} would hand a system folder to the agent: give it a folder of its own (default /opt/orun)"
            )));
        }
        let at = |abs: &str| match prefix {
            Some(p) => p.join(abs.trim_start_matches('/')),
            None => PathBuf::from(abs),
        };
        let data = data_dir.trim_end_matches('/');
        Ok(Self {
            binary: at("/var/lib/orun/bin/orun"),
            config: at("/etc/orun/agent.toml"),
            etc: at("/etc/orun"),
            deploy_key: at("/etc/orun/deploy_key"),
            known_hosts: at("/etc/orun/known_hosts"),
            age_key: at("/etc/orun/age.key"),
            unit: at(&format!("/etc/systemd/system/{UNIT_NAME}")),
            data_dir: at(if data.is_empty() { "/" } else { data }),
            log: at("/var/log/orun-agent.log"),
            pidfile: at("/run/orun-agent.pid"),
        })
    }
}

/// What the agent's config names besides the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigInput<'a> {
    /// The node's `gitRepo`.
    pub repo: &'a str,
    /// The node's name.
    pub node: &'a str,
    /// The status API's address.
    pub status_addr: SocketAddr,
    /// Whether a deploy key is installed.
    pub deploy_key: bool,
    /// Whether a known_hosts file is installed.
    pub known_hosts: bool,
    /// Whether an age key is installed.
    pub age_key: bool,
}

/// The agent's TOML config (`agent-daemon`'s `FileConfig` keys).
///
/// No `branch`: the agent then follows what the node's manifest names, looked up on every
/// poll, so a change of `gitBranch` in Git needs no new bootstrap.
pub fn render_config(c: &ConfigInput<'_>, layout: &Layout) -> String {
    let mut out = String::from(
        "# Written by `orun bootstrap`; the next bootstrap overwrites it.\n\
         # Settings: orun start --help (each flag is a key here, with _ for -).\n",
    );
    let mut key = |k: &str, v: &str| out.push_str(&format!("{k} = {}\n", toml_string(v)));
    key("repo", c.repo);
    key("node", c.node);
    key("data_dir", &layout.data_dir.to_string_lossy());
    key("status_addr", &c.status_addr.to_string());
    if c.deploy_key {
        key("ssh_key", &layout.deploy_key.to_string_lossy());
    }
    if c.known_hosts {
        key("known_hosts", &layout.known_hosts.to_string_lossy());
    }
    if c.age_key {
        key("age_key_path", &layout.age_key.to_string_lossy());
    }
    out
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The Node manifest the interactive mode writes; JSON strings are YAML strings, so no value
/// can break out of its field.
pub fn node_yaml(name: &str, host: &str, user: &str, git_repo: &str, git_branch: &str) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: {}\nspec:\n  host: {}\n  user: {}\n  gitRepo: {}\n  gitBranch: {}\n",
        q(name),
        q(host),
        q(user),
        q(git_repo),
        q(git_branch)
    )
}

/// The architecture `uname -m` prints for a binary: read from its ELF header, else this
/// machine's.
/// `MAJOR.MINOR.PATCH` of a `--version` line (`orun 0.2.0`, `orun v0.2.0-rc.1`): its last
/// word, a pre-release suffix ignored.
fn version_of(line: &str) -> Option<(u64, u64, u64)> {
    let word = line.split_whitespace().last()?;
    let word = word.strip_prefix('v').unwrap_or(word);
    let core = word.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}

/// What the binary to install says its version is; empty when it cannot say.
fn local_version(binary: &Path) -> String {
    std::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default()
}

fn binary_arch(binary: &Path) -> String {
    let mut head = [0u8; 20];
    let elf = std::fs::File::open(binary)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head.starts_with(b"\x7fELF");
    if elf {
        // e_machine, little-endian on both targets orun ships for.
        match u16::from_le_bytes([head[18], head[19]]) {
            0x3e => return "x86_64".to_owned(),
            0xb7 => return "aarch64".to_owned(),
            _ => {}
        }
    }
    std::env::consts::ARCH.to_owned()
}

fn arch_matches(binary: &str, uname: &str) -> bool {
    binary == uname || (binary == "aarch64" && uname == "arm64")
}

/// `s` cut to its last [`TAIL`] bytes, at a character boundary.
fn path_str(p: &Path) -> Result<&str, SetupError> {
    p.to_str()
        .ok_or_else(|| SetupError::Usage(format!("{} is not UTF-8", p.display())))
}

fn q(p: &Path) -> Result<String, SetupError> {
    Ok(shell_quote(path_str(p)?))
}

/// Prints one line of progress; a reader that went away does not stop an install halfway.
pub(crate) fn say(out: &mut dyn Write, line: &str) {
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn sha256_file(path: &Path) -> Result<String, SetupError> {
    let local = |source| SetupError::Local {
        what: "cannot read",
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(local)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(local)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One file to install.
#[derive(Debug, Clone)]
struct Install {
    what: &'static str,
    dest: PathBuf,
    mode: u32,
    /// `user:group` under systemd.
    owner: Option<&'static str>,
    content: Content,
}

impl Install {
    fn sha256(&self) -> Result<String, SetupError> {
        match &self.content {
            Content::Text(t) => Ok(hex(&Sha256::digest(t.as_bytes()))),
            Content::File(p) => sha256_file(p),
        }
    }

    fn size(&self) -> u64 {
        match &self.content {
            Content::Text(t) => t.len() as u64,
            Content::File(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        }
    }

    /// Upload: stdin to a private temporary file beside the destination, checked, then
    /// renamed over it, so the node never holds half a binary or a key readable by others.
    fn upload_script(&self, sha: &str) -> Result<String, SetupError> {
        let dest = q(&self.dest)?;
        let dir = q(self.dest.parent().unwrap_or(Path::new("/")))?;
        let owner = self
            .owner
            .map(|o| format!("chown {o} \"$tmp\" && "))
            .unwrap_or_default();
        Ok(format!(
            "umask 077; tmp=$(mktemp {dir}/.orun-upload.XXXXXX) || exit 1; trap 'rm -f \"$tmp\"' EXIT; \
             cat > \"$tmp\" || exit 1; sum=$(sha256sum < \"$tmp\" | cut -c1-64); \
             if [ \"$sum\" != {sha} ]; then echo \"the upload arrived changed\" >&2; exit 1; fi; \
             chmod {mode:04o} \"$tmp\" && {owner}mv -f \"$tmp\" {dest}",
            sha = shell_quote(sha),
            mode = self.mode,
        ))
    }

    /// The mode and owner of a file already right in content.
    fn fix_script(&self) -> Result<String, SetupError> {
        let dest = q(&self.dest)?;
        let owner = self
            .owner
            .map(|o| format!(" && chown {o} {dest}"))
            .unwrap_or_default();
        Ok(format!("chmod {:04o} {dest}{owner}", self.mode))
    }
}

/// Everything decided before touching the node.
struct Setup {
    node: Node,
    node_file: String,
    layout: Layout,
    systemd: bool,
    binary: PathBuf,
    files: Vec<Install>,
    /// For an ssh remote without `--git-known-hosts`: `(host, port)` to scan on the node.
    scan: Option<(String, u16)>,
    /// `host` or `[host]:port`, as known_hosts names the remote.
    git_host: Option<String>,
}

/// Runs `orun bootstrap`, printing progress to `out`. Returns whether the command succeeded
/// (`--check`: whether doctor passed).
///
/// # Errors
/// [`SetupError`] for whatever stops it; the node may then be partly set up, which the
/// next run completes.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<bool, SetupError> {
    let node_file = match &args.node_file {
        Some(f) => f.clone(),
        None => interactive(&args.repo_root, out)?,
    };
    let setup = prepare(args, &node_file, out)?;
    if args.dry_run {
        dry_run(args, &setup, out)?;
        return Ok(true);
    }
    let ssh = Ssh::connect(&args.ssh(), &setup.node, !args.no_systemd, out)?;
    if args.check {
        return check(&ssh, &setup, out);
    }
    install(args, &ssh, setup, out)?;
    ssh.close();
    Ok(true)
}

/// Loads the repository (refusing an invalid one, with validate's diagnostics), finds the
/// node, and decides the files.
fn prepare(args: &Args, node_file: &Path, out: &mut dyn Write) -> Result<Setup, SetupError> {
    let root = &args.repo_root;
    let nodes = crate::load_nodes(root, out)?;
    let wanted = relative_node_file(root, node_file);
    let Some(node) = nodes.iter().find(|n| n.file == wanted).cloned() else {
        let known: Vec<&str> = nodes.iter().map(|n| n.file.as_str()).collect();
        return Err(SetupError::Manifest(format!(
            "no Node manifest at {wanted} in {} (nodes: {})",
            root.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    let layout = Layout::new(args.prefix.as_deref(), &node.spec.data_dir)?;
    let systemd = !args.no_systemd;
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(|source| SetupError::Local {
            what: "cannot find this program",
            path: PathBuf::from("orun"),
            source,
        })?,
    };

    let url = gitsync::RemoteUrl::parse(&node.spec.git_repo, root)
        .map_err(|e| SetupError::Manifest(format!("{}: gitRepo: {e}", node.file)))?;
    let ssh_remote = url.transport() == gitsync::Transport::Ssh;
    let git_host = url.ssh_host();
    if ssh_remote && args.deploy_key.is_none() {
        return Err(SetupError::Usage(format!(
            "{} is an ssh remote: give the key the agent reads it with, --deploy-key FILE; nothing was installed",
            node.spec.git_repo
        )));
    }
    let mut scan = None;
    let mut known_hosts = None;
    if let Some(host) = &git_host {
        match &args.git_known_hosts {
            Some(path) => {
                let text = read_text(path, "cannot read the Git known_hosts file")?;
                if !known_hosts_names(&text, host) {
                    return Err(SetupError::HostKey(format!(
                        "{} has no key for {host}, the Git remote's host; nothing was installed",
                        path.display()
                    )));
                }
                known_hosts = Some(text);
            }
            None => scan = Some(split_host(host)),
        }
    }
    let owner = |o: &'static str| systemd.then_some(o);
    let mut files = vec![Install {
        what: "binary",
        dest: layout.binary.clone(),
        mode: 0o755,
        owner: owner("orun:orun"),
        content: Content::File(binary.clone()),
    }];
    let config = render_config(
        &ConfigInput {
            repo: &node.spec.git_repo,
            node: &node.name,
            status_addr: args.status_addr,
            deploy_key: args.deploy_key.is_some(),
            known_hosts: git_host.is_some(),
            age_key: args.age_key.is_some(),
        },
        &layout,
    );
    files.push(Install {
        what: "config",
        dest: layout.config.clone(),
        mode: 0o640,
        owner: owner("root:orun"),
        content: Content::Text(config),
    });
    // Keys belong to the service user, which alone may read them.
    for (what, flag, dest) in [
        ("deploy key", &args.deploy_key, &layout.deploy_key),
        ("age key", &args.age_key, &layout.age_key),
    ] {
        if let Some(path) = flag {
            std::fs::metadata(path).map_err(|source| SetupError::Local {
                what: "cannot read",
                path: path.clone(),
                source,
            })?;
            files.push(Install {
                what,
                dest: dest.clone(),
                mode: 0o600,
                owner: owner("orun:orun"),
                content: Content::File(path.clone()),
            });
        }
    }
    if let Some(text) = known_hosts {
        files.push(known_hosts_file(&layout, systemd, text));
    }
    if systemd {
        let unit = crate::unit::render(&UnitParams {
            binary: layout.binary.clone(),
            config: layout.config.clone(),
            data_dir: layout.data_dir.clone(),
            ..UnitParams::default()
        })?;
        files.push(Install {
            what: "unit",
            dest: layout.unit.clone(),
            mode: 0o644,
            owner: None,
            content: Content::Text(unit),
        });
    }
    Ok(Setup {
        node_file: node.file.clone(),
        node,
        layout,
        systemd,
        binary,
        files,
        scan,
        git_host,
    })
}

fn known_hosts_file(layout: &Layout, systemd: bool, text: String) -> Install {
    Install {
        what: "Git known_hosts",
        dest: layout.known_hosts.clone(),
        mode: 0o644,
        owner: systemd.then_some("root:orun"),
        content: Content::Text(text),
    }
}

fn read_text(path: &Path, what: &'static str) -> Result<String, SetupError> {
    std::fs::read_to_string(path).map_err(|source| SetupError::Local {
        what,
        path: path.to_owned(),
        source,
    })
}

/// `node_file` as the loader names it: relative to the repository root, with `/`.
fn relative_node_file(root: &Path, node_file: &Path) -> String {
    let rel = if node_file.is_absolute() {
        let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_owned());
        canon(node_file)
            .strip_prefix(canon(root))
            .map(Path::to_owned)
            .unwrap_or_else(|_| node_file.to_owned())
    } else {
        node_file.to_owned()
    };
    let text = rel.to_string_lossy().replace('\\', "/");
    text.trim_start_matches("./").to_owned()
}

/// Whether known_hosts `text` has a plain entry for `host` (`host` or `[host]:port`).
fn known_hosts_names(text: &str, host: &str) -> bool {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .any(|patterns| patterns.split(',').any(|p| p == host))
}

/// `host` or `[host]:port` as `(host, port)`.
fn split_host(known: &str) -> (String, u16) {
    if let Some(rest) = known.strip_prefix('[')
        && let Some((host, port)) = rest.split_once("]:")
        && let Ok(port) = port.parse()
    {
        return (host.to_owned(), port);
    }
    (known.trim_matches(['[', ']']).to_owned(), 22)
}

/// A key `ssh-keyscan` found: its known_hosts line and fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scanned {
    line: String,
    kind: String,
    fingerprint: String,
}

fn parse_keyscan(text: &str) -> Vec<Scanned> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_host, kind, blob) = (f.next()?, f.next()?, f.next()?);
            Some(Scanned {
                line: l.to_owned(),
                kind: kind.to_owned(),
                fingerprint: fingerprint(blob)?,
            })
        })
        .collect()
}

/// The keys to pin among `scanned`: those whose fingerprint the operator passed, or all of
/// them once confirmed on a terminal. Never any without one or the other.
fn choose_keys(
    host: &str,
    scanned: &[Scanned],
    accepted: &[String],
    out: &mut dyn Write,
) -> Result<String, SetupError> {
    if scanned.is_empty() {
        return Err(SetupError::HostKey(format!(
            "ssh-keyscan on the node found no host key for {host}; give --git-known-hosts FILE"
        )));
    }
    say(
        out,
        &format!("git host {host} presents, as seen from the node:"),
    );
    for s in scanned {
        say(out, &format!("  {} {}", s.kind, s.fingerprint));
    }
    if !accepted.is_empty() {
        let chosen: Vec<&Scanned> = scanned
            .iter()
            .filter(|s| accepted.iter().any(|a| a.trim() == s.fingerprint))
            .collect();
        if chosen.len() < accepted.len() {
            return Err(SetupError::HostKey(format!(
                "{host} does not present the key --accept-git-host-key names ({}); nothing was installed",
                accepted.join(", ")
            )));
        }
        return Ok(chosen.iter().map(|s| format!("{}\n", s.line)).collect());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(SetupError::HostKey(format!(
            "the Git host key of {host} is not pinned: check a fingerprint above with the Git host, then pass --accept-git-host-key {} (or give --git-known-hosts FILE); nothing was installed",
            scanned[0].fingerprint
        )));
    }
    let _ = write!(
        out,
        "pin these keys for the agent? only if they match what the Git host publishes [y/N] "
    );
    let _ = out.flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|source| SetupError::Local {
            what: "cannot read the answer from",
            path: PathBuf::from("stdin"),
            source,
        })?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        return Err(SetupError::HostKey(format!(
            "the Git host key of {host} was not confirmed; nothing was installed"
        )));
    }
    Ok(scanned.iter().map(|s| format!("{}\n", s.line)).collect())
}

/// Asks for a node's settings on a terminal, writes `nodes/<name>.yaml` (never over an
/// existing file) and returns its path relative to the root.
fn interactive(root: &Path, out: &mut dyn Write) -> Result<PathBuf, SetupError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(SetupError::Usage(
            "give nodes/<name>.yaml (without it, bootstrap asks on a terminal)".to_owned(),
        ));
    }
    let mut ask = |what: &str, default: &str| -> Result<String, SetupError> {
        let hint = if default.is_empty() {
            String::new()
        } else {
            format!(" [{default}]")
        };
        let _ = write!(out, "{what}{hint}: ");
        let _ = out.flush();
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|source| SetupError::Local {
                what: "cannot read the answer from",
                path: PathBuf::from("stdin"),
                source,
            })?;
        let line = line.trim();
        Ok(if line.is_empty() { default } else { line }.to_owned())
    };
    let name = ask("node name", "")?;
    let host = ask("SSH host", "")?;
    let user = ask("SSH user", "root")?;
    let repo = ask("Git repository (gitRepo)", "")?;
    let branch = ask("branch (gitBranch)", "main")?;
    if name.is_empty() || host.is_empty() || repo.is_empty() {
        return Err(SetupError::Usage(
            "a node name, a host and a Git repository are required".to_owned(),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(SetupError::Usage(format!(
            "{name:?} is not a node name (letters, digits, '-' and '.')"
        )));
    }
    let rel = PathBuf::from("nodes").join(format!("{name}.yaml"));
    let path = root.join(&rel);
    let local = |source| SetupError::Local {
        what: "cannot write",
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(root.join("nodes")).map_err(local)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(local)?;
    f.write_all(node_yaml(&name, &host, &user, &repo, &branch).as_bytes())
        .map_err(local)?;
    say(out, &format!("wrote {}; commit and push it", rel.display()));
    Ok(rel)
}

/// The steps, printed; nothing is contacted.
fn dry_run(args: &Args, s: &Setup, out: &mut dyn Write) -> Result<(), SetupError> {
    let spec = &s.node.spec;
    say(
        out,
        &format!(
            "dry run: nothing is contacted or changed; for node {} ({}), orun bootstrap would:",
            s.node.name, s.node_file
        ),
    );
    say(
        out,
        &format!(
            "connect: ssh {} {}@{}",
            ssh_base(&args.ssh(), &s.node).join(" "),
            spec.user,
            spec.host
        ),
    );
    let run = |out: &mut dyn Write, cmd: &str| say(out, &format!("run: {cmd}"));
    run(
        out,
        &format!("uname -m (must be {})", binary_arch(&s.binary)),
    );
    if s.systemd {
        run(out, "systemctl --version");
    }
    if let (Some((host, port)), Some(known)) = (&s.scan, &s.git_host) {
        run(out, &keyscan_cmd(host, *port));
        say(
            out,
            &format!(
                "confirm: the fingerprints of {known}, on a terminal or with --accept-git-host-key"
            ),
        );
        say(
            out,
            &format!(
                "file: {} (mode 0644): the confirmed keys",
                s.layout.known_hosts.display()
            ),
        );
    }
    if s.systemd {
        run(out, &user_cmd());
    }
    run(out, &dirs_cmd(&s.layout, s.systemd)?);
    for f in &s.files {
        let from = match &f.content {
            Content::File(p) => format!("from {}", p.display()),
            Content::Text(_) => "rendered".to_owned(),
        };
        say(
            out,
            &format!(
                "file: {} (mode {:04o}{}) {what}, {from}: uploaded when its sha256 differs",
                f.dest.display(),
                f.mode,
                f.owner.map(|o| format!(", owner {o}")).unwrap_or_default(),
                what = f.what,
            ),
        );
        if let (Content::Text(text), "config") = (&f.content, f.what) {
            for line in text.lines() {
                say(out, &format!("    {line}"));
            }
        }
    }
    run(out, &check_config_cmd(&s.layout)?);
    if s.systemd {
        run(out, &systemd_cmd(&s.layout, args.prefix.is_some(), true)?);
        say(out, "  (start instead of restart when nothing changed)");
    } else {
        run(out, &detached_cmd(&s.layout, true)?);
    }
    say(
        out,
        &format!(
            "wait: /readyz of {} through an SSH tunnel, at most {:?}, then print /status",
            args.status_addr, args.timeout
        ),
    );
    Ok(())
}

fn keyscan_cmd(host: &str, port: u16) -> String {
    format!("ssh-keyscan -T 10 -p {port} {}", shell_quote(host))
}

fn user_cmd() -> String {
    format!(
        "if ! id -u {u} >/dev/null 2>&1; then useradd --system --no-create-home --shell /usr/sbin/nologin {u} && echo created; fi; \
         if getent group docker >/dev/null 2>&1; then usermod -aG docker {u}; fi",
        u = SERVICE_USER
    )
}

/// The file bootstrap leaves in a data dir it made, so that a later run knows it is orun's.
const DATA_MARK: &str = ".orun-data-dir";

fn dirs_cmd(l: &Layout, systemd: bool) -> Result<String, SetupError> {
    let parent = |p: &Path| q(p.parent().unwrap_or(Path::new("/")));
    let mut dirs = vec![parent(&l.binary)?, q(&l.etc)?, q(&l.data_dir)?];
    if systemd {
        dirs.push(parent(&l.unit)?);
    } else {
        dirs.push(parent(&l.log)?);
        dirs.push(parent(&l.pidfile)?);
    }
    // A data dir that holds something else (a mistyped `dataDir: /var/lib`) is never taken
    // over: it must be new, empty, or marked as orun's by an earlier bootstrap, or hold an
    // agent's state.
    let data = q(&l.data_dir)?;
    let mut cmd = format!(
        "if [ -d {data} ] && [ -n \"$(ls -A {data} 2>/dev/null)\" ] && [ ! -e {data}/{DATA_MARK} ] && [ ! -e {data}/state.json ]; then \
         echo \"refusing to take over {data}: it exists, is not empty and is not an orun data dir; choose another dataDir\" >&2; exit 3; fi; \
         mkdir -p {} && touch {data}/{DATA_MARK} && chmod 0750 {} {data}",
        dirs.join(" "),
        q(&l.etc)?,
    );
    if systemd {
        cmd.push_str(&format!(
            " && chown root:{u} {} && chown {u}:{u} {} {}",
            q(&l.etc)?,
            q(&l.data_dir)?,
            parent(&l.binary)?,
            u = SERVICE_USER
        ));
    }
    Ok(cmd)
}

fn check_config_cmd(l: &Layout) -> Result<String, SetupError> {
    Ok(format!(
        "{} start --check-config --config {}",
        q(&l.binary)?,
        q(&l.config)?
    ))
}

/// Reload, enable, then restart (something changed) or start (a no-op when running).
fn systemd_cmd(l: &Layout, prefixed: bool, changed: bool) -> Result<String, SetupError> {
    // A unit outside systemd's search path is enabled by its path, which links it.
    let unit = if prefixed {
        q(&l.unit)?
    } else {
        UNIT_NAME.to_owned()
    };
    let verb = if changed { "restart" } else { "start" };
    Ok(format!(
        "systemctl daemon-reload && systemctl enable --quiet {unit} && systemctl {verb} {UNIT_NAME}"
    ))
}

/// Without systemd: the agent as the SSH user, detached from the session. A running agent
/// is one whose pid is in the pid file and whose command line names our config; no other
/// process is ever signalled. Prints `running PID`, `restarted PID` or `started PID`.
fn detached_cmd(l: &Layout, changed: bool) -> Result<String, SetupError> {
    let (bin, cfg, pidfile, log) = (q(&l.binary)?, q(&l.config)?, q(&l.pidfile)?, q(&l.log)?);
    Ok(format!(
        "pid=$(cat {pidfile} 2>/dev/null); case \"$pid\" in ''|*[!0-9]*) pid= ;; esac; alive=; \
         if [ -n \"$pid\" ] && [ -r /proc/$pid/cmdline ] && tr '\\000' '\\n' < /proc/$pid/cmdline | grep -qxF -- {cfg} \
         && tr '\\000' '\\n' < /proc/$pid/cmdline | grep -qxF -- {bin}; then alive=1; fi; \
         if [ -n \"$alive\" ] && [ {changed} = 0 ]; then echo running $pid; exit 0; fi; \
         verb=started; if [ -n \"$alive\" ]; then verb=restarted; kill $pid; i=0; \
         while kill -0 $pid 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; \
         if kill -0 $pid 2>/dev/null; then kill -9 $pid; fi; fi; \
         setsid nohup {bin} start --config {cfg} >> {log} 2>&1 < /dev/null & echo $! > {pidfile}; echo $verb $!",
        changed = u8::from(changed),
    ))
}

/// `--check`: the installed binary's doctor, on the node.
fn check(ssh: &Ssh, s: &Setup, out: &mut dyn Write) -> Result<bool, SetupError> {
    let mut cmd = format!(
        "{} doctor --config {}",
        q(&s.layout.binary)?,
        q(&s.layout.config)?
    );
    if s.systemd {
        cmd.push_str(&format!(
            " --unit {UNIT_NAME} --service-user {SERVICE_USER}"
        ));
    }
    let o = ssh.exec_with("orun doctor", &cmd, None, ssh.timeout)?;
    if o.status == Some(127) {
        return Err(SetupError::Preflight(format!(
            "no orun at {} on the node: run `orun bootstrap {}` first",
            s.layout.binary.display(),
            s.node_file
        )));
    }
    let _ = out.write_all(o.stdout.as_bytes());
    if o.status != Some(0) && !o.stderr.trim().is_empty() {
        say(out, &tail(&o.stderr));
    }
    Ok(o.status == Some(0))
}

/// How a file compared with the node's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Installed,
    Updated,
    Unchanged,
}

fn install(args: &Args, ssh: &Ssh, mut s: Setup, out: &mut dyn Write) -> Result<(), SetupError> {
    // Preflight: nothing is written before the node is known to fit.
    let want = binary_arch(&s.binary);
    let arch = ssh.run("uname -m", "uname -m")?;
    let arch = arch.trim();
    if !arch_matches(&want, arch) {
        return Err(SetupError::Preflight(format!(
            "the node is {arch}, the binary {} is {want}: give --binary for {arch}",
            s.binary.display()
        )));
    }
    say(out, &format!("node architecture {arch}: ok"));
    if s.systemd {
        ssh.run("systemctl --version", "systemctl --version")
            .map_err(|e| {
                SetupError::Preflight(format!(
                    "systemd is not usable on the node ({e}); pass --no-systemd to run the agent without it"
                ))
            })?;
        say(out, "systemd: ok");
    }
    if let (Some((host, port)), Some(known)) = (s.scan.take(), s.git_host.clone()) {
        let o = ssh.exec_with("ssh-keyscan", &keyscan_cmd(&host, port), None, ssh.timeout)?;
        let keys = choose_keys(
            &known,
            &parse_keyscan(&o.stdout),
            &args.accept_git_host_key,
            out,
        )?;
        s.files.push(known_hosts_file(&s.layout, s.systemd, keys));
    }
    if s.systemd {
        let o = ssh.run("creating the service user", &user_cmd())?;
        say(
            out,
            &if o.contains("created") {
                format!("user {SERVICE_USER}: created")
            } else {
                format!("user {SERVICE_USER}: exists")
            },
        );
    }
    ssh.run("creating folders", &dirs_cmd(&s.layout, s.systemd)?)?;

    // One round trip for every file's hash on the node.
    let mut script = String::new();
    for (i, f) in s.files.iter().enumerate() {
        let p = q(&f.dest)?;
        script.push_str(&format!(
            "printf '{i} '; if [ -f {p} ]; then sha256sum < {p} | cut -c1-64; else echo -; fi; "
        ));
        if f.what == "binary" {
            script.push_str(&format!(
                "printf 'version '; [ -x {p} ] && {p} --version 2>/dev/null | head -n 1; echo; "
            ));
        }
    }
    let remote = ssh.run("reading the installed files' sha256", &script)?;
    // A node that updated itself runs a newer binary than the one given: re-running
    // bootstrap must not take it back (and self-update then forward again).
    let node_version = remote
        .lines()
        .find_map(|l| l.strip_prefix("version "))
        .and_then(version_of);
    let our_version = version_of(&local_version(&s.binary));
    let mut changed = false;
    for (i, f) in s.files.iter().enumerate() {
        let theirs = remote
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{i} ")))
            .unwrap_or("-")
            .trim();
        let ours = f.sha256()?;
        if f.what == "binary"
            && let (Some(theirs), Some(ours)) = (node_version, our_version)
            && theirs > ours
        {
            say(
                out,
                &format!(
                    "binary {}: left alone (the node runs {}.{}.{}, newer than this {}.{}.{}: it updated itself)",
                    f.dest.display(),
                    theirs.0,
                    theirs.1,
                    theirs.2,
                    ours.0,
                    ours.1,
                    ours.2
                ),
            );
            continue;
        }
        let outcome = if theirs == ours {
            ssh.run(&format!("setting the mode of {}", f.what), &f.fix_script()?)?;
            Outcome::Unchanged
        } else {
            let what = format!("uploading the {} to {}", f.what, f.dest.display());
            // A slow link gets time for the bytes: at least 1 MiB/s on top of the limit.
            let time = ssh.timeout + Duration::from_secs(f.size() >> 20);
            let o = ssh.exec_with(&what, &f.upload_script(&ours)?, Some(&f.content), time)?;
            ok(&what, o)?;
            changed = true;
            if theirs == "-" {
                Outcome::Installed
            } else {
                Outcome::Updated
            }
        };
        let word = match outcome {
            Outcome::Installed => "installed",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        };
        say(out, &format!("{} {}: {word}", f.what, f.dest.display()));
    }
    ssh.run(
        "checking the agent's settings",
        &check_config_cmd(&s.layout)?,
    )?;
    say(out, "agent settings: ok");
    let logs = if s.systemd {
        let cmd = systemd_cmd(&s.layout, args.prefix.is_some(), changed)?;
        ssh.run("starting the service", &cmd)?;
        say(
            out,
            if changed {
                "service orun: enabled, restarted"
            } else {
                "service orun: enabled, running"
            },
        );
        "`journalctl -u orun`".to_owned()
    } else {
        let o = ssh.run("starting the agent", &detached_cmd(&s.layout, changed)?)?;
        let o = o.trim();
        say(
            out,
            &match o.split_once(' ') {
                Some(("running", pid)) => format!("agent: running (pid {pid}), left alone"),
                Some((verb, pid)) => {
                    format!("agent: {verb} (pid {pid}), log {}", s.layout.log.display())
                }
                None => format!("agent: {o}"),
            },
        );
        s.layout.log.display().to_string()
    };
    wait_ready(args, ssh, &s.node_file, &logs, out)
}

/// Polls `/readyz` through a tunnel until 200 or the deadline, then prints `/status`.
fn wait_ready(
    args: &Args,
    ssh: &Ssh,
    node_file: &str,
    logs: &str,
    out: &mut dyn Write,
) -> Result<(), SetupError> {
    let mut remote = args.status_addr;
    if remote.ip().is_unspecified() {
        remote.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let port = ssh.forward(remote)?;
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    say(
        out,
        &format!(
            "waiting for the agent to converge (at most {:?})",
            args.timeout
        ),
    );
    let start = Instant::now();
    let deadline = start + args.timeout;
    let mut last: String;
    let mut told = start;
    let step = Duration::from_secs(2);
    loop {
        match status_http::get(local, "/readyz", step) {
            Ok(a) if a.code == 200 => break,
            Ok(a) => last = format!("{} {}", a.code, a.body.trim()),
            Err(e) => last = format!("no answer: {e}"),
        }
        if Instant::now() >= deadline {
            return Err(SetupError::NotReady {
                timeout: args.timeout,
                last: tail(&last),
                node_file: node_file.to_owned(),
                logs: logs.to_owned(),
            });
        }
        if told.elapsed() >= Duration::from_secs(5) {
            told = Instant::now();
            say(
                out,
                &format!(
                    "  still waiting ({}s): {}",
                    start.elapsed().as_secs(),
                    last.lines().next().unwrap_or("")
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    say(
        out,
        &format!("agent ready after {:.1}s", start.elapsed().as_secs_f64()),
    );
    match status_http::get(local, "/status", Duration::from_secs(5)) {
        Ok(a) if a.code == 200 => match serde_json::from_str::<status_http::Snapshot>(&a.body) {
            Ok(snap) => {
                let _ = out.write_all(status_http::render_text(&snap, true).as_bytes());
            }
            Err(e) => say(
                out,
                &format!("(the agent's /status is not readable here: {e})"),
            ),
        },
        Ok(a) => say(out, &format!("(the agent answered {} to /status)", a.code)),
        Err(e) => say(out, &format!("(no /status: {e})")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::ssh::TAIL;

    #[test]
    fn reads_the_version_of_a_version_line() {
        assert_eq!(version_of("orun 0.2.0"), Some((0, 2, 0)));
        assert_eq!(version_of("orun v1.10.3-rc.1"), Some((1, 10, 3)));
        assert_eq!(version_of("orun 0.2"), None);
        assert_eq!(version_of("orun 0.2.0.1"), None);
        assert_eq!(version_of(""), None);
        assert!(version_of("orun 0.10.0") > version_of("orun 0.9.9"));
    }
    use std::process::Command;

    /// What `sh -c "echo <quoted>"` prints for `s`.
    fn through_sh(s: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s' {}", shell_quote(s)))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn quoting_survives_hostile_names() {
        for s in [
            "",
            "plain",
            "with space",
            "it's",
            "'",
            "''",
            "$(touch /tmp/pwned)",
            "`id`",
            "a;b && c | d",
            "new\nline",
            "back\\slash\\",
            "-rf",
            "*",
            "\"double\"",
            "tab\there",
            "$HOME ${X:-y} !bang",
        ] {
            assert_eq!(through_sh(s), s, "{s:?}");
        }
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status();
        let Ok(made) = made else {
            // No ssh-keygen here: the fixed vector below still holds the format.
            return;
        };
        assert!(made.success());
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let blob = public.split_whitespace().nth(1).unwrap();
        let listed = Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(key.with_extension("pub"))
            .output()
            .unwrap();
        let listed = String::from_utf8(listed.stdout).unwrap();
        let theirs = listed.split_whitespace().nth(1).unwrap();
        assert_eq!(fingerprint(blob).unwrap(), theirs);
    }

    #[test]
    fn fingerprint_of_a_fixed_blob() {
        // base64 of "abc": SHA-256 of "abc" is ba7816bf…, whose unpadded base64 is this.
        assert_eq!(
            fingerprint("YWJj").unwrap(),
            "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0"
        );
        assert_eq!(fingerprint("not base64!"), None);
    }

    #[test]
    fn keyscan_lines_become_pins() {
        let scanned = parse_keyscan(
            "# 127.0.0.1:2222 SSH-2.0-OpenSSH_9.6\n[127.0.0.1]:2222 ssh-ed25519 YWJj\n\ngarbage\n",
        );
        assert_eq!(scanned.len(), 1);
        assert_eq!(scanned[0].kind, "ssh-ed25519");
        let mut out = Vec::new();
        let pinned = choose_keys(
            "[127.0.0.1]:2222",
            &scanned,
            &["SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0".to_owned()],
            &mut out,
        )
        .unwrap();
        assert_eq!(pinned, "[127.0.0.1]:2222 ssh-ed25519 YWJj\n");
        let wrong = choose_keys("h", &scanned, &["SHA256:nope".to_owned()], &mut out);
        assert!(matches!(wrong, Err(SetupError::HostKey(_))));
        assert_eq!(
            split_host("[127.0.0.1]:2222"),
            ("127.0.0.1".to_owned(), 2222)
        );
        assert_eq!(split_host("git.example"), ("git.example".to_owned(), 22));
        assert!(known_hosts_names("a,[h]:2 ssh-ed25519 AAAA\n", "[h]:2"));
        assert!(!known_hosts_names(
            "# [h]:2 x y\nh2 ssh-ed25519 AAAA\n",
            "[h]:2"
        ));
    }

    #[test]
    fn config_names_the_prefixed_paths_and_escapes_values() {
        let layout = Layout::new(Some(Path::new("/tmp/p")), "/opt/orun/").unwrap();
        let text = render_config(
            &ConfigInput {
                repo: "ssh://git@example.com/org/\"m\".git",
                node: "web-01",
                status_addr: "127.0.0.1:9100".parse().unwrap(),
                deploy_key: true,
                known_hosts: true,
                age_key: false,
            },
            &layout,
        );
        let expected = "\
# Written by `orun bootstrap`; the next bootstrap overwrites it.
# Settings: orun start --help (each flag is a key here, with _ for -).
repo = \"ssh://git@example.com/org/\\\"m\\\".git\"
node = \"web-01\"
data_dir = \"/tmp/p/opt/orun\"
status_addr = \"127.0.0.1:9100\"
ssh_key = \"/tmp/p/etc/orun/deploy_key\"
known_hosts = \"/tmp/p/etc/orun/known_hosts\"
";
        assert_eq!(text, expected);
        assert_eq!(toml_string("a\u{7}b\\"), "\"a\\u0007b\\\\\"");
        let plain = Layout::new(None, "/srv/orun").unwrap();
        assert_eq!(plain.binary, Path::new("/var/lib/orun/bin/orun"));
        assert_eq!(plain.unit, Path::new("/etc/systemd/system/orun.service"));
        assert_eq!(plain.data_dir, Path::new("/srv/orun"));
        assert!(Layout::new(Some(Path::new("rel")), "/opt/orun").is_err());
        assert!(Layout::new(None, "opt/orun").is_err());
        for bad in ["/", "//", "/etc", "/var/", "/opt/../etc", "/opt/./orun"] {
            assert!(Layout::new(None, bad).is_err(), "{bad}");
        }
        assert!(Layout::new(None, "/orun").is_ok());
    }

    #[test]
    fn interactive_yaml_is_a_valid_node() {
        let yaml = node_yaml(
            "web-01",
            "203.0.113.7",
            "deploy",
            "git@github.com:org/manifests.git",
            "main",
        );
        let source = manifest_model::MemSource::new().with("nodes/web-01.yaml", yaml);
        let report = manifest_model::load(&source, &manifest_model::Limits::default());
        assert!(!report.has_errors(), "{:?}", report.diagnostics);
        let rev = report.revision.unwrap();
        let spec = &rev.nodes["web-01"].spec;
        assert_eq!(spec.host, "203.0.113.7");
        assert_eq!(spec.user, "deploy");
        assert_eq!(spec.git_repo, "git@github.com:org/manifests.git");
        assert_eq!(spec.git_branch, "main");
    }

    #[test]
    fn scripts_quote_every_path() {
        let layout = Layout::new(Some(Path::new("/tmp/it's here")), "/opt/orun").unwrap();
        let cmd = detached_cmd(&layout, false).unwrap();
        assert!(
            cmd.contains(r"'/tmp/it'\''s here/etc/orun/agent.toml'"),
            "{cmd}"
        );
        // The script parses as sh.
        let status = Command::new("sh")
            .args(["-n", "-c", &cmd])
            .status()
            .unwrap();
        assert!(status.success());
        let dirs = dirs_cmd(&layout, true).unwrap();
        assert!(
            Command::new("sh")
                .args(["-n", "-c", &dirs])
                .status()
                .unwrap()
                .success()
        );
        let up = Install {
            what: "config",
            dest: layout.config.clone(),
            mode: 0o640,
            owner: Some("root:orun"),
            content: Content::Text(String::new()),
        };
        let script = up.upload_script(&"0".repeat(64)).unwrap();
        assert!(script.contains("chmod 0640"), "{script}");
        assert!(
            Command::new("sh")
                .args(["-n", "-c", &script])
                .status()
                .unwrap()
                .success()
        );
    }

    #[test]
    fn stderr_tails_are_capped() {
        let long = "é".repeat(5000);
        let t = tail(&long);
        assert!(t.len() <= TAIL + 3 + 1);
        assert!(t.starts_with("..."));
        assert_eq!(tail(" short \n"), "short");
    }
}

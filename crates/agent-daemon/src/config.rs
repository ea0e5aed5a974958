//! The agent's settings: flags, `ORUN_*` environment variables and an optional TOML file, in
//! that order of precedence, checked whole before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_engine::{IngressFlags, IngressMode, IngressSettings, Settings};
use gitsync::{KnownHosts, RemoteOptions, RemoteUrl, Token};
use serde::Deserialize;

use crate::DaemonError;
use crate::update::{UpdateMode, UpdateSettings};
use self_update::FeedLocation;

/// A settings error in the words of [`DaemonError::Settings`].
fn bad<T>(message: impl Into<String>) -> Result<T, DaemonError> {
    Err(DaemonError::Settings(message.into()))
}

/// Command-line flags; each also reads `ORUN_<NAME>` from the environment.
#[derive(Clone, Debug, Default, clap::Parser)]
#[command(
    name = "orun-agent",
    version,
    about = "Converges this Docker host to the Git branch it tracks",
    long_about = "Converges this Docker host to the Git branch it tracks.\n\n\
        Every flag can also be set as an ORUN_* environment variable (ORUN_REPO, ORUN_NODE, ...) \
        or in the --config TOML file (same names, with underscores). Flags win over the \
        environment, which wins over the file. See docs/operations.md."
)]
pub struct Args {
    /// The manifest repository: a path, file://, git://, ssh:// or https:// URL.
    #[arg(long, env = "ORUN_REPO")]
    repo: Option<String>,
    /// This node's name (a file in nodes/).
    #[arg(long, env = "ORUN_NODE")]
    node: Option<String>,
    /// The branch to follow [default: the one nodes/<node>.yaml names on the remote's default
    /// branch, looked up on every poll]. The node's manifest on it must name it too.
    #[arg(long, env = "ORUN_BRANCH")]
    branch: Option<String>,
    /// Node-local state: the Git mirror, the state file and the lock [default: /opt/orun].
    #[arg(long, env = "ORUN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where the read-only status API listens [default: 127.0.0.1:9100].
    #[arg(long, env = "ORUN_STATUS_ADDR")]
    status_addr: Option<SocketAddr>,
    /// The status API's port on 127.0.0.1 (Orcra Run's `orun start --status-port`); the same as
    /// `--status-addr 127.0.0.1:PORT`.
    #[arg(long, env = "ORUN_STATUS_PORT", conflicts_with = "status_addr")]
    status_port: Option<u16>,
    /// Allow the status API on a non-loopback address.
    #[arg(long, env = "ORUN_STATUS_ALLOW_REMOTE")]
    status_allow_remote: bool,
    /// Poll period (`500ms`, `5s`, `2m`); overrides the Node manifest's `pollInterval`.
    #[arg(long, env = "ORUN_POLL_INTERVAL", value_parser = parse_duration)]
    poll_interval: Option<Duration>,
    /// Docker daemon [default: DOCKER_HOST, else unix:///var/run/docker.sock].
    #[arg(long, env = "ORUN_DOCKER_HOST")]
    docker_host: Option<String>,
    /// The node policy (YAML): signed commits, host paths containers may bind, the status
    /// API's token. See docs/security.md.
    #[arg(long, env = "ORUN_POLICY")]
    policy: Option<PathBuf>,
    /// A TOML file with any of these settings.
    #[arg(long, env = "ORUN_CONFIG")]
    config: Option<PathBuf>,
    /// Deploy key for ssh remotes.
    #[arg(long, env = "ORUN_SSH_KEY")]
    ssh_key: Option<PathBuf>,
    /// known_hosts file pinning the ssh remote's host key (required for ssh).
    #[arg(long, env = "ORUN_KNOWN_HOSTS")]
    known_hosts: Option<PathBuf>,
    /// File holding a token for https remotes.
    #[arg(long, env = "ORUN_GIT_TOKEN_FILE")]
    git_token_file: Option<PathBuf>,
    /// Deadline of one fetch [default: 60s].
    #[arg(long, env = "ORUN_FETCH_TIMEOUT", value_parser = parse_duration)]
    fetch_timeout: Option<Duration>,
    /// Docker client config with registry logins [default: $DOCKER_CONFIG/config.json, else
    /// ~/.docker/config.json].
    #[arg(long, env = "ORUN_REGISTRY_CONFIG")]
    registry_config: Option<PathBuf>,
    /// A node-local file of registry logins in the same format; its entries win over the
    /// Docker config's. See docs/images.md.
    #[arg(long, env = "ORUN_REGISTRY_CREDENTIALS")]
    registry_credentials: Option<PathBuf>,
    /// How often a `pull: always` image asks its registry whether its tag moved
    /// [default: 1m]. See docs/images.md for what each check costs.
    #[arg(long, env = "ORUN_PULL_CHECK_INTERVAL", value_parser = parse_duration)]
    pull_check_interval: Option<Duration>,
    /// How long an image orun pulled or built stays once no deployment uses it (the current
    /// and previous image of each deployment always stay) [default: 1h].
    #[arg(long, env = "ORUN_IMAGE_GRACE", value_parser = parse_grace)]
    image_grace: Option<Duration>,
    /// The age key that decrypts SOPS secrets [default: $SOPS_AGE_KEY_FILE, else
    /// <data-dir>/keys/age.key].
    #[arg(long, env = "ORUN_AGE_KEY_PATH")]
    age_key_path: Option<PathBuf>,
    /// Allow a revision to remove every deployment of this node at once.
    #[arg(long, env = "ORUN_ALLOW_REMOVE_ALL")]
    allow_remove_all: bool,
    /// Log format: `auto` (journald when running under it, else text), `journald`, `text`.
    #[arg(long, env = "ORUN_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Converge once and exit: 0 when converged, 1 when not.
    #[arg(long, env = "ORUN_ONCE")]
    once: bool,
    /// Check the settings (flags, environment, config file, node policy, keys) and exit: 0
    /// when the agent could start with them, 1 with the reason when not.
    #[arg(long)]
    pub check_config: bool,
    /// Where the ingress (Caddy) that serves Services comes from: `container` (the agent runs
    /// it), `host` (a Caddy service configured through its admin API), `off` [default:
    /// container]. See docs/ingress.md.
    #[arg(long, env = "ORUN_INGRESS")]
    ingress: Option<IngressKind>,
    /// Caddy's admin API, on loopback [default: 127.0.0.1:2019].
    #[arg(long, env = "ORUN_INGRESS_ADMIN")]
    ingress_admin: Option<SocketAddr>,
    /// The port Caddy serves HTTP on [default: 80].
    #[arg(long, env = "ORUN_INGRESS_HTTP_PORT")]
    ingress_http_port: Option<u16>,
    /// The port Caddy serves HTTPS on [default: 443].
    #[arg(long, env = "ORUN_INGRESS_HTTPS_PORT")]
    ingress_https_port: Option<u16>,
    /// Caddy's image in container mode [default: caddy:2].
    #[arg(long, env = "ORUN_INGRESS_IMAGE")]
    ingress_image: Option<String>,
    /// The ACME directory certificates come from, or `internal` for Caddy's own CA
    /// [default: Let's Encrypt].
    #[arg(long, env = "ORUN_ACME_CA")]
    acme_ca: Option<String>,
    /// The contact e-mail given to the ACME server.
    #[arg(long, env = "ORUN_ACME_EMAIL")]
    acme_email: Option<String>,
    /// A PEM file of roots trusted for the ACME server's own TLS (a private ACME server).
    #[arg(long, env = "ORUN_ACME_CA_ROOT")]
    acme_ca_root: Option<PathBuf>,
    /// Self-update: `off`, `notify` (show a newer release in /status) or `install` (verify,
    /// try and install it) [default: off]. See docs/install.md.
    #[arg(long, env = "ORUN_SELF_UPDATE")]
    self_update: Option<UpdateMode>,
    /// The release feed: an https:// URL or a path.
    #[arg(long, env = "ORUN_UPDATE_FEED")]
    update_feed: Option<String>,
    /// The minisign public key releases must be signed with.
    #[arg(long, env = "ORUN_UPDATE_KEY")]
    update_key: Option<PathBuf>,
    /// How often the feed is read [default: 1h].
    #[arg(long, env = "ORUN_UPDATE_INTERVAL", value_parser = parse_duration)]
    update_interval: Option<Duration>,
    /// A PEM file of roots trusted for the feed's HTTPS, besides the system's.
    #[arg(long, env = "ORUN_UPDATE_CA")]
    update_ca: Option<PathBuf>,
    /// How long a new version has to report ready, on trial and after the swap [default: 2m].
    #[arg(long, env = "ORUN_UPDATE_DEADLINE", value_parser = parse_duration)]
    update_deadline: Option<Duration>,
    /// The installed binary self-update replaces [default: this process's executable].
    #[arg(long, env = "ORUN_UPDATE_BINARY")]
    update_binary: Option<PathBuf>,
}

/// Where the ingress comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IngressKind {
    /// The agent runs Caddy as a container.
    Container,
    /// Caddy runs as a host service.
    Host,
    /// No ingress.
    Off,
}

/// Where logs go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// journald when stderr is connected to it, plain text otherwise.
    #[default]
    Auto,
    /// The systemd journal, with structured fields.
    Journald,
    /// Plain text on stderr.
    Text,
}

/// The same settings, from the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    repo: Option<String>,
    node: Option<String>,
    branch: Option<String>,
    data_dir: Option<PathBuf>,
    status_addr: Option<SocketAddr>,
    status_allow_remote: Option<bool>,
    poll_interval: Option<String>,
    docker_host: Option<String>,
    policy: Option<PathBuf>,
    ssh_key: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    git_token_file: Option<PathBuf>,
    fetch_timeout: Option<String>,
    registry_config: Option<PathBuf>,
    registry_credentials: Option<PathBuf>,
    pull_check_interval: Option<String>,
    image_grace: Option<String>,
    age_key_path: Option<PathBuf>,
    allow_remove_all: Option<bool>,
    log_format: Option<LogFormat>,
    ingress: Option<IngressKind>,
    ingress_admin: Option<SocketAddr>,
    ingress_http_port: Option<u16>,
    ingress_https_port: Option<u16>,
    ingress_image: Option<String>,
    acme_ca: Option<String>,
    acme_email: Option<String>,
    acme_ca_root: Option<PathBuf>,
    self_update: Option<UpdateMode>,
    update_feed: Option<String>,
    update_key: Option<PathBuf>,
    update_interval: Option<String>,
    update_ca: Option<PathBuf>,
    update_deadline: Option<String>,
    update_binary: Option<PathBuf>,
}

/// Everything the agent needs, checked.
#[derive(Debug)]
pub struct Config {
    /// What the engine is told.
    pub engine: Settings,
    /// Where the status API listens.
    pub status_addr: SocketAddr,
    /// What a request to the status API must carry, but to `/healthz`.
    pub status_token: Option<status_http::BearerToken>,
    /// Where logs go.
    pub log_format: LogFormat,
    /// The self-update, when it is on.
    pub update: Option<UpdateSettings>,
}

/// A duration that may be zero (`0`, `0s`): remove unused images at once.
fn parse_grace(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "0" | "0s" | "0ms" => Ok(Duration::ZERO),
        other => parse_duration(other),
    }
}

/// The flag's value (or its environment variable's), else the config file's, parsed.
fn pick(
    arg: Option<Duration>,
    file: Option<String>,
    what: &str,
    parse: fn(&str) -> Result<Duration, String>,
) -> Result<Option<Duration>, DaemonError> {
    match arg {
        Some(d) => Ok(Some(d)),
        None => file
            .map(|s| {
                parse(&s).map_err(|e| DaemonError::Settings(format!("config file {what}: {e}")))
            })
            .transpose(),
    }
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    manifest_model::values::parse_duration(s).map_err(|e| e.to_string())
}

impl Config {
    /// Merges flags, environment (already in `args` through clap) and the file.
    ///
    /// # Errors
    /// [`DaemonError`] naming the setting at fault, before anything starts.
    pub fn resolve(args: Args, cwd: &Path) -> Result<Self, DaemonError> {
        let file = match &args.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| DaemonError::ConfigFile {
                        path: path.clone(),
                        source,
                    })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| DaemonError::ConfigSyntax {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        let Some(repo) = args.repo.or(file.repo) else {
            return bad("no repository: give --repo (or ORUN_REPO, or `repo` in the config file)");
        };
        let Some(node) = args.node.or(file.node) else {
            return bad("no node name: give --node (or ORUN_NODE, or `node` in the config file)");
        };
        // Without one, the engine follows what the node's manifest on the remote's default
        // branch names (REFERENCE §1: the Node manifest configures the node).
        let branch = args.branch.or(file.branch);
        let poll_interval = pick(
            args.poll_interval,
            file.poll_interval,
            "poll_interval",
            parse_duration,
        )?;
        if poll_interval.is_some_and(|d| d < Duration::from_millis(100)) {
            return bad("--poll-interval must be at least 100ms");
        }
        let fetch_timeout = pick(
            args.fetch_timeout,
            file.fetch_timeout,
            "fetch_timeout",
            parse_duration,
        )?;
        let status_addr = args
            .status_addr
            .or(args
                .status_port
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port))))
            .or(file.status_addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9100)));
        let allow_remote = args.status_allow_remote || file.status_allow_remote.unwrap_or(false);

        let url = RemoteUrl::parse(&repo, cwd)?;
        let mut remote = match branch {
            Some(branch) => RemoteOptions::new(url, branch),
            None => RemoteOptions::without_branch(url),
        };
        if let Some(t) = fetch_timeout {
            remote.deadline = t;
        }
        remote.ssh_key = args.ssh_key.or(file.ssh_key);
        let known_hosts = args.known_hosts.or(file.known_hosts);
        if let Some(path) = &known_hosts {
            remote.known_hosts = Some(KnownHosts::load(path)?);
        }
        let token_path = args.git_token_file.or(file.git_token_file);
        remote.token = token_path.as_deref().map(Token::load).transpose()?;
        remote.check()?;

        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("/opt/orun"));
        let mut engine = Settings::new(node, data_dir, remote);
        engine.poll_interval = poll_interval;
        engine.docker_host = args
            .docker_host
            .or(file.docker_host)
            .or_else(|| std::env::var("DOCKER_HOST").ok());
        engine.registry_config = args.registry_config.or(file.registry_config);
        engine.registry_credentials = args.registry_credentials.or(file.registry_credentials);
        let check = pick(
            args.pull_check_interval,
            file.pull_check_interval,
            "pull_check_interval",
            parse_duration,
        )?;
        engine.pull_check_interval = check.unwrap_or(engine.pull_check_interval);
        let grace = pick(
            args.image_grace,
            file.image_grace,
            "image_grace",
            parse_grace,
        )?;
        engine.image_grace = grace.unwrap_or(engine.image_grace);
        engine.age_key = args
            .age_key_path
            .or(file.age_key_path)
            .or_else(|| std::env::var_os("SOPS_AGE_KEY_FILE").map(PathBuf::from));
        engine.allow_remove_all = args.allow_remove_all || file.allow_remove_all.unwrap_or(false);
        engine.once = args.once;
        engine.protect([args.config, known_hosts, token_path]);
        if let Some(path) = args.policy.or(file.policy) {
            engine.load_policy(cwd.join(path))?;
        }
        let token_file = engine.policy.status_token_file.as_deref();
        let status_token = status_http::access(status_addr, allow_remote, token_file)?;
        engine.ingress = ingress_settings(
            args.ingress.or(file.ingress),
            args.ingress_image.or(file.ingress_image),
            IngressFlags {
                admin: args.ingress_admin.or(file.ingress_admin),
                http_port: args.ingress_http_port.or(file.ingress_http_port),
                https_port: args.ingress_https_port.or(file.ingress_https_port),
                acme_ca: args.acme_ca.or(file.acme_ca),
                acme_email: args.acme_email.or(file.acme_email),
                acme_ca_root: args.acme_ca_root.or(file.acme_ca_root).map(|p| cwd.join(p)),
            },
        )?;
        let update = update_settings(UpdateFlags {
            mode: args.self_update.or(file.self_update),
            feed: args.update_feed.or(file.update_feed),
            key: args.update_key.or(file.update_key).map(|p| cwd.join(p)),
            interval: pick(
                args.update_interval,
                file.update_interval,
                "update_interval",
                parse_duration,
            )?,
            ca: args.update_ca.or(file.update_ca).map(|p| cwd.join(p)),
            deadline: pick(
                args.update_deadline,
                file.update_deadline,
                "update_deadline",
                parse_duration,
            )?,
            binary: args
                .update_binary
                .or(file.update_binary)
                .map(|p| cwd.join(p)),
        })?;
        Ok(Self {
            engine,
            status_addr,
            status_token,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            update,
        })
    }
}

/// The self-update's settings as given, before they are checked.
struct UpdateFlags {
    mode: Option<UpdateMode>,
    feed: Option<String>,
    key: Option<PathBuf>,
    interval: Option<Duration>,
    ca: Option<PathBuf>,
    deadline: Option<Duration>,
    binary: Option<PathBuf>,
}

/// Checks the self-update's settings: off unless asked, and then a feed and a readable key.
fn update_settings(f: UpdateFlags) -> Result<Option<UpdateSettings>, DaemonError> {
    let mode = f.mode.unwrap_or(UpdateMode::Off);
    if mode == UpdateMode::Off {
        return Ok(None);
    }
    let Some(feed) = f.feed else {
        return bad(
            "--self-update needs --update-feed (an https:// URL or a path; or `update_feed` in the config file)",
        );
    };
    let feed = FeedLocation::parse(&feed)
        .map_err(|e| DaemonError::Settings(format!("--update-feed: {e}")))?;
    let Some(key) = f.key else {
        return bad(
            "--self-update needs --update-key (the minisign public key releases are signed with; or `update_key` in the config file)",
        );
    };
    if let Err(e) = std::fs::metadata(&key) {
        return bad(format!("--update-key {}: {e}", key.display()));
    }
    let interval = f.interval.unwrap_or(Duration::from_secs(3600));
    if interval < Duration::from_secs(1) {
        return bad("--update-interval must be at least 1s");
    }
    let binary = match f.binary {
        Some(b) => b,
        None => std::env::current_exe().map_err(|e| {
            DaemonError::Settings(format!(
                "cannot find this executable for --self-update ({e}); give --update-binary"
            ))
        })?,
    };
    Ok(Some(UpdateSettings {
        mode,
        feed,
        key,
        interval,
        ca: f.ca,
        deadline: f.deadline.unwrap_or(Duration::from_secs(120)),
        binary,
    }))
}

fn ingress_settings(
    kind: Option<IngressKind>,
    image: Option<String>,
    flags: IngressFlags,
) -> Result<IngressSettings, DaemonError> {
    let mode = match kind.unwrap_or(IngressKind::Container) {
        IngressKind::Off => IngressMode::Off,
        IngressKind::Host => IngressMode::Host,
        IngressKind::Container => IngressMode::Container {
            image: image.unwrap_or_else(|| "caddy:2".to_owned()),
        },
    };
    Ok(IngressSettings::from_flags(mode, flags)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use clap::Parser;

    fn resolve(argv: &[&str], file: Option<&str>) -> Result<Config, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir().unwrap();
        let mut argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        if let Some(text) = file {
            let p = dir.path().join("agent.toml");
            std::fs::write(&p, text).unwrap();
            argv.push("--config".into());
            argv.push(p.display().to_string());
        }
        let args = Args::try_parse_from(std::iter::once("orun-agent".to_owned()).chain(argv))?;
        Ok(Config::resolve(args, Path::new("/srv"))?)
    }

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let c = resolve(
            &["--node", "web-01", "--poll-interval", "2s"],
            Some("repo = \"file:///r.git\"\nnode = \"other\"\npoll_interval = \"9s\"\nbranch = \"prod\"\n"),
        )
        .unwrap();
        assert_eq!(c.engine.node, "web-01");
        assert_eq!(c.engine.poll_interval, Some(Duration::from_secs(2)));
        assert_eq!(c.engine.remote.branch.as_deref(), Some("prod"));
        assert_eq!(c.engine.remote.url.as_str(), "file:///r.git");
        assert_eq!(c.engine.data_dir, PathBuf::from("/opt/orun"));
        assert_eq!(c.status_addr, "127.0.0.1:9100".parse().unwrap());
        assert!(!c.engine.once);

        // No branch anywhere: none is assumed (not `main`); the engine asks the remote.
        let c = resolve(&["--repo", "/r.git", "--node", "n"], None).unwrap();
        assert_eq!(c.engine.remote.branch, None);
        let c = resolve(
            &["--repo", "/r.git", "--node", "n", "--branch", "staging"],
            None,
        )
        .unwrap();
        assert_eq!(c.engine.remote.branch.as_deref(), Some("staging"));
    }

    #[test]
    fn self_update_is_off_unless_asked_and_then_needs_a_feed_and_a_key() {
        let base = ["--repo", "/r.git", "--node", "n"];
        assert!(resolve(&base, None).unwrap().update.is_none());
        let key = tempfile::NamedTempFile::new().unwrap();
        let key = key.path().to_str().unwrap();
        let c = resolve(
            &base,
            Some(&format!(
                "self_update = \"install\"\nupdate_feed = \"https://releases.example/orun.json\"\nupdate_key = \"{key}\"\nupdate_interval = \"10m\"\nupdate_binary = \"/var/lib/orun/bin/orun\"\n"
            )),
        )
        .unwrap();
        let u = c.update.unwrap();
        assert_eq!(u.mode, UpdateMode::Install);
        assert_eq!(u.interval, Duration::from_secs(600));
        assert_eq!(u.deadline, Duration::from_secs(120));
        assert_eq!(u.binary, PathBuf::from("/var/lib/orun/bin/orun"));
        assert!(matches!(u.feed, FeedLocation::Https(_)));
        // A flag wins over the file: off is off.
        let mut argv = base.to_vec();
        argv.extend(["--self-update", "off", "--update-feed", "/srv/feed.json"]);
        assert!(resolve(&argv, None).unwrap().update.is_none());

        for (extra, needle) in [
            (vec!["--self-update", "notify"], "--update-feed"),
            (
                vec!["--self-update", "notify", "--update-feed", "/f.json"],
                "--update-key",
            ),
            (
                vec![
                    "--self-update",
                    "notify",
                    "--update-feed",
                    "http://plain/f.json",
                    "--update-key",
                    key,
                ],
                "plain http",
            ),
            (
                vec![
                    "--self-update",
                    "notify",
                    "--update-feed",
                    "/f.json",
                    "--update-key",
                    "/nonexistent/key.pub",
                ],
                "/nonexistent/key.pub",
            ),
            (
                vec![
                    "--self-update",
                    "install",
                    "--update-feed",
                    "/f.json",
                    "--update-key",
                    key,
                    "--update-interval",
                    "500ms",
                ],
                "at least 1s",
            ),
        ] {
            let mut argv = base.to_vec();
            argv.extend(extra);
            let err = resolve(&argv, None).unwrap_err();
            assert!(err.to_string().contains(needle), "{argv:?}: {err}");
        }
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        for (argv, file, needle) in [
            (vec!["--node", "n"], None, "no repository"),
            (vec!["--repo", "r.git"], None, "no node"),
            (
                vec![
                    "--repo",
                    "r.git",
                    "--node",
                    "n",
                    "--status-addr",
                    "0.0.0.0:9100",
                ],
                None,
                "not a loopback",
            ),
            (
                vec!["--repo", "ssh://-oProxyCommand=x/r", "--node", "n"],
                None,
                "invalid repository URL",
            ),
            (
                vec!["--repo", "ssh://git@h/r.git", "--node", "n"],
                None,
                "known_hosts",
            ),
            (
                vec!["--node", "n"],
                Some("repo = \"r\"\nrepoo = 1\n"),
                "unknown field",
            ),
            (
                vec!["--repo", "r.git", "--node", "n", "--poll-interval", "1ms"],
                None,
                "at least 100ms",
            ),
        ] {
            let err = resolve(&argv, file).unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{argv:?}: {err:#}");
        }
    }
}

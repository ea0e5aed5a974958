//! The systemd unit `orun bootstrap` installs: `orun start` as a hardened `Type=notify`
//! service, rendered from a few parameters.
//!
//! The unit is what an operator reads to learn what the agent may do, so it explains itself:
//! every setting that is not the strictest `systemd-analyze security` knows carries a comment
//! saying what the agent needs it for. `tests/unit.rs` checks the result with the real
//! `systemd-analyze verify` and scores it with `systemd-analyze security`.
//!
//! # What the unit must leave the agent
//! - the network: the Git remote, registries, health probes of its containers, the status API;
//! - the Docker socket, through the `docker` group rather than root;
//! - the data dir (`ReadWritePaths=`) and `/var/lib/orun` (`StateDirectory=`), where its binary
//!   lives so that a self-update can replace it under `ProtectSystem=strict`;
//! - `execve`: it re-executes itself after a self-update and runs the staged binary on trial;
//! - the host's file tree as Docker sees it (no private `/tmp`, `/home` read-only rather than
//!   hidden): it judges where a bind mount's source leads on the host.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::SetupError;

/// The unit's file name, under `/etc/systemd/system/`.
pub const UNIT_NAME: &str = "orun.service";

/// What varies between nodes in the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitParams {
    /// The agent's binary. Under `/var/lib/orun` (the unit's `StateDirectory=`) so that a
    /// self-update can replace it while the rest of the system is read-only to the agent.
    pub binary: PathBuf,
    /// The agent's TOML config (repository, node, data dir, keys), passed as `--config`.
    pub config: PathBuf,
    /// The Node manifest's `dataDir`: the Git mirror, state and lock. Must exist before the
    /// service starts (systemd refuses to start a unit whose `ReadWritePaths=` is missing).
    pub data_dir: PathBuf,
    /// The user the agent runs as: a system user in the Docker group; `root` works too.
    pub user: String,
    /// The group that owns the Docker socket, given as a supplementary group.
    pub docker_group: Option<String>,
    /// `WatchdogSec=`: the agent pings every half of it; zero turns the watchdog off.
    pub watchdog: Duration,
    /// `TimeoutStartSec=`: how long the first sync (which may pull images) may take before the
    /// agent reports ready.
    pub start_timeout: Duration,
    /// More paths the agent may write, besides the data dir; each must exist.
    pub extra_read_write: Vec<PathBuf>,
}

impl Default for UnitParams {
    /// The layout `orun bootstrap` sets up by default.
    fn default() -> Self {
        Self {
            binary: PathBuf::from("/var/lib/orun/bin/orun"),
            config: PathBuf::from("/etc/orun/agent.toml"),
            data_dir: PathBuf::from("/opt/orun"),
            user: "orun".to_owned(),
            docker_group: Some("docker".to_owned()),
            watchdog: Duration::from_secs(60),
            start_timeout: Duration::from_secs(300),
            extra_read_write: Vec::new(),
        }
    }
}

/// The unit file for `p`.
///
/// # Guarantees
/// No parameter can add a line or a setting to the unit: paths are quoted and escaped for
/// systemd (`%` specifiers, `$` in `ExecStart=`), and names are plain.
///
/// # Errors
/// [`SetupError`] when a path is not absolute and normalized UTF-8 without control characters,
/// or a name is not a plain user or group name.
pub fn render(p: &UnitParams) -> Result<String, SetupError> {
    // The command's path is not searched for `$VARIABLES`, its arguments are.
    let binary = path_word(path("binary", &p.binary)?);
    let config = arg_word(path("config", &p.config)?);
    let mut writable = vec![path_word(path("data_dir", &p.data_dir)?)];
    for extra in &p.extra_read_write {
        writable.push(path_word(path("extra_read_write", extra)?));
    }
    let writable = writable.join(" ");
    let user = name("user", &p.user)?;
    let group = match &p.docker_group {
        Some(g) => Some(name("docker_group", g)?),
        None => None,
    };
    let watchdog = duration(p.watchdog);
    let start_timeout = duration(p.start_timeout);

    let mut u = String::with_capacity(8 * 1024);
    u.push_str(&format!(
        "\
# {UNIT_NAME}: the orun agent, as `orun bootstrap` installs it. The next bootstrap overwrites
# this file: keep local changes in a drop-in (`systemctl edit orun`).
#
# The sandbox is the strictest `systemd-analyze security` knows, except where a comment says
# what the agent needs instead.

[Unit]
Description=orun GitOps agent: converges this Docker host to a Git branch
# No Requires=docker.service: the agent waits for Docker and reconnects by itself, and
# Requires= would stop it whenever Docker restarts.
After=network-online.target docker.service
Wants=network-online.target
# Five failed starts within ten minutes and systemd stops trying: a broken config or binary
# shows as failed rather than restarting forever.
StartLimitIntervalSec=10min
StartLimitBurst=5

[Service]
Type=notify
# Only the agent's main process speaks for the service, not the staged binary it runs on trial
# before a self-update.
NotifyAccess=main
ExecStart={binary} start --config {config}
Restart=on-failure
RestartSec=5s
# The agent pings every half of this; a hung agent is killed and restarted.
WatchdogSec={watchdog}
# The first sync may pull large images before the agent reports ready.
TimeoutStartSec={start_timeout}
# On SIGTERM the agent finishes the step in progress (a container swap, with the container's
# stop grace) rather than leave a deployment half replaced.
TimeoutStopSec=2min
# SIGTERM to the agent alone, which stops what it started; anything left (a staged binary on
# trial) is killed once it exits. The containers belong to Docker, not to this unit's cgroup:
# stopping the agent never stops them.
KillMode=mixed
SyslogIdentifier=orun
Environment=ORUN_LOG_FORMAT=journald

User={user}
"
    ));
    if user == "root" {
        u.push_str(
            "# Root: the operator chose it. The capability bounding set below still leaves it none,\n\
             # but it owns every file on the host; a system user in the Docker group is safer.\n",
        );
    }
    if let Some(group) = group {
        let _ = writeln!(
            u,
            "# The Docker socket (root:{group}, mode 0660). Membership of this group is root on the host\n\
             # in all but name, which is what an agent that runs containers from Git is; the sandbox\n\
             # below limits what the agent's own process can do besides.\n\
             SupplementaryGroups={group}"
        );
    }
    u.push_str(&format!(
        "\
# /var/lib/orun, owned by the service user. The agent's binary lives in bin/ here, so that a
# self-update can replace it while the rest of the system is read-only to the agent.
StateDirectory=orun
StateDirectoryMode=0750
# Files the agent writes are its own. Caddy's container reads the config file the agent
# writes for it as root in the container, which this does not hinder.
UMask=0077

# A runaway agent cannot take the host down (its containers have their own limits).
MemoryMax=1G
TasksMax=1024
LimitNOFILE=8192

ProtectSystem=strict
# The data dir (Git mirror, state, lock) and the paths the operator added.
ReadWritePaths={writable}
# read-only rather than yes or tmpfs: the agent judges where a bind mount's source leads on
# the host, following symbolic links as Docker will, so it must see the host's paths as Docker
# sees them. For the same reason PrivateTmp= stays off (a private /tmp would show the agent
# another tree than the one Docker mounts) and there is no RootDirectory=.
ProtectHome=read-only
# Host mounts still propagate in; the agent's own never propagate out.
PrivateMounts=yes
# ProtectClock=yes below allows reading /dev/rtc, which `systemd-analyze security` lists as a
# device ACL; PrivateDevices= leaves no such device anyway.
PrivateDevices=yes
DevicePolicy=closed
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
# ProcSubset= stays all: the agent reads /proc/sys/net/ipv4/tcp_migrate_req to warn when
# Caddy's reloads would reset connections (docs/ingress.md).
#
# PrivateUsers= stays off. Access through the Docker group would survive it (the kernel checks
# the real group), but inside the namespace every other user's file shows as nobody's, so what
# the agent reports about host paths would no longer match the host.
#
# PrivateNetwork= and IPAddressDeny= stay off: the agent fetches from the Git remote, asks
# registries about tags, probes its containers' health and serves its status API.

NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
RestrictSUIDSGID=yes
# AF_UNIX for the Docker socket and journald, AF_INET and AF_INET6 for the network above.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
KeyringMode=private
RemoveIPC=yes
PrivateIPC=yes
SystemCallArchitectures=native
# @system-service keeps execve: the agent re-executes itself after a self-update and runs the
# staged binary for its self-test.
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
# A refused call fails with EPERM, which the agent reports, rather than killing it in the
# middle of a step.
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"
    ));
    Ok(u)
}

/// `p` as UTF-8, when systemd takes it as an absolute path and nothing in it can reach past
/// its own setting.
fn path<'a>(field: &'static str, p: &'a Path) -> Result<&'a str, SetupError> {
    let bad = |reason| SetupError::UnitPath {
        field,
        path: p.to_owned(),
        reason,
    };
    let s = p.to_str().ok_or_else(|| bad("is not UTF-8"))?;
    if !s.starts_with('/') {
        return Err(bad("is not absolute"));
    }
    if s.chars().any(char::is_control) {
        // A newline would start a new setting; systemd refuses the others.
        return Err(bad("holds control characters"));
    }
    if s.split('/').any(|c| c == "." || c == "..") {
        // systemd refuses paths that are not normalized in several settings; `..` would also
        // make ReadWritePaths= reach further than it reads.
        return Err(bad("holds `.` or `..`"));
    }
    Ok(s)
}

/// `name`, when it is a plain user or group name (the portable subset useradd accepts).
fn name<'a>(field: &'static str, name: &'a str) -> Result<&'a str, SetupError> {
    let mut chars = name.chars();
    let plain = name.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c));
    if plain {
        Ok(name)
    } else {
        Err(SetupError::UnitName {
            field,
            name: name.to_owned(),
        })
    }
}

/// A path as one word of a path-list setting (`ReadWritePaths=`) or as `ExecStart=`'s command:
/// `%` doubled (systemd would read a specifier), and quoted when it holds a space, a quote or
/// a backslash.
fn path_word(s: &str) -> String {
    quote(&s.replace('%', "%%"))
}

/// An argument of `ExecStart=`, where systemd also expands `$VARIABLES`.
fn arg_word(s: &str) -> String {
    quote(&s.replace('%', "%%").replace('$', "$$"))
}

/// `s` as one systemd word: as is when plain, else in double quotes with `\` and `"` escaped.
fn quote(s: &str) -> String {
    if s.chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s.to_owned()
    }
}

/// A time span systemd reads: whole seconds as `60s`, anything finer in microseconds.
fn duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}us", d.as_micros())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

    use super::*;

    /// The value of every `key=` line of the unit, comments left out.
    fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    }

    #[test]
    fn renders_the_agent_service() {
        let u = render(&UnitParams {
            extra_read_write: vec![PathBuf::from("/srv/ingress")],
            ..UnitParams::default()
        })
        .unwrap();
        for (key, want) in [
            ("Type", "notify"),
            ("NotifyAccess", "main"),
            (
                "ExecStart",
                "/var/lib/orun/bin/orun start --config /etc/orun/agent.toml",
            ),
            ("Restart", "on-failure"),
            ("WatchdogSec", "60s"),
            ("TimeoutStartSec", "300s"),
            ("KillMode", "mixed"),
            ("User", "orun"),
            ("SupplementaryGroups", "docker"),
            ("StateDirectory", "orun"),
            ("ProtectSystem", "strict"),
            ("ReadWritePaths", "/opt/orun /srv/ingress"),
            ("ProtectHome", "read-only"),
            ("CapabilityBoundingSet", ""),
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
            ("Environment", "ORUN_LOG_FORMAT=journald"),
        ] {
            assert_eq!(values(&u, key), [want], "{key}");
        }
        assert_eq!(
            values(&u, "SystemCallFilter"),
            ["@system-service", "~@privileged @resources"]
        );
        // Settings that would hide the host's tree from the agent stay out.
        for key in ["PrivateTmp", "PrivateUsers", "ProcSubset", "RootDirectory"] {
            assert!(values(&u, key).is_empty(), "{key}");
        }
        assert!(u.contains("\n[Unit]\n") && u.contains("\n[Service]\n"));
        assert!(u.ends_with("[Install]\nWantedBy=multi-user.target\n"));
    }

    #[test]
    fn root_and_no_docker_group() {
        let u = render(&UnitParams {
            user: "root".to_owned(),
            docker_group: None,
            watchdog: Duration::ZERO,
            start_timeout: Duration::from_millis(1500),
            ..UnitParams::default()
        })
        .unwrap();
        assert_eq!(values(&u, "User"), ["root"]);
        assert!(values(&u, "SupplementaryGroups").is_empty());
        assert!(u.contains("# Root: the operator chose it."));
        assert_eq!(values(&u, "WatchdogSec"), ["0s"]);
        assert_eq!(values(&u, "TimeoutStartSec"), ["1500000us"]);
    }

    /// A path cannot add a setting or expand a specifier or variable.
    #[test]
    fn paths_are_escaped() {
        let u = render(&UnitParams {
            binary: PathBuf::from("/opt/my tools/orun$HOME"),
            config: PathBuf::from("/etc/orun/$a\"b\\c.toml"),
            data_dir: PathBuf::from("/srv/100%/data"),
            ..UnitParams::default()
        })
        .unwrap();
        assert_eq!(
            values(&u, "ExecStart"),
            [r#""/opt/my tools/orun$HOME" start --config "/etc/orun/$$a\"b\\c.toml""#]
        );
        assert_eq!(values(&u, "ReadWritePaths"), ["/srv/100%%/data"]);
    }

    #[test]
    fn refuses_what_systemd_would_misread() {
        let with = |f: fn(&mut UnitParams)| {
            let mut p = UnitParams::default();
            f(&mut p);
            render(&p).unwrap_err().to_string()
        };
        assert_eq!(
            with(|p| p.data_dir = PathBuf::from("/opt/orun\nExecStartPre=/bin/sh")),
            r#"systemd unit, data_dir: "/opt/orun\nExecStartPre=/bin/sh" holds control characters"#
        );
        assert_eq!(
            with(|p| p.binary = PathBuf::from("orun")),
            r#"systemd unit, binary: "orun" is not absolute"#
        );
        assert_eq!(
            with(|p| p.extra_read_write = vec![PathBuf::from("/opt/orun/../../etc")]),
            r#"systemd unit, extra_read_write: "/opt/orun/../../etc" holds `.` or `..`"#
        );
        assert_eq!(
            with(|p| p.user = "orun\nUser=root".to_owned()),
            r#"systemd unit, user: "orun\nUser=root" is not a valid user or group name"#
        );
        assert_eq!(
            with(|p| p.docker_group = Some(String::new())),
            r#"systemd unit, docker_group: "" is not a valid user or group name"#
        );
        assert_eq!(
            with(|p| p.user = "Orun".to_owned()),
            r#"systemd unit, user: "Orun" is not a valid user or group name"#
        );
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt as _;
            let bytes = std::ffi::OsStr::from_bytes(b"/opt/\xff");
            assert_eq!(
                with(|p| p.config = PathBuf::from(std::ffi::OsStr::from_bytes(b"/opt/\xff"))),
                format!("systemd unit, config: {:?} is not UTF-8", Path::new(bytes))
            );
        }
    }
}

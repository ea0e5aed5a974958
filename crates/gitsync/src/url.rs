//! Which remote URLs the agent accepts, checked once at start-up, and how they are shown.
//!
//! Git URLs have been a way to run commands (`ext::`, `ssh://-oProxyCommand=…`, a user name
//! starting with `-`; RUSTSEC-2023-0064, 2024-0335) and to leak tokens into logs. So the agent
//! accepts a short list of transports, refuses option-like hosts and users, refuses
//! credentials inside the URL (a token comes from a file), and only ever prints [`RemoteUrl`]'s
//! display form.

use std::fmt;
use std::path::Path;

use manifest_model::values::{GitTransport, git_url_transport};

use crate::GitError;

/// The transport a remote uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A local path or `file://` URL.
    File,
    /// `git://`, unauthenticated.
    Git,
    /// `ssh://` or scp-like `user@host:path`, with a deploy key and a pinned host key.
    Ssh,
    /// `https://`, optionally with a token.
    Https,
}

/// A remote URL the agent agreed to use.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    url: String,
    transport: Transport,
}

impl RemoteUrl {
    /// Checks `raw` and classifies it, by the manifests' rules for `gitRepo`
    /// ([`manifest_model::values::git_url_transport`]), plus the agent's: no plain `http`,
    /// and a relative local path is made absolute against `cwd` first.
    pub fn parse(raw: &str, cwd: &Path) -> Result<Self, GitError> {
        let invalid = |reason: &str| GitError::InvalidUrl {
            reason: reason.to_owned(),
        };
        if is_relative_path(raw) {
            // The user's characters are judged, not the working directory's: a space in
            // the folder the agent runs from is no fault of the path given.
            git_url_transport(&format!("/{raw}")).map_err(|r| invalid(&r))?;
            let path = cwd.join(raw);
            let Some(path) = path.to_str() else {
                return Err(invalid("the repository path is not UTF-8"));
            };
            return Ok(Self {
                url: path.to_owned(),
                transport: Transport::File,
            });
        }
        let transport = match git_url_transport(raw).map_err(|r| invalid(&r))? {
            GitTransport::File => Transport::File,
            GitTransport::Git => Transport::Git,
            GitTransport::Ssh => Transport::Ssh,
            GitTransport::Https => Transport::Https,
            GitTransport::Http => {
                return Err(invalid(
                    "plain http is not accepted (a token would travel in clear); use https",
                ));
            }
        };
        Ok(Self {
            url: raw.to_owned(),
            transport,
        })
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The URL as libgit2 takes it.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The host and port the URL names, in known_hosts form (`host` or `[host]:port`), for ssh.
    pub fn ssh_host(&self) -> Option<String> {
        if self.transport != Transport::Ssh {
            return None;
        }
        let authority = match self.url.strip_prefix("ssh://") {
            Some(rest) => rest.split('/').next().unwrap_or(""),
            None => self.url.split(':').next().unwrap_or(""),
        };
        let host_port = authority.rsplit('@').next().unwrap_or(authority);
        let known = if let Some(bracketed) = host_port.strip_prefix('[') {
            // [v6]:port or [v6]
            match bracketed.split_once(']') {
                Some((host, rest)) => match rest.strip_prefix(':') {
                    Some(port) if port != "22" => format!("[{host}]:{port}"),
                    _ => host.to_owned(),
                },
                None => host_port.to_owned(),
            }
        } else {
            match host_port.rsplit_once(':') {
                Some((host, port)) if self.url.starts_with("ssh://") => {
                    if port == "22" {
                        host.to_owned()
                    } else {
                        format!("[{host}]:{port}")
                    }
                }
                _ => host_port.to_owned(),
            }
        };
        Some(known)
    }

    /// The user name in an ssh URL (`git` when none is given).
    pub fn ssh_user(&self) -> Option<&str> {
        if self.transport != Transport::Ssh {
            return None;
        }
        let authority = match self.url.strip_prefix("ssh://") {
            Some(rest) => rest.split('/').next().unwrap_or(""),
            None => self.url.split(':').next().unwrap_or(""),
        };
        Some(authority.rsplit_once('@').map_or("git", |(user, _)| user))
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials are refused at parse time; showing the URL is safe.
        f.write_str(&self.url)
    }
}

impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteUrl({})", self.url)
    }
}

/// A local path that is not absolute: no scheme, not scp-like `host:path` (a colon before any
/// slash, as Git reads it), not option-like. Everything else is for the shared check to judge.
fn is_relative_path(raw: &str) -> bool {
    let scp_like = match (raw.find(':'), raw.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    };
    !raw.is_empty()
        && !raw.starts_with('/')
        && !raw.starts_with('-')
        && !raw.contains("://")
        && !scp_like
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<RemoteUrl, GitError> {
        RemoteUrl::parse(raw, Path::new("/srv"))
    }

    #[test]
    fn accepted_urls_and_their_transports() {
        for (raw, transport, shown) in [
            ("file:///srv/m.git", Transport::File, "file:///srv/m.git"),
            ("m.git", Transport::File, "/srv/m.git"),
            ("/abs/m.git", Transport::File, "/abs/m.git"),
            (
                "git://127.0.0.1:9418/m.git",
                Transport::Git,
                "git://127.0.0.1:9418/m.git",
            ),
            (
                "ssh://git@h:2222/m.git",
                Transport::Ssh,
                "ssh://git@h:2222/m.git",
            ),
            (
                "git@github.com:o/m.git",
                Transport::Ssh,
                "git@github.com:o/m.git",
            ),
            ("https://h/o/m.git", Transport::Https, "https://h/o/m.git"),
        ] {
            let url = parse(raw).unwrap();
            assert_eq!(url.transport(), transport, "{raw}");
            assert_eq!(url.to_string(), shown, "{raw}");
        }
    }

    #[test]
    fn a_relative_path_is_judged_by_its_own_characters() {
        let url = RemoteUrl::parse("m.git", Path::new("/srv/my repos")).unwrap();
        assert_eq!(url.as_str(), "/srv/my repos/m.git");
        assert!(RemoteUrl::parse("m.git?token=x", Path::new("/srv")).is_err());
        assert!(RemoteUrl::parse("m .git", Path::new("/srv")).is_err());
    }

    #[test]
    fn dangerous_or_leaky_urls_are_refused() {
        for raw in [
            "",
            "ext::sh -c touch% /tmp/pwned",
            "fd::17",
            "http://h/m.git",
            "ssh://-oProxyCommand=touch /x/m.git",
            "ssh://-oProxyCommand=x/m.git",
            "ssh://-u@h/m.git",
            "-u@h:m.git",
            "https://user:token@h/m.git",
            "https://token@h/m.git",
            "ssh://git:pw@h/m.git",
            "ssh://h",
            "https://",
            "git://h/m.git\n",
            "https://h/m.git?access_token=abc",
        ] {
            assert!(parse(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn ssh_hosts_in_known_hosts_form() {
        for (raw, host, user) in [
            ("ssh://git@127.0.0.1:2222/m.git", "[127.0.0.1]:2222", "git"),
            ("ssh://deploy@h:22/m.git", "h", "deploy"),
            ("ssh://h/m.git", "h", "git"),
            ("ssh://u@[::1]:2222/m.git", "[::1]:2222", "u"),
            ("git@github.com:o/m.git", "github.com", "git"),
        ] {
            let url = parse(raw).unwrap();
            assert_eq!(url.ssh_host().as_deref(), Some(host), "{raw}");
            assert_eq!(url.ssh_user(), Some(user), "{raw}");
        }
    }
}

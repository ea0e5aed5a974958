//! Parsers for the small languages inside manifest values: names, image references,
//! durations, sizes, probe targets, paths, branch names and repository URLs.
//!
//! Each returns `Err(reason)` with a lowercase reason that never repeats the whole input,
//! so callers can put it in a diagnostic without echoing anything sensitive.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// Why a value was refused.
pub type Reason = String;

/// Checks a DNS label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn check_dns_label(s: &str) -> Result<(), Reason> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!(
            "is {} characters long; at most 63 are allowed",
            s.len()
        ));
    }
    if s.chars()
        .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err("may hold only lowercase letters, digits and `-`".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// A Docker image reference: `[registry/]path[:tag][@digest]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    text: String,
    /// Registry host and port, when the reference names one.
    pub registry: Option<String>,
    /// Repository path, e.g. `library/nginx` or `org/app`.
    pub path: String,
    /// Tag, when given.
    pub tag: Option<String>,
    /// Digest (`sha256:<64 hex>`), when given.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference by the grammar of the Docker distribution project.
    pub fn parse(s: &str) -> Result<Self, Reason> {
        if s.is_empty() {
            return Err("image reference is empty".into());
        }
        if s.len() > 512 {
            return Err("image reference is longer than 512 characters".into());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("image reference contains a space or control character".into());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(parse_digest(d)?)),
            None => (s, None),
        };
        // A tag follows the last `:` only if no `/` comes after it (else it is a registry port).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            check_tag(t)?;
        }
        // Docker's rule for the first component: a registry when it holds `.` or `:`, is
        // `localhost`, or holds an uppercase letter (repository paths are lowercase, so
        // `MyRegistry/app` can only name a host); a repository path component otherwise.
        let (registry, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                check_registry(first)?;
                (Some(first.to_owned()), remainder)
            }
            _ => (None, name),
        };
        if path.is_empty() {
            return Err("image reference has no repository name".into());
        }
        if name.len() > 255 {
            return Err("repository name is longer than 255 characters".into());
        }
        for component in path.split('/') {
            check_path_component(component)?;
        }
        Ok(Self {
            text: s.to_owned(),
            registry,
            path: path.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The reference as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

fn parse_digest(d: &str) -> Result<String, Reason> {
    let Some((algo, hex)) = d.split_once(':') else {
        return Err("digest must be `algorithm:hex`, e.g. `sha256:` and 64 hex digits".into());
    };
    let want = match algo {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm; use sha256 (or sha512)".into()),
    };
    if hex.len() != want
        || !hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        return Err(format!(
            "{algo} digest must be exactly {want} lowercase hex digits (got {} characters)",
            hex.len()
        ));
    }
    Ok(d.to_owned())
}

fn check_tag(t: &str) -> Result<(), Reason> {
    let ok_first = t
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_first
        || t.len() > 128
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(
            "tag must be 1–128 of letters, digits, `_`, `.`, `-`, not starting with `.` or `-`"
                .into(),
        );
    }
    Ok(())
}

fn check_registry(r: &str) -> Result<(), Reason> {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (r, None),
    };
    if let Some(p) = port
        && parse_port(p).is_none()
    {
        return Err("registry port must be a number from 1 to 65535".into());
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    };
    if !host_ok {
        return Err("registry host is not a valid host name".into());
    }
    Ok(())
}

fn check_path_component(c: &str) -> Result<(), Reason> {
    if c.is_empty() {
        return Err("repository path has an empty component".into());
    }
    if c.chars().any(|ch| ch.is_ascii_uppercase()) {
        return Err(
            "repository name must be lowercase: Docker refuses uppercase there (only the registry host and the tag may hold it)"
                .into(),
        );
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err("repository path components must start and end with a letter or digit".into());
    }
    // Separators: `.`, `_`, `__`, or any run of `-`, always between alphanumerics.
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(
                "repository path has an invalid separator (use `.`, `_`, `__` or `-`)".into(),
            );
        }
    }
    Ok(())
}

/// Parses a duration such as `500ms`, `5s`, `2m`, `1h` or `1m30s`; it must be positive.
pub fn parse_duration(s: &str) -> Result<Duration, Reason> {
    let mut total: u128 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("duration is empty; write e.g. `5s`".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err("expected a number, as in `500ms`, `5s`, `2m` or `1h`".into());
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| "number is too large".to_owned())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let millis = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err("number without a unit; write e.g. `5s`".into()),
            _ => return Err("unknown unit; use ms, s, m or h".into()),
        };
        rest = &rest[unit_len..];
        total = total.saturating_add(n.saturating_mul(millis));
    }
    if total == 0 {
        return Err("duration must be greater than zero".into());
    }
    let ms = u64::try_from(total)
        .ok()
        .filter(|ms| *ms <= 365 * 24 * 3_600_000);
    ms.map(Duration::from_millis)
        .ok_or_else(|| "duration is longer than a year".into())
}

/// Renders a duration in the largest unit that represents it exactly (`2m`, `1500ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

/// Parses a memory size: bytes, or a number with `Ki`/`Mi`/`Gi`/`Ti` (powers of 1024) or
/// `K`/`M`/`G`/`T` (powers of 1000).
pub fn parse_bytes(s: &str) -> Result<u64, Reason> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err("expected a size such as `256Mi` or `1G`".into());
    }
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| "size is too large".to_owned())?;
    let mult: u64 = match &s[digits..] {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "m" | "g" | "b" | "mb" | "gb" | "kb" => {
            return Err(format!(
                "ambiguous unit `{}`: write Mi/Gi (powers of 1024) or M/G (powers of 1000)",
                &s[digits..]
            ));
        }
        _ => return Err("unknown size unit; use Ki, Mi, Gi, Ti, K, M, G or T".into()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| "size is too large".to_owned())
}

/// Where an HTTP probe is sent: `localhost:80/health` (the container's own port) or a full
/// `http://` / `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProbeTarget {
    text: String,
    /// `http` or `https`.
    pub https: bool,
    /// Host name; `localhost` means the container itself.
    pub host: String,
    /// Port, the container's port for `localhost`.
    pub port: u16,
    /// Path with query, always starting with `/`.
    pub path: String,
}

impl ProbeTarget {
    /// Parses either form.
    pub fn parse(s: &str) -> Result<Self, Reason> {
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("probe target must not contain spaces or control characters".into());
        }
        let (https, rest, default_port) = if let Some(r) = s.strip_prefix("http://") {
            (false, r, Some(80))
        } else if let Some(r) = s.strip_prefix("https://") {
            (true, r, Some(443))
        } else if s.contains("://") {
            return Err("probe URL scheme must be http or https".into());
        } else {
            (false, s, None)
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("probe target must not carry credentials".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => {
                let port = parse_port(p)
                    .ok_or_else(|| "probe port must be a number from 1 to 65535".to_owned())?;
                (h, port)
            }
            None => match default_port {
                Some(p) => (authority, p),
                None => return Err("probe target needs a port, as in `localhost:80/health`".into()),
            },
        };
        if host.is_empty() {
            return Err("probe target needs a host, as in `localhost:80/health`".into());
        }
        check_host(host).map_err(|r| format!("probe host {r}"))?;
        Ok(Self {
            text: s.to_owned(),
            https,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// The target as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Serialize for ProbeTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Checks a host name or IP address (no leading `-`, which tools would read as an option).
pub fn check_host(h: &str) -> Result<(), Reason> {
    if h.starts_with('-') {
        return Err("must not start with `-`".into());
    }
    let bare = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h);
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if h.len() > 253 {
        return Err("is longer than 253 characters".into());
    }
    let ok = h.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    });
    if ok {
        Ok(())
    } else {
        Err("is not a valid host name or IP address".into())
    }
}

/// Checks a domain routed by the ingress: lowercase labels, optionally a leading `*.`.
pub fn check_domain(d: &str) -> Result<(), Reason> {
    let bare = d.strip_prefix("*.").unwrap_or(d);
    if bare.is_empty() {
        return Err("domain is empty".into());
    }
    if bare.len() > 253 {
        return Err("domain is longer than 253 characters".into());
    }
    for (i, label) in bare.split('.').enumerate() {
        check_dns_label(label).map_err(|r| format!("domain label {} {r}", i + 1))?;
    }
    Ok(())
}

/// Normalises an absolute path: it must start with `/`, contain no `.` or `..` components
/// and no NUL; repeated and trailing slashes are dropped.
pub fn normalize_abs_path(p: &str) -> Result<String, Reason> {
    if !p.starts_with('/') {
        return Err("must be absolute (start with `/`)".into());
    }
    let parts = path_components(p)?;
    Ok(format!("/{}", parts.join("/")))
}

/// The largest memory limit a manifest may set: 1 PiB. Docker takes a signed 64-bit count;
/// anything near that is a typo, and a limit Docker cannot take must be refused, not dropped.
pub const MAX_MEMORY: u64 = 1 << 50;

/// Cleans a bind-mount path (host or container side) the way Docker does before it mounts
/// (Go's `path.Clean`): repeated slashes and `.` dropped, each `..` taking away the component
/// before it (`..` at the root stays at the root). An absolute path has no base to escape, so
/// `..` in it is spelling, not a way out; callers warn about it (see `docs/manifests.md`).
///
/// Refuses a relative path, and what Docker would read as syntax rather than path: a `:`
/// (Docker splits `host:container:options` on it, so a manifest could smuggle in options such
/// as `Z` or `rshared`), a `,` (the `--mount` separator), NUL and control characters.
pub fn bind_path(p: &str) -> Result<String, Reason> {
    if p.contains([':', ',']) {
        return Err("must not contain `:` or `,` (Docker reads them as mount options)".into());
    }
    if p.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if !p.starts_with('/') {
        return Err(NOT_ABSOLUTE.into());
    }
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// Why [`bind_path`] refused a relative path.
pub const NOT_ABSOLUTE: &str = "must be absolute (start with `/`)";

/// Whether a path holds a `..` component.
pub fn has_dot_dot(p: &str) -> bool {
    p.split('/').any(|c| c == "..")
}

/// Whether `s` is a name Docker's local volume driver takes: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
/// Docker reads a bind source that is not an absolute path as such a name.
pub fn is_volume_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Checks a string that reaches Docker as it is (an env value, a command word, a label
/// value): Docker's API carries C strings, so a NUL would be cut or refused there.
pub fn check_docker_string(s: &str) -> Result<(), Reason> {
    if s.contains('\0') {
        Err("must not contain a NUL character".into())
    } else {
        Ok(())
    }
}

/// Normalises a relative path that must stay inside its base: no leading `/`, no `..`.
/// `.` and empty components are dropped; the empty result is `.`.
pub fn normalize_rel_path(p: &str) -> Result<String, Reason> {
    if p.starts_with('/') {
        return Err("must be relative, not absolute".into());
    }
    let parts = path_components(p)?;
    Ok(if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    })
}

fn path_components(p: &str) -> Result<Vec<&str>, Reason> {
    if p.contains('\0') {
        return Err("must not contain a NUL character".into());
    }
    let mut out = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("must not contain `..`".into()),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Checks a branch name by the rules of `git check-ref-format --branch`: the one check of a
/// branch name, for manifests (`gitBranch`) and for the agent's `--branch` alike. It refuses
/// everything libgit2 refuses (gitsync holds it to `git2::Reference::is_valid_name` on more
/// than 3 000 names), and also what Git's command line refuses or misreads: a leading `-`
/// (an option), `@` alone, and any Unicode space or control character.
pub fn check_branch(b: &str) -> Result<(), Reason> {
    let bad = b.is_empty()
        || b.starts_with('-')
        || b == "@"
        || b.ends_with('.')
        || b.contains("..")
        || b.contains("@{")
        || b.chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
        || b.split('/')
            .any(|part| part.is_empty() || part.starts_with('.') || part.ends_with(".lock"));
    if bad {
        Err("is not a valid Git branch name".into())
    } else {
        Ok(())
    }
}

/// The transport a repository URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitTransport {
    /// An absolute path or `file://`.
    File,
    /// `git://`.
    Git,
    /// `ssh://` or scp-like `user@host:path`.
    Ssh,
    /// `http://`.
    Http,
    /// `https://`.
    Https,
}

/// Checks a repository URL: `ssh://`, `git://`, `http(s)://`, `file://`, scp-like
/// `user@host:path`, or an absolute path.
///
/// Refused: parts that start with `-` (SSH or Git would read them as options, RELIABILITY
/// C10); credentials of any kind (a user name is allowed for SSH only, where it is not a
/// secret); query strings and fragments (where tokens hide); Git's `transport::address`
/// remote-helper syntax (`ext::sh`, `fd::17`), which runs commands.
pub fn check_git_url(u: &str) -> Result<(), Reason> {
    git_url_transport(u).map(drop)
}

/// [`check_git_url`], naming the transport: the one check of a repository URL, for manifests
/// (`gitRepo`) and for the agent's `--repo` alike (gitsync adds its own policy on top: no
/// plain `http`, relative paths made absolute first).
pub fn git_url_transport(u: &str) -> Result<GitTransport, Reason> {
    if u.is_empty() {
        return Err("repository URL is empty".into());
    }
    if u.starts_with('-') {
        return Err("repository URL must not start with `-`".into());
    }
    if u.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("repository URL must not contain spaces or control characters".into());
    }
    if u.contains('?') || u.contains('#') {
        return Err(
            "repository URL must not carry a query or fragment; configure credentials on the node"
                .into(),
        );
    }
    if let Some((scheme, rest)) = u.split_once("://") {
        let transport = match scheme {
            "file" => return Ok(GitTransport::File),
            "ssh" => GitTransport::Ssh,
            "git" => GitTransport::Git,
            "http" => GitTransport::Http,
            "https" => GitTransport::Https,
            _ => return Err("unsupported URL scheme; use ssh, git, http(s) or file".into()),
        };
        let authority = rest.split('/').next().unwrap_or("");
        let host_port = match authority.rsplit_once('@') {
            Some((userinfo, hp)) => {
                if scheme != "ssh" || userinfo.contains(':') {
                    return Err(
                        "repository URL must not carry credentials; configure them on the node"
                            .into(),
                    );
                }
                if userinfo.is_empty() || userinfo.starts_with('-') {
                    return Err(
                        "user name in repository URL must not be empty or start with `-`".into(),
                    );
                }
                hp
            }
            None => authority,
        };
        let host = match host_port.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => {
                parse_port(p).ok_or_else(|| {
                    "port in repository URL must be a number from 1 to 65535".to_owned()
                })?;
                h
            }
            _ => host_port,
        };
        if host.is_empty() {
            return Err("repository URL has no host".into());
        }
        check_host(host).map_err(|r| format!("host in repository URL {r}"))?;
        if rest.len() <= authority.len() + 1 {
            return Err("repository URL has no repository path".into());
        }
        return Ok(transport);
    }
    if u.starts_with('/') {
        return Ok(GitTransport::File);
    }
    // scp-like: [user@]host:path
    let Some((left, path)) = u.split_once(':') else {
        return Err("repository URL must be a URL, `user@host:path` or an absolute path".into());
    };
    if path.starts_with(':') {
        return Err("`transport::address` remote helpers are not allowed".into());
    }
    let host = match left.rsplit_once('@') {
        Some((user, host)) => {
            if user.is_empty() || user.starts_with('-') {
                return Err(
                    "user name in repository URL must not be empty or start with `-`".into(),
                );
            }
            host
        }
        None => left,
    };
    if path.starts_with('-') {
        return Err("repository path must not start with `-`".into());
    }
    if path.is_empty() {
        return Err("repository URL has no repository path".into());
    }
    check_host(host).map_err(|r| format!("host in repository URL {r}"))?;
    Ok(GitTransport::Ssh)
}

/// Parses a port: ASCII digits only (Rust's parser would take `+80`), 1 to 65535.
pub(crate) fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok().filter(|p| *p != 0)
}

/// Checks a Unix user name for SSH (no leading `-`).
pub fn check_user(u: &str) -> Result<(), Reason> {
    let ok = !u.is_empty()
        && u.len() <= 32
        && u.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && u.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err("is not a valid user name (lowercase letters, digits, `_`, `-`)".into())
    }
}

/// Checks an environment variable name: non-empty, no `=` and no NUL.
pub fn check_env_name(k: &str) -> Result<(), Reason> {
    if k.is_empty() {
        return Err("variable name is empty".into());
    }
    if k.contains('=') || k.contains('\0') {
        return Err("variable name must not contain `=` or NUL".into());
    }
    Ok(())
}

/// The reserved label prefix: only the agent writes labels under it.
pub const RESERVED_LABEL_PREFIX: &str = "orun.";

/// Checks a label key: printable, no spaces, not in the reserved `orun.` prefix.
pub fn check_label_key(k: &str) -> Result<(), Reason> {
    if k.is_empty() || k.len() > 253 {
        return Err("label key must be 1–253 characters".into());
    }
    if k.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '=')
    {
        return Err("label key must not contain spaces, `=` or control characters".into());
    }
    if k.to_ascii_lowercase().starts_with(RESERVED_LABEL_PREFIX) {
        return Err(format!(
            "label prefix `{RESERVED_LABEL_PREFIX}` is reserved for the agent"
        ));
    }
    Ok(())
}

/// The environment id of a branch: lowercase, every character outside `[a-z0-9-]` made `-`,
/// leading and trailing `-` trimmed, at most 63 characters.
pub fn environment_id(branch: &str) -> Result<String, Reason> {
    let mapped: String = branch
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed: String = mapped.trim_matches('-').chars().take(63).collect();
    let id = trimmed.trim_end_matches('-').to_owned();
    if id.is_empty() {
        return Err(
            "the branch name gives an empty environment id (it needs a letter or digit)".into(),
        );
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    /// Renders one line per input: the input, then what the parser made of it.
    fn table<T: fmt::Debug>(
        inputs: &[&str],
        parse: impl Fn(&str) -> Result<T, Reason>,
        expect: Expect,
    ) {
        let out: Vec<String> = inputs
            .iter()
            .map(|i| match parse(i) {
                Ok(v) => format!("{i:?} => {v:?}"),
                Err(e) => format!("{i:?} => error: {e}"),
            })
            .collect();
        expect.assert_eq(&(out.join("\n") + "\n"));
    }

    /// A14: the reference grammar, good and bad.
    #[test]
    fn image_refs() {
        table(
            &[
                "nginx",
                "nginx:1.27",
                "traefik/whoami",
                "ghcr.io/org/app:latest",
                "localhost:5000/app:v2",
                "127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "reg:5000/a/b/c:1.0-rc_1",
                "a__b/c--d.e:x",
                "nginx:Latest",
                "MyRegistry/app:V1",
                "Reg.Example.COM:5000/org/app",
                "Nginx",
                "org/App:1",
                "Org/App:1",
                "localhost/App",
                "nginx:",
                "nginx:.hidden",
                "app@sha256:abc",
                "app@md5:0123",
                "reg.example.com:99999/app",
                "reg.io:+5000/app",
                "a//b",
                "a_-b",
                "-app",
                "app:1 2",
                "",
            ],
            |s| ImageRef::parse(s).map(|r| (r.registry, r.path, r.tag, r.digest.map(|d| d.len()))),
            expect![[r#"
                "nginx" => (None, "nginx", None, None)
                "nginx:1.27" => (None, "nginx", Some("1.27"), None)
                "traefik/whoami" => (None, "traefik/whoami", None, None)
                "ghcr.io/org/app:latest" => (Some("ghcr.io"), "org/app", Some("latest"), None)
                "localhost:5000/app:v2" => (Some("localhost:5000"), "app", Some("v2"), None)
                "127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" => (Some("127.0.0.1:5000"), "app", None, Some(71))
                "reg:5000/a/b/c:1.0-rc_1" => (Some("reg:5000"), "a/b/c", Some("1.0-rc_1"), None)
                "a__b/c--d.e:x" => (None, "a__b/c--d.e", Some("x"), None)
                "nginx:Latest" => (None, "nginx", Some("Latest"), None)
                "MyRegistry/app:V1" => (Some("MyRegistry"), "app", Some("V1"), None)
                "Reg.Example.COM:5000/org/app" => (Some("Reg.Example.COM:5000"), "org/app", None, None)
                "Nginx" => error: repository name must be lowercase: Docker refuses uppercase there (only the registry host and the tag may hold it)
                "org/App:1" => error: repository name must be lowercase: Docker refuses uppercase there (only the registry host and the tag may hold it)
                "Org/App:1" => error: repository name must be lowercase: Docker refuses uppercase there (only the registry host and the tag may hold it)
                "localhost/App" => error: repository name must be lowercase: Docker refuses uppercase there (only the registry host and the tag may hold it)
                "nginx:" => error: tag must be 1–128 of letters, digits, `_`, `.`, `-`, not starting with `.` or `-`
                "nginx:.hidden" => error: tag must be 1–128 of letters, digits, `_`, `.`, `-`, not starting with `.` or `-`
                "app@sha256:abc" => error: sha256 digest must be exactly 64 lowercase hex digits (got 3 characters)
                "app@md5:0123" => error: unsupported digest algorithm; use sha256 (or sha512)
                "reg.example.com:99999/app" => error: registry port must be a number from 1 to 65535
                "reg.io:+5000/app" => error: registry port must be a number from 1 to 65535
                "a//b" => error: repository path has an empty component
                "a_-b" => error: repository path has an invalid separator (use `.`, `_`, `__` or `-`)
                "-app" => error: repository path components must start and end with a letter or digit
                "app:1 2" => error: image reference contains a space or control character
                "" => error: image reference is empty
            "#]],
        );
    }

    #[test]
    fn durations() {
        table(
            &[
                "500ms", "5s", "2m", "1h", "1m30s", "90s", "0s", "5", "5x", "s", "", "1000000h",
            ],
            |s| parse_duration(s).map(format_duration),
            expect![[r#"
                "500ms" => "500ms"
                "5s" => "5s"
                "2m" => "2m"
                "1h" => "1h"
                "1m30s" => "90s"
                "90s" => "90s"
                "0s" => error: duration must be greater than zero
                "5" => error: number without a unit; write e.g. `5s`
                "5x" => error: unknown unit; use ms, s, m or h
                "s" => error: expected a number, as in `500ms`, `5s`, `2m` or `1h`
                "" => error: duration is empty; write e.g. `5s`
                "1000000h" => error: duration is longer than a year
            "#]],
        );
    }

    #[test]
    fn byte_sizes() {
        table(
            &[
                "268435456",
                "256Mi",
                "1Gi",
                "512M",
                "1G",
                "512m",
                "1g",
                "12Q",
                "Mi",
                "99999999999999Ti",
            ],
            parse_bytes,
            expect![[r#"
                "268435456" => 268435456
                "256Mi" => 268435456
                "1Gi" => 1073741824
                "512M" => 512000000
                "1G" => 1000000000
                "512m" => error: ambiguous unit `m`: write Mi/Gi (powers of 1024) or M/G (powers of 1000)
                "1g" => error: ambiguous unit `g`: write Mi/Gi (powers of 1024) or M/G (powers of 1000)
                "12Q" => error: unknown size unit; use Ki, Mi, Gi, Ti, K, M, G or T
                "Mi" => error: expected a size such as `256Mi` or `1G`
                "99999999999999Ti" => error: size is too large
            "#]],
        );
    }

    #[test]
    fn probe_targets() {
        table(
            &[
                "localhost:80/health",
                "localhost:8080",
                "http://app.internal/healthz?x=1",
                "https://127.0.0.1:8443/ready",
                "localhost/health",
                "localhost:0/health",
                "ftp://x:21/",
                "localhost:+80/health",
                "http://user:pw@host/",
                "-oProxy:80/x",
            ],
            |s| ProbeTarget::parse(s).map(|t| (t.https, t.host, t.port, t.path)),
            expect![[r#"
                "localhost:80/health" => (false, "localhost", 80, "/health")
                "localhost:8080" => (false, "localhost", 8080, "/")
                "http://app.internal/healthz?x=1" => (false, "app.internal", 80, "/healthz?x=1")
                "https://127.0.0.1:8443/ready" => (true, "127.0.0.1", 8443, "/ready")
                "localhost/health" => error: probe target needs a port, as in `localhost:80/health`
                "localhost:0/health" => error: probe port must be a number from 1 to 65535
                "ftp://x:21/" => error: probe URL scheme must be http or https
                "localhost:+80/health" => error: probe port must be a number from 1 to 65535
                "http://user:pw@host/" => error: probe target must not carry credentials
                "-oProxy:80/x" => error: probe host must not start with `-`
            "#]],
        );
    }

    /// C10: option-like URL parts and credentials are refused at load.
    #[test]
    fn git_urls() {
        table(
            &[
                "git@github.com:org/manifests.git",
                "ssh://git@127.0.0.1:2222/srv/repo.git",
                "https://git.example.com/org/repo.git",
                "git://127.0.0.1:9418/repo",
                "file:///srv/git/repo.git",
                "/srv/git/repo.git",
                "ssh://-oProxyCommand=touch%20/tmp/x/repo",
                "-oProxyCommand=x",
                "ssh://-user@host/repo",
                "-user@host:repo",
                "git@host:-repo",
                "https://oauth2:token@git.example.com/org/repo.git",
                "https://ghp_token@github.com/org/repo.git",
                "git://user@host/repo",
                "https://git.example.com/org/repo.git?access_token=x",
                "http://mirror.internal/repo.git",
                "ext::sh -c touch% /tmp/pwned",
                "fd::17",
                "ssh://git@host:+22/repo",
                "ftp://host/repo",
                "relative/path",
                "https://git.example.com",
                "https://git.example.com/",
                "git@host:",
            ],
            |s| check_git_url(s).map(|()| "ok"),
            expect![[r#"
                "git@github.com:org/manifests.git" => "ok"
                "ssh://git@127.0.0.1:2222/srv/repo.git" => "ok"
                "https://git.example.com/org/repo.git" => "ok"
                "git://127.0.0.1:9418/repo" => "ok"
                "file:///srv/git/repo.git" => "ok"
                "/srv/git/repo.git" => "ok"
                "ssh://-oProxyCommand=touch%20/tmp/x/repo" => error: host in repository URL must not start with `-`
                "-oProxyCommand=x" => error: repository URL must not start with `-`
                "ssh://-user@host/repo" => error: user name in repository URL must not be empty or start with `-`
                "-user@host:repo" => error: repository URL must not start with `-`
                "git@host:-repo" => error: repository path must not start with `-`
                "https://oauth2:token@git.example.com/org/repo.git" => error: repository URL must not carry credentials; configure them on the node
                "https://ghp_token@github.com/org/repo.git" => error: repository URL must not carry credentials; configure them on the node
                "git://user@host/repo" => error: repository URL must not carry credentials; configure them on the node
                "https://git.example.com/org/repo.git?access_token=x" => error: repository URL must not carry a query or fragment; configure credentials on the node
                "http://mirror.internal/repo.git" => "ok"
                "ext::sh -c touch% /tmp/pwned" => error: repository URL must not contain spaces or control characters
                "fd::17" => error: `transport::address` remote helpers are not allowed
                "ssh://git@host:+22/repo" => error: port in repository URL must be a number from 1 to 65535
                "ftp://host/repo" => error: unsupported URL scheme; use ssh, git, http(s) or file
                "relative/path" => error: repository URL must be a URL, `user@host:path` or an absolute path
                "https://git.example.com" => error: repository URL has no repository path
                "https://git.example.com/" => error: repository URL has no repository path
                "git@host:" => error: repository URL has no repository path
            "#]],
        );
    }

    #[test]
    fn branches_and_environment_ids() {
        table(
            &[
                "main",
                "staging",
                "feature/Login_x",
                "release/1.2",
                "feat-auth",
                "--",
                "a..b",
                "x.lock",
                "-x",
                "a b",
                "a.lock/b",
                "a//b",
                "@",
                "a\u{a0}b",
            ],
            |s| check_branch(s).and_then(|()| environment_id(s)),
            expect![[r#"
                "main" => "main"
                "staging" => "staging"
                "feature/Login_x" => "feature-login-x"
                "release/1.2" => "release-1-2"
                "feat-auth" => "feat-auth"
                "--" => error: is not a valid Git branch name
                "a..b" => error: is not a valid Git branch name
                "x.lock" => error: is not a valid Git branch name
                "-x" => error: is not a valid Git branch name
                "a b" => error: is not a valid Git branch name
                "a.lock/b" => error: is not a valid Git branch name
                "a//b" => error: is not a valid Git branch name
                "@" => error: is not a valid Git branch name
                "a\u{a0}b" => error: is not a valid Git branch name
            "#]],
        );
    }

    #[test]
    fn dns_labels_and_domains() {
        table(
            &[
                "web",
                "web-01",
                "a",
                "Web",
                "-web",
                "web-",
                "web_1",
                &"a".repeat(64),
            ],
            |s| check_dns_label(s).map(|()| "ok"),
            expect![[r#"
                "web" => "ok"
                "web-01" => "ok"
                "a" => "ok"
                "Web" => error: may hold only lowercase letters, digits and `-`
                "-web" => error: must start and end with a letter or digit
                "web-" => error: must start and end with a letter or digit
                "web_1" => error: may hold only lowercase letters, digits and `-`
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" => error: is 64 characters long; at most 63 are allowed
            "#]],
        );
        table(
            &[
                "hello-world.example.com",
                "*.example.com",
                "hello.staging.example.com",
                "Hello.com",
                "a..b",
                "",
            ],
            |s| check_domain(s).map(|()| "ok"),
            expect![[r#"
                "hello-world.example.com" => "ok"
                "*.example.com" => "ok"
                "hello.staging.example.com" => "ok"
                "Hello.com" => error: domain label 1 may hold only lowercase letters, digits and `-`
                "a..b" => error: domain label 2 must not be empty
                "" => error: domain is empty
            "#]],
        );
    }

    #[test]
    fn paths() {
        table(
            &[
                "/var/storage/db",
                "/srv//data/",
                "/",
                "relative",
                "/a/../b",
                "/a/./b",
            ],
            normalize_abs_path,
            expect![[r#"
                "/var/storage/db" => "/var/storage/db"
                "/srv//data/" => "/srv/data"
                "/" => "/"
                "relative" => error: must be absolute (start with `/`)
                "/a/../b" => error: must not contain `..`
                "/a/./b" => "/a/b"
            "#]],
        );
        // Bind paths are cleaned as Docker cleans them (Go's `path.Clean`).
        table(
            &[
                "/var/storage/db",
                "/srv//data/./x/",
                "/srv/data/../../etc",
                "/..",
                "/a/b/..",
                "data",
                "/a:Z",
                "/a,b",
                "/a\tb",
            ],
            bind_path,
            expect![[r#"
                "/var/storage/db" => "/var/storage/db"
                "/srv//data/./x/" => "/srv/data/x"
                "/srv/data/../../etc" => "/etc"
                "/.." => "/"
                "/a/b/.." => "/a"
                "data" => error: must be absolute (start with `/`)
                "/a:Z" => error: must not contain `:` or `,` (Docker reads them as mount options)
                "/a,b" => error: must not contain `:` or `,` (Docker reads them as mount options)
                "/a\tb" => error: must not contain control characters
            "#]],
        );
        table(
            &[
                "data", "db_1.x-y", "d", "./data", "data/sub", "~data", "-data", "",
            ],
            |s| Ok::<_, Reason>(is_volume_name(s)),
            expect![[r#"
                "data" => true
                "db_1.x-y" => true
                "d" => false
                "./data" => false
                "data/sub" => false
                "~data" => false
                "-data" => false
                "" => false
            "#]],
        );
        table(
            &["my-app", "./my-app/", ".", "", "../x", "/etc", "a/../../b"],
            normalize_rel_path,
            expect![[r#"
            "my-app" => "my-app"
            "./my-app/" => "my-app"
            "." => "."
            "" => "."
            "../x" => error: must not contain `..`
            "/etc" => error: must be relative, not absolute
            "a/../../b" => error: must not contain `..`
        "#]],
        );
    }

    #[test]
    fn label_keys() {
        table(
            &[
                "team",
                "com.example.tier",
                "orun.node",
                "ORUN.spec-hash",
                "has space",
                "a=b",
            ],
            |s| check_label_key(s).map(|()| "ok"),
            expect![[r#"
                "team" => "ok"
                "com.example.tier" => "ok"
                "orun.node" => error: label prefix `orun.` is reserved for the agent
                "ORUN.spec-hash" => error: label prefix `orun.` is reserved for the agent
                "has space" => error: label key must not contain spaces, `=` or control characters
                "a=b" => error: label key must not contain spaces, `=` or control characters
            "#]],
        );
    }
}

//! The node policy file (`orun-agent --policy`, `orun validate --policy`): what one node
//! trusts and allows beyond orun's defaults. It is node-local and never read from the
//! manifest repository, since whoever can push to the repository is what it guards against.
//!
//! ```yaml
//! commits:                 # signed commits (off without this section)
//!   verify: true
//!   allowedSigners: /etc/orun/allowed_signers   # git's gpg.ssh.allowedSignersFile format
//!   openpgpKeys: /etc/orun/trusted.asc          # armored OpenPGP public keys
//!   allowNonFastForward: false
//! host:                    # host paths containers may bind (none without this section)
//!   bind: [/srv]
//!   volumes: [pgdata]      # Docker named volumes
//!   deployments:
//!     node-exporter: { bind: [/proc, /sys] }
//! status:
//!   tokenFile: /etc/orun/status-token          # bearer token for the status API
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ModelError;
use crate::diag::{Diagnostic, Pos};
use crate::raw::Sp;
use crate::yaml::{self, pos};

/// The largest policy file read, in bytes: it is a short list, and a larger one is a mistake.
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

/// A node's policy: defaults when the node has no policy file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePolicy {
    /// Signed commits: `None` applies any commit of the branch, as Orcra Run did.
    pub commits: Option<CommitPolicy>,
    /// Host resources containers may reach.
    pub host: HostPolicy,
    /// The file holding the status API's bearer token.
    pub status_token_file: Option<PathBuf>,
}

/// Which commits a node applies when `commits.verify` is on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitPolicy {
    /// SSH keys, in git's allowed-signers format.
    pub allowed_signers: Option<PathBuf>,
    /// OpenPGP public keys.
    pub openpgp_keys: Option<PathBuf>,
    /// Apply a tip that does not descend from the last applied commit (a force-push, or an
    /// older signed commit served again). Off: such a tip is refused.
    pub allow_non_fast_forward: bool,
}

/// The host paths (and named volumes) containers may bind. Empty by default: a manifest
/// binding any is refused until the node allows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPolicy {
    /// What every deployment may bind.
    pub all: Allowance,
    /// What one deployment may bind besides, by deployment name.
    pub deployments: BTreeMap<String, Allowance>,
}

/// What may be bound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowance {
    /// Absolute, normalised host path prefixes.
    pub bind: Vec<String>,
    /// Docker named volumes (`hostPath: pgdata`), by name.
    pub volumes: Vec<String>,
}

impl HostPolicy {
    /// Every prefix `deployment` may bind: the node-wide ones, then its own.
    pub fn allowed_for<'a>(&'a self, deployment: &str) -> impl Iterator<Item = &'a str> + 'a {
        let own = self.deployments.get(deployment).map(|a| &a.bind);
        self.all
            .bind
            .iter()
            .chain(own.into_iter().flatten())
            .map(String::as_str)
    }

    /// Whether `deployment` may mount the named volume `name`.
    pub fn volume_allowed(&self, deployment: &str, name: &str) -> bool {
        let own = self.deployments.get(deployment).map(|a| &a.volumes);
        self.all
            .volumes
            .iter()
            .chain(own.into_iter().flatten())
            .any(|v| v == name)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    commits: Option<Sp<RawCommits>>,
    host: Option<RawHost>,
    status: Option<RawStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCommits {
    verify: bool,
    allowed_signers: Option<Sp<String>>,
    openpgp_keys: Option<Sp<String>>,
    #[serde(default)]
    allow_non_fast_forward: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    #[serde(default)]
    bind: Vec<Sp<String>>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    deployments: BTreeMap<String, RawWidening>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWidening {
    #[serde(default)]
    bind: Vec<Sp<String>>,
    #[serde(default)]
    volumes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStatus {
    token_file: Option<Sp<String>>,
}

/// Reads the policy file at `path`.
///
/// # Errors
/// [`ModelError::Policy`] with every problem found, each with the file, line and field; a
/// file that cannot be read or is larger than [`MAX_POLICY_BYTES`] as one diagnostic.
pub fn load_policy(path: &Path) -> Result<NodePolicy, ModelError> {
    read_policy(path).map_err(ModelError::Policy)
}

fn read_policy(path: &Path) -> Result<NodePolicy, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let whole = |message: String| vec![Diagnostic::error(&file, Pos::FILE, "", message)];
    let meta = std::fs::metadata(path).map_err(|e| whole(format!("cannot read: {e}")))?;
    if meta.len() > MAX_POLICY_BYTES {
        return Err(whole(format!(
            "is {} bytes; a policy file is at most {MAX_POLICY_BYTES}",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| whole(format!("cannot read: {e}")))?;
    parse_policy(&file, &text)
}

/// Parses a policy file's text; `file` names it in diagnostics.
///
/// # Errors
/// Every problem found, each with the file, line and field.
pub fn parse_policy(file: &str, text: &str) -> Result<NodePolicy, Vec<Diagnostic>> {
    if text.trim().is_empty() {
        return Ok(NodePolicy::default());
    }
    let raw: RawPolicy = yaml::parse(file, text).map_err(|d| vec![d])?.value;
    let mut problems = Vec::new();
    let mut err = |at: Pos, field: &str, message: &str| {
        problems.push(Diagnostic::error(file, at, field, message));
    };
    let mut commits = None;
    if let Some(c) = raw.commits.filter(|c| c.value.verify) {
        if c.value.allowed_signers.is_none() && c.value.openpgp_keys.is_none() {
            err(
                pos(&c.referenced),
                "commits",
                "`verify: true` needs the keys to trust: `allowedSigners`, `openpgpKeys` or both",
            );
        }
        commits = Some(CommitPolicy {
            allowed_signers: file_path(
                &c.value.allowed_signers,
                "commits.allowedSigners",
                &mut err,
            ),
            openpgp_keys: file_path(&c.value.openpgp_keys, "commits.openpgpKeys", &mut err),
            allow_non_fast_forward: c.value.allow_non_fast_forward,
        });
    }
    let status_token_file = raw
        .status
        .and_then(|s| file_path(&s.token_file, "status.tokenFile", &mut err));
    let mut host = HostPolicy::default();
    if let Some(h) = raw.host {
        host.all = Allowance {
            bind: prefixes(&h.bind, "host.bind", &mut err),
            volumes: h.volumes,
        };
        for (name, w) in h.deployments {
            let field = format!("host.deployments.{name}.bind");
            let allowed = Allowance {
                bind: prefixes(&w.bind, &field, &mut err),
                volumes: w.volumes,
            };
            host.deployments.insert(name, allowed);
        }
    }
    if problems.is_empty() {
        Ok(NodePolicy {
            commits,
            host,
            status_token_file,
        })
    } else {
        Err(problems)
    }
}

/// A file the policy names; a relative one is an error, as the agent's working directory
/// is no place to look for keys.
fn file_path(
    v: &Option<Sp<String>>,
    field: &str,
    err: &mut impl FnMut(Pos, &str, &str),
) -> Option<PathBuf> {
    let v = v.as_ref()?;
    if Path::new(&v.value).is_absolute() {
        Some(PathBuf::from(&v.value))
    } else {
        err(pos(&v.referenced), field, "must be an absolute path");
        None
    }
}

/// The allowed prefixes of one list, normalised; a relative or unclean one is an error, as
/// a prefix that means something other than it says would widen the policy unseen.
fn prefixes(
    list: &[Sp<String>],
    field: &str,
    err: &mut impl FnMut(Pos, &str, &str),
) -> Vec<String> {
    let mut out = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let field = format!("{field}[{i}]");
        match crate::values::bind_path(&p.value) {
            Ok(clean) if clean == p.value || clean == p.value.trim_end_matches('/') => {
                out.push(clean);
            }
            Ok(_) => err(
                pos(&p.referenced),
                &field,
                "must be a clean path (no `.`, `..` or doubled `/`)",
            ),
            Err(reason) => err(pos(&p.referenced), &field, &format!("path {reason}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_policy_is_read() {
        let text = "commits:\n  verify: true\n  allowedSigners: /etc/orun/signers\n\
                    host:\n  bind: [/srv, /opt/data/]\n  volumes: [pg]\n  deployments:\n    exporter:\n      bind: [/proc]\n      volumes: [metrics]\n\
                    status:\n  tokenFile: /etc/orun/token\n";
        let p = parse_policy("policy.yaml", text).unwrap();
        let c = p.commits.unwrap();
        assert_eq!(c.allowed_signers.unwrap(), Path::new("/etc/orun/signers"));
        assert!(!c.allow_non_fast_forward);
        assert_eq!(p.host.all.bind, ["/srv", "/opt/data"]);
        let exporter: Vec<_> = p.host.allowed_for("exporter").collect();
        assert_eq!(exporter, ["/srv", "/opt/data", "/proc"]);
        assert_eq!(p.host.allowed_for("web").count(), 2);
        assert!(p.host.volume_allowed("web", "pg") && p.host.volume_allowed("exporter", "pg"));
        assert!(p.host.volume_allowed("exporter", "metrics"));
        assert!(!p.host.volume_allowed("web", "metrics"));
        assert_eq!(p.status_token_file.unwrap(), Path::new("/etc/orun/token"));
    }

    #[test]
    fn an_empty_file_is_the_default() {
        assert_eq!(parse_policy("p", "").unwrap(), NodePolicy::default());
        assert_eq!(
            parse_policy("p", "# nothing\n").unwrap(),
            NodePolicy::default()
        );
        let off = parse_policy("p", "commits:\n  verify: false\n").unwrap();
        assert_eq!(off.commits, None);
    }

    #[test]
    fn problems_name_line_and_field() {
        let text = "commits:\n  verify: true\nhost:\n  bind:\n    - srv\n    - /a/../etc\n";
        let problems = parse_policy("policy.yaml", text).unwrap_err();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{shown:?}");
        assert!(
            shown
                .iter()
                .any(|s| s.contains("policy.yaml:2") && s.contains("commits")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.contains(":5:") && s.contains("host.bind[0]"))
        );
        assert!(
            shown
                .iter()
                .any(|s| s.contains(":6:") && s.contains("host.bind[1]"))
        );
    }

    #[test]
    fn unknown_fields_and_relative_files_are_refused() {
        let e = parse_policy("p", "host:\n  binds: [/srv]\n").unwrap_err();
        assert!(
            e[0].to_string()
                .contains("unknown field (did you mean `bind`?)"),
            "{}",
            e[0]
        );
        let e = parse_policy("p", "status:\n  tokenFile: token\n").unwrap_err();
        assert!(e[0].to_string().contains("status.tokenFile"), "{}", e[0]);
    }
}

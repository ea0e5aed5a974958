//! The pinned SSH host keys: an OpenSSH `known_hosts` file, read at start-up, matched exactly.
//!
//! orun never trusts on first use (RELIABILITY C4): a host with no entry, or whose key differs
//! from every entry, is a hard failure. Supported: plain host patterns (`host`, `[host]:port`,
//! `*`/`?` wildcards, `!negation`) and `@revoked`. Hashed names (`|1|…`, from `ssh-keygen -H`)
//! and `@cert-authority` lines are skipped, because matching them needs HMAC-SHA1 and
//! certificate parsing that a pinned deploy setup does not need; `ssh-keyscan` writes plain
//! names by default.

use std::path::Path;

use crate::GitError;

/// The keys pinned for hosts, from one known_hosts file.
#[derive(Clone, Debug, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    patterns: Vec<String>,
    revoked: bool,
    /// The base64 key blob, exactly as written.
    key: String,
}

/// What the file says about a host's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The key is pinned for the host.
    Trusted,
    /// The host has entries but none with this key: possibly an attack.
    Mismatch,
    /// The key is marked `@revoked`.
    Revoked,
    /// The file has no entry for the host.
    Unknown,
}

impl KnownHosts {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, GitError> {
        let text = std::fs::read_to_string(path).map_err(|e| GitError::Config {
            reason: format!("cannot read known_hosts file {}: {e}", path.display()),
        })?;
        let hosts = Self::parse(&text);
        if hosts.entries.is_empty() {
            return Err(GitError::Config {
                reason: format!(
                    "known_hosts file {} has no usable entry (hashed names are not supported)",
                    path.display()
                ),
            });
        }
        Ok(hosts)
    }

    /// Parses known_hosts text; lines it cannot use are skipped.
    pub fn parse(text: &str) -> Self {
        let mut entries = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let mut first = fields.next().unwrap_or("");
            let mut revoked = false;
            if first.starts_with('@') {
                match first {
                    "@revoked" => revoked = true,
                    _ => continue, // @cert-authority: not supported
                }
                first = fields.next().unwrap_or("");
            }
            let (Some(_kind), Some(key)) = (fields.next(), fields.next()) else {
                continue;
            };
            if first.starts_with('|') {
                continue; // hashed
            }
            entries.push(Entry {
                patterns: first.split(',').map(str::to_owned).collect(),
                revoked,
                key: key.to_owned(),
            });
        }
        Self { entries }
    }

    /// Judges `key` (the raw SSH public-key blob) offered by `host` (`host` or `[host]:port`).
    pub fn check(&self, host: &str, key: &[u8]) -> Verdict {
        let offered = base64(key);
        if self
            .entries
            .iter()
            .any(|e| e.revoked && e.key == offered && matches(e, host))
        {
            return Verdict::Revoked;
        }
        let mut known = false;
        for e in self
            .entries
            .iter()
            .filter(|e| !e.revoked && matches(e, host))
        {
            known = true;
            if e.key == offered {
                return Verdict::Trusted;
            }
        }
        if known {
            Verdict::Mismatch
        } else {
            Verdict::Unknown
        }
    }
}

fn matches(entry: &Entry, host: &str) -> bool {
    let mut hit = false;
    for p in &entry.patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg, host) {
                return false;
            }
        } else if glob(p, host) {
            hit = true;
        }
    }
    hit
}

/// OpenSSH pattern matching: `*` any run, `?` one character, case-insensitive.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &[u8] = b"\0\0\0\x0bssh-ed25519\0\0\0\x20AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const KEY_B: &[u8] = b"\0\0\0\x0bssh-ed25519\0\0\0\x20BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn verdicts() {
        let text = format!(
            "# comment\n\
             [127.0.0.1]:2222 ssh-ed25519 {a}\n\
             git.example,*.corp,!bad.corp ssh-ed25519 {a} c\n\
             |1|abc=|def= ssh-ed25519 {b}\n\
             @revoked * ssh-ed25519 {b}\n\
             @cert-authority * ssh-ed25519 {a}\n\
             broken-line\n",
            a = base64(KEY_A),
            b = base64(KEY_B)
        );
        let hosts = KnownHosts::parse(&text);
        assert_eq!(hosts.check("[127.0.0.1]:2222", KEY_A), Verdict::Trusted);
        assert_eq!(hosts.check("[127.0.0.1]:2222", KEY_B), Verdict::Revoked);
        assert_eq!(hosts.check("127.0.0.1", KEY_A), Verdict::Unknown);
        assert_eq!(hosts.check("GIT.example", KEY_A), Verdict::Trusted);
        assert_eq!(hosts.check("x.corp", KEY_A), Verdict::Trusted);
        assert_eq!(hosts.check("bad.corp", KEY_A), Verdict::Unknown);
        let other = b"\0\0\0\x0bssh-ed25519\0\0\0\x20CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
        assert_eq!(hosts.check("x.corp", other), Verdict::Mismatch);
    }

    #[test]
    fn glob_edges() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(!glob("abc", "abcd"));
        assert!(glob("*.corp", "x.y.corp"));
    }
}

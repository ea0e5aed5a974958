//! The bearer token that guards the status API when it listens beyond loopback: read from a
//! node-local file, never printed, and checked in constant time.
//!
//! The server keeps only the token's SHA-256 digest and compares the digest of what a client
//! presents against it byte by byte without an early exit, so the time a check takes says
//! nothing about how much of a guess was right, not even its length.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::StatusError;

/// Shortest token accepted, in bytes.
pub const TOKEN_MIN_BYTES: usize = 16;
/// Longest token accepted, in bytes.
pub const TOKEN_MAX_BYTES: usize = 4096;

/// A bearer token from node-local configuration.
///
/// # Guarantees
/// Its `Debug` prints `BearerToken(…)`; it has no `Display` and no accessor to its text, so
/// the token reaches nothing but the `Authorization` header the client sends
/// ([`crate::get_authorized`]) and the server's digest.
#[derive(Clone)]
pub struct BearerToken {
    // Shared, so each connection's copy is cheap.
    secret: Arc<str>,
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(…)")
    }
}

/// The token the status API on `addr` is guarded by, read from `token_file`: on loopback it
/// may have none; beyond loopback it needs both `allow_remote` and a token, so opening the
/// port to a network never opens a node's inventory with it.
///
/// # Errors
/// [`StatusError::Exposed`] beyond loopback without both; what [`BearerToken::load`] says.
pub fn access(
    addr: std::net::SocketAddr,
    allow_remote: bool,
    token_file: Option<&Path>,
) -> Result<Option<BearerToken>, StatusError> {
    let token = token_file.map(BearerToken::load).transpose()?;
    if addr.ip().is_loopback() || (allow_remote && token.is_some()) {
        Ok(token)
    } else {
        Err(StatusError::Exposed { addr })
    }
}

impl BearerToken {
    /// The token in the file at `path`: its whole content less one trailing newline (`\n` or
    /// `\r\n`).
    ///
    /// # Errors
    /// [`StatusError::TokenFile`] when the file cannot be read; [`StatusError::BadToken`],
    /// naming the file but never quoting it, when the token is shorter than
    /// [`TOKEN_MIN_BYTES`], longer than [`TOKEN_MAX_BYTES`], or holds anything but visible
    /// ASCII.
    pub fn load(path: &Path) -> Result<Self, StatusError> {
        let read_error = |source| StatusError::TokenFile {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        // Read a little beyond the largest token (and its newline), so a huge file is
        // refused without being read whole.
        let mut raw = Vec::new();
        file.take(TOKEN_MAX_BYTES as u64 + 3)
            .read_to_end(&mut raw)
            .map_err(read_error)?;
        Self::from_bytes(&raw).map_err(|why| StatusError::BadToken {
            path: Some(path.to_owned()),
            why,
        })
    }

    /// The token `text`, less one trailing newline, under the rules of [`BearerToken::load`].
    ///
    /// # Errors
    /// [`StatusError::BadToken`] (with no path) when the token is too short, too long, or not
    /// visible ASCII.
    pub fn parse(text: &str) -> Result<Self, StatusError> {
        Self::from_bytes(text.as_bytes()).map_err(|why| StatusError::BadToken { path: None, why })
    }

    fn from_bytes(raw: &[u8]) -> Result<Self, &'static str> {
        let raw = raw
            .strip_suffix(b"\r\n")
            .or_else(|| raw.strip_suffix(b"\n"))
            .unwrap_or(raw);
        if raw.len() < TOKEN_MIN_BYTES {
            return Err("shorter than 16 bytes");
        }
        if raw.len() > TOKEN_MAX_BYTES {
            return Err("longer than 4096 bytes");
        }
        if !raw.iter().all(u8::is_ascii_graphic) {
            return Err("not all visible ASCII (no spaces, control characters or other text)");
        }
        let secret: String = raw.iter().map(|&b| char::from(b)).collect();
        Ok(Self {
            digest: Sha256::digest(raw).into(),
            secret: secret.into(),
        })
    }

    /// Whether the value of an `Authorization` header carries this token: the scheme
    /// `Bearer` (any case), one or more spaces, then exactly the token. Constant time in the
    /// token and in how much of it the value matches.
    pub(crate) fn admits(&self, authorization: &[u8]) -> bool {
        let presented = match authorization.split_at_checked(7) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest.trim_ascii(),
            _ => return false,
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut diff = 0u8;
        for (a, b) in digest.iter().zip(&self.digest) {
            diff |= a ^ b;
        }
        // Keeps the compiler from turning the fold into an early exit.
        std::hint::black_box(diff) == 0
    }

    /// The value of the `Authorization` header that presents this token.
    pub(crate) fn header_value(&self) -> String {
        format!("Bearer {}", self.secret)
    }
}

/// The path a token came from, for [`StatusError::BadToken`]'s message.
pub(crate) fn from_where(path: Option<&PathBuf>) -> String {
    path.map(|p| format!(" in {}", p.display()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_loopback_needs_leave_and_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "0123456789abcdef\n").unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:9100".parse().unwrap();
        let wide: std::net::SocketAddr = "0.0.0.0:9100".parse().unwrap();
        assert!(access(local, false, None).unwrap().is_none());
        assert!(access(local, false, Some(&file)).unwrap().is_some());
        assert!(access(wide, true, Some(&file)).unwrap().is_some());
        for (allow, token) in [(false, Some(file.as_path())), (true, None), (false, None)] {
            let e = access(wide, allow, token).unwrap_err();
            assert!(matches!(e, StatusError::Exposed { .. }), "{e}");
        }
        assert!(access(local, false, Some(&dir.path().join("missing"))).is_err());
    }

    #[test]
    fn parses_visible_ascii_of_16_to_4096_bytes_less_one_newline() {
        let ok = |t: &str| BearerToken::parse(t).is_ok();
        assert!(ok("0123456789abcdef"));
        assert!(ok("0123456789abcdef\n"));
        assert!(ok("0123456789abcdef\r\n"));
        assert!(ok(&"x".repeat(4096)));
        for bad in [
            "",
            "0123456789abcde",
            "0123456789abcde\n",
            "0123456789abcdef\n\n",
            "0123456789 abcdef",
            "0123456789abcdef\t",
            "0123456789abcdeé",
            &"x".repeat(4097),
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn admits_exactly_the_token_after_the_bearer_scheme() {
        let t = BearerToken::parse("s3cr3t-token-0123456789").unwrap_or_else(|e| panic!("{e}"));
        for yes in [
            "Bearer s3cr3t-token-0123456789",
            "bearer s3cr3t-token-0123456789",
            "BEARER   s3cr3t-token-0123456789 ",
        ] {
            assert!(t.admits(yes.as_bytes()), "{yes}");
        }
        for no in [
            "",
            "Bearer",
            "Bearer ",
            "s3cr3t-token-0123456789",
            "Basic s3cr3t-token-0123456789",
            "Bearer s3cr3t-token-012345678",
            "Bearer s3cr3t-token-01234567890",
            "Bearer s3cr3t-token-0123456788",
            "Bearers3cr3t-token-0123456789",
        ] {
            assert!(!t.admits(no.as_bytes()), "{no}");
        }
        assert_eq!(t.header_value(), "Bearer s3cr3t-token-0123456789");
        assert_eq!(format!("{t:?}"), "BearerToken(…)");
    }
}

//! The release feed: where it is, what it says, and the release it offers this binary.
//!
//! Raw serde types are parsed first (`deny_unknown_fields`, from at most 64 KiB), then
//! validated into [`Feed`]: versions parsed, sizes bounded, checksums decoded, locations
//! resolved against the feed's own.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{MAX_BINARY, UpdateError, Version, cap};

/// Largest feed document read.
pub const MAX_FEED: u64 = 64 << 10;

/// Where a feed, a binary or a signature is: a local path or an `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedLocation {
    /// A file on this machine.
    Path(PathBuf),
    /// An `https://` URL (plain `http://` is refused: nothing proves who answered).
    Https(String),
}

impl FeedLocation {
    /// `https://...` is a URL, anything without a scheme a path; `http://` and other
    /// schemes are refused.
    ///
    /// # Errors
    /// [`UpdateError::Location`] for plain HTTP, another scheme, an empty text, or a URL
    /// holding spaces or control characters.
    pub fn parse(text: &str) -> Result<Self, UpdateError> {
        let bad = |reason: &'static str| UpdateError::Location {
            text: cap(text),
            reason,
        };
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(rest) = text.strip_prefix("https://") {
            if text.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(bad("a URL holds no space or control character"));
            }
            if rest.is_empty() {
                return Err(bad("no host"));
            }
            return Ok(Self::Https(text.to_owned()));
        }
        if text
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        {
            return Err(bad("plain http is refused: use https or a path"));
        }
        if text.contains("://") {
            return Err(bad("only https:// URLs and paths are supported"));
        }
        Ok(Self::Path(PathBuf::from(text)))
    }

    /// The location of `reference` (a feed's `url` or `signature`) read relative to this
    /// one: an absolute `https://` URL stands for itself, as does an absolute path when this
    /// is a path; anything else is relative to the directory of this location.
    ///
    /// # Errors
    /// [`UpdateError::Feed`] for a reference that cannot be used from here (another scheme,
    /// plain http, an empty text, a path below an https feed that climbs with `..`).
    pub(crate) fn resolve(&self, reference: &str) -> Result<Self, UpdateError> {
        let bad = |why: &str| UpdateError::Feed {
            reason: format!("cannot use the location {:?}: {why}", cap(reference)),
        };
        if reference.is_empty() || reference.bytes().any(|b| b < b' ' || b == 0x7f) {
            return Err(bad("empty or holds a control character"));
        }
        if reference.starts_with("https://") {
            return Self::parse(reference).map_err(|e| bad(&e.to_string()));
        }
        if reference.contains("://") {
            return Err(bad("only https:// URLs are fetched"));
        }
        match self {
            Self::Path(feed) => {
                let reference = Path::new(reference);
                if reference.is_absolute() {
                    return Ok(Self::Path(reference.to_owned()));
                }
                let dir = feed.parent().unwrap_or(Path::new("."));
                Ok(Self::Path(dir.join(reference)))
            }
            Self::Https(feed) => {
                if reference.bytes().any(|b| b == b' ') {
                    return Err(bad("a URL holds no space"));
                }
                if reference.split('/').any(|s| s == "..") {
                    return Err(bad("a relative URL may not climb with .."));
                }
                let after_scheme = "https://".len();
                // The path starts at the first `/` after the host (there may be none).
                let path_start = feed[after_scheme..]
                    .find(['/', '?', '#'])
                    .map_or(feed.len(), |i| i + after_scheme);
                let origin = &feed[..path_start];
                if reference.starts_with('/') {
                    return Ok(Self::Https(format!("{origin}{reference}")));
                }
                let path = &feed[path_start..];
                let path = path.split(['?', '#']).next().unwrap_or_default();
                let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
                Ok(Self::Https(format!("{origin}{dir}{reference}")))
            }
        }
    }
}

impl fmt::Display for FeedLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Https(u) => f.write_str(u),
        }
    }
}

/// The feed as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    version: String,
    artifacts: Vec<RawArtifact>,
}

/// One artifact as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArtifact {
    name: String,
    target: String,
    url: String,
    size: u64,
    sha256: String,
    signature: String,
}

/// A validated release feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feed {
    /// The version every artifact of the feed is.
    pub version: Version,
    /// The binaries, at most one per name and target.
    pub artifacts: Vec<Artifact>,
}

/// One binary of a feed, its locations resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// The program's name (`orun`).
    pub name: String,
    /// The target triple it runs on.
    pub target: String,
    /// Where the binary is.
    pub url: FeedLocation,
    /// Its exact size in bytes, at most 256 MiB.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// Where its minisign signature is.
    pub signature: FeedLocation,
}

/// The release a feed offers this binary: the feed's version and our artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// The version offered.
    pub version: Version,
    /// The binary for our name and target.
    pub artifact: Artifact,
}

impl Feed {
    /// Parses and validates a feed document read from `at` (whose location the artifacts'
    /// references are relative to).
    ///
    /// # Errors
    /// [`UpdateError::Feed`] for a document over 64 KiB, invalid JSON, an unknown or missing
    /// field, a bad version, a size of 0 or over 256 MiB, a checksum that is not 64 hex
    /// digits, an unusable location, or two artifacts for one name and target. Messages
    /// quote at most 200 bytes of the document.
    pub fn parse(bytes: &[u8], at: &FeedLocation) -> Result<Self, UpdateError> {
        let bad = |reason: String| UpdateError::Feed { reason };
        if bytes.len() as u64 > MAX_FEED {
            return Err(bad(format!("larger than {MAX_FEED} bytes")));
        }
        let raw: RawFeed = serde_json::from_slice(bytes).map_err(|e| bad(cap(&e.to_string())))?;
        let version = Version::parse(&raw.version).map_err(|e| bad(e.to_string()))?;
        let mut artifacts: Vec<Artifact> = Vec::with_capacity(raw.artifacts.len());
        for a in raw.artifacts {
            if a.size == 0 || a.size > MAX_BINARY {
                return Err(bad(format!(
                    "artifact {:?}: size {} is not within 1..={MAX_BINARY}",
                    cap(&a.name),
                    a.size
                )));
            }
            let sha256 = decode_sha256(&a.sha256).ok_or_else(|| {
                bad(format!(
                    "artifact {:?}: sha256 is not 64 hex digits",
                    cap(&a.name)
                ))
            })?;
            if artifacts
                .iter()
                .any(|b| b.name == a.name && b.target == a.target)
            {
                return Err(bad(format!(
                    "two artifacts for {:?} on {:?}",
                    cap(&a.name),
                    cap(&a.target)
                )));
            }
            artifacts.push(Artifact {
                url: at.resolve(&a.url)?,
                signature: at.resolve(&a.signature)?,
                name: a.name,
                target: a.target,
                size: a.size,
                sha256,
            });
        }
        Ok(Self { version, artifacts })
    }

    /// The release for `name` on `target`, when the feed has one.
    pub fn release_for(&self, name: &str, target: &str) -> Option<Release> {
        self.artifacts
            .iter()
            .find(|a| a.name == name && a.target == target)
            .map(|a| Release {
                version: self.version.clone(),
                artifact: a.clone(),
            })
    }
}

/// 64 hex digits (either case) as 32 bytes.
pub(crate) fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16);
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        // Each digit is below 16, so the pair fits a byte.
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

/// 32 bytes as 64 lowercase hex digits.
pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn feed_json(extra: &str, sha: &str, size: u64) -> String {
        format!(
            r#"{{"version":"0.2.0","artifacts":[{{"name":"orun","target":"x86_64-unknown-linux-gnu","url":"orun-0.2.0","size":{size},"sha256":"{sha}","signature":"orun-0.2.0.minisig"{extra}}}]}}"#
        )
    }

    fn at() -> FeedLocation {
        FeedLocation::Path(PathBuf::from("/srv/feed/release.json"))
    }

    #[test]
    fn parses_a_feed_and_resolves_its_locations() {
        let feed = Feed::parse(feed_json("", SHA, 4).as_bytes(), &at()).unwrap();
        assert_eq!(feed.version, Version::new(0, 2, 0));
        let r = feed
            .release_for("orun", "x86_64-unknown-linux-gnu")
            .unwrap();
        assert_eq!(
            r.artifact.url,
            FeedLocation::Path("/srv/feed/orun-0.2.0".into())
        );
        assert_eq!(
            r.artifact.signature,
            FeedLocation::Path("/srv/feed/orun-0.2.0.minisig".into())
        );
        assert_eq!(encode_hex(&r.artifact.sha256), SHA);
        assert!(
            feed.release_for("orun", "aarch64-unknown-linux-gnu")
                .is_none()
        );
        assert!(
            feed.release_for("orun-agent", "x86_64-unknown-linux-gnu")
                .is_none()
        );
    }

    #[test]
    fn refuses_unknown_fields() {
        let err = Feed::parse(feed_json(r#","extra":1"#, SHA, 4).as_bytes(), &at()).unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");
        let err = Feed::parse(br#"{"version":"0.2.0","artifacts":[],"x":1}"#, &at()).unwrap_err();
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
    }

    #[test]
    fn refuses_missing_fields() {
        let json = feed_json("", SHA, 4).replace(r#","signature":"orun-0.2.0.minisig""#, "");
        let err = Feed::parse(json.as_bytes(), &at()).unwrap_err();
        assert!(
            err.to_string().contains("missing field `signature`"),
            "{err}"
        );
        let json = feed_json("", SHA, 4).replace(&format!(r#","sha256":"{SHA}""#), "");
        let err = Feed::parse(json.as_bytes(), &at()).unwrap_err();
        assert!(err.to_string().contains("missing field `sha256`"), "{err}");
    }

    #[test]
    fn refuses_an_oversize_feed_and_quotes_little_of_it() {
        let mut json = feed_json("", SHA, 4);
        json.push_str(&" ".repeat(MAX_FEED as usize));
        let err = Feed::parse(json.as_bytes(), &at()).unwrap_err();
        assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");
        // An unknown field with a huge name: the message is capped.
        let name = "x".repeat(10_000);
        let json = feed_json(&format!(r#","{name}":1"#), SHA, 4);
        let err = Feed::parse(json.as_bytes(), &at()).unwrap_err().to_string();
        assert!(err.len() < 400, "{} bytes", err.len());
    }

    #[test]
    fn refuses_bad_checksums_sizes_and_versions() {
        for sha in [
            "",
            &SHA[..63],
            &format!("{SHA}0"),
            &format!("{}g", &SHA[..63]),
            &format!("{}é", &SHA[..62]),
        ] {
            let err = Feed::parse(feed_json("", sha, 4).as_bytes(), &at()).unwrap_err();
            assert!(err.to_string().contains("64 hex digits"), "{sha:?}: {err}");
        }
        assert!(Feed::parse(feed_json("", &SHA.to_uppercase(), 4).as_bytes(), &at()).is_ok());
        for size in [0, MAX_BINARY + 1] {
            let err = Feed::parse(feed_json("", SHA, size).as_bytes(), &at()).unwrap_err();
            assert!(err.to_string().contains("size"), "{err}");
        }
        let json = feed_json("", SHA, 4).replace("0.2.0\"", "0.2\"");
        assert!(Feed::parse(json.as_bytes(), &at()).is_err());
        let twice = r#"{"version":"0.2.0","artifacts":[A,A]}"#.replace(
            'A',
            &format!(r#"{{"name":"orun","target":"t","url":"u","size":1,"sha256":"{SHA}","signature":"s"}}"#),
        );
        let err = Feed::parse(twice.as_bytes(), &at()).unwrap_err();
        assert!(err.to_string().contains("two artifacts"), "{err}");
    }

    #[test]
    fn locations() {
        assert_eq!(
            FeedLocation::parse("https://h.example/r/release.json").unwrap(),
            FeedLocation::Https("https://h.example/r/release.json".into())
        );
        assert_eq!(
            FeedLocation::parse("/srv/release.json").unwrap(),
            FeedLocation::Path("/srv/release.json".into())
        );
        for bad in [
            "",
            "http://h/r.json",
            "HTTP://h/r.json",
            "ftp://h/r",
            "https://",
            "https://h/a b",
        ] {
            assert!(FeedLocation::parse(bad).is_err(), "{bad:?}");
        }
        let https = FeedLocation::parse("https://h.example:8443/r/release.json?x=1").unwrap();
        let check = |rel: &str, want: &str| {
            assert_eq!(
                https.resolve(rel).unwrap(),
                FeedLocation::Https(want.into()),
                "{rel}"
            )
        };
        check("orun-0.2.0", "https://h.example:8443/r/orun-0.2.0");
        check("/top/orun", "https://h.example:8443/top/orun");
        check("https://cdn.example/o", "https://cdn.example/o");
        let bare = FeedLocation::parse("https://h.example").unwrap();
        assert_eq!(
            bare.resolve("orun").unwrap(),
            FeedLocation::Https("https://h.example/orun".into())
        );
        for bad in ["http://h/o", "file:///etc/passwd", "../o", "", "a\nb"] {
            assert!(https.resolve(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            at().resolve("/abs/orun").unwrap(),
            FeedLocation::Path("/abs/orun".into())
        );
    }
}

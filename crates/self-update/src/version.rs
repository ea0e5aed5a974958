//! Release versions, `MAJOR.MINOR.PATCH[-PRE]`, ordered by semver precedence.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::UpdateError;
use crate::cap;

/// Longest version text accepted: real versions are short, and the text may come from a feed.
const MAX_LEN: usize = 128;

/// A release version: `MAJOR.MINOR.PATCH` with an optional `-PRE` part, compared by semver
/// precedence (a pre-release sorts before its release; pre-release identifiers compare
/// numerically when both are numbers, as text otherwise, numbers first). Build metadata
/// (`+...`) is refused: two binaries must not share a precedence.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    /// Dot-separated identifiers, each validated; empty for a release.
    pre: Vec<String>,
}

impl Version {
    /// A release version without a pre-release part.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self {
            major,
            minor,
            patch,
            pre: Vec::new(),
        }
    }

    /// Parses `MAJOR.MINOR.PATCH[-PRE]`.
    ///
    /// # Errors
    /// [`UpdateError::Version`] for anything else: leading zeros, empty parts, build
    /// metadata, characters outside `[0-9A-Za-z-.]`, or more than 128 bytes.
    pub fn parse(text: &str) -> Result<Self, UpdateError> {
        let bad = |reason: &'static str| UpdateError::Version {
            text: cap(text),
            reason,
        };
        if text.len() > MAX_LEN {
            return Err(bad("longer than 128 bytes"));
        }
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let mut numbers = core.split('.');
        let mut number = || -> Result<u64, UpdateError> {
            let part = numbers.next().ok_or(bad("expected MAJOR.MINOR.PATCH"))?;
            numeric(part).ok_or(bad(
                "MAJOR, MINOR and PATCH are numbers without leading zeros",
            ))
        };
        let (major, minor, patch) = (number()?, number()?, number()?);
        if numbers.next().is_some() {
            return Err(bad("expected MAJOR.MINOR.PATCH"));
        }
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => {
                let ids: Vec<String> = pre.split('.').map(str::to_owned).collect();
                for id in &ids {
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    {
                        return Err(bad(
                            "pre-release identifiers are non-empty [0-9A-Za-z-] (no build metadata)",
                        ));
                    }
                    if id.bytes().all(|b| b.is_ascii_digit()) && numeric(id).is_none() {
                        return Err(bad("numeric pre-release identifiers have no leading zeros"));
                    }
                }
                ids
            }
        };
        Ok(Self {
            major,
            minor,
            patch,
            pre,
        })
    }

    /// Whether this is a pre-release (`1.0.0-rc.1`).
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

/// A decimal number without a leading zero (`0` itself is fine), as semver requires.
fn numeric(part: &str) -> Option<u64> {
    if part.is_empty()
        || !part.bytes().all(|b| b.is_ascii_digit())
        || (part.len() > 1 && part.starts_with('0'))
    {
        return None;
    }
    part.parse().ok()
}

impl FromStr for Version {
    type Err = UpdateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre.join("."))?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A pre-release comes before the release it leads to.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&other.pre) {
                        let order = match (numeric(a), numeric(b)) {
                            (Some(a), Some(b)) => a.cmp(&b),
                            (Some(_), None) => Ordering::Less,
                            (None, Some(_)) => Ordering::Greater,
                            (None, None) => a.cmp(b),
                        };
                        if order != Ordering::Equal {
                            return order;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn parses_and_prints_back() {
        for text in [
            "0.0.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-rc.1",
            "1.0.0-alpha-b.0.x7",
        ] {
            assert_eq!(v(text).to_string(), text);
        }
        assert!(v("1.0.0-rc.1").is_prerelease());
        assert!(!v("1.0.0").is_prerelease());
    }

    #[test]
    fn refuses_what_is_not_a_version() {
        for text in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "v1.2.3",
            "1.2.3-",
            "1.2.3-a..b",
            "1.2.3-01",
            "1.2.3+build",
            "1.2.3-a+b",
            "1.2.x",
            " 1.2.3",
            "1.2.3 ",
            "-1.2.3",
            "1.2.3-é",
            "99999999999999999999.0.0",
        ] {
            assert!(Version::parse(text).is_err(), "{text:?} was accepted");
        }
        let long = format!("1.2.3-{}", "a".repeat(200));
        let err = Version::parse(&long).unwrap_err().to_string();
        assert!(err.len() < 300, "{err}");
    }

    /// The precedence list of semver.org §11, plus numeric edge cases.
    #[test]
    fn orders_by_semver_precedence() {
        let ordered = [
            "0.9.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "1.10.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
            assert!(v(pair[1]) > v(pair[0]), "{} > {}", pair[1], pair[0]);
        }
        assert_eq!(v("1.2.3").cmp(&v("1.2.3")), Ordering::Equal);
        assert_eq!(Version::new(1, 2, 3), v("1.2.3"));
    }

    #[test]
    fn serializes_as_a_string() {
        let json = serde_json::to_string(&v("1.0.0-rc.1")).unwrap();
        assert_eq!(json, "\"1.0.0-rc.1\"");
        let back: Version = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v("1.0.0-rc.1"));
        assert!(serde_json::from_str::<Version>("\"1.0\"").is_err());
    }
}

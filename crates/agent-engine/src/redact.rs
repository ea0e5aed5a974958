//! Masks decrypted secret values in text orun writes: container log lines quoted in failure
//! reasons, Docker's error messages, health-check output, event reasons.
//!
//! The values come from the revision running now. Each is searched whole and, for a
//! multi-line value (a PEM key), line by line too, since logs are quoted a line at a time.
//! One Aho-Corasick automaton makes a search linear in the text, whatever the number of
//! values.

use aho_corasick::{AhoCorasick, MatchKind};
use manifest_model::Secret;

/// What replaces a secret value.
pub(crate) const MASK: &str = "***";

/// Values shorter than this are not searched for: masking every `1` or `yes` in a log would
/// destroy the message and hide nothing worth hiding. They are still never printed directly.
const MIN_MASKED_LEN: usize = 4;

/// The masking automaton of one revision's secret values.
#[derive(Default)]
pub(crate) struct Redactor(Option<AhoCorasick>);

/// The automaton's own `Debug` spells out its patterns: only their number is shown.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.as_ref().map_or(0, AhoCorasick::patterns_len);
        write!(f, "Redactor({n} values)")
    }
}

impl Redactor {
    /// A redactor for `values`.
    pub(crate) fn new<'a>(values: impl Iterator<Item = &'a Secret>) -> Self {
        let mut patterns: Vec<&str> = Vec::new();
        for v in values {
            let v = v.expose();
            patterns.push(v);
            if v.contains('\n') {
                patterns.extend(v.lines().map(str::trim));
            }
        }
        patterns.retain(|p| p.len() >= MIN_MASKED_LEN);
        if patterns.is_empty() {
            return Self(None);
        }
        // Leftmost-longest: a value that contains another is masked whole.
        Self(
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(patterns)
                .ok(),
        )
    }

    /// `text` with every secret value replaced by [`MASK`].
    pub(crate) fn mask(&self, text: &str) -> String {
        match &self.0 {
            Some(ac) => {
                let mut out = String::with_capacity(text.len());
                ac.replace_all_with(text, &mut out, |_, _, dst| {
                    dst.push_str(MASK);
                    true
                });
                out
            }
            None => text.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_masked_whole_and_line_by_line() {
        let secrets = [
            Secret::new("hunter2-canary"),
            Secret::new("hunter2"),
            Secret::new("-----BEGIN KEY-----\nAAAAsecretline\n-----END KEY-----"),
            Secret::new("no"),
        ];
        let r = Redactor::new(secrets.iter());
        assert_eq!(
            r.mask("DB=hunter2-canary and hunter2; key line: AAAAsecretline; no"),
            "DB=*** and ***; key line: ***; no"
        );
        assert_eq!(Redactor::default().mask("hunter2"), "hunter2");
        assert_eq!(format!("{r:?}"), "Redactor(6 values)");
    }
}

//! `.dockerignore` patterns, matched the way Docker's own client matches them.
//!
//! Docker's rules (moby/patternmatcher): one pattern per line, `#` starts a comment, a
//! leading `!` re-includes, a leading `/` is dropped, the last pattern that matches wins,
//! and a pattern that matches a folder excludes everything beneath it. `*` and `?` never
//! cross a `/`; `**` matches any number of folders, none included.
//!
//! The file comes from the repository, which anyone with push access writes: matching is a
//! table over (pattern position, path position), so one match costs the product of the two
//! lengths, never exponential; each path is matched once per pattern (a folder's matches
//! are handed down to what it holds), and patterns, their length and paths are capped.

/// At most this many patterns are read; more is refused (a real file has dozens).
pub(crate) const MAX_PATTERNS: usize = 1_000;
/// A pattern longer than this is refused.
pub(crate) const MAX_PATTERN_LEN: usize = 1_024;

/// One `.dockerignore` line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    glob: Vec<u8>,
    /// A `!` line: matching paths are sent after all.
    include: bool,
}

/// A parsed `.dockerignore`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Parses the file's text.
    ///
    /// # Errors
    /// A reason, when there are more than [`MAX_PATTERNS`] patterns or one is longer than
    /// [`MAX_PATTERN_LEN`].
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (include, raw) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if raw.len() > MAX_PATTERN_LEN {
                return Err(format!(
                    ".dockerignore line {}: a pattern longer than {MAX_PATTERN_LEN} bytes",
                    n + 1
                ));
            }
            let glob = clean(raw);
            if glob.is_empty() {
                continue;
            }
            patterns.push(Pattern {
                glob: glob.into_bytes(),
                include,
            });
            if patterns.len() > MAX_PATTERNS {
                return Err(format!(".dockerignore: more than {MAX_PATTERNS} patterns"));
            }
        }
        Ok(Self { patterns })
    }

    /// Which patterns match `path` (relative to the context, `/`-separated) or a folder it
    /// lies in, given `parent`: which matched its folder (all false at the top). The walk
    /// hands each folder's answer down, so every path is matched once, not once per
    /// folder above it.
    pub(crate) fn matches(&self, parent: &[bool], path: &str) -> Vec<bool> {
        self.patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                parent.get(i).copied().unwrap_or(false) || glob_match(&p.glob, path.as_bytes())
            })
            .collect()
    }

    /// Whether a path with these [`Ignore::matches`] is left out: Docker's rule, where the
    /// last pattern that can change the verdict and matches decides.
    pub(crate) fn excluded(&self, matched: &[bool]) -> bool {
        let mut excluded = false;
        for (p, m) in self.patterns.iter().zip(matched) {
            if p.include == excluded && *m {
                excluded = !p.include;
            }
        }
        excluded
    }

    /// Whether `path` is left out, matching its folders too: for tests.
    #[cfg(test)]
    fn excludes(&self, path: &str) -> bool {
        let mut matched = vec![false; self.patterns.len()];
        let mut prefix = String::new();
        for part in path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            matched = self.matches(&matched, &prefix);
        }
        self.excluded(&matched)
    }

    /// Whether some `!` pattern could re-include something beneath an excluded folder, in
    /// which case the folder must still be walked.
    pub(crate) fn has_includes(&self) -> bool {
        self.patterns.iter().any(|p| p.include)
    }
}

/// Docker's `filepath.Clean` of a pattern, with a leading `/` dropped: `./a//b/` is `a/b`.
fn clean(raw: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Whether `glob` matches all of `s`. Dynamic programming over suffixes: `ok[j]` says the
/// rest of the pattern from the current position matches `s[j..]`, computed from the end of
/// the pattern backwards, so the cost is `glob.len() × s.len()` whatever the pattern.
fn glob_match(glob: &[u8], s: &[u8]) -> bool {
    let tokens = tokenize(glob);
    let n = s.len();
    // After the last token only the empty rest matches.
    let mut next = vec![false; n + 1];
    next[n] = true;
    for token in tokens.iter().rev() {
        let mut cur = vec![false; n + 1];
        match token {
            Token::Lit(c) => {
                for j in 0..n {
                    cur[j] = s[j] == *c && next[j + 1];
                }
            }
            Token::Any => {
                for j in 0..n {
                    cur[j] = s[j] != b'/' && next[j + 1];
                }
            }
            Token::Class { negated, items } => {
                for j in 0..n {
                    let hit = items.iter().any(|&(lo, hi)| lo <= s[j] && s[j] <= hi);
                    cur[j] = s[j] != b'/' && hit != *negated && next[j + 1];
                }
            }
            Token::Star => {
                // `*` eats any run without a `/`: from the end backwards.
                cur[n] = next[n];
                for j in (0..n).rev() {
                    cur[j] = next[j] || (s[j] != b'/' && cur[j + 1]);
                }
            }
            Token::DoubleStar => {
                // `**` eats anything, `/` included.
                cur[n] = next[n];
                for j in (0..n).rev() {
                    cur[j] = next[j] || cur[j + 1];
                }
            }
            Token::DoubleStarSlash => {
                // `**/` eats nothing, or any run that ends with a `/`.
                let mut after_slash = false;
                cur[n] = next[n];
                for j in (0..n).rev() {
                    after_slash = after_slash || (s[j] == b'/' && next[j + 1]);
                    cur[j] = next[j] || after_slash;
                }
            }
        }
        next = cur;
    }
    next[0]
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Lit(u8),
    Any,
    Star,
    DoubleStar,
    DoubleStarSlash,
    Class { negated: bool, items: Vec<(u8, u8)> },
}

fn tokenize(glob: &[u8]) -> Vec<Token> {
    let mut out = Vec::with_capacity(glob.len());
    let mut i = 0;
    while i < glob.len() {
        match glob[i] {
            b'*' if glob.get(i + 1) == Some(&b'*') => {
                // Any run of stars beyond two means the same as two.
                let mut k = i + 2;
                while glob.get(k) == Some(&b'*') {
                    k += 1;
                }
                if glob.get(k) == Some(&b'/') {
                    out.push(Token::DoubleStarSlash);
                    k += 1;
                } else {
                    out.push(Token::DoubleStar);
                }
                i = k;
            }
            b'*' => {
                out.push(Token::Star);
                i += 1;
            }
            b'?' => {
                out.push(Token::Any);
                i += 1;
            }
            b'\\' if i + 1 < glob.len() => {
                out.push(Token::Lit(glob[i + 1]));
                i += 2;
            }
            b'[' => match class(&glob[i + 1..]) {
                Some((token, used)) => {
                    out.push(token);
                    i += 1 + used;
                }
                None => {
                    // An unclosed class matches itself literally.
                    out.push(Token::Lit(b'['));
                    i += 1;
                }
            },
            c => {
                out.push(Token::Lit(c));
                i += 1;
            }
        }
    }
    out
}

/// Parses a `[...]` class after its `[`; returns it and the bytes used, `]` included.
fn class(rest: &[u8]) -> Option<(Token, usize)> {
    let mut i = 0;
    let negated = matches!(rest.first(), Some(b'^' | b'!'));
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    while i < rest.len() {
        let c = rest[i];
        if c == b']' && !first {
            return Some((Token::Class { negated, items }, i + 1));
        }
        first = false;
        let lo = if c == b'\\' && i + 1 < rest.len() {
            i += 1;
            rest[i]
        } else {
            c
        };
        if rest.get(i + 1) == Some(&b'-') && rest.get(i + 2).is_some_and(|h| *h != b']') {
            items.push((lo, rest[i + 2]));
            i += 3;
        } else {
            items.push((lo, lo));
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn globs_follow_dockers_rules() {
        assert!(glob_match(b"*.md", b"README.md"));
        assert!(!glob_match(b"*.md", b"docs/README.md"));
        assert!(glob_match(b"**/*.md", b"docs/a/README.md"));
        assert!(glob_match(b"**/*.md", b"README.md"));
        assert!(glob_match(b"a/**", b"a/b/c"));
        assert!(glob_match(b"a/**/z", b"a/z"));
        assert!(glob_match(b"a/**/z", b"a/b/c/z"));
        assert!(!glob_match(b"a/**/z", b"a/bz"));
        assert!(glob_match(b"?.txt", b"a.txt"));
        assert!(!glob_match(b"?.txt", b"/.txt"));
        assert!(glob_match(b"[a-c]x", b"bx"));
        assert!(!glob_match(b"[^a-c]x", b"bx"));
        assert!(glob_match(b"\\*x", b"*x"));
        assert!(!glob_match(b"\\*x", b"ax"));
        assert!(glob_match(b"[x", b"[x"));
    }

    #[test]
    fn the_last_matching_line_wins_and_folders_take_their_contents() {
        let i = ig("# comment\n\nnode_modules\n*.log\n!keep.log\n/.git\ntarget/**\n");
        assert!(i.excludes("node_modules"));
        assert!(i.excludes("node_modules/a/b.js"));
        assert!(i.excludes("debug.log"));
        assert!(!i.excludes("keep.log"));
        assert!(!i.excludes("sub/debug.log"));
        assert!(i.excludes(".git/HEAD"));
        assert!(i.excludes("target/x"));
        assert!(!i.excludes("src/main.rs"));
        assert!(i.has_includes());
        assert!(!ig("a\n").has_includes());
        assert_eq!(ig("./a//b/\n"), ig("a/b"));
    }

    #[test]
    fn hostile_patterns_cost_the_product_of_lengths_and_are_capped() {
        // The classic exponential case for backtracking matchers.
        let glob = "*a".repeat(200) + "b";
        let s = "a".repeat(1_000);
        assert!(!glob_match(glob.as_bytes(), s.as_bytes()));
        assert!(Ignore::parse(&"x\n".repeat(MAX_PATTERNS + 1)).is_err());
        assert!(Ignore::parse(&"x".repeat(MAX_PATTERN_LEN + 1)).is_err());
    }
}

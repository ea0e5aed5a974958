//! Diagnostics: one problem in a revision, with file, line, column and field path.

use std::fmt;

use serde::Serialize;

/// How serious a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The revision is refused whole.
    Error,
    /// Worth a look; the revision is still accepted.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a revision.
///
/// # Guarantees
/// Neither the message nor the field quotes text from a manifest: values, keys, names and
/// scalars that failed to parse are described by their kind and located by line and column,
/// never echoed, so a secret pasted in the wrong place cannot reach a log through a
/// diagnostic (RELIABILITY A15). The exceptions: file names, which are shown escaped to a
/// single line without control characters ([`escape_file_name`]), and the two branch names
/// of a Node manifest naming another branch than the one its revision is of
/// ([`crate::tracking`]), each a valid branch name (no space or control character).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Diagnostic {
    /// Path of the file relative to the repository root, `/`-separated, escaped by
    /// [`escape_file_name`].
    pub file: String,
    /// 1-based line, or 0 when the problem concerns the whole file.
    pub line: u64,
    /// 1-based column, or 0 when unknown.
    pub column: u64,
    /// Error or warning.
    pub severity: Severity,
    /// Dotted field path (`spec.ports[0].port`), empty when the problem is not about one field.
    pub field: String,
    /// What is wrong, in lowercase without a trailing period.
    pub message: String,
}

impl Diagnostic {
    /// An error at a place in a file.
    pub fn error(file: &str, at: Pos, field: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, file, at, field, message)
    }

    /// A warning at a place in a file.
    pub fn warning(file: &str, at: Pos, field: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, file, at, field, message)
    }

    fn new(
        severity: Severity,
        file: &str,
        at: Pos,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: escape_file_name(file),
            line: at.line,
            column: at.column,
            severity,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// Whether this diagnostic refuses the revision.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Renders as `file:line:col: severity: field: message`, the shape editors and CI annotate.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: ",
            self.file, self.line, self.column, self.severity
        )?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// A position in a file: 1-based line and column, `Pos::FILE` for the whole file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
}

impl Pos {
    /// The whole file rather than a place in it.
    pub const FILE: Pos = Pos { line: 0, column: 0 };

    /// A known place.
    pub const fn new(line: u64, column: u64) -> Self {
        Self { line, column }
    }
}

/// Sorts diagnostics into a stable order: by file, then position, errors before warnings.
pub(crate) fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.severity, &a.field, &a.message)
            .cmp(&(&b.file, b.line, b.column, b.severity, &b.field, &b.message))
    });
}

/// How a field path names a mapping key the author chose (an env name, a label key, an `x-`
/// template): keys are where a pasted `NAME=value` ends up, so they are never echoed; the
/// line and column point at the key instead.
pub(crate) const KEY: &str = "<key>";

/// The longest file name a diagnostic shows, in characters.
const MAX_FILE_CHARS: usize = 200;

/// A file name as diagnostics show it: one line, no control characters, bounded.
///
/// File names are the one piece of repository text a diagnostic quotes, so they are made
/// unable to forge output: control characters (newlines, escape sequences), Unicode line and
/// paragraph separators and bidirectional overrides are written as `\u{..}` escapes, and a
/// backslash as `\\`, so the shown name is unambiguous. Names longer than 200 characters
/// are cut with `…`.
pub fn escape_file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_FILE_CHARS * 4));
    for (n, c) in name.chars().enumerate() {
        if n == MAX_FILE_CHARS {
            out.push('…');
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            c if is_unsafe_char(c) => {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// Characters that could change how a line of output reads: controls, line and paragraph
/// separators, and the bidirectional formatting characters (trojan-source).
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Diagnostics as the loader collects them: at most `cap` are kept, the rest only counted,
/// so a repository that is wrong a million times costs memory for `cap` of them.
#[derive(Debug)]
pub(crate) struct Diags {
    kept: Vec<Diagnostic>,
    cap: usize,
    errors: usize,
    omitted: Omitted,
}

/// What a capped [`crate::Report`] left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Omitted {
    /// Errors found but not kept.
    pub errors: usize,
    /// Warnings found but not kept.
    pub warnings: usize,
    /// Manifest files never read: the loader stops once it has kept its cap of diagnostics
    /// and at least one is an error, since the revision is refused whatever the rest says.
    pub unchecked_files: usize,
}

impl Omitted {
    /// Whether anything was left out.
    pub fn is_empty(&self) -> bool {
        *self == Omitted::default()
    }
}

/// What a capped report left out, in one line (empty when nothing was).
impl fmt::Display for Omitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return Ok(());
        }
        let mut parts = Vec::new();
        if self.errors + self.warnings > 0 {
            parts.push(format!(
                "{} more error(s) and {} more warning(s) not shown",
                self.errors, self.warnings
            ));
        }
        if self.unchecked_files > 0 {
            parts.push(format!(
                "{} file(s) not checked: the revision is refused whatever they say",
                self.unchecked_files
            ));
        }
        write!(f, "… {}", parts.join("; "))
    }
}

impl Diags {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            kept: Vec::new(),
            cap,
            errors: 0,
            omitted: Omitted::default(),
        }
    }

    pub(crate) fn push(&mut self, d: Diagnostic) {
        if d.is_error() {
            self.errors += 1;
        }
        if self.kept.len() < self.cap {
            self.kept.push(d);
        } else if d.is_error() {
            self.omitted.errors += 1;
        } else {
            self.omitted.warnings += 1;
        }
    }

    /// Errors found so far, kept or not.
    pub(crate) fn errors(&self) -> usize {
        self.errors
    }

    /// Whether the cap is reached with an error among what was found: reading on cannot
    /// change the verdict, only the count of what is not shown.
    pub(crate) fn full_of_errors(&self) -> bool {
        self.kept.len() >= self.cap && self.errors > 0
    }

    pub(crate) fn skip_files(&mut self, n: usize) {
        self.omitted.unchecked_files += n;
    }

    pub(crate) fn finish(mut self) -> (Vec<Diagnostic>, Omitted) {
        sort(&mut self.kept);
        (self.kept, self.omitted)
    }
}

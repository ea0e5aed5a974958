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
/// The message never quotes a value from the input that could be a secret: env values, secret
/// values and scalars that failed to parse are described by their kind, never echoed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Diagnostic {
    /// Path of the file relative to the repository root, `/`-separated.
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
            file: file.to_owned(),
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

/// A mapping key as diagnostics show it: cut at the first `=` (a key holding `=` is invalid
/// and is usually a pasted `NAME=value`, whose value must not be echoed) and at 64 characters.
pub(crate) fn shown_key(k: &str) -> String {
    let k = k.split('=').next().unwrap_or("");
    if k.chars().count() > 64 {
        format!("{}…", k.chars().take(64).collect::<String>())
    } else {
        k.to_owned()
    }
}

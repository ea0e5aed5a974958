//! The crate's one error type.

use crate::diag::Diagnostic;

/// Everything that can go wrong in `manifest-model`.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The revision has at least one error diagnostic and was refused whole.
    #[error("revision refused: {} error(s), first: {}", count_errors(.diagnostics), first_error(.diagnostics))]
    Invalid {
        /// Every diagnostic found, errors and warnings, in stable order.
        diagnostics: Vec<Diagnostic>,
    },
    /// Reading the repository failed outside any one manifest (e.g. the root is unreadable).
    #[error("cannot read repository at {path}")]
    Source {
        /// The path that could not be read.
        path: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The node asked for is not declared in `nodes/`.
    #[error("node `{0}` is not declared in nodes/")]
    UnknownNode(String),
    /// A value did not parse (an image reference, a duration, a branch name, ...).
    #[error("invalid {what}: {reason}")]
    InvalidValue {
        /// What kind of value it was.
        what: &'static str,
        /// Why it was refused; never contains secret input.
        reason: String,
    },
}

fn count_errors(diagnostics: &[Diagnostic]) -> usize {
    diagnostics.iter().filter(|d| d.is_error()).count()
}

fn first_error(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .find(|d| d.is_error())
        .map_or_else(|| "none".to_owned(), ToString::to_string)
}

impl ModelError {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        ModelError::InvalidValue {
            what,
            reason: reason.into(),
        }
    }
}

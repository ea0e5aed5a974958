//! The crate's one error type.

use crate::diag::{Diagnostic, Omitted};

/// Everything that can go wrong in `manifest-model`.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The revision has at least one error diagnostic and was refused whole.
    #[error("revision refused: {} error(s), first: {}", count_errors(.diagnostics) + .omitted.errors, first_error(.diagnostics))]
    Invalid {
        /// The diagnostics kept (at most `Limits::max_diagnostics`), errors and warnings, in
        /// stable order.
        diagnostics: Vec<Diagnostic>,
        /// What was found beyond the cap, or not read.
        omitted: Omitted,
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
    /// The node policy file (`--policy`) was refused: every problem, with line and field.
    #[error("the node policy is refused:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Policy(Vec<Diagnostic>),
    /// The node asked for is not declared in `nodes/`.
    #[error("node `{0}` is not declared in nodes/")]
    UnknownNode(String),
    /// A value did not parse (an image reference, a duration, a branch name, ...).
    #[error("invalid {what}: {reason}")]
    InvalidValue {
        /// What kind of value it was.
        what: &'static str,
        /// Why it was refused; never quotes the value.
        reason: String,
    },
    /// The revision is valid, but not for this node: a Service's domain does not fit this
    /// node's environment, say.
    #[error("{}", .diagnostics.first().map_or_else(String::new, ToString::to_string))]
    Unfit {
        /// Where and why, each naming a file, line and field.
        diagnostics: Vec<Diagnostic>,
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

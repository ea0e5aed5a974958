//! The one door through which YAML enters: parser options, budgets and error mapping.
//!
//! Every manifest is parsed here with the same budgets (RELIABILITY A2–A4), duplicate keys as
//! errors (A6) and strict booleans (A9). Parser errors become [`Diagnostic`]s whose messages
//! are written by us from the error's kind, so no input value is ever echoed (A15).

use serde::de::DeserializeOwned;
use serde_saphyr::{DuplicateKeyPolicy, Error, Location, Options};

use crate::diag::{Diagnostic, Pos, shown_key};

/// Deepest nesting a manifest may use; real manifests need fewer than 10 levels.
pub(crate) const MAX_DEPTH: usize = 64;
/// Alias uses per file; compose-style templates use tens (A3), bombs need millions (A2).
pub(crate) const MAX_ALIASES: usize = 1_000;
/// Events replayed through aliases per file: bounds the memory an alias bomb can claim.
pub(crate) const MAX_REPLAYED_EVENTS: usize = 100_000;

fn options() -> Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_documents: 1,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_REPLAYED_EVENTS,
            max_replay_stack_depth: 16,
            max_alias_expansions_per_anchor: MAX_ALIASES,
        },
        duplicate_keys: DuplicateKeyPolicy::Error,
        strict_booleans: true,
        legacy_octal_numbers: false,
        with_snippet: false,
    }
}

/// Parses one YAML document into `T`, or says where and why it could not.
///
/// Tracking the field path costs about a third of the parse, and only a failure needs it: a
/// file is parsed plainly first and again with tracking only when it fails. Parsing is
/// deterministic, so the second run fails at the same place.
pub(crate) fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, Diagnostic> {
    if let Ok(value) = serde_saphyr::from_str_with_options(text, options()) {
        return Ok(value);
    }
    let mut path = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(field_path(e.path()));
            e.into_inner()
        })
    });
    result.map_err(|e| to_diagnostic(file, path.unwrap_or_default(), &e))
}

/// The position of a parsed value, as the loader reports it.
pub(crate) fn pos(loc: &Location) -> Pos {
    Pos::new(loc.line(), loc.column())
}

/// Renders serde_path_to_error's path in our `spec.ports[0].port` form.
///
/// `Spanned` wrappers add a `value` segment and unknown positions a `?`; both are noise to a
/// user, so they are dropped. (An env key literally named `value` loses its last segment.)
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if key == "value" {
                    continue;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&shown_key(key));
            }
            Segment::Unknown => {}
        }
    }
    out
}

fn to_diagnostic(file: &str, mut field: String, err: &Error) -> Diagnostic {
    let mut err = err.without_snippet();
    // Alias errors wrap the real one; report it at the use site.
    let at = err.location().map(|l| pos(&l)).unwrap_or(Pos::FILE);
    while let Error::AliasError { error, .. } = err {
        err = error.without_snippet();
    }
    let message = match err {
        Error::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | Error::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => {
            format!("expected {expected}, found {}", kind_of(unexpected))
        }
        Error::SerdeUnknownField {
            field: name,
            expected,
            ..
        } => {
            if expected.is_empty() {
                format!("unknown field `{name}`: no fields are allowed here")
            } else {
                format!(
                    "unknown field `{name}`, expected one of: {}",
                    expected.join(", ")
                )
            }
        }
        Error::SerdeUnknownVariant { expected, .. } => {
            format!("unknown value, expected one of: {}", expected.join(", "))
        }
        Error::InvalidScalar { ty, .. } => format!("expected {}", friendly_type(ty)),
        Error::SerdeMissingField { field: name, .. } => format!("missing required field `{name}`"),
        Error::DuplicateMappingKey { key, .. } => match key {
            Some(k) => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(k);
                format!(
                    "duplicate key `{}`: a key may appear only once",
                    shown_key(k)
                )
            }
            None => "duplicate key: a key may appear only once".to_owned(),
        },
        Error::NullIntoString { .. } => {
            "value is empty (null); quote it (\"\") if an empty string is meant".to_owned()
        }
        Error::InvalidBooleanStrict { .. } => "expected `true` or `false`".to_owned(),
        Error::NonFiniteFloat { .. } => "expected a finite number".to_owned(),
        Error::QuotingRequired { .. } => "value must be quoted".to_owned(),
        Error::Eof { .. } => "unexpected end of file".to_owned(),
        Error::MultipleDocuments { .. } => {
            "more than one YAML document: a manifest file holds exactly one".to_owned()
        }
        Error::Budget { breach, .. } => budget_message(&format!("{breach:?}")),
        Error::AliasReplayLimitExceeded { .. }
        | Error::AliasExpansionLimitExceeded { .. }
        | Error::AliasReplayStackDepthExceeded { .. }
        | Error::AliasReplayCounterOverflow { .. } => {
            "aliases expand too far: the document exceeds the alias budget".to_owned()
        }
        other => plain_words(&strip_location(&other.to_string())),
    };
    // A path through thousands of nested levels helps nobody; its start locates the problem.
    if field.chars().count() > 96 {
        field = field.chars().take(96).collect::<String>() + "…";
    }
    Diagnostic::error(file, at, &field, lowercase_first(message))
}

/// Says which parser budget a document broke, in the author's terms.
fn budget_message(breach: &str) -> String {
    let kind = breach.split([' ', '{']).next().unwrap_or("");
    match kind {
        "Depth" => format!("nesting is deeper than {MAX_DEPTH} levels"),
        "Documents" => "more than one YAML document: a manifest file holds exactly one".to_owned(),
        "Aliases" | "Anchors" | "AliasAnchorRatio" => {
            "aliases expand too far: the document exceeds the alias budget".to_owned()
        }
        _ => "the document is too large for the parser's limits".to_owned(),
    }
}

/// Rewords the parser's structural messages for manifest authors.
fn plain_words(msg: &str) -> String {
    match msg {
        "expected sequence start" => "expected a list (`- item` lines)".to_owned(),
        "expected mapping start" => "expected a mapping (`key: value` lines)".to_owned(),
        "expected string scalar" => "expected a string".to_owned(),
        "recursion limit exceeded" => format!("nesting is deeper than {MAX_DEPTH} levels"),
        other => other.to_owned(),
    }
}

/// Names a Rust scalar type the way a manifest author thinks of it.
fn friendly_type(ty: &str) -> &'static str {
    match ty {
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" => {
            "a whole number"
        }
        "f32" | "f64" => "a number",
        "bool" => "`true` or `false`",
        "char" => "a single character",
        _ => "a different kind of value",
    }
}

/// The kind of an unexpected value (`string`, `integer`, `map`), never the value itself.
fn kind_of(unexpected: &str) -> &str {
    let end = unexpected
        .find(['"', '`', '\''])
        .unwrap_or(unexpected.len());
    let kind = unexpected[..end].trim();
    if kind.is_empty() {
        "another value"
    } else {
        kind
    }
}

/// Drops saphyr's ` at line N, column M` suffix: the diagnostic carries the position.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

fn lowercase_first(msg: String) -> String {
    let mut chars = msg.chars();
    match chars.next() {
        Some(c) if c.is_uppercase() => c.to_lowercase().chain(chars).collect(),
        _ => msg,
    }
}

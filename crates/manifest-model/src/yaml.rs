//! The one door through which YAML enters: parser options, budgets and error mapping.
//!
//! Every manifest is parsed here with the same budgets (RELIABILITY A2–A4), duplicate keys as
//! errors (A6) and strict booleans (A9: a YAML 1.1 word such as `yes` is never a boolean by
//! itself; a boolean field reads it as Orcra Run did, see `raw::Flag`). Parser errors become
//! [`Diagnostic`]s whose messages are written by us from the error's kind, so no input value
//! is ever echoed (A15).

use serde::de::DeserializeOwned;
use serde_saphyr::{DuplicateKeyPolicy, Error, Location, Options};

use crate::diag::{Diagnostic, KEY, Pos};

/// Deepest nesting a manifest may use; real manifests need fewer than 10 levels.
pub(crate) const MAX_DEPTH: usize = 64;
/// Alias uses per file; compose-style templates use tens (A3), bombs need millions (A2).
pub(crate) const MAX_ALIASES: usize = 1_000;
/// Events replayed through aliases per file, at most: bounds the memory an alias bomb can
/// claim. Smaller files get less (see [`replay_budget`]).
pub(crate) const MAX_REPLAYED_EVENTS: usize = 100_000;

/// Events aliases may replay in a file of `len` bytes: 256 plus one per four bytes, at most
/// [`MAX_REPLAYED_EVENTS`].
///
/// An alias costs a few bytes to write and replays its anchor's every event, so without a
/// budget tied to size a 3 KB file could cost the parser as much as 100 KB of plain YAML,
/// and twenty thousand such files minutes (RELIABILITY A2). A replayed event costs the
/// parser about as much as a few bytes of plain YAML, so one per four bytes keeps the work
/// linear in the bytes of the revision, within a small factor of parsing it plainly
/// (docs/BENCHMARKS.md), while templates (tens of aliases of a few-line anchor, which
/// replay far fewer events than their file has bytes) stay inside it (A3).
pub fn replay_budget(len: usize) -> usize {
    (len / 4).saturating_add(256).min(MAX_REPLAYED_EVENTS)
}

/// Bytes of scalar text aliases may copy in a file of `len` bytes: 4 096 plus four per byte.
///
/// The replay budget counts events, and one event may be a long scalar: a 1 MB string
/// anchored once and aliased a thousand times is a thousand events and a gigabyte of copies.
/// This second budget weighs what aliases copy, so memory stays within a small multiple of
/// the file whatever it aliases (RELIABILITY A2).
pub fn copy_budget(len: usize) -> usize {
    len.saturating_mul(4).saturating_add(4_096)
}

/// Weighs, without building anything, the scalar bytes every alias in `text` would copy
/// (its anchor's scalars, and what the aliases inside that anchor copy in turn), and says
/// where the total first passes `budget`.
///
/// A text without `*` has no alias and is not scanned. A text the event parser refuses is
/// left to the real parse, which reports the error with its own words.
fn alias_weight_within(text: &str, budget: usize) -> Result<(), Pos> {
    use granit_parser::{Event, Parser};
    if !text.contains('*') {
        return Ok(());
    }
    // Per anchor, the bytes one use copies; per open collection, its anchor and weight so
    // far, added to its parent when it closes.
    let mut weights: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut copied = 0usize;
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else {
            return Ok(());
        };
        // Every node costs at least a little, so an anchor of empty strings still weighs.
        let weight = match event {
            Event::Scalar(value, _, anchor, _) => {
                let w = value.len() + 1;
                if anchor != 0 {
                    weights.insert(anchor, w);
                }
                w
            }
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                open.push((anchor, 1));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some((anchor, w)) = open.pop() else {
                    continue;
                };
                if anchor != 0 {
                    weights.insert(anchor, w);
                }
                w
            }
            Event::Alias(anchor) => {
                let w = weights.get(&anchor).copied().unwrap_or(1);
                copied = copied.saturating_add(w);
                if copied > budget {
                    let at = span.start;
                    return Err(Pos::new(at.line() as u64, at.col() as u64 + 1));
                }
                w
            }
            _ => continue,
        };
        if let Some(top) = open.last_mut() {
            top.1 = top.1.saturating_add(weight);
        }
    }
    Ok(())
}

fn options(len: usize) -> Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_documents: 1,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: replay_budget(len),
            max_replay_stack_depth: 16,
            max_alias_expansions_per_anchor: MAX_ALIASES,
        },
        duplicate_keys: DuplicateKeyPolicy::Error,
        strict_booleans: true,
        legacy_octal_numbers: false,
        with_snippet: false,
    }
}

/// A parsed document, and a warning about the text around it, if any.
pub(crate) struct Parsed<T> {
    pub value: T,
    /// Said of empty documents after the manifest (a trailing `---`), which are ignored.
    pub warning: Option<Diagnostic>,
}

/// Parses one YAML document into `T`, or says where and why it could not.
///
/// Empty documents after the first (a trailing `---`, or `---` followed by comments only) are
/// ignored with a warning: Go's YAML decoder, which Orcra Run used, reads the first document
/// and drops the rest, and an empty one drops nothing. A second document with content is
/// still an error: dropping it silently would ignore a whole manifest.
///
/// Tracking the field path costs about a third of the parse, and only a failure needs it: a
/// file is parsed plainly first and again with tracking only when it fails for what it says
/// (not for breaking a budget: that file is built to make the parser work, and its path would
/// tell the author nothing new). Parsing is deterministic, so the second run fails at the
/// same place.
pub(crate) fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<Parsed<T>, Diagnostic> {
    match parse_one(file, text) {
        Ok(value) => Ok(Parsed {
            value,
            warning: None,
        }),
        Err((d, true)) => match empty_after_first(text) {
            Some((cut, at)) => parse_one(file, &text[..cut])
                .map(|value| Parsed {
                    value,
                    warning: Some(Diagnostic::warning(
                        file,
                        at,
                        "",
                        "empty YAML document after the manifest (a trailing `---`): ignored",
                    )),
                })
                .map_err(|(d, _)| d),
            None => Err(d),
        },
        Err((d, false)) => Err(d),
    }
}

/// Where the second document of `text` starts (a byte offset) when it and every later
/// document are empty: nothing, a null, or comments.
///
/// Only called once a parse failed for holding more than one document, so files that parse
/// are not scanned again.
fn empty_after_first(text: &str) -> Option<(usize, Pos)> {
    use granit_parser::{Event, Parser, ScalarStyle};
    let mut documents = 0usize;
    let mut second = None;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.ok()?;
        match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents == 2 {
                    let at = span.start;
                    second = Some((at.index(), Pos::new(at.line() as u64, at.col() as u64 + 1)));
                }
            }
            Event::Scalar(value, ScalarStyle::Plain, 0, None)
                if documents >= 2 && matches!(&*value, "" | "~" | "null" | "Null" | "NULL") => {}
            Event::DocumentEnd | Event::StreamStart | Event::StreamEnd => {}
            _ if documents >= 2 => return None,
            _ => {}
        }
    }
    let (chars, at) = second?;
    // The marker counts characters; the cut is a byte offset.
    let cut = text
        .char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i);
    Some((cut, at))
}

/// [`parse`] of exactly one document; the flag says a failure was for holding more.
fn parse_one<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, (Diagnostic, bool)> {
    if let Err(at) = alias_weight_within(text, copy_budget(text.len())) {
        return Err((
            Diagnostic::error(
                file,
                at,
                "",
                "aliases expand too far: the document exceeds the alias budget",
            ),
            false,
        ));
    }
    let first = match serde_saphyr::from_str_with_options(text, options(text.len())) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let more = is_more_documents(&first);
    if is_budget(&first) {
        return Err((to_diagnostic(file, String::new(), &first), more));
    }
    let mut path = None;
    let result =
        serde_saphyr::with_deserializer_from_str_with_options(text, options(text.len()), |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                path = Some(field_path(e.path()));
                e.into_inner()
            })
        });
    result.map_err(|e| (to_diagnostic(file, path.unwrap_or_default(), &e), more))
}

/// Whether a parse failed for holding more than one document.
fn is_more_documents(err: &Error) -> bool {
    let mut err = err;
    while let Error::WithSnippet { error, .. } = err {
        err = error;
    }
    match err {
        Error::MultipleDocuments { .. } => true,
        Error::Budget { breach, .. } => format!("{breach:?}").starts_with("Documents"),
        _ => false,
    }
}

/// The position of a parsed value, as the loader reports it.
pub(crate) fn pos(loc: &Location) -> Pos {
    Pos::new(loc.line(), loc.column())
}

/// Whether a parse failed for breaking a budget (depth, aliases), inside an alias or not.
fn is_budget(err: &Error) -> bool {
    let mut err = err;
    while let Error::AliasError { error, .. } | Error::WithSnippet { error, .. } = err {
        err = error;
    }
    matches!(
        err,
        Error::Budget { .. }
            | Error::AliasReplayLimitExceeded { .. }
            | Error::AliasExpansionLimitExceeded { .. }
            | Error::AliasReplayStackDepthExceeded { .. }
            | Error::AliasReplayCounterOverflow { .. }
    )
}

/// Every field name the manifest schema has: a path segment that is one of these is ours
/// and may be shown; any other is a key the author chose and shows as [`KEY`].
const SCHEMA_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "spec",
    "host",
    "user",
    "sshKeyPath",
    "gitRepo",
    "gitBranch",
    "pollInterval",
    "dataDir",
    "codeDir",
    "productionBranch",
    "labels",
    "image",
    "build",
    "ports",
    "volumes",
    "env",
    "health",
    "pull",
    "command",
    "args",
    "nodes",
    "nodeSelector",
    "restart",
    "resources",
    "rollout",
    "suspend",
    "context",
    "dockerfile",
    "buildMode",
    "containerPort",
    "port",
    "hostIP",
    "protocol",
    "hostPath",
    "containerPath",
    "readOnly",
    "readiness",
    "liveness",
    "http",
    "periodSeconds",
    "timeoutSeconds",
    "failureThreshold",
    "initialDelaySeconds",
    "memory",
    "cpus",
    "strategy",
    "minHealthySeconds",
    "healthyDeadlineSeconds",
    "drainSeconds",
    "deployment",
    "ingress",
    "domain",
    "ssl",
    "default",
    "environment",
    "sops",
    "age",
    "recipient",
    "enc",
    "lastmodified",
    "mac",
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "mac_only_encrypted",
    "secretRef",
    "offerSecrets",
];

/// A mapping key as a field path shows it: schema field names as they are, any other key
/// as [`KEY`] (never echoed: RELIABILITY A15).
pub(crate) fn shown_key(key: &str) -> &str {
    if SCHEMA_FIELDS.contains(&key) {
        key
    } else {
        KEY
    }
}

/// Renders serde_path_to_error's path in our `spec.ports[0].port` form.
///
/// `Spanned` wrappers add a `value` segment and unknown positions a `?`; both are noise to a
/// user, so they are dropped.
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
                out.push_str(shown_key(key));
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// The schema field closest to an unknown one, when it is close enough to be a misspelling
/// (`privilged` → `privileged`). Only names from our own list are ever shown.
fn suggestion<'a>(unknown: &str, expected: &[&'a str]) -> Option<&'a str> {
    // A long key is not a misspelling; bounding the length bounds the work.
    if unknown.len() > 64 {
        return None;
    }
    expected
        .iter()
        .map(|e| (edit_distance(unknown, e), *e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4) && *d < e.len())
        .min()
        .map(|(_, e)| e)
}

/// Levenshtein distance, case-insensitive.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
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
            // The unknown key itself is never shown: it is where a pasted secret lands.
            if expected.is_empty() {
                "unknown field: no fields are allowed here".to_owned()
            } else {
                let hint = suggestion(name, expected)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                format!(
                    "unknown field{hint}, expected one of: {}",
                    expected.join(", ")
                )
            }
        }
        Error::SerdeUnknownVariant { expected, .. } => {
            format!("unknown value, expected one of: {}", expected.join(", "))
        }
        Error::InvalidScalar { ty, .. } => format!("expected {}", friendly_type(ty)),
        Error::SerdeMissingField { field: name, .. } => format!("missing required field `{name}`"),
        Error::DuplicateMappingKey { key, .. } => {
            if let Some(k) = key {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(shown_key(k));
            }
            "duplicate key: a key may appear only once".to_owned()
        }
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
        Error::SerdeInvalidLength { .. } => "wrong number of items".to_owned(),
        Error::UnknownAnchor { .. } => "alias of an anchor that is not defined".to_owned(),
        Error::MergeKeyNotAllowed { .. } | Error::MergeValueNotMapOrSeqOfMaps { .. } => {
            "merge keys (`<<`) are not supported".to_owned()
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
///
/// Only messages the parser writes from its own fixed text pass through (its scanner's
/// `while parsing a block mapping, …` family, which quote YAML's own indicators, never the
/// input); anything else could carry input text, and becomes a plain "not valid YAML".
fn plain_words(msg: &str) -> String {
    const FIXED: &[&str] = &[
        "while parsing",
        "while scanning",
        "did not find expected",
        "mapping values are not allowed",
        "mapping keys are not allowed",
        "block sequence entries are not allowed",
        "invalid indentation",
        "invalid trailing content",
        "invalid content after document end",
        "unknown anchor",
        "invalid utf-8",
        "invalid encoding",
        "the handle wasn't declared",
        // Our own, from `raw::Entries` and `raw::Flag`.
        "duplicate key: a key may appear only once",
        crate::raw::QUOTED_BOOLEAN,
    ];
    match msg {
        "expected sequence start" => "expected a list (`- item` lines)".to_owned(),
        "expected mapping start" => "expected a mapping (`key: value` lines)".to_owned(),
        "expected string scalar" => "expected a string".to_owned(),
        "recursion limit exceeded" => format!("nesting is deeper than {MAX_DEPTH} levels"),
        other
            if FIXED.iter().any(|f| other.starts_with(f))
                && other.len() <= 120
                && !other.contains(['"', '`']) =>
        {
            other.to_owned()
        }
        _ => "not valid YAML here".to_owned(),
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

/// The kind of an unexpected value (`string`, `integer`, `map`), never the value itself:
/// only the kinds serde names are passed through.
fn kind_of(unexpected: &str) -> &'static str {
    const KINDS: &[&str] = &[
        "boolean",
        "integer",
        "floating point",
        "character",
        "string",
        "byte array",
        "unit value",
        "null",
        "Option value",
        "newtype struct",
        "sequence",
        "map",
        "enum",
        "unit variant",
        "newtype variant",
        "tuple variant",
        "struct variant",
    ];
    KINDS
        .iter()
        .copied()
        .filter(|k| unexpected.starts_with(k))
        .max_by_key(|k| k.len())
        .unwrap_or("another value")
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

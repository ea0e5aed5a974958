//! Rendering the model back to manifest YAML.
//!
//! Used by the round-trip property test (render → parse gives the same revision) and by
//! tools that will write manifests (a future `orun bootstrap`). Output is block-style YAML
//! with every field the model holds, defaults included, and strings quoted wherever a plain
//! scalar could be misread.

use serde::Serialize;
use serde_json::Value;

use crate::model::{API_VERSION, Revision};

/// Renders one manifest file.
pub fn render_file(kind: &str, name: &str, spec: &impl Serialize) -> String {
    let spec = serde_json::to_value(spec).unwrap_or(Value::Null);
    let doc = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": { "name": name },
        "spec": spec,
    });
    let mut out = String::new();
    emit_map_body(&doc, 0, &mut out);
    out
}

/// Renders every file of a revision as `(path, text)`, secrets excepted.
pub fn render_revision(rev: &Revision) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for n in rev.nodes.values() {
        out.push((
            format!("nodes/{}.yaml", n.name),
            render_file("Node", &n.name, &n.spec),
        ));
    }
    for d in rev.deployments.values() {
        out.push((
            format!("deployments/{}.yaml", d.name),
            render_file("Deployment", &d.name, &d.spec),
        ));
    }
    for s in rev.services.values() {
        out.push((
            format!("services/{}.yaml", s.name),
            render_file("Service", &s.name, &s.spec),
        ));
    }
    out
}

fn emit_map_body(v: &Value, indent: usize, out: &mut String) {
    let Value::Object(map) = v else { return };
    let mut first = true;
    for (k, v) in map {
        if v.is_null() {
            continue;
        }
        // The first key of a map inside a sequence item shares the `- ` line.
        if !(first && out.ends_with("- ")) {
            push_indent(out, indent);
        }
        first = false;
        out.push_str(&scalar_str(k));
        out.push(':');
        emit_value(v, indent, out);
    }
    if first {
        out.push_str("{}\n");
    }
}

fn emit_value(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if m.is_empty() => out.push_str(" {}\n"),
        Value::Array(a) if a.is_empty() => out.push_str(" []\n"),
        Value::Object(_) => {
            out.push('\n');
            emit_map_body(v, indent + 2, out);
        }
        Value::Array(items) => {
            out.push('\n');
            for item in items {
                push_indent(out, indent + 2);
                out.push_str("- ");
                match item {
                    Value::Object(m) if !m.is_empty() => emit_map_body(item, indent + 4, out),
                    Value::Array(_) => {
                        // Nested sequences do not occur in manifests; flow style keeps it valid.
                        out.push_str(&serde_json::to_string(item).unwrap_or_default());
                        out.push('\n');
                    }
                    _ => {
                        out.push_str(&scalar(item));
                        out.push('\n');
                    }
                }
            }
        }
        _ => {
            out.push(' ');
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

fn push_indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => scalar_str(s),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        other => other.to_string(),
    }
}

/// A string as a YAML scalar: plain when unambiguous, else double-quoted with JSON escapes
/// (a JSON string is a valid YAML double-quoted scalar).
fn scalar_str(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./@-:".contains(c))
        && !s.ends_with(':')
        && !s.contains("::")
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain_ok {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

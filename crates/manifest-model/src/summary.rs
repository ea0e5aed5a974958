//! A load's report for people and for machines: what `orun validate` prints.

use serde_json::json;

use crate::{DesiredNode, Diagnostic, ImageSource, ModelError, Report, Severity};

/// What resolving one node gave.
pub type Resolved = Result<DesiredNode, ModelError>;

/// `orun validate`'s text: every diagnostic (in colour when `colour`), the verdict, and the
/// node's containers and services when one was resolved.
pub fn text(report: &Report, resolved: Option<&Resolved>, colour: bool) -> String {
    let mut lines: Vec<String> = report
        .diagnostics
        .iter()
        .map(|d| paint(d, colour))
        .collect();
    if !report.omitted.is_empty() {
        lines.push(report.omitted.to_string());
    }
    let (errors, warnings) = (report.error_count(), report.warning_count());
    lines.push(match &report.revision {
        Some(_) if errors > 0 => format!(
            "not runnable: {errors} error(s) the agent would meet on the node, {warnings} warning(s)"
        ),
        Some(rev) => format!(
            "valid: {} node(s), {} deployment(s), {} service(s); {warnings} warning(s)",
            rev.nodes.len(),
            rev.deployments.len(),
            rev.services.len()
        ),
        None => format!(
            "invalid: {errors} error(s), {warnings} warning(s); the revision would be refused whole"
        ),
    });
    match resolved {
        Some(Ok(desired)) => {
            let env = &desired.environment;
            lines.push(format!(
                "node {}: branch {}, environment {}{}",
                desired.node.name,
                desired.branch,
                env.id,
                if env.production { " (production)" } else { "" }
            ));
            for c in &desired.containers {
                lines.push(format!(
                    "  container {:<30} {}",
                    c.container_name,
                    source_text(&c.spec.source)
                ));
            }
            for s in &desired.services {
                let domain = s
                    .domain
                    .as_deref()
                    .unwrap_or("(no domain in this environment)");
                lines.push(format!(
                    "  service   {:<30} {domain} -> {}:{}",
                    s.name, s.container_name, s.container_port
                ));
            }
        }
        Some(Err(ModelError::Unfit { diagnostics })) => {
            lines.push("error: the revision is valid, but not for this node:".to_owned());
            lines.extend(diagnostics.iter().map(|d| paint(d, colour)));
        }
        Some(Err(e)) => lines.push(format!("error: {e}")),
        None => {}
    }
    lines.join("\n") + "\n"
}

fn source_text(s: &ImageSource) -> String {
    match s {
        ImageSource::Image(i) => i.to_string(),
        ImageSource::Build(b) => format!("build {}", b.context),
    }
}

fn paint(d: &Diagnostic, colour: bool) -> String {
    if !colour {
        return d.to_string();
    }
    let code = match d.severity {
        Severity::Error => "31",
        Severity::Warning => "33",
    };
    let plain = d.to_string();
    let tag = format!(": {}: ", d.severity);
    plain.replacen(&tag, &format!(": \x1b[1;{code}m{}\x1b[0m: ", d.severity), 1)
}

/// `orun validate --format json`: diagnostics, counts and the resolved node, never env
/// values.
pub fn json(report: &Report, resolved: Option<&Resolved>, ok: bool) -> serde_json::Value {
    let node = resolved.map(|r| match r {
        Ok(d) => json!({
            "name": d.node.name,
            "branch": d.branch,
            "environment": d.environment,
            "containers": d.containers.iter().map(|c| json!({
                "deployment": c.deployment,
                "container": c.container_name,
                "image": source_text(&c.spec.source),
            })).collect::<Vec<_>>(),
            "services": d.services.iter().map(|s| json!({
                "name": s.name,
                "domain": s.domain,
                "container": s.container_name,
                "port": s.container_port,
                "ssl": s.ssl,
            })).collect::<Vec<_>>(),
        }),
        Err(ModelError::Unfit { diagnostics }) => json!({ "diagnostics": diagnostics }),
        Err(e) => json!({ "error": e.to_string() }),
    });
    let counts = report.revision.as_ref().map(|r| {
        json!({ "nodes": r.nodes.len(), "deployments": r.deployments.len(), "services": r.services.len() })
    });
    json!({
        "valid": ok,
        "diagnostics": report.diagnostics,
        "omitted": report.omitted,
        "errors": report.error_count(),
        "warnings": report.warning_count(),
        "counts": counts,
        "node": node,
    })
}

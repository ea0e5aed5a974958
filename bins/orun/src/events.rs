//! `orun events`: the agent's event history (what it did, to which deployment, from which
//! commit, why, and how it ended), oldest first.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// Arguments of `orun events`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The agent's status address.
    #[arg(long, env = "ORUN_STATUS_ADDR", default_value = "127.0.0.1:9100")]
    addr: SocketAddr,
    /// Only this deployment's events.
    #[arg(long)]
    deployment: Option<String>,
    /// How many of the newest events to show.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print the agent's `/events` JSON as it is.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(d) = &args.deployment
        && !d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        bail!("`{d}` is not a deployment name");
    }
    let events = fetch(args.addr, args.deployment.as_deref(), args.limit)?;
    if args.json {
        crate::emit(&(serde_json::to_string_pretty(&events)? + "\n"))?;
    } else if events.is_empty() {
        crate::emit("(no events)\n")?;
    } else {
        crate::emit(&render(&events))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The newest `limit` events from the agent at `addr`, oldest first.
pub(crate) fn fetch(
    addr: SocketAddr,
    deployment: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<Value>> {
    let mut path = format!("/events?limit={limit}");
    if let Some(d) = deployment {
        path.push_str(&format!("&deployment={d}"));
    }
    let answer = status_http::get(addr, &path, Duration::from_secs(5))?;
    if answer.code != 200 {
        bail!("the agent at {addr} answered {} to /events", answer.code);
    }
    let doc: Value =
        serde_json::from_str(&answer.body).context("the agent's /events is not JSON")?;
    Ok(doc["events"].as_array().cloned().unwrap_or_default())
}

/// One line per event: time, deployment, step, outcome, commit, reason.
pub(crate) fn render(events: &[Value]) -> String {
    let mut out = String::new();
    for e in events {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
        let commit: String = s("commit").chars().take(8).collect();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{}  {:<16} {:<9} {:<12} {:<8} {}",
            s("time"),
            s("deployment"),
            s("step"),
            s("outcome"),
            commit,
            s("reason")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_line_per_event() {
        let events: Vec<Value> = serde_json::from_str(
            r#"[{"seq":1,"time":"2026-11-22T10:00:00Z","commit":"fbf4cd18513e","deployment":"web",
                 "step":"replace","reason":"image changed","outcome":"started"},
                {"seq":2,"time":"2026-11-22T10:00:09Z","commit":"fbf4cd18513e","deployment":"web",
                 "step":"rollback","reason":"the new container exited with code 3","outcome":"rolled-back"}]"#,
        )
        .unwrap_or_default();
        expect_test::expect![[r#"
            2026-11-22T10:00:00Z  web              replace   started      fbf4cd18 image changed
            2026-11-22T10:00:09Z  web              rollback  rolled-back  fbf4cd18 the new container exited with code 3
        "#]]
        .assert_eq(&render(&events));
    }
}

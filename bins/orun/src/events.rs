//! `orun events`: the agent's event history (what it did, to which deployment, from which
//! commit, why, and how it ended), oldest first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use status_http::{BearerToken, Event, render_events};

/// Arguments of `orun events`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The agent's status address.
    #[arg(long, env = "ORUN_STATUS_ADDR", default_value = "127.0.0.1:9100")]
    addr: SocketAddr,
    /// A file holding the agent's status token, for an agent that listens beyond loopback.
    #[arg(long, env = "ORUN_STATUS_TOKEN_FILE", value_name = "PATH")]
    token_file: Option<PathBuf>,
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
    let token = load_token(args.token_file.as_deref())?;
    if args.json {
        // As the agent wrote it: fields a newer agent adds are kept.
        let body = get(
            args.addr,
            token.as_ref(),
            &path(args.deployment.as_deref(), args.limit),
        )?;
        let doc: serde_json::Value =
            serde_json::from_str(&body).context("the agent's /events is not JSON")?;
        crate::emit(&(serde_json::to_string_pretty(&doc["events"])? + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let events = fetch(
        args.addr,
        token.as_ref(),
        args.deployment.as_deref(),
        args.limit,
    )?;
    if events.is_empty() {
        crate::emit("(no events)\n")?;
    } else {
        crate::emit(&render_events(&events))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One page of `/events`.
#[derive(serde::Deserialize)]
struct Page {
    events: Vec<Event>,
}

fn path(deployment: Option<&str>, limit: usize) -> String {
    let mut path = format!("/events?limit={limit}");
    if let Some(d) = deployment {
        path.push_str(&format!("&deployment={d}"));
    }
    path
}

fn get(addr: SocketAddr, token: Option<&BearerToken>, path: &str) -> anyhow::Result<String> {
    let answer = status_http::get_authorized(addr, path, token, Duration::from_secs(5))?;
    if answer.code != 200 {
        bail!(
            "the agent at {addr} answered {} to /events{}",
            answer.code,
            token_hint(answer.code, token)
        );
    }
    Ok(answer.body)
}

/// The status token in `file`, when one is named (`--token-file`, `ORUN_STATUS_TOKEN_FILE`).
pub(crate) fn load_token(file: Option<&Path>) -> anyhow::Result<Option<BearerToken>> {
    Ok(file.map(BearerToken::load).transpose()?)
}

/// What to add to a refusal: a 401 means the agent wants a token, or another one.
pub(crate) fn token_hint(code: u16, token: Option<&BearerToken>) -> &'static str {
    match (code, token) {
        (401, None) => " (it wants a token: --token-file or ORUN_STATUS_TOKEN_FILE)",
        (401, Some(_)) => " (it does not take that token)",
        _ => "",
    }
}

/// The newest `limit` events from the agent at `addr`, oldest first, read as typed events.
pub(crate) fn fetch(
    addr: SocketAddr,
    token: Option<&BearerToken>,
    deployment: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<Event>> {
    let body = get(addr, token, &path(deployment, limit))?;
    let page: Page = serde_json::from_str(&body)
        .context("the agent's /events is not the history this orun reads")?;
    Ok(page.events)
}

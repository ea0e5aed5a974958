//! `orun status`: what the local agent says about its node and deployments, as a table or as
//! the agent's own JSON.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use status_http::Snapshot;

/// Arguments of `orun status`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The agent's status address.
    #[arg(long, env = "ORUN_STATUS_ADDR", default_value = "127.0.0.1:9100")]
    addr: SocketAddr,
    /// A file holding the agent's status token, for an agent that listens beyond loopback.
    #[arg(long, env = "ORUN_STATUS_TOKEN_FILE", value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Print the agent's `/status` JSON as it is.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(5);
    let token = crate::events::load_token(args.token_file.as_deref())?;
    let token = token.as_ref();
    let answer = status_http::get_authorized(args.addr, "/status", token, timeout)?;
    if answer.code != 200 {
        bail!(
            "the agent at {} answered {} to /status{}",
            args.addr,
            answer.code,
            crate::events::token_hint(answer.code, token)
        );
    }
    if args.json {
        let doc: Value =
            serde_json::from_str(&answer.body).context("the agent's /status is not JSON")?;
        crate::emit(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let snap: Snapshot = serde_json::from_str(&answer.body)
        .context("the agent's /status is not the status this orun reads")?;
    let ready = status_http::get_authorized(args.addr, "/readyz", token, timeout)
        .map(|a| a.code == 200)
        .unwrap_or(false);
    let mut out = status_http::render_text(&snap, ready);
    // The last few events say what just happened; `orun events` has the rest.
    if let Ok(events) = crate::events::fetch(args.addr, token, None, 5)
        && !events.is_empty()
    {
        out.push_str("\nrecent events (orun events for more):\n");
        out.push_str(&status_http::render_events(&events));
    }
    crate::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

//! `orun doctor`: the agent's settings, resolved as the agent resolves them, checked against
//! this node (node-setup's checks), printed one line each with a fix.

use std::process::ExitCode;

use node_setup::doctor::{DoctorInput, run_blocking};

/// Flags: the agent's own, so `orun doctor --config /etc/orun/agent.toml` checks exactly what
/// `orun start --config /etc/orun/agent.toml` would use.
#[derive(Debug, clap::Args)]
// clap names a flattened struct's argument group after the type: both are `Args`.
#[group(id = "doctor")]
pub(crate) struct Args {
    /// The systemd unit to ask about.
    #[arg(long, default_value = "orun.service")]
    unit: String,
    /// The user the agent runs as, who should own the data dir [default: the current user].
    #[arg(long)]
    service_user: Option<String>,
    #[command(flatten)]
    agent: agent_daemon::Args,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let cfg = agent_daemon::Config::resolve(args.agent, &cwd)?;
    let e = cfg.engine;
    let report = run_blocking(&DoctorInput {
        docker_host: e.docker_host,
        remote: e.remote,
        age_key: e.age_key,
        data_dir: e.data_dir,
        status_addr: cfg.status_addr,
        unit: Some(args.unit),
        min_free_bytes: 1 << 30,
        service_user: args.service_user,
    })?;
    crate::emit(&report.render())?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

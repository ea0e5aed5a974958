//! `orun doctor`: the agent's settings, resolved as the agent resolves them, checked against
//! this node (node-setup's checks), printed one line each with a fix.

use std::process::ExitCode;

use node_setup::doctor::{DoctorInput, run as check};

/// Flags: the agent's own, so `orun doctor --config /etc/orun/agent.toml` checks exactly what
/// `orun start --config /etc/orun/agent.toml` would use.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The systemd unit to ask about [default: orun.service].
    #[arg(long, default_value = "orun.service")]
    unit: String,
    /// The user the agent runs as, who should own the data dir [default: the current user].
    #[arg(long)]
    service_user: Option<String>,
    #[command(flatten)]
    agent: agent_daemon::Args,
}

/// Free space below which the data dir gets a warning.
const MIN_FREE: u64 = 1 << 30;

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let cfg = agent_daemon::Config::resolve(args.agent, &cwd)?;
    let input = DoctorInput {
        docker_host: cfg.engine.docker_host.clone(),
        remote: cfg.engine.remote.clone(),
        age_key: cfg.engine.age_key.clone(),
        data_dir: cfg.engine.data_dir.clone(),
        status_addr: cfg.status_addr,
        unit: Some(args.unit),
        min_free_bytes: MIN_FREE,
        service_user: args.service_user,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(check(&input));
    crate::emit(&report.render())?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

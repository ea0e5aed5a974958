//! The `orun` command line: validate manifests, preview plans and show what the local agent
//! reports.
//!
//! A thin shell over the library crates: parse arguments, call them, print, pick an exit code
//! (0 ok, 1 error).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a CLI prints its results"
)]

mod doctor;
mod events;
mod plan;
mod status;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// orun: pull-based GitOps for Docker hosts.
#[derive(Debug, Parser)]
#[command(name = "orun", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a manifest repository; exit 0 when it is valid (warnings allowed), 1 when not.
    Validate(validate::Args),
    /// Show what the agent would change on a node, without changing anything.
    Plan(plan::Args),
    /// Show the local agent's node and deployments (from its status API).
    Status(status::Args),
    /// Show the agent's event history: what it did, why, and how it ended.
    Events(events::Args),
    /// Run the agent on this node, in this process (Orcra Run's `orun start`; the same engine
    /// and flags as `orun-agent`, with `--status-port` and `--age-key-path`).
    Start(Box<agent_daemon::Args>),
    /// Check what the agent needs on this node (Docker, the Git remote and its keys, the age
    /// key, the data dir, the status port, the unit), each problem with a fix; exit 1 when a
    /// check fails. Takes the agent's own flags or `--config`.
    Doctor(Box<doctor::Args>),
    /// Install the agent on a node over SSH from `nodes/<name>.yaml` (run at the repository's
    /// root): binary, config, keys and a systemd unit running `orun start`; then wait until it
    /// converges. Idempotent; `--dry-run` prints the steps, `--check` runs doctor on the node.
    Bootstrap(Box<node_setup::bootstrap::Args>),
    /// Every node of the repository in one table, each read through an SSH tunnel to its
    /// status API: commit applied vs branch head, converged, failing deployments, last sync,
    /// agent version. Exit 1 when a node is not converged on its branch head.
    Fleet(Box<node_setup::fleet::Args>),
    /// Print the version.
    Version,
}

/// Writes a command's output; a reader that went away (`orun validate | head`) is not an error.
fn emit(out: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Events(args) => events::run(&args),
        Command::Start(args) => return agent_daemon::main(*args, "orun"),
        Command::Doctor(args) => doctor::run(*args),
        Command::Bootstrap(args) => node_setup::bootstrap::run(&args, &mut std::io::stdout())
            .map(|ok| ExitCode::from(u8::from(!ok)))
            .map_err(Into::into),
        Command::Fleet(args) => node_setup::fleet::run(&args, &mut std::io::stdout())
            .map(|ok| ExitCode::from(u8::from(!ok)))
            .map_err(Into::into),
        Command::Version => {
            emit(&format!("orun {}\n", env!("CARGO_PKG_VERSION"))).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("orun: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// clap's own checks of every subcommand (unique argument and group names, …), which it
    /// otherwise runs only in debug builds and only for the subcommand given.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}

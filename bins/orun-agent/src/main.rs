//! The orun node agent: converges this Docker host to the Git branch it tracks.
//!
//! A thin binary over `agent-daemon`, which reads the settings, sets up logging, handles
//! signals and systemd, serves the status API and runs the engine (docs/ARCHITECTURE.md).
//! Exit codes: 0 after a clean shutdown (or, with `--once`, converged), 1 otherwise.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    agent_daemon::main(agent_daemon::Args::parse(), "orun-agent")
}

//! The orun node agent: converges this Docker host to the Git branch it tracks.
//!
//! A thin binary over `agent-engine`: it reads the settings ([`config`]), sets up logging,
//! turns signals into a shutdown, serves the status API and runs the engine.
//! Exit codes: 0 after a clean shutdown (or, with `--once`, converged), 1 otherwise.

mod config;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::Parser as _;
use status_http::{Limits, Snapshot, Status};
use tokio::sync::Notify;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{Args, Config, LogFormat};

fn main() -> ExitCode {
    let args = Args::parse();
    let cwd = std::env::current_dir().unwrap_or_default();
    let cfg = match Config::resolve(args, &cwd) {
        Ok(cfg) => cfg,
        Err(e) => {
            #[allow(
                clippy::print_stderr,
                reason = "no logger before the settings are known"
            )]
            {
                eprintln!("orun-agent: {e:#}");
            }
            return ExitCode::FAILURE;
        }
    };
    // libgit2's start-up (OpenSSL parsing the CA bundle) runs while the agent locks its data
    // dir and connects to Docker; the mirror is opened after those.
    gitsync::warm_up();
    init_logging(cfg.log_format);
    // One thread is plenty for an agent that mostly waits; Git runs on its own thread.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cfg)) {
        Ok(code) => code,
        Err(e) => {
            error!(error = %format!("{e:#}"), "orun-agent cannot run");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: Config) -> anyhow::Result<ExitCode> {
    let shutdown = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    let status = Status::new(Snapshot::default());
    let once = cfg.engine.once;
    let (status_addr, status_token) = (cfg.status_addr, cfg.status_token);
    let signals = {
        let shutdown = Arc::clone(&shutdown);
        let wake = Arc::clone(&wake);
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        error!(error = %e, "cannot listen for SIGTERM");
                        return;
                    }
                };
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                if shutdown.swap(true, Ordering::SeqCst) {
                    // A second signal: the operator does not want to wait for the step.
                    warn!("second signal: exiting now; containers keep running");
                    std::process::exit(1);
                }
                info!("signal received: finishing the current step, then stopping");
                wake.notify_one();
            }
        })
    };
    let mut agent =
        agent_engine::Agent::start(cfg.engine, status.clone(), Arc::clone(&shutdown)).await?;

    if once {
        let outcome = agent.pass(true).await;
        signals.abort();
        return Ok(if outcome.converged {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }

    let listener = std::net::TcpListener::bind(status_addr)
        .with_context(|| format!("cannot listen on {status_addr} for the status API"))?;
    if !status_addr.ip().is_loopback() {
        warn!(addr = %status_addr, "the status API listens beyond this host");
    }
    info!(addr = %listener.local_addr()?, "status API listening");
    let server_stop = Arc::new(Notify::new());
    let stop = Arc::clone(&server_stop);
    let server = tokio::spawn(status_http::serve(
        listener,
        status,
        Limits::default(),
        status_token,
        async move { stop.notified().await },
    ));

    let result = agent.run(wake).await;
    signals.abort();
    server_stop.notify_one();
    if let Ok(Err(e)) = server.await {
        warn!(error = %e, "status API stopped with an error");
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("ORUN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // systemd sets JOURNAL_STREAM when stderr is connected to the journal.
    let journald = match format {
        LogFormat::Journald => true,
        LogFormat::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
        LogFormat::Text => false,
    };
    if journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(layer.with_syslog_identifier("orun-agent".to_owned()))
                    .init();
                return;
            }
            Err(e) if format == LogFormat::Journald => {
                #[allow(clippy::print_stderr, reason = "the logger itself failed")]
                {
                    eprintln!("orun-agent: journald is not reachable ({e}); logging to stderr");
                }
            }
            Err(_) => {}
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

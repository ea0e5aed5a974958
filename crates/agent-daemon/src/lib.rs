//! The orun agent as a process: settings from flags, environment and file ([`Config`]),
//! logging (journald under systemd), signals, systemd's notify protocol, the status server and
//! the opt-in self-update, around `agent-engine`'s loop.
//!
//! Both binaries run it: `orun-agent` (the design's daemon) and `orun start` (Orcra Run's
//! command, which systemd units written for the original run unchanged). Exit codes: 0 after a
//! clean shutdown (or, with `--once`, converged; or, with `--check-config`, settings valid),
//! 1 otherwise.

mod config;
mod notify;
mod update;

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use status_http::{Limits, Snapshot, Status};
use tokio::sync::Notify;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use config::{Args, Config, IngressKind, LogFormat};
use notify::Notifier;
use update::{Action, SelfUpdate};
pub use update::{CURRENT_VERSION_VAR, UpdateMode, UpdateSettings};

/// Why the agent cannot start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// A setting is missing or wrong; the message names it.
    #[error("{0}")]
    Settings(String),
    /// The config file cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the agent's settings.
    #[error("config file {}: {reason}", path.display())]
    ConfigSyntax {
        /// The file.
        path: PathBuf,
        /// What the TOML reader said, with the line.
        reason: String,
    },
    /// The remote's settings (URL, keys, token) are wrong.
    #[error(transparent)]
    Remote(#[from] gitsync::GitError),
    /// The engine cannot start or run.
    #[error(transparent)]
    Engine(#[from] agent_engine::EngineError),
    /// The status API's settings (token, address) are wrong.
    #[error(transparent)]
    Status(#[from] status_http::StatusError),
    /// The status API cannot listen.
    #[error("cannot listen on {addr} for the status API: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime cannot start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Runs the agent with `args` as `program` (`orun-agent`, `orun`) names itself in logs: the
/// whole life of the process, from settings to exit code.
pub fn main(args: Args, program: &'static str) -> ExitCode {
    let cwd = std::env::current_dir().unwrap_or_default();
    let check_only = args.check_config;
    let cfg = match Config::resolve(args.clone(), &cwd) {
        Ok(cfg) => cfg,
        Err(e) => {
            #[allow(
                clippy::print_stderr,
                reason = "no logger before the settings are known"
            )]
            {
                eprintln!("{program}: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    if check_only {
        #[allow(clippy::print_stdout, reason = "the answer to --check-config")]
        {
            println!("{program}: settings ok (node {})", cfg.engine.node);
        }
        return ExitCode::SUCCESS;
    }
    // libgit2's start-up (OpenSSL parsing the CA bundle) runs while the agent locks its data
    // dir and connects to Docker; the mirror is opened after those.
    gitsync::warm_up();
    init_logging(cfg.log_format, program);
    // One thread is plenty for an agent that mostly waits; Git runs on its own thread.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %DaemonError::Runtime(e), "orun agent cannot run");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cfg, &args, &cwd, program)) {
        Ok(code) => code,
        Err(e) => {
            error!(error = %e, "orun agent cannot run");
            ExitCode::FAILURE
        }
    };
    // A download or self-test still running on the blocking pool does not hold the exit up.
    runtime.shutdown_timeout(Duration::from_secs(5));
    code
}

async fn run(
    cfg: Config,
    args: &Args,
    cwd: &std::path::Path,
    program: &str,
) -> Result<ExitCode, DaemonError> {
    let notifier = Arc::new(Notifier::from_env());
    // `shutdown` stops the engine (a signal, or a trial of a new version); `terminating` is
    // set by signals only.
    let shutdown = Arc::new(AtomicBool::new(false));
    let terminating = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    let status = Status::new(Snapshot::default());
    let signals = tokio::spawn(on_signals(
        Arc::clone(&shutdown),
        Arc::clone(&terminating),
        Arc::clone(&wake),
        Arc::clone(&notifier),
    ));
    let mut update = open_update(&cfg, program, &status);
    let mut cfg = Some(cfg);
    let mut watchdog = None;
    let code = loop {
        // The first pass uses the settings checked in `main`; after a failed trial they are
        // read again (flags, environment and files), as a restart would.
        let cfg = match cfg.take() {
            Some(cfg) => cfg,
            None => Config::resolve(args.clone(), cwd)?,
        };
        let (status_addr, status_token, once) =
            (cfg.status_addr, cfg.status_token, cfg.engine.once);
        let mut agent =
            agent_engine::Agent::start(cfg.engine, status.clone(), Arc::clone(&shutdown)).await?;
        if once {
            let outcome = agent.pass(true).await;
            break if outcome.converged {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        let listener =
            std::net::TcpListener::bind(status_addr).map_err(|source| DaemonError::Listen {
                addr: status_addr,
                source,
            })?;
        if !status_addr.ip().is_loopback() {
            warn!(addr = %status_addr, "the status API listens beyond this host");
        }
        info!(addr = %status_addr, "status API listening");
        let server_stop = Arc::new(Notify::new());
        let stop = Arc::clone(&server_stop);
        let server = tokio::spawn(status_http::serve(
            listener,
            status.clone(),
            Limits::default(),
            status_token.clone(),
            async move { stop.notified().await },
        ));

        // Up: the data dir is locked, Docker answers and the status API listens. Converging
        // is what `/readyz` reports; systemd only needs to know the agent is working.
        notifier.ready("running");
        if watchdog.is_none() {
            watchdog = notifier
                .watchdog_interval()
                .map(|every| tokio::spawn(keep_watchdog(Arc::clone(&notifier), every)));
        }

        let engine = agent.run(Arc::clone(&wake));
        tokio::pin!(engine);
        let action = tokio::select! {
            result = &mut engine => {
                stop_server(&server_stop, server).await;
                result?;
                break ExitCode::SUCCESS;
            }
            action = next_update(update.as_mut()) => action,
        };
        // The engine stops between steps, and lets go of the data dir and the port.
        info!("stopping the engine for the self-update");
        shutdown.store(true, Ordering::SeqCst);
        wake.notify_one();
        let stopped = engine.await;
        stop_server(&server_stop, server).await;
        stopped?;
        let Some(update) = update.as_mut() else {
            break ExitCode::SUCCESS;
        };
        if terminating.load(Ordering::SeqCst) {
            break ExitCode::SUCCESS;
        }
        match action {
            Action::Revert(reason) => {
                warn!(reason = %reason, "the new version is not ready: reverting");
                if let Err(e) = update.revert(&reason) {
                    // Not asked again: a revert that cannot be done would otherwise stop the
                    // engine on every check.
                    update.revert_failed(&e);
                } else {
                    return Ok(reexec(update.binary()));
                }
            }
            Action::Trial(staged) => {
                let version = staged.version().clone();
                let tried = update
                    .trial(
                        &staged,
                        status_addr,
                        status_token.as_ref(),
                        &terminating,
                        &notifier,
                    )
                    .await;
                match tried {
                    Ok(()) if update.swap(staged).is_ok() => {
                        if terminating.load(Ordering::SeqCst) {
                            // Asked to stop meanwhile: the new version runs at the next start
                            // (on probation), not now.
                            info!(%version, "self-update: installed; stopping as asked");
                            break ExitCode::SUCCESS;
                        }
                        info!(%version, "self-update: the new version was ready on trial; running it");
                        return Ok(reexec(update.binary()));
                    }
                    Ok(()) => {}
                    Err(_) if terminating.load(Ordering::SeqCst) => {
                        info!("self-update trial stopped: the agent is stopping");
                        break ExitCode::SUCCESS;
                    }
                    Err(failure) => update.trial_failed(&version, failure),
                }
            }
        }
        // The old engine goes on where it stopped.
        shutdown.store(false, Ordering::SeqCst);
    };
    notifier.stopping();
    if let Some(w) = watchdog {
        w.abort();
    }
    signals.abort();
    Ok(code)
}

/// The self-update, when it is on and this is not a trial run. A pending update the running
/// version must give up is reverted here, before anything starts, and the old binary run.
fn open_update(cfg: &Config, program: &str, status: &Status) -> Option<SelfUpdate> {
    let settings = cfg.update.clone()?;
    if update::is_trial() {
        return None;
    }
    let mode = format!("{:?}", settings.mode).to_lowercase();
    match SelfUpdate::open(settings, &cfg.engine.data_dir, program, status.clone()) {
        Ok((mut update, Some(reason))) => {
            warn!(reason = %reason, "the new version gave up: reverting to the previous one");
            match update.revert(&reason) {
                Ok(()) => {
                    let e = update::exec(update.binary());
                    error!(error = %e, "cannot run the previous binary; exiting for a restart");
                    std::process::exit(i32::from(EXIT_RESTART));
                }
                Err(e) => {
                    update.revert_failed(&e);
                    Some(update)
                }
            }
        }
        Ok((update, None)) => Some(update),
        Err(reason) => {
            error!(reason = %reason, "self-update cannot start; the agent runs without it");
            status.set_self_update(Some(status_http::SelfUpdateStatus {
                mode,
                current: env!("CARGO_PKG_VERSION").to_owned(),
                phase: "off".to_owned(),
                last_error: Some(format!("self-update cannot start: {reason}")),
                ..Default::default()
            }));
            None
        }
    }
}

/// What the self-update asks for; never, without one.
async fn next_update(update: Option<&mut SelfUpdate>) -> Action {
    match update {
        Some(u) => u.next_action().await,
        None => std::future::pending().await,
    }
}

async fn stop_server(
    stop: &Notify,
    server: tokio::task::JoinHandle<Result<(), status_http::StatusError>>,
) {
    stop.notify_one();
    if let Ok(Err(e)) = server.await {
        warn!(error = %e, "status API stopped with an error");
    }
}

/// Exit code asking systemd (`Restart=on-failure`) for a fresh start, when re-executing
/// fails: `EX_TEMPFAIL`.
const EXIT_RESTART: u8 = 75;

/// Runs `binary` in place of this process; returns the exit code only when that fails.
fn reexec(binary: &std::path::Path) -> ExitCode {
    let e = update::exec(binary);
    error!(error = %e, binary = %binary.display(), "cannot run the new binary; exiting for a restart");
    ExitCode::from(EXIT_RESTART)
}

/// Turns SIGTERM and Ctrl-C into a shutdown at the end of the current step; a second one exits
/// at once.
async fn on_signals(
    shutdown: Arc<AtomicBool>,
    terminating: Arc<AtomicBool>,
    wake: Arc<Notify>,
    notifier: Arc<Notifier>,
) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
        shutdown.store(true, Ordering::SeqCst);
        if terminating.swap(true, Ordering::SeqCst) {
            // A second signal: the operator does not want to wait for the step.
            warn!("second signal: exiting now; containers keep running");
            update::kill_trial();
            std::process::exit(1);
        }
        notifier.stopping();
        info!("signal received: finishing the current step, then stopping");
        wake.notify_one();
    }
}

/// Tells systemd the agent lives, every half of `WatchdogSec`. It runs on the engine's own
/// single-threaded runtime, so a thread stuck in a blocking call stops it, and systemd restarts
/// the agent.
async fn keep_watchdog(notifier: Arc<Notifier>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        notifier.watchdog();
    }
}

/// Logs to journald, with each event's fields as journal fields, when asked or when stderr is
/// connected to the journal; else plain text on stderr. `identifier` is `SYSLOG_IDENTIFIER`.
pub fn init_logging(format: LogFormat, identifier: &str) {
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
                    .with(layer.with_syslog_identifier(identifier.to_owned()))
                    .init();
                return;
            }
            Err(e) if format == LogFormat::Journald => {
                #[allow(clippy::print_stderr, reason = "the logger itself failed")]
                {
                    eprintln!("{identifier}: journald is not reachable ({e}); logging to stderr");
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

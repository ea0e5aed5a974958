//! `orun validate`: load a repository, print every diagnostic, optionally resolve one node.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use manifest_model::{DirSource, Limits, summary};

/// Arguments of `orun validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The manifest repository (a working tree; uncommitted edits are read too).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Also resolve what this node would run, and judge it by the node's host policy.
    #[arg(long)]
    node: Option<String>,
    /// The node's policy file, as `orun-agent --policy` reads it; without one, the default
    /// policy (no host path may be bound). Symbolic links on the node are not followed here:
    /// paths are judged as written, and the agent judges them again where they lead.
    #[arg(long, requires = "node")]
    policy: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// An age key to check that every sops-encrypted value decrypts; without one, encrypted
    /// values are not checked (and the output says so).
    #[arg(long, env = "SOPS_AGE_KEY_FILE")]
    age_key_path: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The loader's caps, as flags. The agent uses the defaults; these let a repository be
/// checked against other ones (or measured: `cargo xtask bench`).
#[derive(Debug, clap::Args)]
pub(crate) struct LimitArgs {
    /// Largest manifest file, in bytes.
    #[arg(long, default_value_t = Limits::default().max_file_bytes, value_name = "BYTES")]
    max_file_bytes: u64,
    /// Largest sum of all manifest files, in bytes.
    #[arg(long, default_value_t = Limits::default().max_total_bytes, value_name = "BYTES")]
    max_total_bytes: u64,
    /// Most manifest files in a revision.
    #[arg(long, default_value_t = Limits::default().max_files, value_name = "N")]
    max_files: usize,
    /// Most diagnostics shown; the rest are counted. Reading stops once this many are found
    /// and one is an error.
    #[arg(long, default_value_t = Limits::default().max_diagnostics, value_name = "N")]
    max_diagnostics: usize,
}

impl LimitArgs {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_file_bytes: self.max_file_bytes,
            max_total_bytes: self.max_total_bytes,
            max_files: self.max_files,
            max_diagnostics: self.max_diagnostics,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let source = DirSource::new(&args.dir)
        .with_context(|| format!("cannot open manifest repository {}", args.dir.display()))?;
    let mut report = manifest_model::load(&source, &args.limits.limits());
    if let Some(rev) = &report.revision {
        let ids = args
            .age_key_path
            .as_deref()
            .map(manifest_model::Identities::read)
            .transpose()?;
        let more = manifest_model::unlock::runnable(rev, ids.as_ref());
        report.diagnostics.extend(more);
    }
    let policy = match &args.policy {
        Some(path) => manifest_model::load_policy(path)?,
        None => manifest_model::NodePolicy::default(),
    };
    let resolved = match (&report.revision, &args.node) {
        (Some(rev), Some(node)) => {
            let resolved = manifest_model::resolve(rev, node, None);
            if let Ok(node) = &resolved {
                let guard = docker_runtime::policy::Guard {
                    host: policy.host,
                    protected: vec![node.node.spec.data_dir.clone()],
                };
                let links = docker_runtime::policy::KnownLinks::default();
                let denied = docker_runtime::policy::judge_node(rev, node, &guard, &links);
                report.diagnostics.extend(denied);
            }
            Some(resolved)
        }
        _ => None,
    };
    let ok = !report.has_errors() && resolved.as_ref().is_none_or(Result::is_ok);
    let out = match args.format {
        Format::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            summary::text(&report, resolved.as_ref(), colour)
        }
        Format::Json => {
            serde_json::to_string_pretty(&summary::json(&report, resolved.as_ref(), ok))? + "\n"
        }
    };
    crate::emit(&out)?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

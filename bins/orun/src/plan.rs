//! `orun plan`: what the agent would do on a node, computed by the agent's own planner,
//! without changing anything.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use manifest_model::{DirSource, ModelError};
use reconcile_core::{Actual, Plan, Timestamp};
use serde_json::json;

/// Arguments of `orun plan`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The manifest repository (a working tree; uncommitted edits are read too).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The node to plan for.
    #[arg(long)]
    node: String,
    /// The branch this working tree is of (default: the node's `gitBranch`). As the agent
    /// does, plan refuses it when the node's manifest names another branch.
    #[arg(long)]
    branch: Option<String>,
    /// What runs now: `docker` (observe the local daemon, read-only) or a JSON snapshot file.
    #[arg(long, default_value = "docker")]
    actual: String,
    /// Docker daemon to observe (default: `DOCKER_HOST`, else the local socket).
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
    /// The age key that decrypts the node's secrets; without one, secret values are not
    /// checked and taken as unchanged.
    #[arg(long, env = "SOPS_AGE_KEY_FILE")]
    age_key_path: Option<PathBuf>,
    /// The node's data dir, whose fingerprint key tells changed secret values apart.
    #[arg(long, default_value = "/opt/orun")]
    data_dir: PathBuf,
    /// Caddy's admin API on the node, asked which routes it serves now [default:
    /// 127.0.0.1:2019 when observing Docker; not asked with a snapshot unless given].
    #[arg(long)]
    ingress_admin: Option<std::net::SocketAddr>,
    /// Print the plan as JSON (schema in docs/plan.md).
    #[arg(long)]
    json: bool,
    /// Exit 2 when the plan has steps, 0 when there is nothing to do, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    #[command(flatten)]
    limits: crate::validate::LimitArgs,
}

/// The largest snapshot `--actual` reads: a listing of 10 000 containers with their spec
/// labels is a few tens of MiB.
const MAX_SNAPSHOT_BYTES: u64 = 64 << 20;

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let source = DirSource::new(&args.repo)
        .with_context(|| format!("cannot open manifest repository {}", args.repo.display()))?;
    let report = manifest_model::load(&source, &args.limits.limits());
    print_all(&report.diagnostics);
    if !report.omitted.is_empty() {
        eprintln!("{}", report.omitted);
    }
    let Some(revision) = &report.revision else {
        bail!(
            "the manifests are invalid (see above); the agent would refuse this revision and keep the last good one"
        );
    };
    let mut node = match manifest_model::resolve(revision, &args.node, args.branch.as_deref()) {
        Ok(node) => node,
        Err(ModelError::Unfit { diagnostics }) => {
            print_all(&diagnostics);
            bail!("the revision does not fit this node (see above); the agent would refuse it");
        }
        Err(e) => return Err(e.into()),
    };
    // Built images are tagged by what they are built from, as the agent tags them: an
    // `on-change` context is digested here too. An `always` build's input is the commit
    // the agent applies, which a working folder does not have, so it shows as a rebuild.
    let problems = docker_runtime::context::fill_build_inputs(
        &source,
        &mut node,
        None,
        docker_runtime::context::ContextLimits::default(),
    );
    if !problems.is_empty() {
        for p in &problems {
            let file = revision
                .deployments
                .get(&p.deployment)
                .map_or("deployments", |d| d.file.as_str());
            eprintln!("{file}: error: {}: {}", p.field, p.message);
        }
        bail!(
            "a build context is missing or too large (see above); the agent would refuse this revision"
        );
    }

    let mut actual = if args.actual == "docker" {
        observe_docker(args.docker_host.as_deref(), &node)?
    } else {
        read_snapshot(&args.actual)?
    };
    actual.containers.sort_by(|a, b| a.id.cmp(&b.id));
    let ids = args
        .age_key_path
        .as_deref()
        .map(manifest_model::Identities::read)
        .transpose()?;
    let fp = manifest_model::Fingerprinter::read(&args.data_dir.join("keys/fingerprint.key"));
    let secrets = manifest_model::unlock::preview(&node, ids.as_ref(), fp.as_ref());
    if !secrets.errors.is_empty() {
        print_all(&secrets.errors);
        bail!("secret values do not decrypt (see above); the agent would refuse this revision");
    }
    let (plan, unchecked) = reconcile_core::preview(&node, &actual, &secrets.fingerprints, now());
    // A snapshot is another host's: this host's Caddy says nothing of it.
    let admin = args.ingress_admin.or_else(|| {
        (args.actual == "docker").then(|| std::net::SocketAddr::from(([127, 0, 0, 1], 2019)))
    });
    let served = admin.and_then(|a| {
        let caddy = ingress::Caddy::new(a, std::time::Duration::from_secs(2));
        caddy.routes().ok()
    });
    let routes = match admin {
        Some(_) => reconcile_core::route_changes(&node, &plan, &actual, served.as_ref()),
        None => Vec::new(),
    };

    let out = if args.json {
        let (create, replace, start, remove) = plan.counts();
        let doc = json!({
            "node": node.node.name,
            "branch": node.branch,
            "environment": node.environment,
            "steps": plan.steps,
            "diagnostics": plan.diagnostics,
            "notes": secrets.notes,
            "unchecked": unchecked,
            "routes": routes,
            "ingress_reachable": served.is_some(),
            "summary": { "create": create, "replace": replace, "start": start, "remove": remove },
        });
        serde_json::to_string_pretty(&doc)? + "\n"
    } else {
        let mut text = render_text(&node, &plan, &routes);
        if let Some(a) = admin.filter(|_| served.is_none() && !routes.is_empty()) {
            text.push_str(&format!(
                "note: no ingress answers at {a}: routes shown as new\n"
            ));
        }
        for n in &secrets.notes {
            text.push_str(&format!("note: {n}\n"));
        }
        text
    };
    crate::emit(&out)?;
    Ok(if args.detailed_exitcode && !plan.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads a JSON snapshot, refusing anything but a regular file (a FIFO would block, a
/// device never end) and anything over [`MAX_SNAPSHOT_BYTES`].
fn read_snapshot(path: &str) -> anyhow::Result<Actual> {
    use std::io::Read as _;
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {path}"))?;
    if !meta.is_file() {
        bail!("{path} is not a regular file");
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SNAPSHOT_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("cannot read {path}"))?;
    if text.len() as u64 > MAX_SNAPSHOT_BYTES {
        bail!("{path} is larger than {MAX_SNAPSHOT_BYTES} bytes; that is no snapshot");
    }
    serde_json::from_str::<Actual>(&text)
        .with_context(|| format!("{path} is not a snapshot of actual state"))
}

fn observe_docker(
    host: Option<&str>,
    node: &manifest_model::DesiredNode,
) -> anyhow::Result<Actual> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let docker = docker_runtime::Docker::connect(host).await?;
        let mut actual = docker.observe().await?;
        let images: Vec<String> = node
            .containers
            .iter()
            .map(reconcile_core::image_of)
            .collect();
        actual.images = docker.image_ids(&images).await?;
        Ok(actual)
    })
}

fn print_all(diagnostics: &[manifest_model::Diagnostic]) {
    for d in diagnostics {
        eprintln!("{d}");
    }
}

fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Timestamp(secs)
}

fn render_text(
    node: &manifest_model::DesiredNode,
    plan: &Plan,
    routes: &[reconcile_core::RouteChange],
) -> String {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let env = &node.environment;
    let mut out = format!(
        "node {}: branch {}, environment {}{}\n",
        node.node.name,
        node.branch,
        env.id,
        if env.production { " (production)" } else { "" }
    );
    // Route changes beside the steps, before the summary line.
    let plan_text = plan.to_string();
    let mut lines: Vec<String> = plan_text.lines().map(str::to_owned).collect();
    let summary = lines.pop();
    lines.extend(routes.iter().map(ToString::to_string));
    lines.extend(summary);
    for line in &lines {
        let code = match line.chars().next() {
            Some('+') => "32",
            Some('~') => "33",
            Some('-') => "31",
            Some('>') => "36",
            Some('!') => "35",
            _ => "",
        };
        if colour && !code.is_empty() {
            out.push_str(&format!("\x1b[{code}m{line}\x1b[0m\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

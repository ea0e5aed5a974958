//! `cargo xtask bench`: every figure in docs/BENCHMARKS.md, measured in one run and written
//! there with the machine, the date and the exact command.
//!
//! Parts (each can be run alone with `--only PART[,PART]`):
//! - `planner`, `parser`: criterion benchmarks of `reconcile_core::plan` and
//!   `manifest_model::load`/`resolve` at 10 … 10 000 deployments;
//! - `workload`: orun side by side with `git pull && docker compose up -d` on N small HTTP
//!   servers (`workload.rs`): cold converge, no-op pass, idle daemon, commit-to-serving;
//! - `git`: the cost of a poll that finds nothing over `file://`, `git://`, `ssh://`, and a
//!   fleet of pollers against one `git daemon` (gitsync's `poll` benchmark);
//! - `hostile`: the release `orun validate` on repositories built to make it work hard, at
//!   1 000 … 100 000 entries of each shape, and the cases issue 12 reported (`hostile.rs`).
//!
//! A run with `--only` or `--quick` writes to `target/bench/BENCHMARKS.md` unless `--out`
//! says otherwise, so a partial run never replaces the published figures.

mod hostile;
mod measure;
mod report;
mod sim;
mod workload;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

pub(crate) use report::Report;

/// What `cargo xtask bench` was asked for.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    services: usize,
    rounds: usize,
    commits: usize,
    idle_seconds: u64,
    pass_seconds: u64,
    pollers: usize,
    quick: bool,
    only: Option<Vec<String>>,
    out: PathBuf,
    /// The command line, for the report.
    command: String,
}

const PARTS: [&str; 7] = [
    "planner", "parser", "workload", "git", "hostile", "sim", "ingress",
];

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            services: 30,
            rounds: 5,
            commits: 20,
            idle_seconds: 60,
            pass_seconds: 20,
            pollers: 200,
            quick: false,
            only: None,
            out: super::workspace_root().join("docs/BENCHMARKS.md"),
            command: std::iter::once("cargo xtask bench".to_owned())
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" "),
        };
        let mut out = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().with_context(|| format!("`{arg}` needs a value"));
            let number = |v: &String| -> Result<u64> {
                v.parse()
                    .with_context(|| format!("`{arg}` wants a whole number, got `{v}`"))
            };
            match arg.as_str() {
                "--services" => o.services = number(value()?)? as usize,
                "--rounds" => o.rounds = number(value()?)? as usize,
                "--commits" => o.commits = number(value()?)? as usize,
                "--idle-seconds" => o.idle_seconds = number(value()?)?,
                "--pollers" => o.pollers = number(value()?)? as usize,
                "--quick" => o.quick = true,
                "--only" => {
                    let parts: Vec<String> = value()?.split(',').map(str::to_owned).collect();
                    if let Some(p) = parts.iter().find(|p| !PARTS.contains(&p.as_str())) {
                        bail!("unknown part `{p}`; parts: {}", PARTS.join(", "));
                    }
                    o.only = Some(parts);
                }
                "--out" => out = Some(PathBuf::from(value()?)),
                other => bail!("unknown option `{other}` for `bench`"),
            }
        }
        if o.services == 0 || o.services > 500 || o.rounds == 0 || o.commits == 0 {
            bail!("--services must be 1..=500, --rounds and --commits at least 1");
        }
        if o.quick {
            o.rounds = o.rounds.min(2);
            o.commits = o.commits.min(4);
            o.idle_seconds = o.idle_seconds.min(15);
            o.pass_seconds = 10;
            o.pollers = o.pollers.min(50);
        }
        o.out = match out {
            Some(p) => p,
            None if o.quick || o.only.is_some() => {
                super::workspace_root().join("target/bench/BENCHMARKS.md")
            }
            None => o.out,
        };
        Ok(o)
    }

    fn wants(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|parts| parts.iter().any(|p| p == part))
    }
}

/// Runs the benchmarks `args` ask for and writes the report.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    let mut report = Report::new(&opts);
    if opts.wants("planner") {
        criterion("reconcile-core", "plan")?;
        report.planner = estimates("plan", &["converged", "fresh", "all-changed"])?;
        report.planner_instructions = planner_instructions()?;
    }
    if opts.wants("parser") {
        criterion("manifest-model", "load")?;
        report.parser = estimates("load", &["load", "resolve"])?;
    }
    if opts.wants("workload") || opts.wants("git") {
        super::ensure_git()?;
    }
    if opts.wants("git") {
        // The ssh row needs sshd, as the tests do.
        super::ensure_programs(&[("sshd", "openssh-server")])?;
    }
    if opts.wants("workload") {
        super::ensure_docker()?;
        super::ensure_images()?;
        workload::run(&opts, &mut report)?;
    }
    if opts.wants("git") {
        report.git = git_polls(&opts)?;
    }
    if opts.wants("hostile") {
        report.hostile = hostile::run(opts.quick)?;
    }
    if opts.wants("sim") {
        report.sim = Some(sim::run(if opts.quick { 1_000 } else { 10_000 })?);
    }
    if opts.wants("ingress") {
        super::ensure_programs(&[("caddy", "caddy")])?;
        report.ingress = bench_lines("ingress", "switch", &[])?;
    }
    let mut text = report.render(&opts);
    // The fuzz campaigns' section is `cargo xtask fuzz --report`'s: kept as it stands.
    if let Some(kept) = fs::read_to_string(&opts.out)
        .ok()
        .and_then(|old| super::campaign::existing(&old))
    {
        text = super::campaign::splice(&text, &format!("{}\n", kept.trim_end()));
    }
    if let Some(dir) = opts.out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&opts.out, text).with_context(|| format!("writing {}", opts.out.display()))?;
    println!("bench: wrote {}", opts.out.display());
    Ok(())
}

/// Runs one criterion benchmark with settings that keep the whole run to minutes.
fn criterion(package: &str, bench: &str) -> Result<()> {
    super::Step::cargo(
        "criterion benchmark",
        &[
            "bench",
            "-p",
            package,
            "--bench",
            bench,
            "--",
            "--warm-up-time",
            "1",
            "--measurement-time",
            "3",
        ],
    )
    .run()
}

/// Instructions one `plan` call executes per deployment, by case and size, counted by
/// callgrind: unlike time, the count does not depend on what else the machine does or on
/// whether the data fits in the CPU's caches, so it shows whether the work itself grows
/// linearly. Empty when valgrind is missing and cannot be installed.
fn planner_instructions() -> Result<BTreeMap<(String, u64), f64>> {
    let mut out = BTreeMap::new();
    if super::find_program("valgrind").is_none() {
        if !super::running_as_root() {
            eprintln!("bench: valgrind is missing: instruction counts skipped");
            return Ok(out);
        }
        super::apt_install(&["valgrind"])?;
    }
    // The benchmark binary `cargo bench` just built: the newest `plan-*` executable.
    let deps = super::workspace_root().join("target/release/deps");
    let binary = fs::read_dir(&deps)?
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("plan-") && !name.contains('.')
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .context("no planner benchmark binary in target/release/deps")?;
    for case in ["converged", "fresh"] {
        for n in [1_000u64, 10_000] {
            let out_file = super::workspace_root().join("target/bench/callgrind.out");
            let run = Command::new("valgrind")
                .args([
                    "--tool=callgrind",
                    "--toggle-collect=reconcile_core::plan::plan_with*",
                ])
                .arg(format!("--callgrind-out-file={}", out_file.display()))
                .arg(&binary)
                // `--bench` asks for every size, `--test` for one run of each.
                .args(["--bench", "--test", &format!("plan/{case}/{n}$")])
                .stdout(Stdio::null())
                .output()
                .context("running valgrind")?;
            let text = String::from_utf8_lossy(&run.stderr);
            // Criterion runs the benchmark in a child process too: the count is the
            // largest of the processes callgrind reports.
            let refs = text
                .lines()
                .filter_map(|l| l.split_once("I   refs:"))
                .filter_map(|(_, v)| v.trim().replace(',', "").parse::<f64>().ok())
                .reduce(f64::max)
                .with_context(|| format!("no instruction count from callgrind:\n{text}"))?;
            out.insert((case.to_owned(), n), refs / n as f64);
        }
    }
    Ok(out)
}

/// Criterion's median estimates, nanoseconds, by function and size.
pub(crate) type Estimates = BTreeMap<String, BTreeMap<u64, f64>>;

fn estimates(group: &str, functions: &[&str]) -> Result<Estimates> {
    let root = super::workspace_root().join("target/criterion").join(group);
    let mut out = Estimates::new();
    for f in functions {
        for n in [10u64, 100, 1_000, 10_000] {
            let path = root.join(f).join(n.to_string()).join("new/estimates.json");
            let text = fs::read_to_string(&path)
                .with_context(|| format!("reading criterion's {}", path.display()))?;
            let json: serde_json::Value = serde_json::from_str(&text)?;
            let ns = json["median"]["point_estimate"]
                .as_f64()
                .with_context(|| format!("no median in {}", path.display()))?;
            out.entry((*f).to_owned()).or_default().insert(n, ns);
        }
    }
    Ok(out)
}

/// A `harness = false` benchmark's `orun-bench KEY VALUE` lines (`cargo bench` passes it
/// `--bench`, which asks for the full run).
fn bench_lines(package: &str, bench: &str, extra: &[&str]) -> Result<BTreeMap<String, String>> {
    let mut args: Vec<String> = ["bench", "-q", "-p", package, "--bench", bench, "--"]
        .map(str::to_owned)
        .to_vec();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("$ cargo {}", super::shell_words(&args));
    let out = Command::new(cargo)
        .args(&args)
        .current_dir(super::workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running the {bench} benchmark"))?;
    if !out.status.success() {
        bail!("the {bench} benchmark exited with {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("orun-bench ")?.splitn(2, ' ');
            Some((f.next()?.to_owned(), f.next()?.trim().to_owned()))
        })
        .collect())
}

/// gitsync's `poll` benchmark: its `orun-bench KEY VALUE` lines.
fn git_polls(opts: &Options) -> Result<BTreeMap<String, String>> {
    let pollers = opts.pollers.to_string();
    let mut extra = vec!["--pollers", pollers.as_str()];
    if opts.quick {
        extra.extend(["--seconds", "20", "--fast-seconds", "5", "--polls", "10"]);
    }
    bench_lines("gitsync", "poll", &extra)
}

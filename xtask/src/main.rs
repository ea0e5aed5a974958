//! Project automation for orun: `cargo xtask test|lint|fuzz|demo|help`, so that CI, the README
//! and developers run the same steps with nothing but cargo installed.
//!
//! Each command is a list of [`Step`]s built by a plain function (`test_steps`, `lint_steps`,
//! `demo_steps`); a new check (for example end-to-end tests) is one more entry in a list, not a
//! new code path.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask is a command line tool: printing is its user interface"
)]

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};

/// The fuzz target `cargo xtask fuzz` runs when none is named.
const DEFAULT_FUZZ_TARGET: &str = "parse_revision";
/// How long `cargo xtask fuzz` runs when `--seconds` is not given.
const DEFAULT_FUZZ_SECONDS: u64 = 60;

const HELP: &str = "\
cargo xtask <command>

Commands:
  test                          run all tests (unit, integration, doc)
  lint                          rustfmt check, clippy -D warnings, cargo deny, fuzz build
  fuzz [--seconds N] [TARGET]   fuzz TARGET (default parse_revision) for N seconds (default 60)
  demo                          run orun on the built-in examples
  help                          show this message
";

fn main() -> ExitCode {
    match run(env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        print!("{HELP}");
        return Ok(());
    };
    match command.as_str() {
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        "test" => {
            no_arguments(command, rest)?;
            run_all(&test_steps())
        }
        "lint" => {
            no_arguments(command, rest)?;
            run_all(&lint_steps())
        }
        "fuzz" => fuzz(rest),
        "demo" => {
            no_arguments(command, rest)?;
            // A demo is a story: a later step makes no sense once an earlier one failed.
            for step in demo_steps() {
                step.run()?;
            }
            Ok(())
        }
        other => {
            eprint!("{HELP}");
            bail!("unknown command `{other}`")
        }
    }
}

fn no_arguments(command: &str, rest: &[String]) -> Result<()> {
    match rest.first() {
        None => Ok(()),
        Some(arg) => bail!("`{command}` takes no arguments, got `{arg}`"),
    }
}

/// Every test the project has; CI runs exactly this list through `cargo xtask test`.
fn test_steps() -> Vec<Step> {
    vec![
        Step::cargo(
            "unit and integration tests",
            &["test", "--workspace", "--all-targets"],
        ),
        // `--all-targets` leaves doc tests out, so they need their own run.
        Step::cargo("doc tests", &["test", "--workspace", "--doc"]),
    ]
}

fn lint_steps() -> Vec<Step> {
    let mut steps = vec![
        Step::cargo("formatting", &["fmt", "--all", "--", "--check"]),
        Step::cargo(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        Step::cargo(
            "cargo deny",
            &["deny", "check", "bans", "licenses", "sources"],
        )
        .needs(Tool::CARGO_DENY),
    ];
    // The fuzz crate lives outside the workspace, so only building it proves it still compiles
    // against the current libraries.
    if workspace_root().join("fuzz/Cargo.toml").is_file() {
        steps.push(
            // On a stable toolchain only `-s none` works: sanitizers need nightly.
            Step::cargo("fuzz targets build", &["fuzz", "build", "-s", "none"])
                .needs(Tool::CARGO_FUZZ),
        );
    }
    steps
}

/// What `cargo xtask demo` does, in order. Today it shows `orun validate` on the shipped
/// examples; once the agent exists this list will start it against a local repository.
fn demo_steps() -> Vec<Step> {
    let validate = ["run", "--quiet", "-p", "orun", "--", "validate", "examples"];
    let node = ["--node", "web-01"];
    vec![
        Step::cargo(
            "validate the examples",
            &[&validate[..], &node[..]].concat(),
        ),
        Step::cargo(
            "validate the examples, as JSON",
            &[&validate[..], &node[..], &["--format", "json"][..]].concat(),
        ),
    ]
}

fn fuzz(args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_FUZZ_SECONDS;
    let mut target: Option<&str> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = if arg == "--seconds" {
            Some(args.next().context("`--seconds` needs a value")?.as_str())
        } else {
            arg.strip_prefix("--seconds=")
        };
        if let Some(value) = value {
            seconds = value
                .parse()
                .with_context(|| format!("`--seconds` wants a whole number, got `{value}`"))?;
        } else if arg.starts_with('-') {
            bail!("unknown option `{arg}` for `fuzz`");
        } else if let Some(first) = target {
            bail!("`fuzz` takes one target, got `{first}` and `{arg}`");
        } else {
            target = Some(arg);
        }
    }
    let target = target.unwrap_or(DEFAULT_FUZZ_TARGET);
    // Say so before installing cargo-fuzz for nothing.
    if !workspace_root().join("fuzz/Cargo.toml").is_file() {
        bail!("there is no fuzz crate yet (fuzz/Cargo.toml)");
    }
    let max_time = format!("-max_total_time={seconds}");
    // New inputs go to the untracked corpus; the committed seeds (valid and broken manifests
    // from the test fixtures) give libFuzzer the grammar's shape to start from.
    let corpus = format!("fuzz/corpus/{target}");
    let seeds = format!("fuzz/seeds/{target}");
    std::fs::create_dir_all(workspace_root().join(&corpus)).context("creating the fuzz corpus")?;
    Step::cargo(
        "fuzzing",
        &[
            "fuzz", "run", "-s", "none", target, &corpus, &seeds, "--", &max_time,
        ],
    )
    .needs(Tool::CARGO_FUZZ)
    .run()
}

/// Runs every step even after a failure, so one CI run reports all broken checks at once.
fn run_all(steps: &[Step]) -> Result<()> {
    let failed: Vec<&str> = steps
        .iter()
        .filter_map(|step| match step.run() {
            Ok(()) => None,
            Err(err) => {
                eprintln!("xtask: {} failed: {err:#}", step.name);
                Some(step.name)
            }
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        bail!(
            "{} of {} steps failed: {}",
            failed.len(),
            steps.len(),
            failed.join(", ")
        )
    }
}

/// One command of a task, with the cargo plugin it needs, if any.
struct Step {
    name: &'static str,
    args: Vec<String>,
    tool: Option<Tool>,
}

impl Step {
    fn cargo(name: &'static str, args: &[&str]) -> Self {
        Self {
            name,
            args: args.iter().map(|&arg| arg.to_owned()).collect(),
            tool: None,
        }
    }

    fn needs(self, tool: Tool) -> Self {
        Self {
            tool: Some(tool),
            ..self
        }
    }

    fn run(&self) -> Result<()> {
        if let Some(tool) = &self.tool {
            tool.ensure_installed()?;
        }
        run_cargo(&self.args, false)
    }
}

/// A cargo subcommand that is not part of the toolchain and is installed on first use, so a
/// fresh machine needs nothing but rustup.
struct Tool {
    subcommand: &'static str,
    package: &'static str,
}

impl Tool {
    const CARGO_DENY: Self = Self {
        subcommand: "deny",
        package: "cargo-deny",
    };
    const CARGO_FUZZ: Self = Self {
        subcommand: "fuzz",
        package: "cargo-fuzz",
    };

    fn ensure_installed(&self) -> Result<()> {
        let probe = [self.subcommand.to_owned(), "--version".to_owned()];
        // Only the exit status matters; a missing tool's "no such command" would be noise.
        if run_cargo(&probe, true).is_ok() {
            return Ok(());
        }
        eprintln!("xtask: {} is missing, installing it", self.package);
        let install = ["install", "--locked", self.package].map(str::to_owned);
        run_cargo(&install, false).with_context(|| format!("could not install {}", self.package))
    }
}

/// Runs cargo in the workspace root, echoing the command first so a log shows what ran.
/// `quiet` discards the command's output, for probes whose exit status is all that matters.
fn run_cargo(args: &[String], quiet: bool) -> Result<()> {
    // Under `cargo xtask`, `$CARGO` is the cargo that started us: using it keeps every step on
    // the same toolchain.
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    eprintln!("$ cargo {}", shell_words(args));
    let output = || {
        if quiet {
            Stdio::null()
        } else {
            Stdio::inherit()
        }
    };
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .stdout(output())
        .stderr(output())
        .status()
        .with_context(|| format!("could not start {}", Path::new(&cargo).display()))?;
    if status.success() {
        Ok(())
    } else {
        bail!("`cargo {}` exited with {status}", shell_words(args))
    }
}

/// The workspace root, so that `cargo xtask` behaves the same from any directory.
fn workspace_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // xtask/ sits directly in the workspace root; `ancestors` avoids an unwrap on `parent`.
    xtask_dir
        .ancestors()
        .nth(1)
        .unwrap_or(xtask_dir)
        .to_path_buf()
}

/// Quotes arguments the way a shell would need them, so an echoed command can be pasted.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@+".contains(c));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

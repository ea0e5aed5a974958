//! What polling a Git remote costs, and what a fleet of pollers does to one remote.
//!
//! Two measurements, run by `cargo xtask bench` (which records them in docs/BENCHMARKS.md
//! and docs/SCALING.md) or by hand with `cargo bench -p gitsync --bench poll -- [options]`:
//!
//! - **poll**: a poll that finds nothing new, over `file://`, `git://` (`git daemon`) and
//!   `ssh://` (`sshd`, pinned host key, deploy key), by gitsync's `Mirror::sync` and, in
//!   alternating blocks, by the peer a cron job would use (`git fetch`). Per poll: wall
//!   time, CPU of the client, CPU of the server (the daemon's own and its reaped children's,
//!   from `/proc`), and the bytes on the wire (through a counting proxy, in a separate pass
//!   so the proxy costs nothing in the timings).
//! - **fleet**: `--pollers` mirrors (200) polling one `git daemon`, each on gitsync's
//!   `Schedule` (±10 % jitter), all started at the same instant: the herd at its worst. A
//!   commit lands half-way: how long until every poller has it, and what serving those
//!   fetches costs. Then the same fleet at a fast interval, to find what this machine's
//!   daemon can serve.
//!
//! Results are lines `orun-bench KEY VALUE` on stdout. Without `--bench` (as `cargo test
//! --all-targets` runs it) a few polls of each kind check that the program still works.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs,
    reason = "a benchmark program: a panic is its failure report and stdout its output"
)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use gitsync::{KnownHosts, Mirror, RemoteOptions, RemoteUrl, Schedule};
use test_support::git::{Remote, Sshd, git_daemon, sshd_binary};
use test_support::required;

/// The agent's default fetch deadline (`--fetch-timeout`).
const DEADLINE: Duration = Duration::from_secs(60);
/// Linux's USER_HZ: `/proc` counts CPU time in these ticks.
const TICKS_PER_SECOND: f64 = 100.0;

struct Options {
    full: bool,
    polls: usize,
    pollers: usize,
    interval: Duration,
    seconds: u64,
    fast_interval: Duration,
    fast_seconds: u64,
    only: Option<String>,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |name: &str, default: u64| -> u64 {
        value(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} wants a number, got {v}"))
        })
    };
    // The quick check (no --bench) only proves the program works.
    let (polls, pollers, interval, seconds, fast, fast_seconds) = if full {
        (40, 200, 5_000, 60, 1_000, 20)
    } else {
        (2, 4, 500, 2, 250, 1)
    };
    Options {
        full,
        polls: number("--polls", polls) as usize,
        pollers: number("--pollers", pollers) as usize,
        interval: Duration::from_millis(number("--interval-ms", interval)),
        seconds: number("--seconds", seconds),
        fast_interval: Duration::from_millis(number("--fast-interval-ms", fast)),
        fast_seconds: number("--fast-seconds", fast_seconds),
        only: value("--only"),
    }
}

fn main() {
    let opts = options();
    let remote = Remote::new();
    manifest_repository(&remote, 30);
    let wanted = |part: &str| opts.only.as_deref().is_none_or(|o| o == part);
    if wanted("poll") {
        poll_costs(&opts, &remote);
    }
    if wanted("fleet") {
        // The herd: every poller polls at the same instant first, as a fleet of agents with
        // nothing to resume (or without the start-up splay) does after a common restart.
        let herd = Fleet {
            interval: opts.interval,
            seconds: opts.seconds / 2,
            splay: false,
            push_midway: false,
        };
        fleet(&opts, &remote, &herd, "herd");
        // The agent as it is: first poll after a random part of an interval; a commit lands
        // half-way.
        let steady = Fleet {
            seconds: opts.seconds,
            splay: true,
            push_midway: true,
            ..herd
        };
        fleet(&opts, &remote, &steady, "fleet");
        // What this daemon can serve: the same fleet polling fast.
        let fast = Fleet {
            interval: opts.fast_interval,
            seconds: opts.fast_seconds,
            splay: true,
            push_midway: false,
        };
        fleet(&opts, &remote, &fast, "fleet_fast");
    }
    if !opts.full {
        eprintln!("poll benchmark: quick check passed (run `cargo xtask bench` for figures)");
    }
}

fn report(key: &str, value: impl std::fmt::Display) {
    println!("orun-bench {key} {value}");
}

/// A repository like a real one: a node and `n` deployments.
fn manifest_repository(remote: &Remote, n: usize) {
    let mut files = vec![(
        "nodes/web-01.yaml".to_owned(),
        "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: web-01\nspec:\n  host: 10.0.0.1\n  gitRepo: git@example.invalid:acme/manifests.git\n".to_owned(),
    )];
    for i in 0..n {
        files.push((
            format!("deployments/app-{i:02}.yaml"),
            format!(
                "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: app-{i:02}\nspec:\n  image: registry.example.com/app-{i:02}:1.0\n  ports:\n    - containerPort: 8080\n      port: {}\n  env:\n    LOG_LEVEL: info\n",
                10_000 + i
            ),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    remote.commit("manifests", &refs);
}

/// Fields 14 to 17 of `/proc/PID/stat`, in seconds: utime, stime, and the children's
/// cutime and cstime (the children it has waited for).
fn cpu_fields(pid: &str) -> [f64; 4] {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap();
    let mut f = rest
        .split_whitespace()
        .skip(11)
        .map(|f| f.parse::<f64>().unwrap() / TICKS_PER_SECOND);
    [(); 4].map(|()| f.next().unwrap())
}

/// CPU seconds a process used, its own and, with `children`, that of those it has reaped.
fn cpu_seconds(pid: u32, children: bool) -> f64 {
    let [u, s, cu, cs] = cpu_fields(&pid.to_string());
    if children { u + s + cu + cs } else { u + s }
}

fn self_cpu() -> f64 {
    let [u, s, ..] = cpu_fields("self");
    u + s
}

/// CPU seconds of this process's reaped children (the `git` commands it ran).
fn children_cpu() -> f64 {
    let [.., cu, cs] = cpu_fields("self");
    cu + cs
}

/// One transport's remote, as gitsync and as the `git` CLI reach it.
struct Transport {
    name: &'static str,
    url: String,
    /// The serving process, when there is one.
    server: Option<u32>,
    ssh: Option<(PathBuf, String)>,
}

impl Transport {
    /// gitsync's options for `url`; `known_hosts` replaces the pinned keys (the proxy's port).
    fn options(&self, url: &str, known_hosts: Option<&str>) -> RemoteOptions {
        let mut o = RemoteOptions::new(RemoteUrl::parse(url, Path::new("/")).unwrap(), "main");
        if let Some((key, known)) = &self.ssh {
            o.ssh_key = Some(key.clone());
            o.known_hosts = Some(KnownHosts::parse(known_hosts.unwrap_or(known)));
        }
        o
    }

    /// The `git` command a cron job would run, isolated from the user's configuration.
    fn git(&self, dir: &Path, known_hosts: Option<&Path>) -> Command {
        let mut cmd = Command::new("git");
        cmd.current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let (Some((key, _)), Some(known)) = (&self.ssh, known_hosts) {
            cmd.env(
                "GIT_SSH_COMMAND",
                format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o BatchMode=yes",
                    key.display(),
                    known.display()
                ),
            );
        }
        cmd
    }
}

/// A TCP proxy that counts the bytes it carries both ways.
struct Counter {
    port: u16,
    bytes: Arc<AtomicU64>,
}

fn counting_proxy(upstream: u16) -> Counter {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bytes = Arc::new(AtomicU64::new(0));
    let total = Arc::clone(&bytes);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                let total = Arc::clone(&total);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        total.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    Counter { port, bytes }
}

/// Waits until the server has reaped the children of the connections just closed, so their
/// CPU is counted in the block that caused it.
fn settle(server: Option<u32>) {
    if server.is_some() {
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn poll_costs(opts: &Options, remote: &Remote) {
    let daemon = git_daemon(remote);
    let sshd = sshd_binary().map(|b| Sshd::start(&b));
    if sshd.is_none() {
        assert!(!required(), "sshd is required (ORUN_REQUIRE_ALL)");
        eprintln!("ssh skipped: sshd is not installed (apt-get install openssh-server)");
    }
    let mut transports = vec![
        Transport {
            name: "file",
            url: remote.file_url(),
            server: None,
            ssh: None,
        },
        Transport {
            name: "git",
            url: format!("git://127.0.0.1:{}/m.git", daemon.port),
            server: Some(daemon.child.id()),
            ssh: None,
        },
    ];
    if let Some(sshd) = &sshd {
        transports.push(Transport {
            name: "ssh",
            url: sshd.url(remote),
            server: Some(sshd.daemon.child.id()),
            ssh: Some((
                sshd.path("client"),
                std::fs::read_to_string(sshd.path("known_hosts")).unwrap(),
            )),
        });
    }
    for t in &transports {
        let dir = tempfile::tempdir().unwrap();
        let mut mirror = Mirror::open(&dir.path().join("mirror"), t.options(&t.url, None)).unwrap();
        assert!(mirror.sync().unwrap().fetched);
        let known = dir.path().join("known_hosts");
        if let Some((_, k)) = &t.ssh {
            std::fs::write(&known, k).unwrap();
        }
        let clone = dir.path().join("clone");
        let ok = t
            .git(dir.path(), Some(&known))
            .args(["clone", "-q", "--bare", &t.url])
            .arg(&clone)
            .status()
            .unwrap();
        assert!(ok.success(), "git clone over {}", t.name);

        // Alternating blocks: orun, git, orun, git. A block is timed whole and its server CPU
        // read once its connections are reaped.
        let block = opts.polls.div_ceil(2).max(1);
        let mut orun = Costs::default();
        let mut peer = Costs::default();
        for _ in 0..2 {
            orun.block(t.server, block, self_cpu, || {
                let s = mirror.sync().unwrap();
                assert!(!s.fetched, "a no-op poll fetched");
            });
            peer.block(t.server, block, children_cpu, || {
                let ok = t
                    .git(&clone, Some(&known))
                    .args(["fetch", "-q", &t.url, "+refs/heads/main:refs/heads/main"])
                    .status()
                    .unwrap();
                assert!(ok.success(), "git fetch over {}", t.name);
            });
        }
        orun.report(&format!("poll.{}.orun", t.name));
        peer.report(&format!("poll.{}.git", t.name));

        // Bytes on the wire, through a counting proxy (not for file://: no wire).
        let Some(upstream) = (match t.name {
            "git" => Some(daemon.port),
            "ssh" => sshd.as_ref().map(|s| s.daemon.port),
            _ => None,
        }) else {
            continue;
        };
        let proxy = counting_proxy(upstream);
        let via = t
            .url
            .replace(&format!(":{upstream}/"), &format!(":{}/", proxy.port));
        let proxied_known = dir.path().join("known_hosts.proxy");
        let entry = t.ssh.as_ref().map(|(_, k)| {
            k.replace(
                &format!("[127.0.0.1]:{upstream}"),
                &format!("[127.0.0.1]:{}", proxy.port),
            )
        });
        if let Some(entry) = &entry {
            std::fs::write(&proxied_known, entry).unwrap();
        }
        let mut m = Mirror::open(
            &dir.path().join("mirror"),
            t.options(&via, entry.as_deref()),
        )
        .unwrap();
        let polls = if opts.full { 5 } else { 1 };
        let before = proxy.bytes.load(Ordering::SeqCst);
        for _ in 0..polls {
            m.sync().unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        let orun_bytes = proxy.bytes.load(Ordering::SeqCst) - before;
        let before = proxy.bytes.load(Ordering::SeqCst);
        for _ in 0..polls {
            let ok = t
                .git(&clone, Some(&proxied_known))
                .args(["fetch", "-q", &via, "+refs/heads/main:refs/heads/main"])
                .status()
                .unwrap();
            assert!(ok.success());
        }
        std::thread::sleep(Duration::from_millis(200));
        let git_bytes = proxy.bytes.load(Ordering::SeqCst) - before;
        report(
            &format!("poll.{}.orun.bytes", t.name),
            orun_bytes / polls as u64,
        );
        report(
            &format!("poll.{}.git.bytes", t.name),
            git_bytes / polls as u64,
        );
    }
}

/// Sums over the polls of one side.
#[derive(Default)]
struct Costs {
    polls: usize,
    wall: Vec<f64>,
    client_cpu: f64,
    server_cpu: f64,
}

impl Costs {
    /// Runs `n` polls; `counter` reads the client's CPU seconds (gitsync's own, or the reaped
    /// `git` children's).
    fn block(
        &mut self,
        server: Option<u32>,
        n: usize,
        counter: fn() -> f64,
        mut poll: impl FnMut(),
    ) {
        let client = counter();
        let server_start = server.map_or(0.0, |pid| cpu_seconds(pid, true));
        for _ in 0..n {
            let started = Instant::now();
            poll();
            self.wall.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        settle(server);
        self.client_cpu += counter() - client;
        self.server_cpu += server.map_or(0.0, |pid| cpu_seconds(pid, true)) - server_start;
        self.polls += n;
    }

    fn report(&mut self, key: &str) {
        self.wall.sort_by(f64::total_cmp);
        let median = self.wall[self.wall.len() / 2];
        report(&format!("{key}.wall_ms"), format!("{median:.2}"));
        report(
            &format!("{key}.client_cpu_ms"),
            format!("{:.2}", self.client_cpu * 1000.0 / self.polls as f64),
        );
        report(
            &format!("{key}.server_cpu_ms"),
            format!("{:.2}", self.server_cpu * 1000.0 / self.polls as f64),
        );
    }
}

/// One poller's record.
#[derive(Default)]
struct Seen {
    /// Poll start, milliseconds since the fleet's start, and how long it took.
    polls: Vec<(u64, f64)>,
    errors: u32,
    /// When it first had the commit pushed mid-run.
    got_new: Option<u64>,
}

/// One run of the fleet simulation.
#[derive(Clone, Copy)]
struct Fleet {
    interval: Duration,
    seconds: u64,
    /// First poll after a random part of one interval, as the agent does when it resumes.
    splay: bool,
    /// Push a commit half-way through.
    push_midway: bool,
}

/// `--pollers` mirrors polling one git daemon as `run` says.
fn fleet(opts: &Options, remote: &Remote, run: &Fleet, key: &str) {
    let Fleet {
        interval,
        seconds,
        splay,
        push_midway,
    } = *run;
    let daemon = git_daemon(remote);
    let url = format!("git://127.0.0.1:{}/m.git", daemon.port);
    let root = tempfile::tempdir().unwrap();
    // Every poller starts from a synced mirror, as a running fleet would: the first poll is
    // a no-op, not 200 clones.
    let seed_dir = root.path().join("seed");
    let options = || RemoteOptions::new(RemoteUrl::parse(&url, Path::new("/")).unwrap(), "main");
    Mirror::open(&seed_dir, options()).unwrap().sync().unwrap();
    for i in 0..opts.pollers {
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&seed_dir)
            .arg(root.path().join(format!("p{i}")))
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let new_head: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let barrier = Arc::new(Barrier::new(opts.pollers + 1));
    let epoch = Arc::new(Mutex::new(None::<Instant>));
    let handles: Vec<_> = (0..opts.pollers)
        .map(|i| {
            let dir = root.path().join(format!("p{i}"));
            let opts = options();
            let (stop, new_head, barrier, epoch) = (
                Arc::clone(&stop),
                Arc::clone(&new_head),
                Arc::clone(&barrier),
                Arc::clone(&epoch),
            );
            std::thread::spawn(move || {
                // As the agent polls: on a thread of its own, with the fetch deadline.
                let mirror = Arc::new(Mutex::new(Mirror::open(&dir, opts).unwrap()));
                let mut schedule = Schedule::new(interval, 0x9e37_79b9 ^ (i as u64 * 7919));
                let mut seen = Seen::default();
                barrier.wait();
                let epoch = epoch.lock().unwrap().unwrap();
                if splay {
                    std::thread::sleep(schedule.splay());
                }
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let at = started.duration_since(epoch).as_millis() as u64;
                    match gitsync::sync_with_deadline(&mirror, DEADLINE) {
                        Ok(s) => {
                            if seen.got_new.is_none()
                                && new_head.lock().unwrap().as_deref() == Some(s.head.as_str())
                            {
                                seen.got_new = Some(at + started.elapsed().as_millis() as u64);
                            }
                        }
                        Err(_) => seen.errors += 1,
                    }
                    seen.polls
                        .push((at, started.elapsed().as_secs_f64() * 1000.0));
                    let next = started + schedule.next_delay();
                    while Instant::now() < next && !stop.load(Ordering::SeqCst) {
                        std::thread::sleep((next - Instant::now()).min(Duration::from_millis(50)));
                    }
                }
                seen
            })
        })
        .collect();
    let server = daemon.child.id();
    let cpu_start = cpu_seconds(server, true);
    let client_start = self_cpu();
    let start = Instant::now();
    *epoch.lock().unwrap() = Some(start);
    barrier.wait();
    let half = Duration::from_secs(seconds) / 2;
    let mut pushed_at = None;
    let mut cpu_half = cpu_start;
    if push_midway {
        std::thread::sleep(half);
        cpu_half = cpu_seconds(server, true);
        // Written to the bare repo only after the commit exists, so a poller never waits for
        // a head it cannot know.
        let head = remote.commit_local(
            "change one deployment",
            &[("deployments/app-00.yaml", &changed_deployment())],
        );
        *new_head.lock().unwrap() = Some(head);
        pushed_at = Some(start.elapsed().as_millis() as u64);
        remote.push(false);
    }
    std::thread::sleep(Duration::from_secs(seconds).saturating_sub(start.elapsed()));
    stop.store(true, Ordering::SeqCst);
    let seen: Vec<Seen> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let cpu_end = cpu_seconds(server, true);
    let client = self_cpu() - client_start;

    let mut all: Vec<(u64, f64)> = seen.iter().flat_map(|s| s.polls.iter().copied()).collect();
    all.sort_by_key(|p| p.0);
    let polls = all.len();
    let errors: u32 = seen.iter().map(|s| s.errors).sum();
    let mut walls: Vec<f64> = all.iter().map(|p| p.1).collect();
    walls.sort_by(f64::total_cmp);
    let pct = |v: &[f64], q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    report(&format!("{key}.pollers"), opts.pollers);
    report(&format!("{key}.interval_ms"), interval.as_millis());
    report(&format!("{key}.seconds"), format!("{elapsed:.1}"));
    report(&format!("{key}.polls"), polls);
    report(&format!("{key}.errors"), errors);
    report(
        &format!("{key}.polls_per_s"),
        format!("{:.1}", polls as f64 / elapsed),
    );
    report(
        &format!("{key}.wall_p50_ms"),
        format!("{:.1}", pct(&walls, 0.5)),
    );
    report(
        &format!("{key}.wall_p95_ms"),
        format!("{:.1}", pct(&walls, 0.95)),
    );
    report(
        &format!("{key}.wall_p99_ms"),
        format!("{:.1}", pct(&walls, 0.99)),
    );
    report(
        &format!("{key}.server_cores"),
        format!("{:.3}", (cpu_end - cpu_start) / elapsed),
    );
    report(
        &format!("{key}.client_cores"),
        format!("{:.3}", client / elapsed),
    );
    // The herd: the busiest 100 ms in the first interval, and in the last one.
    let bucket = |from: u64, to: u64| {
        let mut counts = std::collections::BTreeMap::<u64, usize>::new();
        for (at, _) in all.iter().filter(|p| p.0 >= from && p.0 < to) {
            *counts.entry(at / 100).or_default() += 1;
        }
        counts.values().copied().max().unwrap_or(0)
    };
    let iv = interval.as_millis() as u64;
    let total_ms = (elapsed * 1000.0) as u64;
    report(&format!("{key}.peak_per_100ms_first"), bucket(0, iv));
    report(
        &format!("{key}.peak_per_100ms_last"),
        bucket(total_ms.saturating_sub(iv), total_ms),
    );
    report(
        &format!("{key}.even_per_100ms"),
        format!("{:.1}", opts.pollers as f64 * 100.0 / iv as f64),
    );
    if let Some(pushed) = pushed_at {
        let first_half: Vec<_> = all.iter().filter(|p| p.0 < pushed).collect();
        let noop_cpu_ms = (cpu_half - cpu_start) * 1000.0 / first_half.len().max(1) as f64;
        report(
            &format!("{key}.server_cpu_per_poll_ms"),
            format!("{noop_cpu_ms:.2}"),
        );
        let mut lags: Vec<f64> = seen
            .iter()
            .filter_map(|s| s.got_new.map(|t| t.saturating_sub(pushed) as f64))
            .collect();
        lags.sort_by(f64::total_cmp);
        report(&format!("{key}.got_commit"), lags.len());
        if !lags.is_empty() {
            report(
                &format!("{key}.commit_p50_ms"),
                format!("{:.0}", pct(&lags, 0.5)),
            );
            report(
                &format!("{key}.commit_max_ms"),
                format!("{:.0}", pct(&lags, 1.0)),
            );
        }
        // What the fetches cost beyond the no-op polls of the second half.
        let second_half = polls - first_half.len();
        let extra = (cpu_end - cpu_half) * 1000.0 - noop_cpu_ms * second_half as f64;
        report(
            &format!("{key}.server_cpu_per_fetch_ms"),
            format!("{:.2}", extra.max(0.0) / lags.len().max(1) as f64),
        );
    }
}

fn changed_deployment() -> String {
    "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: app-00\nspec:\n  image: registry.example.com/app-00:1.1\n  ports:\n    - containerPort: 8080\n      port: 10000\n  env:\n    LOG_LEVEL: debug\n".to_owned()
}

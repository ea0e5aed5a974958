//! Hostile repositories (issue 12): time and peak memory of the release `orun validate` (and
//! `orun plan`) on repositories built to make them work hard, at 1 000, 10 000 and 100 000
//! entries of each shape, and on the exact cases the issue reported.
//!
//! Each shape is one defect of issue 12 made to scale: the same host port published n times
//! (in one file, or across n files), n `secrets.yaml` entries offered to n deployments, n
//! nodes each with a deployment on one host port, n alias-heavy files (refused, and within
//! budget), n files quoting a planted secret, a snapshot chaining n blocked names. Growth is
//! judged per entry: time at 100 000 over ten times that at 10 000 is 1 when linear.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

/// One measured run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Run {
    pub(crate) shape: String,
    pub(crate) entries: usize,
    /// Median wall time of three runs, seconds.
    pub(crate) seconds: f64,
    /// Largest peak RSS of the runs, MiB.
    pub(crate) peak_mib: f64,
    /// The verdict line the command printed last (its exit status in brackets).
    pub(crate) verdict: String,
    /// Input size in bytes.
    pub(crate) bytes: u64,
}

/// What the hostile part measured.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    /// Each shape at each size, with raised limits.
    pub(crate) growth: Vec<Run>,
    /// The cases issue 12 reported, with the default limits.
    pub(crate) reported: Vec<Run>,
}

const HEAD: &str = "apiVersion: run.orcra.dev/v0alpha\n";
/// Planted in keys and values of the `echo` shape; the bench fails if any output holds it.
const CANARY: &str = "hunter2-canary";

fn node(name: &str) -> String {
    format!(
        "{HEAD}kind: Node\nmetadata:\n  name: {name}\nspec:\n  host: 10.0.0.1\n  gitRepo: /srv/r.git\n"
    )
}

fn deployment(name: &str, body: &str) -> String {
    format!("{HEAD}kind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: nginx:1\n{body}")
}

const ENC: &str = "ENC[AES256_GCM,data:YQ==,iv:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]";

/// A shape: how to build a repository of `n` entries, and what to run on it.
struct Shape {
    name: &'static str,
    build: fn(&Path, usize) -> Result<Vec<String>>,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "ports",
        build: ports,
    },
    Shape {
        name: "port-files",
        build: port_files,
    },
    Shape {
        name: "secrets",
        build: secrets,
    },
    Shape {
        name: "landing",
        build: landing,
    },
    Shape {
        name: "aliases",
        build: aliases,
    },
    Shape {
        name: "aliases-valid",
        build: aliases_valid,
    },
    Shape {
        name: "echo",
        build: echo,
    },
    Shape {
        name: "chain",
        build: chain,
    },
];

/// What each shape is, for the report.
pub(crate) const SHAPE_NOTES: &[(&str, &str)] = &[
    (
        "ports",
        "one deployment publishing host port 9 n times (defect 1)",
    ),
    (
        "port-files",
        "n deployment files, each publishing host port 9 (defect 1)",
    ),
    (
        "secrets",
        "n `secrets.yaml` entries offered to n deployments, resolved for the node (defect 2)",
    ),
    (
        "landing",
        "n nodes and n deployments, each on one node, all on host port 9 (defect 3)",
    ),
    (
        "aliases",
        "n files of 3 KB, each expanding a 99-item anchor 1 000 times (defect 4; reading stops at 1 000 errors)",
    ),
    (
        "aliases-valid",
        "n files each replaying an anchor 20 times, inside the alias budget (defect 4, accepted)",
    ),
    (
        "echo",
        "n files each with a secret planted in a key, a value and an unknown field (defect 6; the bench fails if any output quotes it)",
    ),
    (
        "chain",
        "`orun plan --actual`: n deployments whose names a chain of n blocked containers holds (defect 8)",
    ),
];

fn write(root: &Path, path: &str, text: &str) -> Result<()> {
    let p = root.join(path);
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
}

fn ports(root: &Path, n: usize) -> Result<Vec<String>> {
    let mut body = String::from("  ports:\n");
    for i in 0..n {
        let _ = writeln!(body, "    - {{containerPort: {}, port: 9}}", i % 60_000 + 1);
    }
    write(root, "deployments/web.yaml", &deployment("web", &body))?;
    Ok(validate(root))
}

fn port_files(root: &Path, n: usize) -> Result<Vec<String>> {
    for i in 0..n {
        let name = format!("d{i}");
        write(
            root,
            &format!("deployments/{name}.yaml"),
            &deployment(&name, "  ports:\n    - {containerPort: 80, port: 9}\n"),
        )?;
    }
    Ok(validate(root))
}

fn secrets(root: &Path, n: usize) -> Result<Vec<String>> {
    let mut s = String::new();
    for i in 0..n {
        let _ = writeln!(s, "K{i}: {ENC}");
    }
    let _ = write!(
        s,
        "sops:\n  age:\n    - recipient: age1x\n      enc: x\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: {ENC}\n"
    );
    write(root, "secrets.yaml", &s)?;
    write(root, "nodes/n.yaml", &node("n"))?;
    for i in 0..n {
        let name = format!("d{i}");
        write(
            root,
            &format!("deployments/{name}.yaml"),
            &deployment(&name, ""),
        )?;
    }
    let mut args = validate(root);
    args.extend(["--node".to_owned(), "n".to_owned()]);
    Ok(args)
}

fn landing(root: &Path, n: usize) -> Result<Vec<String>> {
    for i in 0..n {
        write(root, &format!("nodes/n{i}.yaml"), &node(&format!("n{i}")))?;
        let name = format!("d{i}");
        write(
            root,
            &format!("deployments/{name}.yaml"),
            &deployment(
                &name,
                &format!("  nodes: [n{i}]\n  ports:\n    - {{containerPort: 80, port: 9}}\n"),
            ),
        )?;
    }
    Ok(validate(root))
}

fn aliases(root: &Path, n: usize) -> Result<Vec<String>> {
    alias_files(root, n, 99, 1_000)
}

fn aliases_valid(root: &Path, n: usize) -> Result<Vec<String>> {
    alias_files(root, n, 10, 20)
}

/// `n` deployment files, each with an anchor of `items` and a sequence of `uses` aliases.
fn alias_files(root: &Path, n: usize, items: usize, uses: usize) -> Result<Vec<String>> {
    let anchor = vec!["1"; items].join(",");
    let uses = vec!["*a"; uses].join(",");
    for i in 0..n {
        write(
            root,
            &format!("deployments/d{i}.yaml"),
            &format!(
                "{HEAD}x-a: &a [{anchor}]\nx-b: [{uses}]\nkind: Deployment\nmetadata:\n  name: d{i}\nspec:\n  image: nginx:1\n"
            ),
        )?;
    }
    Ok(validate(root))
}

fn echo(root: &Path, n: usize) -> Result<Vec<String>> {
    for i in 0..n {
        let name = format!("d{i}");
        write(
            root,
            &format!("deployments/{name}.yaml"),
            &deployment(
                &name,
                &format!(
                    "  env:\n    {CANARY}=x: v\n    B: [{CANARY}]\n  restart: {CANARY}\n  {CANARY}: 1\n"
                ),
            ),
        )?;
    }
    Ok(validate(root))
}

fn chain(root: &Path, n: usize) -> Result<Vec<String>> {
    write(root, "nodes/n1.yaml", &node("n1"))?;
    let mut containers = vec![serde_json::json!({
        "id": "stranger", "name": "d0", "image_id": "sha256:x",
        "state": {"status": "running"}, "labels": {}
    })];
    for i in 0..n {
        let name = format!("d{i}");
        write(
            root,
            &format!("deployments/{name}.yaml"),
            &deployment(&name, ""),
        )?;
        // d_i's container is stale and holds the name d_{i+1} wants.
        containers.push(serde_json::json!({
            "id": format!("c{i}"), "name": format!("d{}", i + 1), "image_id": "sha256:x",
            "state": {"status": "running"},
            "labels": {
                "orun.node": "n1", "orun.environment": "main",
                "orun.deployment": name, "orun.spec-hash": "stale",
            }
        }));
    }
    let snapshot = root.join("actual.json");
    fs::write(
        &snapshot,
        serde_json::to_vec(&serde_json::json!({ "containers": containers }))?,
    )?;
    Ok(vec![
        "plan".to_owned(),
        "--repo".to_owned(),
        root.display().to_string(),
        "--node".to_owned(),
        "n1".to_owned(),
        "--actual".to_owned(),
        snapshot.display().to_string(),
    ])
}

fn validate(root: &Path) -> Vec<String> {
    vec!["validate".to_owned(), root.display().to_string()]
}

/// Limits raised past the largest shape, so the growth runs measure the checks and not the
/// caps (with the default caps, a 100 000-port file is refused unread at once).
const RAISED: [&str; 6] = [
    "--max-file-bytes",
    "1073741824",
    "--max-total-bytes",
    "4294967296",
    "--max-files",
    "1000000",
];

fn dir_bytes(root: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                _ => total += e.metadata().map_or(0, |m| m.len()),
            }
        }
    }
    total
}

/// Runs `orun args` three times under GNU time: median wall seconds, largest peak RSS, the
/// last line printed and the exit status.
fn measure(orun: &Path, args: &[String]) -> Result<(f64, f64, String)> {
    let mut walls = Vec::new();
    let mut peak: f64 = 0.0;
    let mut verdict = String::new();
    let rss_file = super::super::workspace_root().join("target/bench/hostile.rss");
    for _ in 0..3 {
        let start = Instant::now();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M", "-o"])
            .arg(&rss_file)
            .arg(orun)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running orun under /usr/bin/time")?;
        walls.push(start.elapsed().as_secs_f64());
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains(CANARY) {
            bail!("orun {} quoted the planted secret", args.join(" "));
        }
        let kib: f64 = fs::read_to_string(&rss_file)?
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .context("no peak RSS from /usr/bin/time")?;
        peak = peak.max(kib / 1024.0);
        // `validate` ends its verdict with the node it resolved; the verdict is the line that
        // says valid or invalid, else the last.
        let last = text
            .lines()
            .find(|l| l.starts_with("valid:") || l.starts_with("invalid:"))
            .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or_default();
        let code = out
            .status
            .code()
            .map_or("signal".to_owned(), |c| c.to_string());
        verdict = format!("{} [exit {code}]", shorten(last));
    }
    walls.sort_by(f64::total_cmp);
    Ok((walls[1], peak, verdict))
}

fn shorten(line: &str) -> String {
    let line = line.replace('|', "\\|");
    if line.chars().count() > 110 {
        format!("{}…", line.chars().take(110).collect::<String>())
    } else {
        line
    }
}

/// Builds each shape at each size in `target/bench/hostile`, measures, and removes it.
pub(crate) fn run(quick: bool) -> Result<Figures> {
    if !Path::new("/usr/bin/time").exists() {
        if !super::super::running_as_root() {
            bail!("GNU time (/usr/bin/time) is missing: install the `time` package");
        }
        super::super::apt_install(&["time"])?;
    }
    super::super::Step::cargo("release CLI", &["build", "--release", "-p", "orun"]).run()?;
    let orun = super::super::workspace_root().join("target/release/orun");
    let base = super::super::workspace_root().join("target/bench/hostile");
    let sizes: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    let mut figures = Figures::default();
    for shape in SHAPES {
        for &n in sizes {
            eprintln!("bench: hostile {} at {n}", shape.name);
            figures.growth.push(case(&orun, &base, shape, n, &RAISED)?);
        }
    }
    // The cases as reported, with the limits the agent uses.
    let reported: [(&str, usize); 6] = [
        ("ports", 5_000),
        ("port-files", 3_000),
        ("secrets", 4_000),
        ("landing", 1_500),
        ("aliases", 20_000),
        ("chain", 6_000),
    ];
    for (name, n) in reported {
        let shape = SHAPES
            .iter()
            .find(|s| s.name == name)
            .context("a reported case names a shape")?;
        eprintln!("bench: reported case {name} at {n}");
        figures.reported.push(case(&orun, &base, shape, n, &[])?);
    }
    // `--actual` on a device: refused at once, not read forever.
    let examples = super::super::workspace_root().join("examples");
    let args: Vec<String> = [
        "plan",
        "--repo",
        &examples.display().to_string(),
        "--node",
        "web-01",
        "--actual",
        "/dev/zero",
    ]
    .map(str::to_owned)
    .to_vec();
    let (seconds, peak_mib, verdict) = measure(&orun, &args)?;
    figures.reported.push(Run {
        shape: "actual-device".to_owned(),
        entries: 0,
        seconds,
        peak_mib,
        verdict,
        bytes: 0,
    });
    Ok(figures)
}

/// Builds `shape` at `n` in a fresh folder, measures it with `extra` flags, removes it.
fn case(orun: &Path, base: &Path, shape: &Shape, n: usize, extra: &[&str]) -> Result<Run> {
    let root = fresh(base, shape.name)?;
    let mut args = (shape.build)(&root, n)?;
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let (seconds, peak_mib, verdict) = measure(orun, &args)?;
    let bytes = dir_bytes(&root);
    fs::remove_dir_all(&root)?;
    Ok(Run {
        shape: shape.name.to_owned(),
        entries: n,
        seconds,
        peak_mib,
        verdict,
        bytes,
    })
}

fn fresh(base: &Path, name: &str) -> Result<PathBuf> {
    let root = base.join(name);
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    fs::create_dir_all(&root)?;
    Ok(root)
}

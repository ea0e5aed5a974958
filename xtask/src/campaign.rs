//! `cargo xtask fuzz --cpu-minutes N`: long fuzz campaigns, each stopped once the fuzzer has
//! used N minutes of CPU (not of wall time, so a busy machine gives no shorter campaign),
//! and their figures written into docs/BENCHMARKS.md as section 8.
//!
//! A campaign runs the target's binary straight, at `nice 19`, on the untracked corpus of
//! earlier runs, the committed seeds and the regressions, with libFuzzer's final statistics;
//! its log goes to `target/fuzz-campaigns/<target>.log` and ends with a `campaign:` line
//! (CPU and wall seconds). The section is rendered from every log there, so campaigns run
//! one at a time (or on two machines' halves) add up to one table.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What each target feeds its code, for the table.
const WHAT: [(&str, &str); 9] = [
    ("parse_revision", "any bytes as any manifest file"),
    (
        "load_repo",
        "whole repositories of arbitrary files and links (the manifest loader)",
    ),
    (
        "plan_actual",
        "the planner over arbitrary observed containers",
    ),
    (
        "values",
        "the value parsers (bind paths, durations, sizes, images, domains)",
    ),
    (
        "sops_envelope",
        "a `secrets.yaml` decrypted with SOPS's test key",
    ),
    (
        "path_resolution",
        "host path resolution over arbitrary symbolic links",
    ),
    (
        "host_policy",
        "the host policy over arbitrary create requests, allowances and links",
    ),
    (
        "status_request",
        "any bytes on one connection to the status server, a token set",
    ),
    ("commit_signature", "commit signatures and the trust files"),
];

/// The section's heading; `cargo xtask bench` keeps the section as it finds it.
pub(crate) const HEADING: &str = "## 8. Fuzz campaigns";

fn log_dir() -> PathBuf {
    crate::workspace_root().join("target/fuzz-campaigns")
}

/// Runs one campaign of `target` until it has used `cpu_seconds` of CPU.
pub(crate) fn run(target: &str, cpu_seconds: u64) -> Result<()> {
    let root = crate::workspace_root();
    crate::Step::cargo(
        "fuzz targets build",
        &["fuzz", "build", "-s", "none", target],
    )
    .needs(crate::Tool::CARGO_FUZZ)
    .run()?;
    let binary = root
        .join("fuzz/target")
        .join(host_triple()?)
        .join("release")
        .join(target);
    let corpus = root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&corpus).context("creating the fuzz corpus")?;
    std::fs::create_dir_all(log_dir()).context("creating target/fuzz-campaigns")?;
    let artifacts = log_dir().join("artifacts");
    std::fs::create_dir_all(&artifacts)?;
    let log_path = log_dir().join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut command = Command::new("nice");
    command
        .args(["-n", "19"])
        .arg(&binary)
        .arg(&corpus)
        .arg(root.join("fuzz/seeds").join(target));
    let regressions = root.join("fuzz/regressions").join(target);
    if regressions.is_dir() {
        command.arg(regressions);
    }
    command
        .arg("-print_final_stats=1")
        .arg(format!(
            "-artifact_prefix={}/{target}-",
            artifacts.display()
        ))
        .stdout(Stdio::null())
        .stderr(log);
    if target == "status_request" {
        // Its seeds hold a 20 KB header; pipelined requests need room beyond it.
        command.arg("-max_len=65536");
    }
    eprintln!(
        "campaign: {target} for {cpu_seconds} CPU seconds, log {}",
        log_path.display()
    );
    let started = Instant::now();
    let mut child = command.spawn().context("starting the fuzz target")?;
    let mut used = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        // `nice` execs the target, so the child's pid is the fuzzer's.
        used = cpu_of(child.id()).unwrap_or(used);
        if used >= cpu_seconds {
            // libFuzzer prints its final statistics on an interrupt.
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_secs(5));
    };
    let line = format!(
        "campaign: target={target} cpu_seconds={used} wall_seconds={} exit={}\n",
        started.elapsed().as_secs(),
        status.code().unwrap_or(-1)
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)?
        .write_all_str(&line)?;
    let figures = Figures::read(&std::fs::read_to_string(&log_path)?);
    if figures.crashes > 0 {
        bail!("{target} crashed: the input is in {}", artifacts.display());
    }
    Ok(())
}

/// Writes section 8 of docs/BENCHMARKS.md from every campaign log there is.
pub(crate) fn report() -> Result<()> {
    let mut rows = Vec::new();
    for (target, what) in WHAT {
        let Ok(text) = std::fs::read_to_string(log_dir().join(format!("{target}.log"))) else {
            continue;
        };
        rows.push((target, what, Figures::read(&text)));
    }
    if rows.is_empty() {
        bail!("no campaign logs in {}", log_dir().display());
    }
    let path = crate::workspace_root().join("docs/BENCHMARKS.md");
    let doc = std::fs::read_to_string(&path).context("reading docs/BENCHMARKS.md")?;
    let section = render(&rows);
    std::fs::write(&path, splice(&doc, &section)).context("writing docs/BENCHMARKS.md")?;
    eprintln!(
        "campaigns: {} target(s) written to {}",
        rows.len(),
        path.display()
    );
    Ok(())
}

/// `doc` with section 8 replaced by `section`, or put before the notes.
pub(crate) fn splice(doc: &str, section: &str) -> String {
    if let Some(start) = doc.find(HEADING) {
        let after = &doc[start + HEADING.len()..];
        let end = after
            .find("\n## ")
            .map_or(doc.len(), |i| start + HEADING.len() + i + 1);
        let rest = &doc[end..];
        return if rest.is_empty() {
            format!("{}{section}", &doc[..start])
        } else {
            format!("{}{section}\n{rest}", &doc[..start])
        };
    }
    match doc.find("## Notes") {
        Some(at) => format!("{}{section}\n{}", &doc[..at], &doc[at..]),
        None => format!("{doc}\n{section}"),
    }
}

/// The section as found in `doc`, if any, for `cargo xtask bench` to keep.
pub(crate) fn existing(doc: &str) -> Option<String> {
    let start = doc.find(HEADING)?;
    let after = &doc[start + HEADING.len()..];
    let end = after
        .find("\n## ")
        .map_or(doc.len(), |i| start + HEADING.len() + i + 1);
    Some(doc[start..end].to_owned())
}

fn render(rows: &[(&str, &str, Figures)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{HEADING}

Each target fuzzed alone until libFuzzer had used its CPU budget (`cargo xtask fuzz --cpu-minutes 30 TARGET`, then `cargo xtask fuzz --report`), at `nice 19`, from the committed seeds, the regressions and the corpus of earlier runs; no sanitizer (stable Rust, code without `unsafe`). Coverage is libFuzzer's own: `cov` counts the code edges reached (orun's and its libraries'), `ft` the features (edges by hit count, compared values). CI fuzzes each target for 30 s (`cargo xtask fuzz --seconds 30`).

| target | what it fuzzes | CPU | wall | runs | runs/s | cov | ft | corpus | crashes |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (target, what, f) in rows {
        let per_second = f.runs.checked_div(f.cpu_seconds).unwrap_or(0);
        let _ = writeln!(
            s,
            "| `{target}` | {what} | {:.1} min | {:.1} min | {} | {per_second} | {} | {} | {} | {} |",
            f.cpu_seconds as f64 / 60.0,
            f.wall_seconds as f64 / 60.0,
            f.runs,
            f.cov,
            f.ft,
            f.corpus,
            f.crashes
        );
    }
    let stamp = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let _ = writeln!(
        s,
        "\nReported on {} at commit {}; each campaign's log is in `target/fuzz-campaigns/`.",
        stamp("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        stamp("git", &["rev-parse", "--short", "HEAD"])
    );
    let kept = regressions();
    let _ = writeln!(
        s,
        "\nInputs a campaign crashed on are kept in `fuzz/regressions/<target>/`, run first by every `cargo xtask fuzz`, each with a unit test beside the fix{}",
        if kept.is_empty() {
            ".".to_owned()
        } else {
            format!(": {}.", kept.join(", "))
        }
    );
    s
}

fn regressions() -> Vec<String> {
    let dir = crate::workspace_root().join("fuzz/regressions");
    let mut out = Vec::new();
    for target in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for input in std::fs::read_dir(target.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(format!(
                "`{}/{}`",
                target.file_name().to_string_lossy(),
                input.file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

/// What one campaign log says.
#[derive(Debug, Default, PartialEq)]
struct Figures {
    cpu_seconds: u64,
    wall_seconds: u64,
    runs: u64,
    cov: u64,
    ft: u64,
    corpus: u64,
    crashes: u64,
}

impl Figures {
    fn read(log: &str) -> Self {
        let mut f = Figures::default();
        let field = |line: &str, key: &str| -> Option<u64> {
            let rest = line.split(key).nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        for line in log.lines() {
            if line.starts_with('#') && line.contains(" cov: ") {
                f.cov = field(line, " cov: ").unwrap_or(f.cov);
                f.ft = field(line, " ft: ").unwrap_or(f.ft);
                f.corpus = field(line, " corp: ").unwrap_or(f.corpus);
            } else if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
                f.runs = n.trim().parse().unwrap_or(f.runs);
            } else if line.contains("Test unit written to") {
                f.crashes += 1;
            } else if line.starts_with("campaign: ") {
                f.cpu_seconds = field(line, "cpu_seconds=").unwrap_or(0);
                f.wall_seconds = field(line, "wall_seconds=").unwrap_or(0);
            }
        }
        f
    }
}

/// The CPU seconds `pid` has used, from `/proc`.
fn cpu_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports in clock ticks of 1/100 s on every architecture it runs orun on.
    Some(ticks / 100)
}

fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV names no host")
}

trait WriteStr {
    fn write_all_str(&mut self, s: &str) -> std::io::Result<()>;
}

impl WriteStr for std::fs::File {
    fn write_all_str(&mut self, s: &str) -> std::io::Result<()> {
        use std::io::Write as _;
        self.write_all(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_gives_its_figures() {
        let log = "INFO: seed\n#2\tINITED cov: 10 ft: 20 corp: 3/1Kb exec/s: 0\n\
                   #99\tREDUCE cov: 14374 ft: 45728 corp: 4589/3302Kb lim: 1 exec/s: 690\n\
                   stat::number_of_executed_units: 1284116\nstat::peak_rss_mb: 57\n\
                   campaign: target=t cpu_seconds=1830 wall_seconds=2400 exit=72\n";
        assert_eq!(
            Figures::read(log),
            Figures {
                cpu_seconds: 1830,
                wall_seconds: 2400,
                runs: 1_284_116,
                cov: 14374,
                ft: 45728,
                corpus: 4589,
                crashes: 0
            }
        );
    }

    #[test]
    fn the_section_is_replaced_or_put_before_the_notes() {
        let doc = "# B\n\n## 7. I\nx\n\n## Notes: n\ny\n";
        let once = splice(doc, "## 8. Fuzz campaigns\nA\n");
        assert_eq!(
            once,
            "# B\n\n## 7. I\nx\n\n## 8. Fuzz campaigns\nA\n\n## Notes: n\ny\n"
        );
        let twice = splice(&once, "## 8. Fuzz campaigns\nB\n");
        assert_eq!(
            twice,
            "# B\n\n## 7. I\nx\n\n## 8. Fuzz campaigns\nB\n\n## Notes: n\ny\n"
        );
        assert_eq!(existing(&twice).unwrap(), "## 8. Fuzz campaigns\nB\n\n");
        // What `cargo xtask bench` does with it: the same document again.
        let kept = format!("{}\n", existing(&twice).unwrap().trim_end());
        assert_eq!(splice(&twice, &kept), twice);
    }
}

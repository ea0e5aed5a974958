//! Part `sim` of `cargo xtask bench`: how fast the engine's deterministic simulation runs
//! (`crates/agent-sim`, release), in scenarios per second, from the line its test prints.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// One run's figures.
#[derive(Debug, Default, Clone)]
pub(crate) struct Figures {
    pub(crate) scenarios: u64,
    pub(crate) seconds: f64,
    pub(crate) threads: u64,
    /// The rest of the line: steps, passes, crashes, Docker changes.
    pub(crate) detail: String,
}

impl Figures {
    pub(crate) fn per_second(&self) -> f64 {
        self.scenarios as f64 / self.seconds.max(1e-9)
    }
}

/// Runs `scenarios` scenarios from seed 0 in release and reads the summary line.
pub(crate) fn run(scenarios: u64) -> Result<Figures> {
    super::super::Step::cargo(
        "release simulation build",
        &["test", "--release", "-p", "agent-sim", "--no-run"],
    )
    .run()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(super::super::SIM_TEST)
        .env("ORUN_SIM_SCENARIOS", scenarios.to_string())
        .env("ORUN_SIM_SEED", "0")
        .current_dir(super::super::workspace_root())
        .output()
        .context("running the simulation")?;
    let text = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("the simulation failed:\n{text}");
    }
    let line = text
        .lines()
        .find(|l| l.contains(" scenarios from seed "))
        .context("the simulation printed no summary")?;
    parse(line)
}

/// `10000 scenarios from seed 0 in 41.3s (242/s on 2 threads): 98000 steps, …`
fn parse(line: &str) -> Result<Figures> {
    let scenarios = line
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .context("no scenario count")?;
    let seconds = line
        .split(" in ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|w| w.parse().ok())
        .context("no duration")?;
    let threads = line
        .split(" on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|w| w.parse().ok())
        .context("no thread count")?;
    let detail = line.split("): ").nth(1).unwrap_or_default().to_owned();
    Ok(Figures {
        scenarios,
        seconds,
        threads,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_is_read() {
        let f = parse("10000 scenarios from seed 0 in 41.3s (242/s on 2 threads): 98000 steps, 48000 passes, 3200 crashes, 150000 docker changes").unwrap();
        assert_eq!((f.scenarios, f.threads), (10_000, 2));
        assert!((f.seconds - 41.3).abs() < 1e-9);
        assert!(f.detail.starts_with("98000 steps"));
    }
}

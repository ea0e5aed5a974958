//! Runs the seeded scenarios against the real engine: `ORUN_SIM_SCENARIOS` of them (10 000
//! unless set) from seed `ORUN_SIM_SEED` (0 unless set). `cargo xtask sim` sets both; a
//! failure prints each failing seed with the steps that led to it.

use std::time::Instant;

fn var(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn every_scenario_keeps_every_invariant() {
    let first = var("ORUN_SIM_SEED", 0);
    let count = var("ORUN_SIM_SCENARIOS", 10_000);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let started = Instant::now();
    let (failures, total) = agent_sim::run_many(first, count, threads);
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::print_stderr, reason = "the run's size and speed, for the log")]
    {
        eprintln!(
            "{count} scenarios from seed {first} in {secs:.1}s ({:.0}/s on {threads} threads): {} steps, {} passes, {} crashes, {} docker changes",
            count as f64 / secs.max(1e-9),
            total.steps,
            total.passes,
            total.crashes,
            total.ops
        );
    }
    // Failures by kind (the message without the names in it), each with a few seeds.
    let mut kinds: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for f in &failures {
        let kind: String = f
            .what
            .split(':')
            .next()
            .unwrap_or_default()
            .chars()
            .take(90)
            .collect();
        kinds.entry(kind).or_default().push(f.seed);
    }
    for (kind, seeds) in &kinds {
        #[allow(
            clippy::print_stderr,
            reason = "a summary of the failures, for the log"
        )]
        {
            eprintln!(
                "{:>5} × {kind} (seeds {:?})",
                seeds.len(),
                &seeds[..seeds.len().min(5)]
            );
        }
    }
    let shown: Vec<String> = failures.iter().take(3).map(ToString::to_string).collect();
    assert!(
        failures.is_empty(),
        "{} of {count} scenarios failed; the first:\n{}",
        failures.len(),
        shown.join("\n")
    );
    // The run did something: every scenario ran passes.
    assert!(count == 0 || total.passes as u64 >= count, "{total:?}");
}

/// A seed replays exactly: the same Docker calls in the same order, whatever ran before it
/// in the process and on whichever thread.
#[test]
fn a_seed_replays_exactly() {
    let first: Vec<_> = (0..20)
        .map(|seed| agent_sim::run(seed).map_err(|f| f.what))
        .collect();
    let again: Vec<_> = (0..20)
        .rev()
        .map(|seed| agent_sim::run(seed).map_err(|f| f.what))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert_eq!(first, again);
    // The runs did something different from each other.
    let distinct: std::collections::BTreeSet<u64> = first
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|s| s.fingerprint))
        .collect();
    assert!(distinct.len() > 10, "{distinct:?}");
}

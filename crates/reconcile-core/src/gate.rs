//! The promotion gate and liveness tracking: pure judgement of whether a new container has
//! earned promotion, and of when a promoted one must be restarted.
//!
//! The agent feeds in what it saw (container state, Docker's HEALTHCHECK verdict, probe
//! results) with a monotonic time in milliseconds; the gate answers wait, promote or fail.
//! No IO and no clock here, so every timing rule is tested without waiting for it.

use std::fmt;

use manifest_model::{DeploymentSpec, Probe};
use serde::{Deserialize, Serialize};

use crate::actual::{ContainerState, HealthStatus};

/// Milliseconds on a monotonic clock the caller keeps.
pub type Millis = u64;

/// How one probe is run, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbePolicy {
    /// Between probes.
    pub period: Millis,
    /// Before one probe counts as failed.
    pub timeout: Millis,
    /// Consecutive failures that count as failing.
    pub failure_threshold: u32,
    /// After start, before the first probe.
    pub initial_delay: Millis,
}

impl ProbePolicy {
    fn from_probe(p: &Probe) -> Self {
        Self {
            period: u64::from(p.period_seconds.max(1)) * 1000,
            timeout: u64::from(p.timeout_seconds.max(1)) * 1000,
            failure_threshold: p.failure_threshold.max(1),
            initial_delay: u64::from(p.initial_delay_seconds) * 1000,
        }
    }
}

/// What a new container must show before it is promoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatePolicy {
    /// How long it must stay healthy without interruption.
    pub min_healthy: Millis,
    /// How long it may take to get there, from its start.
    pub deadline: Millis,
    /// The readiness probe, if any.
    pub readiness: Option<ProbePolicy>,
    /// The liveness probe, if any: failing it during the gate fails the rollout.
    pub liveness: Option<ProbePolicy>,
}

impl GatePolicy {
    /// The policy a deployment's manifest asks for (`rollout`, `health`).
    pub fn of(spec: &DeploymentSpec) -> Self {
        Self {
            min_healthy: u64::from(spec.rollout.min_healthy_seconds) * 1000,
            // A deadline shorter than the healthy time could never be met.
            deadline: u64::from(
                spec.rollout
                    .healthy_deadline_seconds
                    .max(spec.rollout.min_healthy_seconds),
            ) * 1000,
            readiness: spec.health.readiness.as_ref().map(ProbePolicy::from_probe),
            liveness: spec.health.liveness.as_ref().map(ProbePolicy::from_probe),
        }
    }
}

/// The first retry of a readiness probe that has not passed yet; it doubles up to the period.
const EAGER_RETRY: Millis = 100;

/// A probe's consecutive results, as Kubernetes counts them: one success makes it pass, and
/// `failure_threshold` failures in a row make it fail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeTrack {
    policy: ProbePolicy,
    next_due: Millis,
    failures: u32,
    passing: bool,
    last: Option<String>,
    /// Until the first success, the wait after a failure (`None`: always the period).
    eager: Option<Millis>,
    /// A readiness probe: eager again after a reset.
    readiness: bool,
}

impl ProbeTrack {
    /// A probe for a container started at `started`, run every period.
    pub fn new(policy: ProbePolicy, started: Millis) -> Self {
        Self {
            policy,
            next_due: started.saturating_add(policy.initial_delay),
            failures: 0,
            passing: false,
            last: None,
            eager: None,
            readiness: false,
        }
    }

    /// A readiness probe: until it first passes, a failure is retried after
    /// `EAGER_RETRY`, doubling up to the period, so a server that listens 20 ms after its
    /// start is promoted then and not a whole period later. Only readiness may be eager: its
    /// failures never fail a rollout, while liveness failures count toward a restart.
    pub fn readiness(policy: ProbePolicy, started: Millis) -> Self {
        Self {
            eager: Some(EAGER_RETRY),
            readiness: true,
            ..Self::new(policy, started)
        }
    }

    /// Whether a probe should run at `now`.
    pub fn due(&self, now: Millis) -> bool {
        now >= self.next_due
    }

    /// When the next probe is due.
    pub fn next_due(&self) -> Millis {
        self.next_due
    }

    /// How long one probe may take.
    pub fn timeout(&self) -> Millis {
        self.policy.timeout
    }

    /// Records a result at `now`; `detail` says what was seen (a status line, an error).
    /// Returns true when this result makes the probe fail (the threshold is reached now).
    pub fn record(&mut self, now: Millis, ok: bool, detail: String) -> bool {
        let wait = match self.eager {
            Some(retry) if !ok => {
                self.eager = Some(retry.saturating_mul(2));
                retry.min(self.policy.period)
            }
            _ => self.policy.period,
        };
        self.next_due = now.saturating_add(wait);
        self.last = Some(detail);
        if ok {
            self.eager = None;
            self.failures = 0;
            self.passing = true;
            false
        } else {
            self.failures = self.failures.saturating_add(1);
            let failed = self.failures >= self.policy.failure_threshold;
            if failed {
                self.passing = false;
            }
            failed && self.failures == self.policy.failure_threshold
        }
    }

    /// Passing: the last success has not been followed by `failure_threshold` failures.
    pub fn passing(&self) -> bool {
        self.passing
    }

    /// Failing: `failure_threshold` failures in a row.
    pub fn failing(&self) -> bool {
        self.failures >= self.policy.failure_threshold
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// What the last probe saw.
    pub fn last(&self) -> Option<&str> {
        self.last.as_deref()
    }

    /// Puts the next probe off by one period (the container is not running, or cannot be
    /// looked at): no probing in a loop meanwhile.
    pub fn defer(&mut self, now: Millis) {
        self.next_due = now.saturating_add(self.policy.period);
    }

    /// Starts counting afresh (after a restart), waiting the initial delay again.
    pub fn reset(&mut self, now: Millis) {
        *self = if self.readiness {
            Self::readiness(self.policy, now)
        } else {
            Self::new(self.policy, now)
        };
    }
}

/// What the agent saw of the new container at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Its state.
    pub state: ContainerState,
    /// Docker's HEALTHCHECK verdict, if the image defines one.
    pub health: Option<HealthStatus>,
    /// The last HEALTHCHECK output, if any.
    pub health_output: Option<String>,
    /// Docker's restart count.
    pub restart_count: u64,
}

/// Why a new container was not promoted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum GateFailure {
    /// It exited.
    Exited {
        /// Its exit code.
        code: i64,
    },
    /// Docker restarted it (it crashed and came back).
    Restarted {
        /// Docker's restart count.
        count: u64,
    },
    /// It is dead or stuck outside `running`.
    NotRunning {
        /// What state it is in.
        state: String,
    },
    /// The liveness probe failed its threshold.
    Liveness {
        /// The last probe's result.
        detail: String,
    },
    /// It was not healthy for long enough before the deadline.
    Deadline {
        /// The deadline, in seconds.
        seconds: u64,
        /// What stood in the way at the end.
        detail: String,
    },
}

impl fmt::Display for GateFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateFailure::Exited { code } => write!(f, "the new container exited with code {code}"),
            GateFailure::Restarted { count } => write!(
                f,
                "the new container crashed and was restarted ({count} restart(s))"
            ),
            GateFailure::NotRunning { state } => write!(f, "the new container is {state}"),
            GateFailure::Liveness { detail } => {
                write!(f, "the liveness probe failed: {detail}")
            }
            GateFailure::Deadline { seconds, detail } => write!(
                f,
                "the new container was not healthy within {seconds}s (healthyDeadlineSeconds): {detail}"
            ),
        }
    }
}

/// The gate's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Look again at `until` at the latest (sooner if a probe or an event is due).
    Wait {
        /// When something can change by time alone.
        until: Millis,
    },
    /// Healthy for `min_healthy` without interruption: promote.
    Promote,
    /// Roll back.
    Fail(GateFailure),
}

/// The promotion gate for one new container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    policy: GatePolicy,
    started: Millis,
    healthy_since: Option<Millis>,
    baseline_restarts: Option<u64>,
    /// The readiness probe's record.
    pub readiness: Option<ProbeTrack>,
    /// The liveness probe's record.
    pub liveness: Option<ProbeTrack>,
    last_seen: Option<Seen>,
}

impl Gate {
    /// A gate for a container started at `started`.
    pub fn new(policy: GatePolicy, started: Millis) -> Self {
        Self {
            policy,
            started,
            healthy_since: None,
            baseline_restarts: None,
            readiness: policy.readiness.map(|p| ProbeTrack::readiness(p, started)),
            liveness: policy.liveness.map(|p| ProbeTrack::new(p, started)),
            last_seen: None,
        }
    }

    /// Sets the restart count the container starts from (0 for one just created), so a crash
    /// before the first look is not missed.
    pub fn expect_restarts(&mut self, count: u64) {
        self.baseline_restarts = Some(count);
    }

    /// When the container it judges started.
    pub fn started(&self) -> Millis {
        self.started
    }

    /// Since when it has been healthy without interruption.
    pub fn healthy_since(&self) -> Option<Millis> {
        self.healthy_since
    }

    /// Judges the container as `seen` at `now`, with the probe results recorded so far.
    pub fn judge(&mut self, now: Millis, seen: Seen) -> Verdict {
        let baseline = *self.baseline_restarts.get_or_insert(seen.restart_count);
        let verdict = self.judge_inner(now, &seen, baseline);
        self.last_seen = Some(seen);
        verdict
    }

    fn judge_inner(&mut self, now: Millis, seen: &Seen, baseline: u64) -> Verdict {
        match seen.state {
            ContainerState::Exited { code } => return Verdict::Fail(GateFailure::Exited { code }),
            ContainerState::Restarting => {
                return Verdict::Fail(GateFailure::Restarted {
                    count: seen.restart_count.max(baseline + 1),
                });
            }
            ContainerState::Dead | ContainerState::Removing => {
                return Verdict::Fail(GateFailure::NotRunning {
                    state: state_word(seen.state).to_owned(),
                });
            }
            _ => {}
        }
        if seen.restart_count > baseline {
            return Verdict::Fail(GateFailure::Restarted {
                count: seen.restart_count,
            });
        }
        if let Some(l) = self.liveness.as_ref().filter(|l| l.failing()) {
            return Verdict::Fail(GateFailure::Liveness {
                detail: l.last().unwrap_or("no answer").to_owned(),
            });
        }
        let healthy = seen.state == ContainerState::Running
            && self.readiness.as_ref().is_none_or(ProbeTrack::passing)
            && seen.health.is_none_or(|h| h == HealthStatus::Healthy);
        if healthy {
            let since = *self.healthy_since.get_or_insert(now);
            if now.saturating_sub(since) >= self.policy.min_healthy {
                return Verdict::Promote;
            }
        } else {
            self.healthy_since = None;
        }
        let deadline = self.started.saturating_add(self.policy.deadline);
        if now >= deadline {
            return Verdict::Fail(GateFailure::Deadline {
                seconds: self.policy.deadline / 1000,
                detail: self.obstacle(seen),
            });
        }
        let mut until = deadline;
        if let Some(since) = self.healthy_since {
            until = until.min(since.saturating_add(self.policy.min_healthy));
        }
        for p in self.readiness.iter().chain(self.liveness.iter()) {
            until = until.min(p.next_due().max(now));
        }
        Verdict::Wait { until }
    }

    /// Why the container is not (yet) healthy, in words for the failure report.
    pub fn obstacle(&self, seen: &Seen) -> String {
        let mut why = Vec::new();
        if seen.state != ContainerState::Running {
            why.push(format!("it is {}", state_word(seen.state)));
        }
        if let Some(r) = self.readiness.as_ref().filter(|r| !r.passing()) {
            why.push(match r.last() {
                Some(last) => format!("readiness probe: {last}"),
                None => "the readiness probe has not run yet".to_owned(),
            });
        }
        match seen.health {
            Some(HealthStatus::Healthy) | None => {}
            Some(h) => why.push(format!(
                "Docker HEALTHCHECK: {}{}",
                match h {
                    HealthStatus::Starting => "starting",
                    _ => "unhealthy",
                },
                seen.health_output
                    .as_deref()
                    .map(|o| format!(" ({o})"))
                    .unwrap_or_default()
            )),
        }
        if why.is_empty() {
            match self.healthy_since {
                Some(_) => "it had not been healthy for minHealthySeconds yet".to_owned(),
                None => "not healthy".to_owned(),
            }
        } else {
            why.join("; ")
        }
    }

    /// The last thing seen, for reports.
    pub fn last_seen(&self) -> Option<&Seen> {
        self.last_seen.as_ref()
    }
}

fn state_word(s: ContainerState) -> &'static str {
    match s {
        ContainerState::Created => "created, not started",
        ContainerState::Running => "running",
        ContainerState::Paused => "paused",
        ContainerState::Restarting => "restarting",
        ContainerState::Removing => "being removed",
        ContainerState::Exited { .. } => "exited",
        ContainerState::Dead => "dead",
        ContainerState::Stopping => "stopping",
    }
}

/// Delay before supervision restarts a container again after `restarts` restarts in a row:
/// 1 s doubling to 5 min, so a container that keeps failing is retried forever but never in
/// a tight loop.
pub fn restart_delay(restarts: u32) -> Millis {
    if restarts == 0 {
        return 0;
    }
    1000u64
        .saturating_mul(1u64 << (restarts - 1).min(20))
        .min(300_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min_healthy: u64, deadline: u64, readiness: bool) -> GatePolicy {
        GatePolicy {
            min_healthy,
            deadline,
            readiness: readiness.then_some(ProbePolicy {
                period: 1000,
                timeout: 500,
                failure_threshold: 3,
                initial_delay: 0,
            }),
            liveness: None,
        }
    }

    fn running() -> Seen {
        Seen {
            state: ContainerState::Running,
            health: None,
            health_output: None,
            restart_count: 0,
        }
    }

    #[test]
    fn without_probes_running_for_min_healthy_promotes() {
        let mut g = Gate::new(policy(3000, 10_000, false), 0);
        assert_eq!(g.judge(0, running()), Verdict::Wait { until: 3000 });
        assert_eq!(g.judge(2999, running()), Verdict::Wait { until: 3000 });
        assert_eq!(g.judge(3000, running()), Verdict::Promote);
    }

    #[test]
    fn healthy_then_exits_is_a_failure_not_a_success() {
        // RELIABILITY E4: healthy for a while, then gone, before minHealthySeconds.
        let mut g = Gate::new(policy(10_000, 60_000, false), 0);
        assert!(matches!(g.judge(3000, running()), Verdict::Wait { .. }));
        let exited = Seen {
            state: ContainerState::Exited { code: 2 },
            ..running()
        };
        assert_eq!(
            g.judge(3500, exited),
            Verdict::Fail(GateFailure::Exited { code: 2 })
        );
    }

    #[test]
    fn a_restart_fails_the_gate_even_when_running_again() {
        let mut g = Gate::new(policy(10_000, 60_000, false), 0);
        assert!(matches!(g.judge(0, running()), Verdict::Wait { .. }));
        let again = Seen {
            restart_count: 1,
            ..running()
        };
        assert_eq!(
            g.judge(500, again),
            Verdict::Fail(GateFailure::Restarted { count: 1 })
        );
    }

    #[test]
    fn readiness_must_pass_and_the_clock_restarts_when_it_stops_passing() {
        let mut g = Gate::new(policy(2000, 30_000, true), 0);
        assert_eq!(g.judge(0, running()), Verdict::Wait { until: 0 });
        let r = g.readiness.as_mut().unwrap();
        assert!(r.due(0));
        r.record(0, true, "HTTP 200".into());
        assert_eq!(g.judge(0, running()), Verdict::Wait { until: 1000 });
        // Two failures stay under the threshold of three: still healthy.
        let r = g.readiness.as_mut().unwrap();
        r.record(1000, false, "HTTP 500".into());
        r.record(2000, false, "HTTP 500".into());
        assert_eq!(g.judge(2000, running()), Verdict::Promote);

        let mut g = Gate::new(policy(2000, 30_000, true), 0);
        let r = g.readiness.as_mut().unwrap();
        r.record(0, true, "HTTP 200".into());
        for t in [1000, 2000, 3000] {
            g.readiness
                .as_mut()
                .unwrap()
                .record(t - 1, false, "HTTP 500".into());
        }
        assert!(matches!(g.judge(3000, running()), Verdict::Wait { .. }));
        assert_eq!(g.healthy_since(), None);
    }

    #[test]
    fn readiness_is_retried_soon_until_it_first_passes_then_every_period() {
        let probe = ProbePolicy {
            period: 5000,
            timeout: 1000,
            failure_threshold: 3,
            initial_delay: 0,
        };
        let mut r = ProbeTrack::readiness(probe, 0);
        // A server not listening yet: 100 ms, then doubling, never beyond the period.
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            r.record(now, false, "refused".into());
            waits.push(r.next_due() - now);
            now = r.next_due();
        }
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        r.record(now, true, "HTTP 200".into());
        assert_eq!(r.next_due() - now, 5000);
        // Once it has passed, a failure waits the period: it is no longer starting up.
        r.record(now + 5000, false, "HTTP 500".into());
        assert_eq!(r.next_due() - (now + 5000), 5000);
        // A restarted container starts eager again; liveness never is.
        r.reset(now);
        r.record(now, false, "refused".into());
        assert_eq!(r.next_due() - now, 100);
        let mut l = ProbeTrack::new(probe, 0);
        l.record(0, false, "refused".into());
        assert_eq!(l.next_due(), 5000);
    }

    #[test]
    fn readiness_that_never_passes_fails_at_the_deadline_saying_why() {
        let mut g = Gate::new(policy(1000, 5000, true), 0);
        for t in (0..5000).step_by(1000) {
            g.readiness
                .as_mut()
                .unwrap()
                .record(t, false, "HTTP 404 Not Found".into());
            assert!(matches!(g.judge(t, running()), Verdict::Wait { .. }));
        }
        match g.judge(5000, running()) {
            Verdict::Fail(f @ GateFailure::Deadline { seconds: 5, .. }) => {
                assert!(f.to_string().contains("readiness probe: HTTP 404"), "{f}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_healthcheck_is_honoured() {
        let mut g = Gate::new(policy(0, 5000, false), 0);
        let starting = Seen {
            health: Some(HealthStatus::Starting),
            ..running()
        };
        assert!(matches!(g.judge(0, starting), Verdict::Wait { .. }));
        let unhealthy = Seen {
            health: Some(HealthStatus::Unhealthy),
            health_output: Some("wget: server returned error: HTTP/1.0 404".into()),
            ..running()
        };
        match g.judge(5000, unhealthy) {
            Verdict::Fail(f) => assert!(
                f.to_string().contains("HEALTHCHECK: unhealthy (wget"),
                "{f}"
            ),
            other => panic!("{other:?}"),
        }
        let mut g = Gate::new(policy(0, 5000, false), 0);
        let healthy = Seen {
            health: Some(HealthStatus::Healthy),
            ..running()
        };
        assert_eq!(g.judge(100, healthy), Verdict::Promote);
    }

    #[test]
    fn liveness_failing_during_the_gate_fails_it() {
        let mut p = policy(60_000, 120_000, false);
        p.liveness = Some(ProbePolicy {
            period: 1000,
            timeout: 500,
            failure_threshold: 2,
            initial_delay: 1000,
        });
        let mut g = Gate::new(p, 0);
        let l = g.liveness.as_mut().unwrap();
        assert!(!l.due(999));
        assert!(!l.record(1000, false, "connection refused".into()));
        assert!(l.record(2000, false, "connection refused".into()));
        assert_eq!(
            g.judge(2000, running()),
            Verdict::Fail(GateFailure::Liveness {
                detail: "connection refused".into()
            })
        );
    }

    #[test]
    fn restart_delay_doubles_to_five_minutes() {
        assert_eq!(restart_delay(0), 0);
        assert_eq!(restart_delay(1), 1000);
        assert_eq!(restart_delay(4), 8000);
        assert_eq!(restart_delay(30), 300_000);
    }
}

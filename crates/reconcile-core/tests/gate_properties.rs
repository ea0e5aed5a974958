//! Property tests of the promotion gate: whatever a container does, it is promoted only after
//! staying healthy for `min_healthy`, never after a crash, and always decided by the deadline.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use proptest::prelude::*;
use reconcile_core::*;

/// One moment of a container's life as the gate sees it.
#[derive(Clone, Debug)]
struct Moment {
    after: u64,
    state: ContainerState,
    docker_health: Option<HealthStatus>,
    restarts: u64,
    probe_ok: Option<bool>,
}

fn moment() -> impl Strategy<Value = Moment> {
    (
        0u64..3000,
        prop_oneof![
            8 => Just(ContainerState::Running),
            1 => Just(ContainerState::Restarting),
            1 => (0i64..3).prop_map(|code| ContainerState::Exited { code }),
            1 => Just(ContainerState::Created),
        ],
        prop_oneof![
            4 => Just(None),
            2 => Just(Some(HealthStatus::Healthy)),
            1 => Just(Some(HealthStatus::Starting)),
            1 => Just(Some(HealthStatus::Unhealthy)),
        ],
        prop_oneof![9 => Just(0u64), 1 => Just(1u64)],
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(after, state, docker_health, restarts, probe_ok)| Moment {
            after,
            state,
            docker_health,
            restarts,
            probe_ok,
        })
}

proptest! {
    #[test]
    fn promotion_is_earned_and_the_deadline_holds(
        min_healthy in 0u64..8000,
        deadline in 1000u64..20_000,
        readiness in any::<bool>(),
        life in prop::collection::vec(moment(), 1..60),
    ) {
        let policy = GatePolicy {
            min_healthy,
            deadline: deadline.max(min_healthy),
            readiness: readiness.then_some(ProbePolicy {
                period: 500,
                timeout: 200,
                failure_threshold: 2,
                initial_delay: 0,
            }),
            liveness: None,
        };
        let mut gate = Gate::new(policy, 0);
        let mut now = 0;
        // When the container was last seen unhealthy (or never healthy): promotion needs
        // `min_healthy` since the first healthy sighting after it.
        let mut healthy_from: Option<u64> = None;
        let mut crashed = false;
        let mut probe_passing = false;
        let mut probe_failures = 0;
        let mut decided = false;
        // Docker's restart count only grows; the gate measures from what it first sees.
        let mut restarts = 0;
        let mut baseline = None;
        for m in life {
            now += m.after;
            restarts += m.restarts;
            let baseline = *baseline.get_or_insert(restarts);
            if let (Some(ok), Some(r)) = (m.probe_ok, gate.readiness.as_mut()) {
                r.record(now, ok, String::new());
                if ok { probe_passing = true; probe_failures = 0; } else {
                    probe_failures += 1;
                    if probe_failures >= 2 { probe_passing = false; }
                }
            }
            let seen = Seen {
                state: m.state,
                health: m.docker_health,
                health_output: None,
                restart_count: restarts,
            };
            crashed |= restarts > baseline || !matches!(m.state, ContainerState::Running | ContainerState::Created);
            let healthy = m.state == ContainerState::Running
                && (!readiness || probe_passing)
                && m.docker_health.is_none_or(|h| h == HealthStatus::Healthy);
            if healthy { healthy_from.get_or_insert(now); } else { healthy_from = None; }
            match gate.judge(now, seen) {
                Verdict::Promote => {
                    prop_assert!(!crashed, "promoted after a crash");
                    let since = healthy_from.unwrap();
                    prop_assert!(now - since >= min_healthy, "promoted after {}ms of {min_healthy}", now - since);
                    decided = true;
                }
                Verdict::Fail(GateFailure::Deadline { .. }) => {
                    prop_assert!(now >= policy.deadline, "deadline failure before the deadline");
                    decided = true;
                }
                Verdict::Fail(_) => {
                    prop_assert!(crashed, "failed without a crash");
                    decided = true;
                }
                Verdict::Wait { until } => {
                    prop_assert!(now < policy.deadline, "still waiting past the deadline");
                    prop_assert!(until <= policy.deadline, "asked to wait past the deadline");
                }
            }
            if decided { break; }
        }
    }
}

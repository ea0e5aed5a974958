//! A rollout as a sans-IO state machine, like the planner: what Docker, the probes and the
//! clock answered goes in, the next thing to do comes out. The engine runs one loop around it
//! (ask [`Rollout::next`], do what it says, hand back the answer), so each step of a rollout
//! is one trip engine → runtime, and every path through create, start-first and stop-first,
//! promotion and rollback is tested here without Docker or time.
//!
//! The journal's phases ([`Phase`]) are written down ([`Do::Journal`]) before each mutating
//! step, as before: a crash at any point leaves an intent the engine's recovery can finish or
//! undo.

use std::mem;

use crate::actual::ContainerState;
use crate::gate::{Gate, GateFailure, GatePolicy, Millis, Seen, Verdict};
use crate::intent::{Intent, Kind, Phase};

/// How often a new container is looked at while it waits for its gate, at most.
pub const GATE_POLL: Millis = 500;
/// How long a crash-looper's exit code is waited for, in looks 200 ms apart.
const EXIT_CODE_LOOKS: u32 = 10;
const EXIT_CODE_PAUSE: Millis = 200;

/// What `docker inspect` said of a container, as far as a rollout reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Look {
    /// What the gate judges.
    pub seen: Seen,
    /// The exit code of its last run, when Docker shows one.
    pub last_exit_code: Option<i64>,
    /// The kernel killed it for memory.
    pub oom_killed: bool,
    /// Docker's own error for it (a failed start).
    pub error: Option<String>,
}

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// The readiness probe.
    Readiness,
    /// The liveness probe.
    Liveness,
}

/// The next thing a rollout needs done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Do {
    /// Inspect a container: answer [`Answer::Seen`] (or `Failed { gone: true }`).
    Inspect(String),
    /// The gate's look at the new container: answer [`Answer::Cancelled`] on shutdown,
    /// [`Answer::Superseded`] when a newer revision changes the deployment, else as
    /// [`Do::Inspect`].
    Look(String),
    /// Which container holds a name, and whether this agent manages it: answer
    /// [`Answer::Holder`].
    Holder(String),
    /// The name a container has now: answer [`Answer::Named`].
    NameOf(String),
    /// The new container of a rollout whose journal lost its id (a crash between create and
    /// the journal write, RELIABILITY E9): the container under `name`, managed by this agent,
    /// of `spec_hash`, that is not `except`. Answer [`Answer::Holder`].
    Orphan {
        /// The name it was created under.
        name: String,
        /// The spec it runs.
        spec_hash: String,
        /// The container being replaced, never the orphan.
        except: Option<String>,
    },
    /// Write the intent down durably: answer [`Answer::Done`].
    Journal(Intent),
    /// Clear the deployment's journal entry: answer [`Answer::Done`].
    Forget,
    /// Create the new container under this name: answer [`Answer::Created`].
    Create(String),
    /// Start a container.
    Start(String),
    /// Stop a container (a gone one counts as stopped: `Failed { gone: true }` is fine).
    Stop(String),
    /// Remove a container.
    Remove(String),
    /// Rename a container; `why` says what a failure means, for the report.
    Rename {
        /// The container.
        id: String,
        /// Its new name.
        to: String,
        /// What a failure means.
        why: &'static str,
    },
    /// Say the new container started and waits for its gate.
    Started(String),
    /// Run a probe at the new container: answer [`Answer::Probed`].
    Probe {
        /// Which.
        kind: ProbeKind,
        /// Its timeout.
        timeout: Millis,
    },
    /// Read the new container's last log lines: answer [`Answer::Logs`].
    Logs(String),
    /// Show the rollout's progress in `/status`.
    Progress(String),
    /// A warning for the log; the rollout goes on.
    Warn(String),
    /// Wait until this time.
    Sleep(Millis),
    /// Serve from the new container (start-first): `/status` names it.
    Switch(String),
    /// Let the old container drain until this time, or until shutdown.
    Drain(Millis),
    /// The rollout ended.
    Finish(Outcome),
    /// Docker failed in a way that cannot be judged now (or the journal could not be
    /// written): stop here. The journal keeps the rollout, and the next pass resolves it.
    Abort,
}

/// What the engine found doing the last [`Do`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The first call.
    Begin,
    /// It was done.
    Done,
    /// The new container's id.
    Created(String),
    /// The container, inspected.
    Seen(Look),
    /// The holder of a name, with whether this agent manages it.
    Holder(Option<(String, bool)>),
    /// A container's name now, `None` when it is gone.
    Named(Option<String>),
    /// A probe's result.
    Probed {
        /// It passed.
        ok: bool,
        /// What it saw, for the report.
        detail: String,
    },
    /// Log lines, oldest first (none when they could not be read).
    Logs(Vec<String>),
    /// It failed.
    Failed {
        /// Why, as Docker said it.
        reason: String,
        /// Docker did not answer at all.
        unreachable: bool,
        /// The container does not exist.
        gone: bool,
    },
    /// The agent is shutting down.
    Cancelled,
    /// A newer revision changes the deployment.
    Superseded,
}

/// How a rollout ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The new container passed its gate and serves.
    Promoted,
    /// The new container failed; the previous one serves again.
    RolledBack(String),
    /// The new container failed and there was nothing to roll back to.
    Failed(String),
    /// Shutdown came first: undone, and not the spec's fault.
    Cancelled,
    /// A newer revision changes the deployment: undone, and the newer spec rolls out next.
    Superseded,
}

/// Why a new container is not promoted.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fail {
    Reason(String),
    Cancelled,
    Superseded,
}

/// Where the machine waits: each stage is the answer to one [`Do`] it gave.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stage {
    Begin,
    OldInspected,
    LeftoverFound(String),
    LeftoverRemoved,
    StoppingOldJournaled,
    OldStopped,
    OldParked,
    StartingJournaled,
    Created,
    VerifyingJournaled,
    Started,
    StartNoted,
    ResumeInspected,
    ResumeStarted,
    OrphanFound,
    Looked,
    Probed(ProbeKind),
    ProgressShown(Millis),
    Slept,
    ExitSlept(u32, Look, GateFailure),
    ExitInspected(u32, Look, GateFailure),
    LogsRead(String),
    PromotingJournaled,
    Switched,
    Drained,
    FinalOldStopped,
    FinalOldRemoved,
    NewNamed,
    NewRenamed,
    RollingBackJournaled,
    NewRemoved,
    UndoOldInspected,
    UndoOldNamed(bool),
    UndoOldRenamed(bool),
    UndoOldStarted,
    Warned,
    Forgotten,
    Ended,
}

/// One rollout of one deployment.
#[derive(Clone, Debug)]
pub struct Rollout {
    intent: Intent,
    policy: GatePolicy,
    drain: Millis,
    stage: Stage,
    resumed: bool,
    /// Resolving what the journal holds after a crash, not rolling out.
    recovering: bool,
    gate: Option<Gate>,
    look: Option<Look>,
    fail: Option<Fail>,
}

impl Rollout {
    /// A rollout that starts with `intent` (from [`Intent::for_step`]); `drain`: how long a
    /// start-first rollout's old container keeps serving after the switch.
    pub fn new(intent: Intent, policy: GatePolicy, drain: Millis) -> Self {
        Self {
            intent,
            policy,
            drain,
            stage: Stage::Begin,
            resumed: false,
            recovering: false,
            gate: None,
            look: None,
            fail: None,
        }
    }

    /// A rollout a crash interrupted while its new container was in its gate: the container
    /// is adopted (started if the crash came before its start) and its gate starts again.
    /// `None` when the intent names no new container.
    pub fn resume(intent: Intent, policy: GatePolicy, drain: Millis) -> Option<Self> {
        intent.new_id.as_ref()?;
        let mut r = Self::new(intent, policy, drain);
        r.resumed = true;
        Some(r)
    }

    /// A rollout a crash (or a Docker failure) left in the journal, to resolve: a promotion
    /// (`Promoting`) is finished; anything earlier is undone (the new container goes, the old
    /// one is back under its name, running if it ran), so the old container serves and the
    /// next plan starts the rollout over. It ends `Promoted`, or `RolledBack` (`Failed` for
    /// a create, which had nothing to go back to).
    pub fn recover(intent: Intent) -> Self {
        let policy = GatePolicy {
            min_healthy: 0,
            deadline: 0,
            readiness: None,
            liveness: None,
        };
        let mut r = Self::new(intent, policy, 0);
        r.recovering = true;
        r
    }

    /// The intent as it stands.
    pub fn intent(&self) -> &Intent {
        &self.intent
    }

    /// What to do next, given the answer to the last thing done (`Begin` first) and the
    /// monotonic time now.
    pub fn next(&mut self, now: Millis, answer: Answer) -> Do {
        let stage = mem::replace(&mut self.stage, Stage::Ended);
        let new_id = self.intent.new_id.clone().unwrap_or_default();
        let old_id = self.intent.old_id.clone().unwrap_or_default();
        match (stage, answer) {
            (Stage::Begin, Answer::Begin) if self.recovering => self.resolve(),
            (Stage::OrphanFound, Answer::Holder(Some((id, _)))) => {
                self.go(Stage::NewRemoved, Do::Remove(id))
            }
            (Stage::OrphanFound, Answer::Holder(None)) => self.after_new_removed(),
            (Stage::Begin, Answer::Begin) if self.resumed => {
                self.go(Stage::ResumeInspected, Do::Inspect(new_id))
            }
            (Stage::Begin, Answer::Begin) => match self.intent.kind {
                Kind::Create => self.start_and_gate(),
                Kind::StartFirst | Kind::StopFirst => {
                    // A failure here must not be taken for "it was stopped": a rollback
                    // would then leave the serving container down.
                    self.go(Stage::OldInspected, Do::Inspect(old_id))
                }
            },
            (Stage::OldInspected, Answer::Seen(look)) => {
                self.intent.old_running = look.seen.state == ContainerState::Running;
                match self.intent.kind {
                    Kind::StartFirst => {
                        let name = self.intent.new_name.clone();
                        self.go(Stage::LeftoverFound(name.clone()), Do::Holder(name))
                    }
                    _ => match self.parking() {
                        Some(aside) => {
                            self.go(Stage::LeftoverFound(aside.clone()), Do::Holder(aside))
                        }
                        None => self.stop_old(),
                    },
                }
            }
            (Stage::LeftoverFound(_), Answer::Holder(None)) => self.after_leftover(),
            (Stage::LeftoverFound(name), Answer::Holder(Some((id, managed)))) => {
                // Nothing is journaled or touched yet: ending here leaves all as it was.
                if id == old_id {
                    self.end(Outcome::RolledBack(format!(
                        "the container being replaced holds the temporary name {name}"
                    )))
                } else if !managed {
                    self.end(Outcome::RolledBack(format!(
                        "the temporary name {name} is taken by a container orun does not manage"
                    )))
                } else {
                    // A leftover of an interrupted rollout of ours: it goes.
                    self.go(Stage::LeftoverRemoved, Do::Remove(id))
                }
            }
            (Stage::LeftoverRemoved, Answer::Done) => self.after_leftover(),
            (Stage::StoppingOldJournaled, Answer::Done) => {
                self.go(Stage::OldStopped, Do::Stop(old_id))
            }
            (Stage::OldStopped, Answer::Done | Answer::Failed { gone: true, .. }) => {
                match self.parking() {
                    Some(aside) => self.go(
                        Stage::OldParked,
                        Do::Rename {
                            id: old_id,
                            to: aside,
                            why: "cannot move the previous container aside",
                        },
                    ),
                    None => self.start_and_gate(),
                }
            }
            (Stage::OldParked, Answer::Done) => self.start_and_gate(),
            (Stage::StartingJournaled, Answer::Done) => {
                let name = self.intent.new_name.clone();
                self.go(Stage::Created, Do::Create(name))
            }
            (Stage::Created, Answer::Created(id)) => {
                self.intent.new_id = Some(id);
                self.intent.phase = Phase::Verifying;
                self.go(Stage::VerifyingJournaled, Do::Journal(self.intent.clone()))
            }
            (
                Stage::Created,
                Answer::Failed {
                    reason,
                    unreachable: false,
                    ..
                },
            ) => self.conclude(Err(Fail::Reason(format!(
                "cannot create the new container: {reason}"
            )))),
            (Stage::VerifyingJournaled, Answer::Done) => self.go(Stage::Started, Do::Start(new_id)),
            (Stage::Started, Answer::Done) => self.go(Stage::StartNoted, Do::Started(new_id)),
            (Stage::StartNoted, Answer::Done) | (Stage::ResumeStarted, Answer::Done) => {
                self.begin_gate(now)
            }
            (
                Stage::Started | Stage::ResumeStarted,
                Answer::Failed {
                    reason,
                    unreachable: false,
                    ..
                },
            ) => {
                // A host port taken by someone else (E5), a missing mount source...
                self.conclude(Err(Fail::Reason(format!(
                    "cannot start the new container: {reason}"
                ))))
            }
            (Stage::ResumeInspected, Answer::Seen(look)) => {
                if look.seen.state == ContainerState::Created {
                    // The crash came between create and start: start it, as the rollout
                    // would have.
                    self.go(Stage::ResumeStarted, Do::Start(new_id))
                } else {
                    self.begin_gate(now)
                }
            }
            (Stage::ResumeInspected | Stage::Looked, Answer::Failed { gone: true, .. }) => self
                .conclude(Err(Fail::Reason(
                    "the new container was removed by someone else".to_owned(),
                ))),
            (Stage::Looked, Answer::Cancelled) => self.conclude(Err(Fail::Cancelled)),
            (Stage::Looked, Answer::Superseded) => self.conclude(Err(Fail::Superseded)),
            (Stage::Looked, Answer::Seen(look)) => {
                let running = look.seen.state == ContainerState::Running;
                self.look = Some(look);
                self.probe_or_judge(now, running.then_some(ProbeKind::Readiness))
            }
            (Stage::Probed(kind), Answer::Probed { ok, detail }) => {
                if let Some(track) = self.track(kind) {
                    track.record(now, ok, detail);
                }
                let next = (kind == ProbeKind::Readiness).then_some(ProbeKind::Liveness);
                self.probe_or_judge(now, next)
            }
            (Stage::ProgressShown(until), Answer::Done) => self.go(Stage::Slept, Do::Sleep(until)),
            (Stage::Slept, Answer::Done) => self.go(Stage::Looked, Do::Look(new_id)),
            (Stage::ExitSlept(n, look, f), Answer::Done) => {
                self.go(Stage::ExitInspected(n, look, f), Do::Inspect(new_id))
            }
            (Stage::ExitInspected(n, look, f), Answer::Seen(again)) => match again.last_exit_code {
                Some(code) => self.report(&look, &f, Some(code)),
                None if n + 1 < EXIT_CODE_LOOKS => self.go(
                    Stage::ExitSlept(n + 1, look, f),
                    Do::Sleep(now + EXIT_CODE_PAUSE),
                ),
                None => self.report(&look, &f, None),
            },
            (Stage::ExitInspected(_, look, f), Answer::Failed { .. }) => {
                self.report(&look, &f, None)
            }
            (Stage::LogsRead(mut reason), answer) => {
                if let Answer::Logs(lines) = answer
                    && !lines.is_empty()
                {
                    reason.push_str(&format!("; last log lines: {}", lines.join(" | ")));
                }
                self.conclude(Err(Fail::Reason(reason)))
            }
            (Stage::PromotingJournaled, Answer::Done) => match self.intent.kind {
                Kind::Create => self.forget(),
                Kind::StartFirst => self.go(Stage::Switched, Do::Switch(new_id)),
                Kind::StopFirst => self.go(Stage::FinalOldRemoved, Do::Remove(old_id)),
            },
            (Stage::Switched, Answer::Done) => self.go(Stage::Drained, Do::Drain(now + self.drain)),
            (Stage::Drained, Answer::Done) => self.go(Stage::FinalOldStopped, Do::Stop(old_id)),
            (Stage::FinalOldStopped, Answer::Done | Answer::Failed { gone: true, .. }) => {
                self.go(Stage::FinalOldRemoved, Do::Remove(old_id))
            }
            (Stage::FinalOldRemoved, Answer::Done) => match self.intent.kind {
                // It may have its name already: a resumed promotion.
                Kind::StartFirst => self.go(Stage::NewNamed, Do::NameOf(new_id)),
                _ => self.forget(),
            },
            (Stage::NewNamed, Answer::Named(Some(name))) if name != self.intent.name => {
                let to = self.intent.name.clone();
                self.go(
                    Stage::NewRenamed,
                    Do::Rename {
                        id: new_id,
                        to,
                        why: "cannot give the new container its name",
                    },
                )
            }
            (Stage::NewNamed, Answer::Named(_)) | (Stage::NewRenamed, Answer::Done) => {
                self.forget()
            }
            (Stage::RollingBackJournaled, Answer::Done) => match self.intent.new_id.clone() {
                Some(id) => self.go(Stage::NewRemoved, Do::Remove(id)),
                None => self.after_new_removed(),
            },
            (Stage::NewRemoved, Answer::Done) => self.after_new_removed(),
            (Stage::UndoOldInspected, Answer::Seen(look)) => {
                let running = look.seen.state == ContainerState::Running;
                self.go(Stage::UndoOldNamed(running), Do::NameOf(old_id))
            }
            (Stage::UndoOldInspected, Answer::Failed { gone: true, .. }) => self.forget(),
            (Stage::UndoOldNamed(running), Answer::Named(name)) => {
                let old_name = self.intent.old_name.clone().unwrap_or_default();
                if name.as_deref() == Some(old_name.as_str()) {
                    self.restart_old(running)
                } else {
                    self.go(
                        Stage::UndoOldRenamed(running),
                        Do::Rename {
                            id: old_id,
                            to: old_name,
                            why: "cannot give the previous container its name back",
                        },
                    )
                }
            }
            (Stage::UndoOldRenamed(running), Answer::Done) => self.restart_old(running),
            (Stage::UndoOldStarted, Answer::Done) | (Stage::Warned, Answer::Done) => self.forget(),
            (
                Stage::UndoOldStarted,
                Answer::Failed {
                    reason,
                    unreachable: false,
                    ..
                },
            ) => {
                // It is back under its name; the planner starts it (or reports why not).
                self.go(
                    Stage::Warned,
                    Do::Warn(format!(
                        "cannot start the previous container {} again: {reason}",
                        short(&old_id)
                    )),
                )
            }
            (Stage::Forgotten, Answer::Done) => {
                let outcome = self.outcome();
                self.end(outcome)
            }
            // Anything else is Docker failing where the rollout cannot judge it (or an
            // answer out of turn): stop, and let the journal take it from here.
            _ => Do::Abort,
        }
    }

    fn go(&mut self, stage: Stage, next: Do) -> Do {
        self.stage = stage;
        next
    }

    fn end(&mut self, outcome: Outcome) -> Do {
        self.stage = Stage::Ended;
        Do::Finish(outcome)
    }

    /// Stop-first: the name the old container is parked under, when it must move there.
    fn parking(&self) -> Option<String> {
        let aside = self.intent.aside.clone()?;
        (self.intent.old_name.as_deref() != Some(aside.as_str())).then_some(aside)
    }

    fn after_leftover(&mut self) -> Do {
        match self.intent.kind {
            Kind::StopFirst => self.stop_old(),
            _ => self.start_and_gate(),
        }
    }

    fn stop_old(&mut self) -> Do {
        self.intent.phase = Phase::StoppingOld;
        self.go(
            Stage::StoppingOldJournaled,
            Do::Journal(self.intent.clone()),
        )
    }

    fn start_and_gate(&mut self) -> Do {
        self.intent.phase = Phase::Starting;
        self.go(Stage::StartingJournaled, Do::Journal(self.intent.clone()))
    }

    fn begin_gate(&mut self, now: Millis) -> Do {
        let mut gate = Gate::new(self.policy, now);
        // A fresh (or adopted) container is judged from now: a crash before the first
        // look counts.
        gate.expect_restarts(0);
        self.gate = Some(gate);
        let id = self.intent.new_id.clone().unwrap_or_default();
        self.go(Stage::Looked, Do::Look(id))
    }

    fn track(&mut self, kind: ProbeKind) -> Option<&mut crate::gate::ProbeTrack> {
        let gate = self.gate.as_mut()?;
        match kind {
            ProbeKind::Readiness => gate.readiness.as_mut(),
            ProbeKind::Liveness => gate.liveness.as_mut(),
        }
    }

    /// Runs the probes that are due, from `from` on (readiness, then liveness), then judges.
    fn probe_or_judge(&mut self, now: Millis, from: Option<ProbeKind>) -> Do {
        let mut kind = from;
        while let Some(k) = kind {
            if let Some(track) = self.track(k)
                && track.due(now)
            {
                let timeout = track.timeout();
                return self.go(Stage::Probed(k), Do::Probe { kind: k, timeout });
            }
            kind = (k == ProbeKind::Readiness).then_some(ProbeKind::Liveness);
        }
        self.judge(now)
    }

    fn judge(&mut self, now: Millis) -> Do {
        let (Some(gate), Some(look)) = (self.gate.as_mut(), self.look.clone()) else {
            return Do::Abort;
        };
        match gate.judge(now, look.seen.clone()) {
            Verdict::Promote => self.conclude(Ok(())),
            Verdict::Fail(f) => {
                let restarted = matches!(f, GateFailure::Restarted { .. });
                if restarted && look.last_exit_code.is_none() {
                    // Docker shows a restarting container's exit code only between runs:
                    // wait a little for the next exit rather than report it without.
                    self.go(
                        Stage::ExitSlept(0, look, f),
                        Do::Sleep(now + EXIT_CODE_PAUSE),
                    )
                } else {
                    let code = look.last_exit_code;
                    self.report(&look, &f, code)
                }
            }
            Verdict::Wait { until } => {
                let waited = now.saturating_sub(gate.started()) / 1000;
                let text = match gate.healthy_since() {
                    Some(since) => format!(
                        "healthy for {}s of minHealthySeconds {}",
                        now.saturating_sub(since) / 1000,
                        self.policy.min_healthy / 1000
                    ),
                    None => format!(
                        "waiting for health ({waited}s of healthyDeadlineSeconds {}): {}",
                        self.policy.deadline / 1000,
                        gate.last_seen()
                            .map(|s| gate.obstacle(s))
                            .unwrap_or_default()
                    ),
                };
                let pause = until.saturating_sub(now).clamp(50, GATE_POLL);
                self.go(Stage::ProgressShown(now + pause), Do::Progress(text))
            }
        }
    }

    /// The failure report: the gate's reason, the exit code, Docker's error, an OOM kill,
    /// then (next) the last log lines.
    fn report(&mut self, look: &Look, f: &GateFailure, code: Option<i64>) -> Do {
        let mut reason = f.to_string();
        if matches!(f, GateFailure::Restarted { .. })
            && let Some(code) = code
        {
            reason.push_str(&format!("; it exited with code {code}"));
        }
        if let Some(err) = &look.error {
            reason.push_str(&format!("; docker: {err}"));
        }
        if look.oom_killed {
            reason.push_str("; it ran out of memory (OOM-killed)");
        }
        let id = self.intent.new_id.clone().unwrap_or_default();
        self.go(Stage::LogsRead(reason), Do::Logs(id))
    }

    /// Ends a rollout whose new container has its verdict: promotes it, or rolls back, each
    /// the way its kind does.
    fn conclude(&mut self, verdict: Result<(), Fail>) -> Do {
        match verdict {
            Ok(()) => {
                // Written down before anything is retired: a crash from here on finishes the
                // promotion rather than undoing it.
                self.intent.phase = Phase::Promoting;
                self.go(Stage::PromotingJournaled, Do::Journal(self.intent.clone()))
            }
            Err(f) => {
                self.fail = Some(f);
                self.intent.phase = Phase::RollingBack;
                self.go(
                    Stage::RollingBackJournaled,
                    Do::Journal(self.intent.clone()),
                )
            }
        }
    }

    /// Recovery: finishes a promotion, or undoes anything earlier.
    fn resolve(&mut self) -> Do {
        let old_id = self.intent.old_id.clone().unwrap_or_default();
        if self.intent.phase == Phase::Promoting {
            return match self.intent.kind {
                Kind::Create => self.forget(),
                Kind::StartFirst => self.go(Stage::FinalOldStopped, Do::Stop(old_id)),
                Kind::StopFirst => self.go(Stage::FinalOldRemoved, Do::Remove(old_id)),
            };
        }
        self.fail = Some(Fail::Reason("interrupted; undone".to_owned()));
        match self.intent.new_id.clone() {
            Some(id) => self.go(Stage::NewRemoved, Do::Remove(id)),
            None => {
                let orphan = Do::Orphan {
                    name: self.intent.new_name.clone(),
                    spec_hash: self.intent.spec_hash.clone(),
                    except: self.intent.old_id.clone(),
                };
                self.go(Stage::OrphanFound, orphan)
            }
        }
    }

    fn after_new_removed(&mut self) -> Do {
        // Stop-first moved the old container: it comes back under its name, running if it
        // ran. A recovery cannot know how far any kind got, so it looks for every kind.
        let restore = self.intent.kind == Kind::StopFirst || self.recovering;
        match (&self.intent.old_id, &self.intent.old_name) {
            (Some(old), Some(_)) if restore => {
                let old = old.clone();
                self.go(Stage::UndoOldInspected, Do::Inspect(old))
            }
            _ => self.forget(),
        }
    }

    fn restart_old(&mut self, running: bool) -> Do {
        if self.intent.old_running && !running {
            let old = self.intent.old_id.clone().unwrap_or_default();
            self.go(Stage::UndoOldStarted, Do::Start(old))
        } else {
            self.forget()
        }
    }

    fn forget(&mut self) -> Do {
        self.go(Stage::Forgotten, Do::Forget)
    }

    fn outcome(&self) -> Outcome {
        match &self.fail {
            None => Outcome::Promoted,
            Some(Fail::Cancelled) => Outcome::Cancelled,
            Some(Fail::Superseded) => Outcome::Superseded,
            Some(Fail::Reason(r)) if self.intent.kind == Kind::Create => Outcome::Failed(r.clone()),
            Some(Fail::Reason(r)) => Outcome::RolledBack(r.clone()),
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::ReplaceStrategy;
    use crate::gate::ProbePolicy;
    use crate::plan::{Action, Step};

    fn policy(readiness: bool) -> GatePolicy {
        GatePolicy {
            min_healthy: 1_000,
            deadline: 10_000,
            readiness: readiness.then_some(ProbePolicy {
                period: 1_000,
                timeout: 1_000,
                failure_threshold: 1,
                initial_delay: 0,
            }),
            liveness: None,
        }
    }

    fn step(action: Action) -> Step {
        crate::plan::test_step("web", action)
    }

    fn create() -> Intent {
        let s = step(Action::Create {
            container_name: "web".to_owned(),
            spec_hash: "h2".to_owned(),
            needs_image: false,
        });
        Intent::for_step(&s, None).unwrap()
    }

    fn replace(strategy: ReplaceStrategy) -> Intent {
        let s = step(Action::Replace {
            old_id: "old".to_owned(),
            old_name: "web".to_owned(),
            container_name: "web".to_owned(),
            spec_hash: "h2".to_owned(),
            strategy,
            needs_image: false,
        });
        Intent::for_step(&s, None).unwrap()
    }

    fn seen(state: ContainerState, restarts: u64, code: Option<i64>) -> Answer {
        Answer::Seen(Look {
            seen: Seen {
                state,
                health: None,
                health_output: None,
                restart_count: restarts,
            },
            last_exit_code: code,
            oom_killed: false,
            error: None,
        })
    }

    fn running() -> Answer {
        seen(ContainerState::Running, 0, None)
    }

    /// A host for the machine: how the new container behaves, and what else differs from a
    /// quiet host.
    #[derive(Clone, Copy, Default)]
    struct Host {
        /// The new container answers its probe; `false`: it never does.
        ready: bool,
        /// The new container keeps crashing; Docker shows its exit code on the n-th look.
        crash: Option<u32>,
        /// Docker refuses to create the new container.
        refuse_create: bool,
        /// Docker stops answering at the create.
        unreachable_create: bool,
        /// A stranger holds the temporary name.
        stranger: bool,
        /// The agent shuts down during the gate.
        shutdown: bool,
        /// The new container exists but was never started (a resumed rollout).
        created_only: bool,
        /// The old container is under its own name (else parked aside).
        old_home: bool,
        /// A newer revision changes the deployment during the gate.
        supersede: bool,
        /// Someone removes the new container during the gate.
        vanish: bool,
        /// Docker refuses to start the new container.
        refuse_start: bool,
        /// Docker refuses to start the old container again.
        refuse_old_start: bool,
        /// Docker stops answering during the gate.
        gate_unreachable: bool,
        /// The container being replaced holds the temporary name.
        holder_old: bool,
        /// A leftover of an earlier rollout of ours holds the temporary name.
        leftover: bool,
        /// A recovery finds no orphan.
        no_orphan: bool,
        /// The old container is stopped already (a stop-first rollout got past its stop).
        old_stopped: bool,
    }

    /// Drives `m` against `host` until it finishes or aborts; the trace of what it asked,
    /// in short words, and how it ended.
    fn drive(mut m: Rollout, host: Host) -> (Vec<String>, Do) {
        let mut now: Millis = 0;
        let mut answer = Answer::Begin;
        let mut trace = Vec::new();
        let mut looks = 0;
        let mut exit_looks = 0;
        let mut started = !host.created_only;
        // The old container runs until it is stopped, and again once started.
        let mut old_up = !host.old_stopped;
        for _ in 0..10_000 {
            let next = m.next(now, answer);
            now += 1;
            let word = match &next {
                Do::Journal(i) => format!("journal {:?}", i.phase),
                Do::Create(name) => format!("create {name}"),
                Do::Rename { id, to, .. } => format!("rename {id} {to}"),
                Do::Start(id) => format!("start {id}"),
                Do::Stop(id) => format!("stop {id}"),
                Do::Remove(id) => format!("remove {id}"),
                Do::Holder(name) => format!("holder {name}"),
                Do::Orphan { name, .. } => format!("orphan {name}"),
                Do::Inspect(id) => format!("inspect {id}"),
                Do::Look(_) => "look".to_owned(),
                Do::Probe { .. } => "probe".to_owned(),
                Do::Sleep(_) => "sleep".to_owned(),
                Do::Progress(_) => "progress".to_owned(),
                other => format!("{other:?}")
                    .split(['(', ' ', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_lowercase(),
            };
            // Waits and progress repeat while a gate waits: the trace keeps one of each run.
            if trace.last() != Some(&word)
                || !matches!(word.as_str(), "look" | "probe" | "sleep" | "progress")
            {
                trace.push(word);
            }
            answer = match next {
                Do::Finish(_) | Do::Abort => return (trace, next),
                Do::Create(_) if host.unreachable_create => Answer::Failed {
                    reason: "daemon down".to_owned(),
                    unreachable: true,
                    gone: false,
                },
                Do::Create(_) if host.refuse_create => Answer::Failed {
                    reason: "port is already allocated".to_owned(),
                    unreachable: false,
                    gone: false,
                },
                Do::Create(_) => Answer::Created("new".to_owned()),
                Do::Start(id)
                    if (id == "new" && host.refuse_start)
                        || (id == "old" && host.refuse_old_start) =>
                {
                    Answer::Failed {
                        reason: "port is already allocated".to_owned(),
                        unreachable: false,
                        gone: false,
                    }
                }
                Do::Start(id) => {
                    if id == "new" {
                        started = true;
                    } else {
                        old_up = true;
                    }
                    Answer::Done
                }
                Do::Stop(id) => {
                    if id == "old" {
                        old_up = false;
                    }
                    Answer::Done
                }
                Do::Holder(_) if host.stranger => Answer::Holder(Some(("x".to_owned(), false))),
                Do::Holder(_) if host.holder_old => Answer::Holder(Some(("old".to_owned(), true))),
                Do::Holder(_) if host.leftover => Answer::Holder(Some(("left".to_owned(), true))),
                Do::Holder(_) => Answer::Holder(None),
                Do::Orphan { .. } if host.no_orphan => Answer::Holder(None),
                Do::Orphan { .. } => Answer::Holder(Some(("orphan".to_owned(), true))),
                Do::NameOf(id) if id == "new" => Answer::Named(Some("web.orun-next".to_owned())),
                Do::NameOf(_) if host.old_home => Answer::Named(Some("web".to_owned())),
                Do::NameOf(_) => Answer::Named(Some("web.orun-old".to_owned())),
                Do::Inspect(id) if id == "new" && !started => {
                    seen(ContainerState::Created, 0, None)
                }
                Do::Inspect(id) if id == "new" => {
                    exit_looks += 1;
                    let code = host.crash.filter(|n| exit_looks >= *n).map(|_| 3);
                    seen(ContainerState::Running, 1, code)
                }
                Do::Inspect(_) if old_up => running(),
                Do::Inspect(_) => seen(ContainerState::Exited { code: 0 }, 0, None),
                Do::Look(_) if host.shutdown && looks >= 2 => Answer::Cancelled,
                Do::Look(_) if host.supersede && looks >= 2 => Answer::Superseded,
                Do::Look(_) if host.vanish && looks >= 2 => Answer::Failed {
                    reason: "no such container".to_owned(),
                    unreachable: false,
                    gone: true,
                },
                Do::Look(_) if host.gate_unreachable && looks >= 2 => Answer::Failed {
                    reason: "daemon down".to_owned(),
                    unreachable: true,
                    gone: false,
                },
                Do::Look(_) => {
                    looks += 1;
                    match host.crash {
                        Some(_) => seen(ContainerState::Running, 1, None),
                        None => running(),
                    }
                }
                Do::Probe { .. } => Answer::Probed {
                    ok: host.ready,
                    detail: "HTTP 503".to_owned(),
                },
                Do::Logs(_) => Answer::Logs(vec!["boom".to_owned()]),
                Do::Sleep(until) | Do::Drain(until) => {
                    now = now.max(until);
                    Answer::Done
                }
                _ => Answer::Done,
            };
        }
        panic!("the rollout never ended: {trace:?}");
    }

    fn ready() -> Host {
        Host {
            ready: true,
            ..Host::default()
        }
    }

    /// A gate without probes: healthy at once, then healthy for minHealthySeconds, looked
    /// at every half second; then the promotion is written down.
    const GATE: &[&str] = &[
        "journal Verifying",
        "start new",
        "started",
        "look",
        "progress",
        "sleep",
        "look",
        "progress",
        "sleep",
        "look",
        "journal Promoting",
    ];

    #[test]
    fn every_kind_promotes_a_healthy_container_one_step_at_a_time() {
        let cases = [
            (
                "create",
                Rollout::new(create(), policy(true), 0),
                vec![
                    "journal Starting",
                    "create web",
                    "journal Verifying",
                    "start new",
                    "started",
                    "look",
                    "probe",
                    "progress",
                    "sleep",
                    // Ready at once, then healthy for minHealthySeconds: looked at every
                    // half second, probed every second.
                    "look",
                    "progress",
                    "sleep",
                    "look",
                    "probe",
                    "journal Promoting",
                    "forget",
                    "finish",
                ],
            ),
            (
                "start-first",
                Rollout::new(replace(ReplaceStrategy::StartFirst), policy(false), 500),
                [
                    &["inspect old", "holder web.orun-next", "journal Starting"][..],
                    &["create web.orun-next"],
                    GATE,
                    &["switch", "drain", "stop old", "remove old", "nameof"],
                    &["rename new web", "forget", "finish"],
                ]
                .concat(),
            ),
            (
                "stop-first",
                Rollout::new(replace(ReplaceStrategy::StopFirst), policy(false), 0),
                [
                    &["inspect old", "holder web.orun-old", "journal StoppingOld"][..],
                    &["stop old", "rename old web.orun-old", "journal Starting"],
                    &["create web"],
                    GATE,
                    &["remove old", "forget", "finish"],
                ]
                .concat(),
            ),
        ];
        for (what, m, want) in cases {
            let (trace, end) = drive(m, ready());
            assert_eq!(end, Do::Finish(Outcome::Promoted), "{what}: {trace:?}");
            assert_eq!(trace, want, "{what}");
        }
    }

    #[test]
    fn failures_roll_back_the_way_each_kind_does() {
        let never_ready = Host::default();
        // (what, rollout, host, outcome kind, the words the trace must hold in order)
        let cases: Vec<(&str, Rollout, Host, &str, Vec<&str>)> = vec![
            (
                "create: never ready, nothing to go back to",
                Rollout::new(create(), policy(true), 0),
                never_ready,
                "failed",
                vec!["journal RollingBack", "remove new", "forget", "finish"],
            ),
            (
                "start-first: never ready, the old one never stopped",
                Rollout::new(replace(ReplaceStrategy::StartFirst), policy(true), 0),
                never_ready,
                "rolled-back",
                vec!["journal RollingBack", "remove new", "forget", "finish"],
            ),
            (
                "stop-first: the old one back under its name",
                Rollout::new(replace(ReplaceStrategy::StopFirst), policy(true), 0),
                never_ready,
                "rolled-back",
                vec![
                    "journal RollingBack",
                    "remove new",
                    "inspect old",
                    "nameof",
                    "rename old web",
                    "start old",
                    "forget",
                    "finish",
                ],
            ),
            (
                "a refused create: nothing to remove",
                Rollout::new(replace(ReplaceStrategy::StartFirst), policy(true), 0),
                Host {
                    refuse_create: true,
                    ..ready()
                },
                "rolled-back",
                vec![
                    "create web.orun-next",
                    "journal RollingBack",
                    "forget",
                    "finish",
                ],
            ),
            (
                "a stranger on the temporary name: nothing touched",
                Rollout::new(replace(ReplaceStrategy::StartFirst), policy(true), 0),
                Host {
                    stranger: true,
                    ..ready()
                },
                "rolled-back",
                vec!["holder web.orun-next", "finish"],
            ),
            (
                "shutdown during the gate: undone, not failed",
                Rollout::new(replace(ReplaceStrategy::StartFirst), policy(true), 0),
                Host {
                    shutdown: true,
                    ..never_ready
                },
                "cancelled",
                vec![
                    "look",
                    "journal RollingBack",
                    "remove new",
                    "forget",
                    "finish",
                ],
            ),
            (
                "superseded during the gate: undone, not failed",
                Rollout::new(replace(ReplaceStrategy::StartFirst), policy(true), 0),
                Host {
                    supersede: true,
                    ..never_ready
                },
                "superseded",
                vec![
                    "look",
                    "journal RollingBack",
                    "remove new",
                    "forget",
                    "finish",
                ],
            ),
            (
                "the new container removed by someone else",
                Rollout::new(create(), policy(true), 0),
                Host {
                    vanish: true,
                    ..never_ready
                },
                "failed",
                vec![
                    "look",
                    "journal RollingBack",
                    "remove new",
                    "forget",
                    "finish",
                ],
            ),
            (
                "a refused start",
                Rollout::new(replace(ReplaceStrategy::StopFirst), policy(true), 0),
                Host {
                    refuse_start: true,
                    ..ready()
                },
                "rolled-back",
                vec![
                    "start new",
                    "journal RollingBack",
                    "remove new",
                    "inspect old",
                    "nameof",
                    "rename old web",
                    "start old",
                    "forget",
                    "finish",
                ],
            ),
            (
                "the old one cannot start again: a warning, and the planner takes over",
                Rollout::new(replace(ReplaceStrategy::StopFirst), policy(true), 0),
                Host {
                    refuse_old_start: true,
                    ..never_ready
                },
                "rolled-back",
                vec!["rename old web", "start old", "warn", "forget", "finish"],
            ),
            (
                "Docker away during the gate: stop, the journal keeps it",
                Rollout::new(replace(ReplaceStrategy::StartFirst), policy(true), 0),
                Host {
                    gate_unreachable: true,
                    ..never_ready
                },
                "abort",
                vec!["started", "look", "abort"],
            ),
            (
                "the old container holds the temporary name: nothing touched",
                Rollout::new(replace(ReplaceStrategy::StartFirst), policy(true), 0),
                Host {
                    holder_old: true,
                    ..ready()
                },
                "rolled-back",
                vec!["holder web.orun-next", "finish"],
            ),
            (
                "Docker away at the create: stop, the journal keeps it",
                Rollout::new(create(), policy(true), 0),
                Host {
                    unreachable_create: true,
                    ..ready()
                },
                "abort",
                vec!["journal Starting", "create web", "abort"],
            ),
        ];
        for (what, m, host, outcome, words) in cases {
            let (trace, end) = drive(m, host);
            let got = match &end {
                Do::Finish(Outcome::Failed(_)) => "failed",
                Do::Finish(Outcome::RolledBack(_)) => "rolled-back",
                Do::Finish(Outcome::Cancelled) => "cancelled",
                Do::Finish(Outcome::Superseded) => "superseded",
                Do::Abort => "abort",
                _ => "other",
            };
            assert_eq!(got, outcome, "{what}: {end:?} {trace:?}");
            let mut at = 0;
            for w in &words {
                let found = trace[at..].iter().position(|t| t == w);
                assert!(found.is_some(), "{what}: no {w:?} after {at} in {trace:?}");
                at += found.unwrap_or(0) + 1;
            }
            if what.contains("nothing to remove") {
                assert!(
                    !trace.iter().any(|w| w.starts_with("remove")),
                    "{what}: {trace:?}"
                );
            }
            if let Do::Finish(Outcome::RolledBack(why) | Outcome::Failed(why)) = &end {
                let want = match what {
                    w if w.contains("refused create") => "cannot create the new container: port",
                    w if w.contains("refused start") => "cannot start the new container: port",
                    w if w.contains("removed by someone") => "removed by someone else",
                    w if w.contains("stranger") => "taken by a container orun does not manage",
                    w if w.contains("old container holds") => {
                        "being replaced holds the temporary name"
                    }
                    _ => "",
                };
                assert!(why.contains(want), "{what}: {why}");
            }
            if what.contains("nothing touched") {
                assert!(
                    !trace.iter().any(|w| w.starts_with("journal")
                        || w.starts_with("stop")
                        || w.starts_with("remove")),
                    "{what}: {trace:?}"
                );
            }
        }
    }

    #[test]
    fn a_crash_loop_is_reported_with_its_exit_code_and_last_lines() {
        // (Docker shows the exit code on the n-th look, the code reported, looks made): one
        // it never shows is waited for ten looks, then reported without.
        for (shown_at, code, looks) in [(3, Some(3), 3), (100, None, 10)] {
            let (trace, end) = drive(
                Rollout::new(create(), policy(false), 0),
                Host {
                    crash: Some(shown_at),
                    ..ready()
                },
            );
            let Do::Finish(Outcome::Failed(why)) = end else {
                panic!("{end:?} {trace:?}");
            };
            match code {
                Some(c) => assert!(why.contains(&format!("exited with code {c}")), "{why}"),
                None => assert!(!why.contains("exited with code"), "{why}"),
            }
            assert!(why.contains("last log lines: boom"), "{why}");
            let inspects = trace.iter().filter(|w| *w == "inspect new").count();
            assert_eq!(inspects, looks, "{trace:?}");
        }
    }

    #[test]
    fn an_adopted_container_is_started_if_need_be_and_gated_again() {
        let mut intent = replace(ReplaceStrategy::StartFirst);
        intent.new_id = Some("new".to_owned());
        intent.phase = Phase::Verifying;
        let m = Rollout::resume(intent.clone(), policy(false), 0).unwrap();
        let (trace, end) = drive(
            m,
            Host {
                created_only: true,
                ..ready()
            },
        );
        assert_eq!(end, Do::Finish(Outcome::Promoted), "{trace:?}");
        assert_eq!(
            trace[..3],
            ["inspect new", "start new", "look"],
            "{trace:?}"
        );
        assert!(!trace.iter().any(|w| w.starts_with("create")), "{trace:?}");
        intent.new_id = None;
        assert!(Rollout::resume(intent, policy(false), 0).is_none());
    }

    #[test]
    fn a_recovery_finishes_a_promotion_and_undoes_anything_earlier() {
        let at = |strategy, phase, new_id: Option<&str>| {
            let mut i = replace(strategy);
            i.phase = phase;
            i.new_id = new_id.map(str::to_owned);
            if strategy == ReplaceStrategy::StopFirst && phase != Phase::Starting {
                i.old_running = true;
            }
            Rollout::recover(i)
        };
        type Row = (&'static str, Rollout, Outcome, Vec<&'static str>);
        let undone = Outcome::RolledBack("interrupted; undone".to_owned());
        let cases: Vec<Row> = vec![
            (
                "start-first promoting: the old goes, the new takes the name",
                at(ReplaceStrategy::StartFirst, Phase::Promoting, Some("new")),
                Outcome::Promoted,
                vec![
                    "stop old",
                    "remove old",
                    "nameof",
                    "rename new web",
                    "forget",
                    "finish",
                ],
            ),
            (
                "stop-first promoting: the parked old one goes",
                at(ReplaceStrategy::StopFirst, Phase::Promoting, Some("new")),
                Outcome::Promoted,
                vec!["remove old", "forget", "finish"],
            ),
            (
                "start-first verifying: the new one goes, the old one was never moved",
                at(ReplaceStrategy::StartFirst, Phase::Verifying, Some("new")),
                undone.clone(),
                vec!["remove new", "inspect old", "nameof", "forget", "finish"],
            ),
            (
                "stop-first verifying: the old one back under its name",
                at(ReplaceStrategy::StopFirst, Phase::Verifying, Some("new")),
                undone.clone(),
                vec![
                    "remove new",
                    "inspect old",
                    "nameof",
                    "rename old web",
                    "start old",
                    "forget",
                    "finish",
                ],
            ),
            (
                "a crash before the id was written: found by name, owner and spec",
                at(ReplaceStrategy::StartFirst, Phase::Starting, None),
                undone,
                vec![
                    "orphan web.orun-next",
                    "remove orphan",
                    "inspect old",
                    "nameof",
                    "forget",
                    "finish",
                ],
            ),
        ];
        for (what, m, outcome, want) in cases {
            let host = Host {
                old_home: what.starts_with("start-first") || what.starts_with("a crash"),
                old_stopped: what.starts_with("stop-first verifying"),
                ..ready()
            };
            let (trace, end) = drive(m, host);
            assert_eq!(end, Do::Finish(outcome), "{what}: {trace:?}");
            assert_eq!(trace, want, "{what}");
        }
    }

    #[test]
    fn leftovers_and_parked_containers() {
        // A leftover of ours on the temporary name goes before the new container comes.
        let (trace, end) = drive(
            Rollout::new(replace(ReplaceStrategy::StartFirst), policy(false), 0),
            Host {
                leftover: true,
                ..ready()
            },
        );
        assert_eq!(end, Do::Finish(Outcome::Promoted), "{trace:?}");
        assert_eq!(
            trace[..4],
            [
                "inspect old",
                "holder web.orun-next",
                "remove left",
                "journal Starting"
            ],
            "{trace:?}"
        );

        // A stop-first replace of a container already parked aside leaves it where it is.
        let s = step(Action::Replace {
            old_id: "old".to_owned(),
            old_name: "web.orun-old".to_owned(),
            container_name: "web".to_owned(),
            spec_hash: "h2".to_owned(),
            strategy: ReplaceStrategy::StopFirst,
            needs_image: false,
        });
        let intent = Intent::for_step(&s, None).unwrap();
        let (trace, end) = drive(Rollout::new(intent, policy(false), 0), ready());
        assert_eq!(end, Do::Finish(Outcome::Promoted), "{trace:?}");
        assert_eq!(
            trace[..4],
            [
                "inspect old",
                "journal StoppingOld",
                "stop old",
                "journal Starting"
            ],
            "{trace:?}"
        );
    }

    #[test]
    fn a_recovery_of_a_create_and_of_an_orphan_nobody_finds() {
        let mut promoting = create();
        promoting.phase = Phase::Promoting;
        promoting.new_id = Some("new".to_owned());
        let (trace, end) = drive(Rollout::recover(promoting), ready());
        assert_eq!(end, Do::Finish(Outcome::Promoted));
        assert_eq!(trace, ["forget", "finish"]);

        let mut verifying = create();
        verifying.phase = Phase::Verifying;
        verifying.new_id = Some("new".to_owned());
        let (trace, end) = drive(Rollout::recover(verifying), ready());
        assert!(matches!(end, Do::Finish(Outcome::Failed(_))), "{end:?}");
        assert_eq!(trace, ["remove new", "forget", "finish"]);

        let mut lost = replace(ReplaceStrategy::StartFirst);
        lost.phase = Phase::Starting;
        let (trace, _) = drive(
            Rollout::recover(lost),
            Host {
                no_orphan: true,
                old_home: true,
                ..ready()
            },
        );
        assert_eq!(
            trace,
            [
                "orphan web.orun-next",
                "inspect old",
                "nameof",
                "forget",
                "finish"
            ]
        );
    }
}

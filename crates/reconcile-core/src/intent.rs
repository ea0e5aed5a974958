//! The rollout's intent, as the journal writes it down before each mutating step: the kinds and
//! phases of a rollout, and the intent a plan's step starts with. Pure; the engine keeps the
//! durable file (RELIABILITY E9).

use serde::{Deserialize, Serialize};

use crate::desired::ReplaceStrategy;
use crate::plan::{Action, Step};

/// How a rollout overlaps old and new.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// No previous container.
    Create,
    /// New beside old under a temporary name.
    StartFirst,
    /// Old stopped and moved aside first.
    StopFirst,
}

/// Where a rollout stands. After a crash, `Promoting` is finished (the new container passed
/// its gate); `Verifying` is adopted when its new container is still there and still wanted
/// (its gate starts again); anything else is undone: the new container has not earned
/// promotion, so the old one serves again and the rollout starts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Stop-first: stopping the old container and moving it aside.
    StoppingOld,
    /// Creating and starting the new container.
    Starting,
    /// Waiting for the new container to earn promotion.
    Verifying,
    /// The new container passed: retiring the old one and renaming the new.
    Promoting,
    /// The new container failed: removing it and restoring the old one.
    RollingBack,
}

/// One rollout in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// How old and new overlap.
    pub kind: Kind,
    /// Where it stands.
    pub phase: Phase,
    /// The spec hash being rolled out: with the name, identifies the new container even when
    /// the crash came before its id was written down.
    pub spec_hash: String,
    /// The name the deployment's container ends up with.
    pub name: String,
    /// The name the new container is created under.
    pub new_name: String,
    /// The new container, once created.
    pub new_id: Option<String>,
    /// The container being replaced.
    pub old_id: Option<String>,
    /// The old container's name before the rollout.
    pub old_name: Option<String>,
    /// The old container ran: an undo starts it again.
    #[serde(default)]
    pub old_running: bool,
    /// Stop-first: the name the old container is parked under.
    pub aside: Option<String>,
    /// The revision it rolls out.
    pub commit: Option<String>,
}

impl Intent {
    /// The intent a rollout of `step` starts with (`None` for a step that is no rollout):
    /// which kind, the names it creates and parks under, and what an undo restores.
    /// Whether the container being replaced runs (an undo starts it again) is learnt by the
    /// rollout's first look at it.
    pub fn for_step(step: &Step, commit: Option<String>) -> Option<Self> {
        match &step.action {
            Action::Create {
                container_name,
                spec_hash,
                ..
            } => Some(Self {
                kind: Kind::Create,
                phase: Phase::Starting,
                spec_hash: spec_hash.clone(),
                name: container_name.clone(),
                new_name: container_name.clone(),
                new_id: None,
                old_id: None,
                old_name: None,
                old_running: false,
                aside: None,
                commit,
            }),
            Action::Replace {
                old_id,
                old_name,
                container_name,
                spec_hash,
                strategy,
                ..
            } => {
                let (kind, new_name, aside) = match strategy {
                    ReplaceStrategy::StartFirst => (
                        Kind::StartFirst,
                        // A leftover under the temporary name, being replaced itself, keeps
                        // it: the new container takes another.
                        if *old_name == format!("{container_name}.orun-next") {
                            format!("{container_name}.orun-next-2")
                        } else {
                            format!("{container_name}.orun-next")
                        },
                        None,
                    ),
                    ReplaceStrategy::StopFirst => (
                        Kind::StopFirst,
                        container_name.clone(),
                        // A leftover already parked aside stays where it is.
                        Some(if old_name.ends_with(".orun-old") {
                            old_name.clone()
                        } else {
                            format!("{old_name}.orun-old")
                        }),
                    ),
                };
                Some(Self {
                    kind,
                    phase: Phase::Starting,
                    spec_hash: spec_hash.clone(),
                    name: container_name.clone(),
                    new_name,
                    new_id: None,
                    old_id: Some(old_id.clone()),
                    old_name: Some(old_name.clone()),
                    old_running: false,
                    aside,
                    commit,
                })
            }
            Action::Rename { .. }
            | Action::Start { .. }
            | Action::Unpause { .. }
            | Action::Remove { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(action: Action) -> Step {
        crate::plan::test_step("web", action)
    }

    fn replace(old_name: &str, strategy: ReplaceStrategy) -> Step {
        step(Action::Replace {
            old_id: "old".to_owned(),
            old_name: old_name.to_owned(),
            container_name: "web".to_owned(),
            spec_hash: "h2".to_owned(),
            strategy,
            needs_image: false,
        })
    }

    #[test]
    fn each_step_starts_its_rollout_with_the_names_it_needs() {
        // (step, kind, new name, parked aside as)
        type Want = Option<(Kind, &'static str, Option<&'static str>)>;
        let cases: Vec<(&str, Step, Want)> = vec![
            (
                "create",
                step(Action::Create {
                    container_name: "web".to_owned(),
                    spec_hash: "h2".to_owned(),
                    needs_image: false,
                }),
                Some((Kind::Create, "web", None)),
            ),
            (
                "start-first",
                replace("web", ReplaceStrategy::StartFirst),
                Some((Kind::StartFirst, "web.orun-next", None)),
            ),
            (
                "start-first over a leftover under the temporary name",
                replace("web.orun-next", ReplaceStrategy::StartFirst),
                Some((Kind::StartFirst, "web.orun-next-2", None)),
            ),
            (
                "stop-first",
                replace("web", ReplaceStrategy::StopFirst),
                Some((Kind::StopFirst, "web", Some("web.orun-old"))),
            ),
            (
                "stop-first over a container already parked aside",
                replace("web.orun-old", ReplaceStrategy::StopFirst),
                Some((Kind::StopFirst, "web", Some("web.orun-old"))),
            ),
            (
                "a rename is no rollout",
                step(Action::Rename {
                    container_id: "c".to_owned(),
                    from: "a".to_owned(),
                    to: "web".to_owned(),
                    start: false,
                }),
                None,
            ),
        ];
        for (what, step, want) in cases {
            let got = Intent::for_step(&step, Some("c1".to_owned()));
            let got_short = got
                .as_ref()
                .map(|i| (i.kind, i.new_name.as_str(), i.aside.as_deref()));
            assert_eq!(got_short, want, "{what}");
            if let Some(i) = got {
                assert_eq!(i.phase, Phase::Starting, "{what}");
                assert_eq!(i.name, "web", "{what}");
                assert_eq!(i.spec_hash, "h2", "{what}");
                assert_eq!(i.commit.as_deref(), Some("c1"), "{what}");
                // Only a replaced container is restored.
                assert_eq!(i.old_id.is_some(), i.kind != Kind::Create, "{what}");
            }
        }
    }
}

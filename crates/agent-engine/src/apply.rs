//! Applying the single-call steps of a plan (start, unpause, rename, remove). Creates and
//! replaces are rollouts, with a health gate and a journal: see [`crate::rollout`].

use reconcile_core::{Action, Step};

use crate::error::EngineError;
use crate::rollout::stop_gone_ok;
use crate::seams::Runtime;

pub(crate) fn name(action: &Action) -> &'static str {
    match action {
        Action::Create { .. } => "create",
        Action::Replace { .. } => "replace",
        Action::Rename { .. } => "rename",
        Action::Start { .. } => "start",
        Action::Unpause { .. } => "unpause",
        Action::Remove { .. } => "remove",
    }
}

/// Whether the step is a rollout (gated, journaled) rather than one Docker call.
pub(crate) fn is_rollout(action: &Action) -> bool {
    matches!(action, Action::Create { .. } | Action::Replace { .. })
}

/// Applies a single-call step.
pub(crate) async fn step(docker: &impl Runtime, step: &Step) -> Result<(), EngineError> {
    match &step.action {
        Action::Start { container_id, .. } => docker.start(container_id).await?,
        Action::Unpause { container_id, .. } => docker.unpause(container_id).await?,
        Action::Rename {
            container_id,
            to,
            start,
            ..
        } => {
            docker.rename(container_id, to).await?;
            if *start {
                docker.start(container_id).await?;
            }
        }
        Action::Remove { container_id, .. } => {
            stop_gone_ok(docker, container_id).await?;
            docker.remove(container_id).await?;
        }
        Action::Create { .. } | Action::Replace { .. } => {
            return Err(EngineError::Internal(format!(
                "{} is a rollout",
                name(&step.action)
            )));
        }
    }
    Ok(())
}

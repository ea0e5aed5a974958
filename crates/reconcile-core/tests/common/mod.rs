//! Helpers shared by the planner's test binaries.

use reconcile_core::{Action, Plan};

/// The ids of existing containers a plan's steps act on (a create acts on none).
pub(crate) fn step_containers(plan: &Plan) -> Vec<&str> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Replace { old_id, .. } => Some(old_id.as_str()),
            Action::Start { container_id, .. }
            | Action::Rename { container_id, .. }
            | Action::Unpause { container_id, .. }
            | Action::Remove { container_id, .. } => Some(container_id.as_str()),
            Action::Create { .. } => None,
        })
        .collect()
}

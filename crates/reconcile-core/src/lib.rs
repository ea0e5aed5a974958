//! The pure planner: from (desired, actual, history, now) to an ordered, explained plan.
//!
//! `reconcile-core` decides what to change on a Docker host so it runs what the manifests
//! say, and says why; through [`Gate`], when a new container has earned promotion; and,
//! through [`rollout::Rollout`], each next step of a rollout. It performs no IO, reads no
//! clock, spawns nothing and is never async:
//! the caller observes Docker, passes the time in, and applies the steps. That makes it
//! property-testable against an in-memory fake, and embeddable in other tools. It knows
//! nothing of Docker's API, Git or HTTP.
//!
//! ```
//! use std::collections::BTreeMap;
//! use manifest_model::{load, resolve, Limits, MemSource};
//! use reconcile_core::*;
//!
//! // Desired: one deployment from a manifest repository.
//! let repo = MemSource::new()
//!     .with("nodes/n1.yaml", "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n1\nspec:\n  host: n1.internal\n  gitRepo: /srv/repo.git\n")
//!     .with("deployments/web.yaml", "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: nginx:1.27\n");
//! let (revision, _) = load(&repo, &Limits::default()).into_result().unwrap();
//! let node = resolve(&revision, "n1", None).unwrap();
//! let desired = Desired::from_node(&node, Some("0a1b2c3".into()), |_image| None, &Default::default());
//!
//! // Actual: an unmanaged container and a stale one of ours.
//! let ours = BTreeMap::from([
//!     (LABEL_NODE.to_owned(), "n1".to_owned()),
//!     (LABEL_DEPLOYMENT.to_owned(), "old-api".to_owned()),
//!     (LABEL_ENVIRONMENT.to_owned(), "main".to_owned()),
//!     (LABEL_SPEC_HASH.to_owned(), "0f1e2d".to_owned()),
//! ]);
//! let actual = Actual { images: Default::default(), containers: vec![
//!     ObservedFields { id: "c1".into(), name: "postgres".into(), image_id: "sha256:aa".into(),
//!                      state: ContainerState::Running, health: None, labels: BTreeMap::new() }.into(),
//!     ObservedFields { id: "c2".into(), name: "old-api".into(), image_id: "sha256:bb".into(),
//!                      state: ContainerState::Running, health: None, labels: ours }.into(),
//! ]};
//!
//! let plan = plan(&desired, &actual, &History::default(), Timestamp(0));
//! println!("{plan}");
//! assert_eq!(plan.counts(), (1, 0, 0, 1)); // create web, remove old-api; postgres untouched
//! ```

mod actual;
mod desired;
mod gate;
mod history;
mod intent;
mod plan;
pub mod rollout;
mod routes;

pub use actual::{
    Actual, ContainerState, HealthStatus, LABEL_COMMIT, LABEL_DEPLOYMENT, LABEL_ENVIRONMENT,
    LABEL_NODE, LABEL_SPEC, LABEL_SPEC_HASH, ObservedContainer, ObservedFields, Ownership,
};
pub use desired::{
    BUILD_REPOSITORY, Desired, DesiredDeployment, OfferedSecrets, RenderedEnv, RenderedPort,
    RenderedSpec, RenderedVolume, ReplaceStrategy, UNCHECKED, Unchecked, image_of, secret_digest,
    strategy_of,
};
pub use gate::{
    Gate, GateFailure, GatePolicy, Millis, ProbePolicy, ProbeTrack, Seen, Verdict, restart_delay,
};
pub use history::{Backoff, Failure, History, Timestamp, next_attempt};
pub use intent::{Intent, Kind, Phase};
pub use plan::{
    Action, Diagnostic, FieldChange, Plan, Reason, Step, plan, plan_with, preview, same_generation,
    waves,
};
pub use routes::{RouteChange, RouteNow, route_changes};

/// A decrypted value, printed as `***`: what the runtime hands Docker for a secret env var.
pub use manifest_model::Secret;

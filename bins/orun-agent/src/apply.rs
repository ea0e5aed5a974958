//! Applying one planned step to Docker, undoing what it started when it fails part-way.
//!
//! Replacements keep the old container until the new one runs: start-first creates the new
//! container under a temporary name beside the old; stop-first (host ports) stops the old one
//! and moves it aside under a temporary name, and puts it back and starts it if the new one
//! cannot be created or started. Health-gated promotion is the next layer (docs/rollouts.md);
//! here "runs" means Docker started it and it has not exited at once.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use docker_runtime::{Docker, Owner};
use reconcile_core::{Action, Desired, DesiredDeployment, ReplaceStrategy, Step};
use tracing::warn;

/// Seconds a container gets to stop before it is killed.
const STOP_GRACE: i32 = 10;
/// How long a fresh container is watched for an immediate exit.
const SETTLE: Duration = Duration::from_millis(300);

pub(crate) fn name(action: &Action) -> &'static str {
    match action {
        Action::Create { .. } => "create",
        Action::Replace { .. } => "replace",
        Action::Start { .. } => "start",
        Action::Unpause { .. } => "unpause",
        Action::Remove { .. } => "remove",
    }
}

pub(crate) async fn step(docker: &Docker, desired: &Desired, step: &Step) -> anyhow::Result<()> {
    let wanted = || {
        desired
            .deployments
            .iter()
            .find(|d| d.name == step.deployment)
            .ok_or_else(|| anyhow!("deployment {} is not in the desired state", step.deployment))
    };
    match &step.action {
        Action::Create { container_name, .. } => {
            let d = wanted()?;
            create_and_start(docker, desired, d, container_name).await?;
            Ok(())
        }
        Action::Replace {
            old_id,
            old_name,
            container_name,
            strategy,
            ..
        } => {
            let d = wanted()?;
            // A container that already runs this exact spec under another name (a replace
            // interrupted between its last two steps) is promoted by a rename, not replaced.
            let actual = docker.observe().await?;
            if let Some(old) = actual.containers.iter().find(|c| c.id == *old_id)
                && old.managed_by(&desired.node, &desired.environment)
                && old.labels.get(reconcile_core::LABEL_SPEC_HASH) == Some(&d.spec_hash)
                && old.image_id == d.image_id.clone().unwrap_or_default()
                && !actual.containers.iter().any(|c| c.name == *container_name)
            {
                docker.rename(old_id, container_name).await?;
                if old.state != reconcile_core::ContainerState::Running {
                    docker.start(old_id).await?;
                }
                return Ok(());
            }
            match strategy {
                ReplaceStrategy::StartFirst => {
                    start_first(docker, desired, d, old_id, container_name).await
                }
                ReplaceStrategy::StopFirst => {
                    stop_first(docker, desired, d, old_id, old_name, container_name).await
                }
            }
        }
        Action::Start { container_id, .. } => {
            docker.start(container_id).await?;
            Ok(())
        }
        Action::Unpause { container_id, .. } => {
            docker.unpause(container_id).await?;
            Ok(())
        }
        Action::Remove { container_id, .. } => {
            stop_gone_ok(docker, container_id).await?;
            docker.remove(container_id).await?;
            Ok(())
        }
    }
}

/// Creates and starts the deployment's container under `name`; removes it again on failure.
async fn create_and_start(
    docker: &Docker,
    desired: &Desired,
    d: &DesiredDeployment,
    name: &str,
) -> anyhow::Result<String> {
    let owner = Owner {
        node: &desired.node,
        environment: &desired.environment,
        deployment: &d.name,
        commit: desired.commit.as_deref(),
    };
    // SOPS values are not decrypted by this agent yet: `create` refuses a spec whose secret has
    // no value, naming the key, before Docker sees anything.
    let secrets = BTreeMap::new();
    let id = docker.create(name, &d.spec, owner, &secrets).await?;
    let started = async {
        docker.start(&id).await?;
        tokio::time::sleep(SETTLE).await;
        settled(docker, &id).await
    }
    .await;
    if let Err(e) = started {
        if let Err(cleanup) = docker.remove(&id).await {
            warn!(container = %id, error = %cleanup, "cannot remove the failed container");
        }
        return Err(e);
    }
    Ok(id)
}

/// Fails when the container exited right after starting (a bad command, a missing binary).
async fn settled(docker: &Docker, id: &str) -> anyhow::Result<()> {
    let actual = docker.observe().await?;
    match actual.containers.iter().find(|c| c.id == id) {
        Some(c) => match c.state {
            reconcile_core::ContainerState::Exited { code } if code != 0 => {
                Err(anyhow!("the new container exited at once with code {code}"))
            }
            reconcile_core::ContainerState::Dead => Err(anyhow!("the new container is dead")),
            // Docker is already restarting it: it crashed within the first moments.
            reconcile_core::ContainerState::Restarting => Err(anyhow!(
                "the new container crashed at once and is being restarted"
            )),
            _ => Ok(()),
        },
        None => Err(anyhow!("the new container vanished after starting")),
    }
}

async fn start_first(
    docker: &Docker,
    desired: &Desired,
    d: &DesiredDeployment,
    old_id: &str,
    name: &str,
) -> anyhow::Result<()> {
    let temp = format!("{name}.orun-next");
    // A leftover from an interrupted replace would block the name (never the old container
    // itself: that one is still serving).
    remove_by_name(docker, desired, &temp, old_id).await?;
    let new_id = create_and_start(docker, desired, d, &temp)
        .await
        .context("the new container did not start; the old one keeps running")?;
    stop_gone_ok(docker, old_id).await?;
    docker.remove(old_id).await?;
    docker.rename(&new_id, name).await?;
    Ok(())
}

async fn stop_first(
    docker: &Docker,
    desired: &Desired,
    d: &DesiredDeployment,
    old_id: &str,
    old_name: &str,
    name: &str,
) -> anyhow::Result<()> {
    let aside = format!("{old_name}.orun-old");
    if old_name == aside || old_name.ends_with(".orun-old") {
        // The old container is itself a leftover that was moved aside: create beside it.
        stop_gone_ok(docker, old_id).await?;
        create_and_start(docker, desired, d, name).await?;
        docker.remove(old_id).await?;
        return Ok(());
    }
    remove_by_name(docker, desired, &aside, old_id).await?;
    stop_gone_ok(docker, old_id).await?;
    docker.rename(old_id, &aside).await?;
    match create_and_start(docker, desired, d, name).await {
        Ok(_) => {
            docker.remove(old_id).await?;
            Ok(())
        }
        Err(e) => {
            // Put the previous container back as it was.
            let restore = async {
                docker.rename(old_id, old_name).await?;
                docker.start(old_id).await?;
                anyhow::Ok(())
            }
            .await;
            match restore {
                Ok(()) => {
                    Err(e.context("the new container did not start; the previous one was restored"))
                }
                Err(r) => Err(e.context(format!(
                    "the new container did not start, and restoring the previous one failed: {r:#}"
                ))),
            }
        }
    }
}

/// Stops a container; one that is already gone counts as stopped.
async fn stop_gone_ok(docker: &Docker, id: &str) -> anyhow::Result<()> {
    match docker.stop(id, STOP_GRACE).await {
        Ok(()) | Err(docker_runtime::RuntimeError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes a container orun left under a temporary name, if one exists, is managed by this
/// agent, and is not `keep` (the container being replaced).
async fn remove_by_name(
    docker: &Docker,
    desired: &Desired,
    name: &str,
    keep: &str,
) -> anyhow::Result<()> {
    let actual = docker.observe().await?;
    if let Some(c) = actual.containers.iter().find(|c| c.name == name) {
        if c.id == keep {
            anyhow::bail!("the container being replaced holds the temporary name {name}");
        }
        if c.managed_by(&desired.node, &desired.environment) {
            docker.remove(&c.id).await?;
        } else {
            anyhow::bail!("the temporary name {name} is taken by a container orun does not manage");
        }
    }
    Ok(())
}

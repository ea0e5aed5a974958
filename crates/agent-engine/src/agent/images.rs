//! Getting every deployment's image onto the host before anything is planned (RELIABILITY
//! E1): pulls, the moved-tag check of `pull: always`, builds from the commit being applied;
//! with their progress in `/status`, and retention of the images orun brought.

use std::collections::BTreeMap;
use std::time::Duration;

use docker_runtime::{BuildRequest, LABEL_BUILT_FROM, RuntimeError};
use manifest_model::{BuildMode, ImageSource, PullPolicy};
use reconcile_core::{Actual, Desired, Timestamp};
use status_http::{ImageProgress, Status};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use std::rc::Rc;

use super::{Agent, Loaded};
use crate::rollout;
use crate::seams::{Clock as _, Git as _, Runtime as _, World};
use crate::state::Brought;

/// How long one image pull may take.
pub(super) const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one build may take.
pub(super) const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often retention looks at the images orun keeps (and weighs them) when nothing else
/// asked it to.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What the agent knows about images between passes.
#[derive(Debug, Default)]
pub(super) struct ImageMemory {
    /// When each `pull: always` reference was last checked against its registry, and why
    /// that check failed, if it did.
    checked: BTreeMap<String, (Instant, Option<String>)>,
    /// Builds running beside the loop, by deployment: the tag each builds.
    pub(super) building: BTreeMap<String, String>,
    /// When retention last swept; `None` asks for a sweep at the next pass.
    swept: Option<Instant>,
    /// The images part of `/status`, as the last sweep found it.
    pub(super) status: status_http::ImagesStatus,
}

impl<W: World> Agent<W> {
    /// Makes sure each deployment's image is on the host, pulling or building it as its
    /// policy says, and fills in `images` (reference → local id). What cannot be had is
    /// put in `errors` and the deployment is left as it runs. Builds run beside the loop
    /// (they may take many minutes, and health supervision and Git polls go on meanwhile)
    /// unless `wait` (`--once`) asks for them inline. `false` when shutdown was asked for
    /// meanwhile.
    pub(super) async fn acquire(
        &mut self,
        loaded: &Loaded,
        desired: &Desired,
        images: &mut BTreeMap<String, String>,
        errors: &mut BTreeMap<String, String>,
        wait: bool,
    ) -> bool {
        let node = &loaded.node;
        // `desired.deployments` is `node.containers` rendered, in the same order.
        for (c, d) in node.containers.iter().zip(&desired.deployments) {
            // A rollout in flight has its image already; a newer spec waits for it to land.
            if c.spec.suspend || self.in_flight.contains_key(&d.name) {
                continue;
            }
            if self.stopping() {
                return false;
            }
            let now = self.now_ts();
            let image = &d.spec.image;
            let present = images.get(image).cloned();
            let result = match (&c.spec.source, c.spec.pull) {
                (ImageSource::Build(_), _) | (ImageSource::Image(_), PullPolicy::Missing)
                    if present.is_some() =>
                {
                    Ok(None)
                }
                (ImageSource::Image(_), PullPolicy::Never) if present.is_none() => Err(
                    "the image is not on this host and `pull: never` forbids pulling it".to_owned(),
                ),
                (ImageSource::Image(_), PullPolicy::Never) => Ok(None),
                _ if self.backing_off(&d.name, &d.spec_hash, now) => Ok(None),
                // One build per deployment at a time: a newer spec waits for it to land.
                (ImageSource::Build(_), _) if self.building(&d.name) => Ok(None),
                (ImageSource::Build(b), _) => {
                    match self
                        .prepare_build(loaded, &d.name, image, &d.spec_hash, b)
                        .await
                    {
                        Ok(job) if wait => job.run().await.result.map(Some),
                        Ok(job) => {
                            self.launch_build(job);
                            Ok(None)
                        }
                        Err(reason) => Err(reason),
                    }
                }
                (ImageSource::Image(r), PullPolicy::Always)
                    if present.is_some() && r.digest.is_none() =>
                {
                    match self.moved(image).await {
                        Ok(true) => self.pull(&d.name, image).await,
                        Ok(false) => Ok(None),
                        // The image is here and serving: a registry that cannot answer is
                        // shown, but stops nothing (and holds no rollout back).
                        Err(e) => {
                            warn!(deployment = %d.name, %image, error = %e, "cannot check the registry for a newer image");
                            errors.insert(d.name.clone(), e);
                            Ok(None)
                        }
                    }
                }
                (ImageSource::Image(_), _) => self.pull(&d.name, image).await,
            };
            match result {
                Ok(Some(id)) => {
                    if present.as_deref() != Some(id.as_str()) {
                        self.brought(&id, image, &d.name, now);
                    }
                    images.insert(image.clone(), id);
                }
                Ok(None) => {}
                Err(reason) => {
                    warn!(deployment = %d.name, %reason, "image unavailable; whatever runs keeps running");
                    self.record_failure(&d.name, &d.spec_hash, &reason, now);
                    errors.insert(d.name.clone(), reason);
                }
            }
        }
        true
    }

    fn stopping(&self) -> bool {
        self.shared
            .shutdown
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether the registry serves another manifest for `reference` than the local image's,
    /// asked at most once per check interval per reference. A failed check is noted too,
    /// and its reason given until the next one: a registry that is down or refuses the
    /// login is asked once an interval, not on every pass, and `/status` keeps saying so.
    async fn moved(&mut self, reference: &str) -> Result<bool, String> {
        let now = self.shared.clock.now();
        if let Some((at, failed)) = self.images_memory.checked.get(reference)
            && now.duration_since(*at) < self.cfg.pull_check_interval
        {
            return failed.clone().map_or(Ok(false), Err);
        }
        let result = self.ask_registry(reference).await;
        self.images_memory
            .checked
            .insert(reference.to_owned(), (now, result.as_ref().err().cloned()));
        result
    }

    async fn ask_registry(&self, reference: &str) -> Result<bool, String> {
        let remote = self
            .shared
            .docker
            .registry_digest(reference, &self.auth)
            .await
            .map_err(|e| self.secrets.redactor.mask(&e.to_string()))?;
        let local = self
            .shared
            .docker
            .local_digests(reference)
            .await
            .map_err(|e| e.to_string())?;
        let moved = docker_runtime::moved(&remote, &local);
        if moved {
            info!(image = %reference, digest = %remote, "the tag moved in the registry");
        } else {
            debug!(image = %reference, "the tag has not moved");
        }
        Ok(moved)
    }

    async fn pull(&mut self, deployment: &str, image: &str) -> Result<Option<String>, String> {
        info!(%deployment, %image, "pulling");
        let mut report = progress_reporter(&self.shared.status, deployment);
        let pulled = tokio::time::timeout(
            PULL_TIMEOUT,
            self.shared.docker.pull_with(image, &self.auth, &mut report),
        )
        .await;
        clear_progress(&self.shared.status, deployment);
        // Asked just now: the next check waits a whole interval.
        self.images_memory
            .checked
            .insert(image.to_owned(), (self.shared.clock.now(), None));
        match pulled {
            Ok(Ok(id)) => Ok(Some(id)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "pulling {image} took longer than {}s",
                PULL_TIMEOUT.as_secs()
            )),
        }
    }

    /// A build from `loaded`'s commit, packed and ready to run (inline, or beside the loop).
    async fn prepare_build(
        &self,
        loaded: &Loaded,
        deployment: &str,
        tag: &str,
        spec_hash: &str,
        b: &manifest_model::BuildSpec,
    ) -> Result<BuildJob<W>, String> {
        info!(%deployment, image = %tag, context = %b.context, mode = ?b.build_mode, "building");
        let packed = self
            .tracking
            .git
            .pack(&loaded.commit, &b.context, &b.dockerfile)
            .await
            .map_err(|e| e.to_string())?;
        if !packed.skipped.is_empty() {
            warn!(%deployment, skipped = ?packed.skipped, "left out of the build context: a context cannot hold these");
        }
        let mut labels = std::collections::HashMap::new();
        labels.insert(reconcile_core::LABEL_NODE.to_owned(), self.cfg.node.clone());
        labels.insert(
            reconcile_core::LABEL_DEPLOYMENT.to_owned(),
            deployment.to_owned(),
        );
        labels.insert(LABEL_BUILT_FROM.to_owned(), loaded.commit.clone());
        Ok(BuildJob {
            shared: Rc::clone(&self.shared),
            secrets: Rc::clone(&loaded.secrets),
            deployment: deployment.to_owned(),
            tag: tag.to_owned(),
            spec_hash: spec_hash.to_owned(),
            tar: packed.tar,
            spec: b.clone(),
            labels,
        })
    }

    /// Starts a build beside the loop: the deployment is left as it runs (its steps are held
    /// back) until the build lands and a pass plans with its image. One build per deployment
    /// at a time.
    fn launch_build(&mut self, job: BuildJob<W>) {
        self.images_memory
            .building
            .insert(job.deployment.clone(), job.tag.clone());
        self.builds.push(Box::pin(job.run()));
    }

    /// Records how a build beside the loop ended: its image is orun's to keep or remove, or
    /// its failure is the deployment's error and backoff, as an inline build's would be.
    pub(super) fn land_build(&mut self, built: Built) {
        let Built {
            deployment,
            tag,
            spec_hash,
            result,
        } = built;
        self.images_memory.building.remove(&deployment);
        let now = self.now_ts();
        match result {
            Ok(id) => {
                self.brought(&id, &tag, &deployment, now);
                // The new tag is not in the picture's image ids yet.
                self.picture.forget();
            }
            Err(reason) => {
                warn!(%deployment, %reason, "image unavailable; whatever runs keeps running");
                self.record_failure(&deployment, &spec_hash, &reason, now);
                self.landed_errors.insert(deployment, reason);
                self.save_state();
            }
        }
    }

    /// Whether a build beside the loop holds `deployment` back.
    pub(super) fn building(&self, deployment: &str) -> bool {
        self.images_memory.building.contains_key(deployment)
    }

    /// Notes an image orun put on the host, so retention may remove it once unused.
    fn brought(&mut self, id: &str, reference: &str, deployment: &str, now: Timestamp) {
        let entry = self
            .store
            .state
            .brought
            .entry(id.to_owned())
            .or_insert_with(|| Brought {
                deployment: deployment.to_owned(),
                at: now.0,
                ..Brought::default()
            });
        entry.references.insert(reference.to_owned());
        entry.unused_since = None;
        self.images_memory.swept = None;
        self.save_state();
    }

    /// Retention: every image orun brought that no deployment runs now or ran just before
    /// (kept for a fast rollback), that the revision does not want, and that no container
    /// uses, is removed once it has been unused for the grace period. Images orun did not
    /// bring are never looked at. Also weighs what is kept, for `/status`.
    pub(super) async fn sweep(&mut self, desired: &Desired, actual: &Actual) {
        let now = self.shared.clock.now();
        if let Some(at) = self.images_memory.swept
            && now.duration_since(at) < SWEEP_EVERY
        {
            return;
        }
        self.images_memory.swept = Some(now);
        let ts = self.now_ts();
        let mut changed = self.note_images_run(desired, actual);
        let keep: std::collections::BTreeSet<String> = self
            .store
            .state
            .image_history
            .values()
            .flat_map(|(current, previous)| std::iter::once(current).chain(previous))
            .chain(
                desired
                    .deployments
                    .iter()
                    .filter_map(|d| d.image_id.as_ref()),
            )
            .chain(actual.containers.iter().map(|c| &c.image_id))
            .cloned()
            .collect();

        let grace = self.cfg.image_grace.as_secs();
        let mut due = Vec::new();
        for (id, b) in &mut self.store.state.brought {
            if keep.contains(id) {
                changed |= b.unused_since.take().is_some();
                continue;
            }
            let since = *b.unused_since.get_or_insert_with(|| {
                changed = true;
                ts.0
            });
            if ts.0.saturating_sub(since) >= grace {
                due.push((id.clone(), b.references.clone()));
            }
        }
        for (id, references) in due {
            if self.stopping() {
                break;
            }
            match self.remove_brought(&id, &references).await {
                Ok(()) => {
                    self.store.state.brought.remove(&id);
                    self.images_memory.status.removed += 1;
                    changed = true;
                }
                Err(e) => debug!(image = %id, error = %e, "an image retention would remove stays"),
            }
        }
        // Weigh what is kept, from one listing; forget what is gone (removed by hand).
        match self.shared.docker.image_sizes().await {
            Ok(sizes) => {
                let before = self.store.state.brought.len();
                self.store
                    .state
                    .brought
                    .retain(|id, _| sizes.contains_key(id));
                changed |= self.store.state.brought.len() != before;
                let status = &mut self.images_memory.status;
                status.count = self.store.state.brought.len() as u64;
                status.disk_bytes = self.store.state.brought.keys().map(|id| sizes[id]).sum();
            }
            Err(e) => debug!(error = %e, "cannot weigh the images orun keeps"),
        }
        if changed {
            self.save_state();
        }
    }

    /// Removes one image orun brought: by id when only orun's names are on it; when someone
    /// else also tagged it, only orun's tags go and the image stays theirs.
    async fn remove_brought(
        &self,
        id: &str,
        references: &std::collections::BTreeSet<String>,
    ) -> Result<(), RuntimeError> {
        let docker = &self.shared.docker;
        let Some(facts) = docker.image_facts(id).await? else {
            return Ok(());
        };
        let ours = |t: &String| {
            references
                .iter()
                .any(|r| docker_hub_alias(t) == docker_hub_alias(r))
        };
        if facts.tags.iter().any(|t| !ours(t)) {
            for tag in facts.tags.iter().filter(|t| ours(t)) {
                docker.remove_image(tag).await?;
            }
            info!(image = %id, "untagged an image orun brought that is also tagged otherwise");
            return Ok(());
        }
        docker.remove_image(id).await?;
        info!(image = %id, "removed an image no deployment uses");
        Ok(())
    }

    /// Notes which image each deployment's container runs, keeping the one before it: the
    /// image a rollback would go back to. True when something changed.
    fn note_images_run(&mut self, desired: &Desired, actual: &Actual) -> bool {
        let mut changed = false;
        // A deployment the revision no longer has keeps nothing for a rollback.
        let before = self.store.state.image_history.len();
        let wanted: std::collections::BTreeSet<&str> = desired
            .deployments
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        self.store
            .state
            .image_history
            .retain(|d, _| wanted.contains(d.as_str()));
        changed |= self.store.state.image_history.len() != before;
        let names: BTreeMap<&str, &str> = desired
            .deployments
            .iter()
            .map(|d| (d.spec.container_name.as_str(), d.name.as_str()))
            .collect();
        for c in &actual.containers {
            let Some(deployment) = names.get(c.name.as_str()) else {
                continue;
            };
            let entry = self
                .store
                .state
                .image_history
                .entry((*deployment).to_owned())
                .or_insert_with(|| (c.image_id.clone(), None));
            if entry.0 != c.image_id {
                let before = std::mem::replace(&mut entry.0, c.image_id.clone());
                entry.1 = Some(before);
                changed = true;
            }
        }
        changed
    }
}

/// `docker.io/library/nginx:1` and `nginx:1` name the same image.
fn docker_hub_alias(reference: &str) -> &str {
    reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference)
}

/// How a build ended.
pub(super) struct Built {
    deployment: String,
    tag: String,
    spec_hash: String,
    /// The image id, or why there is none (masked).
    result: Result<String, String>,
}

/// A build packed and ready to run, owning what it needs, so it can run beside the loop.
pub(super) struct BuildJob<W: World> {
    shared: Rc<rollout::Shared<W>>,
    secrets: Rc<rollout::Secrets>,
    deployment: String,
    tag: String,
    spec_hash: String,
    tar: Vec<u8>,
    spec: manifest_model::BuildSpec,
    labels: std::collections::HashMap<String, String>,
}

impl<W: World> BuildJob<W> {
    /// Runs the build to its end (or its time limit), showing its progress in `/status`.
    async fn run(self) -> Built {
        let started = self.shared.clock.now();
        let req = BuildRequest {
            tag: &self.tag,
            tar: self.tar,
            dockerfile: &self.spec.dockerfile,
            args: &self.spec.args,
            labels: self.labels,
            // `always` means a fresh build: steps that fetch from the network run again.
            no_cache: self.spec.build_mode == BuildMode::Always,
        };
        let redactor = &self.secrets.redactor;
        let redact = |line: &str| redactor.mask(line);
        let mut report = progress_reporter(&self.shared.status, &self.deployment);
        let built = tokio::time::timeout(
            BUILD_TIMEOUT,
            self.shared.docker.build(req, &redact, &mut report),
        )
        .await;
        clear_progress(&self.shared.status, &self.deployment);
        let (deployment, tag) = (self.deployment, self.tag);
        let result = match built {
            Ok(Ok(id)) => {
                info!(%deployment, image = %tag, seconds = started.elapsed().as_secs(), "built");
                Ok(id)
            }
            Ok(Err(e)) => Err(redactor.mask(&e.to_string())),
            Err(_) => Err(format!(
                "building {tag} took longer than {}s",
                BUILD_TIMEOUT.as_secs()
            )),
        };
        Built {
            deployment,
            tag,
            spec_hash: self.spec_hash,
            result,
        }
    }
}

/// A callback that shows a pull's or build's progress in `/status` as it goes.
fn progress_reporter(
    status: &Status,
    deployment: &str,
) -> impl FnMut(ImageProgress) + Send + use<> {
    let status = status.clone();
    let deployment = deployment.to_owned();
    move |p: ImageProgress| {
        let mut snap = (*status.get()).clone();
        snap.images.in_progress.insert(deployment.clone(), p);
        status.publish(snap);
    }
}

fn clear_progress(status: &Status, deployment: &str) {
    let mut snap = (*status.get()).clone();
    if snap.images.in_progress.remove(deployment).is_some() {
        status.publish(snap);
    }
}

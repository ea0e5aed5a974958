//! The registry side of images: pulling with progress, the digest a registry serves for a tag
//! now (a manifest head, no pull) against the local image's `RepoDigests`, and refusals of a
//! login that name the registry.
//!
//! Credentials come from [`RegistryAuth`] (Docker config files and credential helpers, see
//! the `auth` module); they go to the daemon in the `X-Registry-Auth` header and are never
//! logged or put in an error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bollard::models::CreateImageInfo;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt as _;

use crate::{Docker, RegistryAuth, RuntimeError};

/// The registry an image reference points at (Docker's rule: a first component with a dot,
/// a colon or `localhost` is a host; otherwise Docker Hub).
pub fn registry_of(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// Splits `reference` into what `POST /images/create` takes: the name, and a tag or digest.
/// A reference without either means `latest`, never "every tag".
pub(crate) fn split_reference(reference: &str) -> (&str, &str) {
    if let Some((name, digest)) = reference.split_once('@') {
        return (name, digest);
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.rsplit_once(':') {
        Some((_, tag)) => (&reference[..reference.len() - tag.len() - 1], tag),
        None => (reference, "latest"),
    }
}

/// How far a pull is, summed over the image's layers.
///
/// Bytes are what is downloaded: a layer already on the host counts as a layer done and no
/// bytes. Totals grow while Docker names more layers and learns their sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PullProgress {
    /// Layers Docker has named so far.
    pub layers_total: usize,
    /// Layers pulled and extracted, or found already on the host.
    pub layers_done: usize,
    /// Bytes downloaded so far.
    pub bytes_done: u64,
    /// Bytes to download, over the layers whose size Docker has reported so far.
    pub bytes_total: u64,
}

/// How often a pull's progress callback is called at most, except when a layer completes.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The pull stream's per-layer messages, summed: pure, so it is tested without Docker.
#[derive(Default)]
struct Tally {
    layers: BTreeMap<String, Layer>,
}

#[derive(Default)]
struct Layer {
    current: u64,
    total: u64,
    done: bool,
}

impl Tally {
    /// Takes one message in; `true` when it completed a pulled layer.
    fn apply(
        &mut self,
        id: Option<&str>,
        status: &str,
        current: Option<i64>,
        total: Option<i64>,
    ) -> bool {
        let Some(id) = id else { return false };
        // Other messages carry the tag or nothing as their id ("Pulling from", "Digest:").
        let is_layer = [
            "Pulling fs layer",
            "Waiting",
            "Downloading",
            "Verifying Checksum",
            "Download complete",
            "Extracting",
            "Pull complete",
            "Already exists",
            "Retrying",
        ]
        .iter()
        .any(|s| status.starts_with(s));
        if !is_layer {
            return false;
        }
        let layer = self.layers.entry(id.to_owned()).or_default();
        let bytes = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
        match status {
            // Extracting reports progress too, through the same bytes again: not counted.
            "Downloading" => {
                if let Some(total) = bytes(total).filter(|t| *t > 0) {
                    layer.total = total;
                }
                if let Some(current) = bytes(current) {
                    layer.current = current;
                }
            }
            "Verifying Checksum" | "Download complete" | "Extracting" => {
                layer.current = layer.total
            }
            "Pull complete" | "Already exists" => {
                layer.current = layer.total;
                let completed = !layer.done;
                layer.done = true;
                // A layer already here is named while Docker is still naming the others: not
                // a moment worth telling (the totals would still be growing).
                return completed && status == "Pull complete";
            }
            _ => {}
        }
        false
    }

    fn progress(&self) -> PullProgress {
        PullProgress {
            layers_total: self.layers.len(),
            layers_done: self.layers.values().filter(|l| l.done).count(),
            bytes_done: self.layers.values().map(|l| l.current).sum(),
            bytes_total: self.layers.values().map(|l| l.total).sum(),
        }
    }
}

/// Whether Docker's reason for a failed pull or digest check is the registry refusing the
/// credentials (or their absence). Docker passes the registry's words on in its message.
fn is_auth_refusal(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    // Docker Hub answers a misspelt public image with "pull access denied …, repository does
    // not exist or may require 'docker login'": that is a missing image first (the message,
    // passed on whole, still mentions the login).
    if m.contains("repository does not exist") {
        return false;
    }
    [
        "unauthorized",
        "denied",
        "forbidden",
        "no basic auth credentials",
        "authentication required",
    ]
    .iter()
    .any(|s| m.contains(s))
}

/// A failed pull as a typed error: [`RuntimeError::RegistryAuth`] naming the registry when
/// it refused the login, [`RuntimeError::Pull`] otherwise.
fn pull_failure(reference: &str, status: Option<u16>, message: String) -> RuntimeError {
    if matches!(status, Some(401 | 403)) || is_auth_refusal(&message) {
        RuntimeError::RegistryAuth {
            registry: registry_of(reference).to_owned(),
            image: reference.to_owned(),
            message,
        }
    } else {
        RuntimeError::Pull {
            image: reference.to_owned(),
            message,
        }
    }
}

/// Whether a digest the registry serves is one the host already has: compares the digest
/// part only (`sha256:…`), as local `RepoDigests` spell names their own way
/// (`docker.io/library/nginx@…`). `true` when the registry serves something the host lacks.
pub fn moved(registry_digest: &str, local_repo_digests: &[String]) -> bool {
    let digest_of = |s: &str| s.rsplit_once('@').map_or(s, |(_, d)| d).to_owned();
    let wanted = digest_of(registry_digest);
    !local_repo_digests.iter().any(|d| digest_of(d) == wanted)
}

impl Docker {
    /// Pulls `reference` and returns the local image id.
    ///
    /// # Errors
    /// As [`Docker::pull_with`].
    pub async fn pull(&self, reference: &str, auth: &RegistryAuth) -> Result<String, RuntimeError> {
        self.pull_with(reference, auth, &mut |_| {}).await
    }

    /// Pulls `reference` and returns the local image id, telling `progress` how far it is:
    /// at most every 250 ms, whenever a layer has been pulled, and once at the end.
    ///
    /// # Errors
    /// [`RuntimeError::RegistryAuth`] when the registry refused the login (or its absence);
    /// [`RuntimeError::CredentialHelper`] when a helper could not give one;
    /// [`RuntimeError::Pull`] with the registry's reason otherwise (not found, unreachable);
    /// or a transport error.
    pub async fn pull_with(
        &self,
        reference: &str,
        auth: &RegistryAuth,
        progress: &mut (dyn FnMut(PullProgress) + Send),
    ) -> Result<String, RuntimeError> {
        let (name, tag) = split_reference(reference);
        let options = CreateImageOptionsBuilder::default()
            .from_image(name)
            .tag(tag)
            .build();
        let credentials = auth.credentials(registry_of(reference)).await?;
        let mut stream = self.api.create_image(Some(options), None, credentials);
        let mut tally = Tally::default();
        let mut told = PullProgress::default();
        // The clock starts at the first layer named: before, there is nothing to tell.
        let mut told_at: Option<Instant> = None;
        while let Some(item) = stream.next().await {
            let info: CreateImageInfo = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(pull_failure(reference, None, error));
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code,
                    message,
                }) => return Err(pull_failure(reference, Some(status_code), message)),
                Err(e) => return Err(RuntimeError::from_bollard(e)),
            };
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(pull_failure(reference, None, detail));
            }
            let detail = info.progress_detail.unwrap_or_default();
            let completed = tally.apply(
                info.id.as_deref(),
                info.status.as_deref().unwrap_or_default(),
                detail.current,
                detail.total,
            );
            let now = tally.progress();
            if now == told {
                continue;
            }
            let since = *told_at.get_or_insert_with(Instant::now);
            if completed || since.elapsed() >= PROGRESS_EVERY {
                progress(now);
                told = now;
                told_at = Some(Instant::now());
            }
        }
        let last = tally.progress();
        if last != told {
            progress(last);
        }
        self.image_id(reference)
            .await?
            .ok_or_else(|| RuntimeError::Pull {
                image: reference.to_owned(),
                message: "the pull finished but the image is not on the host".to_owned(),
            })
    }

    /// The manifest digest (`sha256:…`) the registry serves for `reference` now, without
    /// pulling: one `HEAD` of the manifest straight to the registry with the login
    /// ([`head_digest`](crate::head_digest)), else dockerd's `/distribution` check.
    ///
    /// # Errors
    /// [`RuntimeError::RegistryAuth`] when the registry refused the login;
    /// [`RuntimeError::CredentialHelper`] when a helper could not give one;
    /// [`RuntimeError::NotFound`] when Docker says there is no such manifest, or names no
    /// digest; otherwise what Docker says.
    pub async fn registry_digest(
        &self,
        reference: &str,
        auth: &RegistryAuth,
    ) -> Result<String, RuntimeError> {
        // The registry itself first: one `HEAD`, which Docker Hub does not count as a pull.
        match crate::registry::head_digest(reference, auth).await {
            Ok(digest) => return Ok(digest),
            Err(e @ RuntimeError::CredentialHelper { .. }) => return Err(e),
            Err(e) => tracing::debug!(image = %reference, reason = %e, "asking dockerd instead"),
        }
        self.distribution_digest(reference, auth).await
    }

    /// [`Docker::registry_digest`] as dockerd answers it (its `/distribution` API: a `HEAD`
    /// of the tag, then a `GET` of the manifest), for what the direct check cannot ask.
    ///
    /// # Errors
    /// As [`Docker::registry_digest`].
    pub async fn distribution_digest(
        &self,
        reference: &str,
        auth: &RegistryAuth,
    ) -> Result<String, RuntimeError> {
        let credentials = auth.credentials(registry_of(reference)).await?;
        match self
            .api
            .inspect_registry_image(reference, credentials)
            .await
        {
            Ok(found) => found.descriptor.digest.ok_or_else(|| {
                RuntimeError::NotFound(format!("the registry named no digest for {reference}"))
            }),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            }) if matches!(status_code, 401 | 403) || is_auth_refusal(&message) => {
                Err(RuntimeError::RegistryAuth {
                    registry: registry_of(reference).to_owned(),
                    image: reference.to_owned(),
                    message,
                })
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message,
            }) => Err(RuntimeError::NotFound(format!("{reference}: {message}"))),
            Err(e) => Err(RuntimeError::from_bollard(e)),
        }
    }

    /// The `RepoDigests` of the local image `reference` (`name@sha256:…`, one per repository
    /// it was pulled from or pushed to); empty when the image is not on the host or was never
    /// pulled or pushed.
    ///
    /// # Errors
    /// When Docker does not answer, or answers with anything but the image or a 404.
    pub async fn local_digests(&self, reference: &str) -> Result<Vec<String>, RuntimeError> {
        match self
            .api
            .inspect_image(reference)
            .await
            .map_err(RuntimeError::from_bollard)
        {
            Ok(image) => Ok(image.repo_digests.unwrap_or_default()),
            Err(RuntimeError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_like_docker_does() {
        assert_eq!(split_reference("nginx"), ("nginx", "latest"));
        assert_eq!(split_reference("nginx:1.27"), ("nginx", "1.27"));
        assert_eq!(
            split_reference("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", "latest")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/app:2"),
            ("127.0.0.1:5000/app", "2")
        );
        assert_eq!(
            split_reference("reg:5000/app@sha256:abc"),
            ("reg:5000/app", "sha256:abc")
        );
        assert_eq!(registry_of("nginx:1"), "docker.io");
        assert_eq!(registry_of("library/nginx"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/app:2"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(registry_of("ghcr.io/o/app"), "ghcr.io");
    }

    #[test]
    fn moved_compares_digests_not_names() {
        let local = vec![
            "docker.io/library/nginx@sha256:aaa".to_owned(),
            "127.0.0.1:5000/app@sha256:bbb".to_owned(),
        ];
        assert!(!moved("sha256:aaa", &local));
        assert!(!moved("sha256:bbb", &local));
        assert!(!moved("nginx@sha256:aaa", &local));
        assert!(moved("sha256:ccc", &local));
        // A missing image, or one built here and never pushed, has no digest to match.
        assert!(moved("sha256:aaa", &[]));
    }

    #[test]
    fn refusals_of_a_login_name_the_registry() {
        let image = "127.0.0.1:5000/app:1";
        let err = pull_failure(image, None, "unauthorized: authentication required".into());
        assert_eq!(
            err.to_string(),
            "registry 127.0.0.1:5000 refused the credentials for 127.0.0.1:5000/app:1: \
             unauthorized: authentication required"
        );
        assert!(matches!(
            pull_failure(
                image,
                None,
                "Head \"http://x/v2/\": no basic auth credentials".into()
            ),
            RuntimeError::RegistryAuth { .. }
        ));
        assert!(matches!(
            pull_failure("nginx:1", Some(403), "nope".into()),
            RuntimeError::RegistryAuth { ref registry, .. } if registry == "docker.io"
        ));
        let err = pull_failure(
            image,
            None,
            "manifest for x:1 not found: manifest unknown".into(),
        );
        assert!(matches!(err, RuntimeError::Pull { .. }), "{err}");
        // Docker Hub's answer for a misspelt image is not a refused login.
        let err = pull_failure(
            "ngnix:1",
            None,
            "pull access denied for ngnix, repository does not exist or may require 'docker login': denied: requested access to the resource is denied".into(),
        );
        assert!(matches!(err, RuntimeError::Pull { .. }), "{err}");
    }

    /// One message of the pull stream: layer id, status, progress current and total.
    type Message<'a> = (Option<&'a str>, &'a str, Option<i64>, Option<i64>);

    /// What Docker 20.10 streams for a two-layer pull, one layer already on the host.
    #[test]
    fn progress_sums_layers_and_counts_completions() {
        let mut t = Tally::default();
        let mut completed = Vec::new();
        let messages: &[Message<'_>] = &[
            (Some("1"), "Pulling from app", None, None),
            (Some("aa"), "Already exists", None, None),
            (Some("bb"), "Pulling fs layer", None, None),
            (Some("bb"), "Waiting", None, None),
            (Some("bb"), "Downloading", Some(100), Some(400)),
            (Some("bb"), "Downloading", Some(300), Some(400)),
            (Some("bb"), "Verifying Checksum", None, None),
            (Some("bb"), "Download complete", None, None),
            (Some("bb"), "Extracting", Some(32), Some(400)),
            (Some("bb"), "Pull complete", None, None),
            (None, "Digest: sha256:abc", None, None),
            (None, "Status: Downloaded newer image for app:1", None, None),
        ];
        let mut seen = Vec::new();
        for (i, (id, status, current, total)) in messages.iter().enumerate() {
            if t.apply(*id, status, *current, *total) {
                completed.push(i);
            }
            seen.push(t.progress());
        }
        assert_eq!(completed, [9]);
        assert_eq!(
            seen[5],
            PullProgress {
                layers_total: 2,
                layers_done: 1,
                bytes_done: 300,
                bytes_total: 400
            }
        );
        // Extraction's own counter is not downloaded bytes.
        assert_eq!(seen[8].bytes_done, 400);
        assert_eq!(
            t.progress(),
            PullProgress {
                layers_total: 2,
                layers_done: 2,
                bytes_done: 400,
                bytes_total: 400
            }
        );
        // A repeated completion is not a second one.
        assert!(!t.apply(Some("bb"), "Pull complete", None, None));
    }
}

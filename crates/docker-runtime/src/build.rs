//! Building an image on the node through Docker's `/build` (the classic builder), with its
//! output streamed line by line and its progress (step n of m) reported as it goes.
//!
//! The classic builder is what every Docker engine answers without a BuildKit session; a
//! Dockerfile orun builds must not need BuildKit-only syntax (documented in docs/images.md).

use std::collections::{HashMap, VecDeque};

use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt as _;

use crate::{Docker, RuntimeError};

/// On images orun built: the commit their context came from.
pub const LABEL_BUILT_FROM: &str = "orun.built-from";

/// Output lines kept for the error of a failed build.
pub const BUILD_TAIL_LINES: usize = 20;
/// A line of build output longer than this is cut (a `RUN` may print anything).
const MAX_LINE: usize = 512;

/// What to build.
pub struct BuildRequest<'a> {
    /// The tag to give the image.
    pub tag: &'a str,
    /// The context, packed ([`crate::context::pack`]).
    pub tar: Vec<u8>,
    /// The Dockerfile, relative to the context.
    pub dockerfile: &'a str,
    /// `--build-arg` values.
    pub args: &'a std::collections::BTreeMap<String, String>,
    /// Labels on the image (who built it, for which deployment).
    pub labels: HashMap<String, String>,
    /// Build without Docker's cache.
    pub no_cache: bool,
}

/// Build progress, as the builder reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildProgress {
    /// The step running (1-based), 0 before the first.
    pub step: u32,
    /// Steps in all, 0 before the first.
    pub steps: u32,
    /// The last line of output, cut and masked.
    pub line: String,
}

impl Docker {
    /// Builds `req` and returns the new image's id. Each output line goes through `redact`
    /// (build arguments may be tokens a `RUN` echoes) before it reaches `progress`, the log
    /// or an error.
    ///
    /// # Errors
    /// [`RuntimeError::Build`] with the builder's reason and the last
    /// [`BUILD_TAIL_LINES`] lines of output, or a transport error.
    pub async fn build(
        &self,
        req: BuildRequest<'_>,
        redact: &(dyn Fn(&str) -> String + Send + Sync),
        progress: &mut (dyn FnMut(&BuildProgress) + Send),
    ) -> Result<String, RuntimeError> {
        let options = BuildImageOptions {
            dockerfile: req.dockerfile.to_owned(),
            t: Some(req.tag.to_owned()),
            nocache: req.no_cache,
            rm: true,
            forcerm: true,
            buildargs: Some(req.args.clone().into_iter().collect()),
            labels: Some(req.labels.clone()),
            ..Default::default()
        };
        let body = bollard::body_full(req.tar.into());
        let mut stream = self.api.build_image(options, None, Some(body));
        let mut tail: VecDeque<String> = VecDeque::with_capacity(BUILD_TAIL_LINES);
        let mut state = BuildProgress::default();
        let mut id: Option<String> = None;
        let fail = |message: String, tail: &VecDeque<String>| {
            let mut text = redact(&message);
            if !tail.is_empty() {
                text.push_str("\n  ");
                text.push_str(&tail.iter().cloned().collect::<Vec<_>>().join("\n  "));
            }
            RuntimeError::Build {
                image: req.tag.to_owned(),
                message: text,
            }
        };
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(fail(error, &tail));
                }
                Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                    return Err(fail(message, &tail));
                }
                Err(e) => return Err(RuntimeError::from_bollard(e)),
            };
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(fail(detail, &tail));
            }
            if let Some(aux) = info.aux.and_then(|a| a.id) {
                id = Some(aux);
            }
            let Some(text) = info.stream else { continue };
            for raw in text.lines() {
                let raw = raw.trim_end();
                if raw.is_empty() {
                    continue;
                }
                let line = redact(cut(raw));
                if let Some((n, m)) = step_of(&line) {
                    state.step = n;
                    state.steps = m;
                }
                tracing::info!(image = %req.tag, "build: {line}");
                if tail.len() == BUILD_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                state.line = line;
                progress(&state);
            }
        }
        match id {
            Some(id) => Ok(id),
            // Older engines send no aux id: the tag names what was built.
            None => self.image_id(req.tag).await?.ok_or_else(|| {
                fail(
                    "the build finished but the image is not on the host".to_owned(),
                    &tail,
                )
            }),
        }
    }
}

/// At most [`MAX_LINE`] bytes, cut on a character boundary.
fn cut(line: &str) -> &str {
    if line.len() <= MAX_LINE {
        return line;
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// `Step 2/5 : RUN ...` → `(2, 5)`.
fn step_of(line: &str) -> Option<(u32, u32)> {
    let rest = line.strip_prefix("Step ")?;
    let (frac, _) = rest.split_once(' ')?;
    let (n, m) = frac.split_once('/')?;
    Some((n.parse().ok()?, m.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_cuts() {
        assert_eq!(step_of("Step 2/5 : RUN make"), Some((2, 5)));
        assert_eq!(step_of(" ---> Running in 1234"), None);
        assert_eq!(step_of("Step x/5 : RUN"), None);
        let long = "é".repeat(MAX_LINE);
        assert!(cut(&long).len() <= MAX_LINE);
        assert_eq!(cut("short"), "short");
    }
}

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
        let mut out = Output::new(req.tag, redact);
        let mut id: Option<String> = None;
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(out.fail(&error));
                }
                Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                    return Err(out.fail(&message));
                }
                Err(e) => return Err(RuntimeError::from_bollard(e)),
            };
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(out.fail(&detail));
            }
            if let Some(aux) = info.aux.and_then(|a| a.id) {
                id = Some(aux);
            }
            if let Some(text) = info.stream {
                out.take(&text, progress);
            }
        }
        out.flush(progress);
        match id {
            Some(id) => Ok(id),
            // Older engines send no aux id: the tag names what was built.
            None => self
                .image_id(req.tag)
                .await?
                .ok_or_else(|| out.fail("the build finished but the image is not on the host")),
        }
    }
}

/// Lines of one build's output written to the log; the rest only reach the tail kept for
/// an error, so a `RUN` that prints without end cannot fill the journal.
const MAX_LOGGED_LINES: usize = 2_000;
/// Progress is reported at most this often (a line per call would copy `/status` per line).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// A line longer than this is cut even before its end arrives.
const MAX_PENDING: usize = 64 * 1024;

/// A build's output on its way to the log, the progress callback and the error tail: lines
/// are put back together across stream messages, masked whole, then cut.
struct Output<'a> {
    image: &'a str,
    redact: &'a (dyn Fn(&str) -> String + Send + Sync),
    pending: String,
    tail: VecDeque<String>,
    state: BuildProgress,
    logged: usize,
    reported: Option<std::time::Instant>,
}

impl<'a> Output<'a> {
    fn new(image: &'a str, redact: &'a (dyn Fn(&str) -> String + Send + Sync)) -> Self {
        Self {
            image,
            redact,
            pending: String::new(),
            tail: VecDeque::with_capacity(BUILD_TAIL_LINES),
            state: BuildProgress::default(),
            logged: 0,
            reported: None,
        }
    }

    /// Takes one message's text: whole lines are used, an unfinished one waits for the next.
    fn take(&mut self, text: &str, progress: &mut (dyn FnMut(&BuildProgress) + Send)) {
        self.pending.push_str(text);
        while let Some(end) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=end).collect();
            self.line(&line, progress);
        }
        if self.pending.len() > MAX_PENDING {
            let line = std::mem::take(&mut self.pending);
            self.line(&line, progress);
        }
    }

    /// Uses what is left, and reports the last state.
    fn flush(&mut self, progress: &mut (dyn FnMut(&BuildProgress) + Send)) {
        let rest = std::mem::take(&mut self.pending);
        self.line(&rest, progress);
        progress(&self.state);
    }

    fn line(&mut self, raw: &str, progress: &mut (dyn FnMut(&BuildProgress) + Send)) {
        let raw = raw.trim_end();
        if raw.is_empty() {
            return;
        }
        // Masked whole, then cut: a secret across the cut is still masked.
        let masked = (self.redact)(raw);
        let line = cut(&masked).to_owned();
        if let Some((n, m)) = step_of(&line) {
            self.state.step = n;
            self.state.steps = m;
        }
        self.logged += 1;
        if self.logged <= MAX_LOGGED_LINES {
            tracing::info!(image = %self.image, "build: {line}");
        } else if self.logged == MAX_LOGGED_LINES + 1 {
            tracing::info!(image = %self.image, "build: more output not logged");
        }
        if self.tail.len() == BUILD_TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        self.state.line = line;
        let now = std::time::Instant::now();
        if self
            .reported
            .is_none_or(|at| now.duration_since(at) >= PROGRESS_EVERY)
        {
            self.reported = Some(now);
            progress(&self.state);
        }
    }

    /// The error of a failed build: Docker's reason, masked, and the last lines.
    fn fail(&mut self, message: &str) -> RuntimeError {
        let rest = std::mem::take(&mut self.pending);
        self.line(&rest, &mut |_| {});
        let mut text = cut(&(self.redact)(message)).to_owned();
        if !self.tail.is_empty() {
            text.push_str("\n  ");
            text.push_str(&self.tail.iter().cloned().collect::<Vec<_>>().join("\n  "));
        }
        RuntimeError::Build {
            image: self.image.to_owned(),
            message: text,
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
    fn lines_are_joined_across_messages_and_masked_before_they_are_cut() {
        let redact = |s: &str| s.replace("hunter2secret", "***");
        let mut out = Output::new("t", &redact);
        let mut seen = Vec::new();
        out.take("Step 1/2 : RUN echo hun", &mut |p| seen.push(p.clone()));
        out.take("ter2secret\nStep 2/2 : CMD x\n", &mut |p| {
            seen.push(p.clone())
        });
        out.flush(&mut |p| seen.push(p.clone()));
        assert_eq!(out.tail, ["Step 1/2 : RUN echo ***", "Step 2/2 : CMD x"]);
        assert_eq!(seen.last().map(|p| (p.step, p.steps)), Some((2, 2)));
        let long = format!("{}hunter2secret", "x".repeat(MAX_LINE - 5));
        out.take(&format!("{long}\n"), &mut |_| {});
        assert!(!out.tail.back().unwrap().contains("hunt"));
        let err = out.fail("exit 7 hunter2secret").to_string();
        assert!(err.contains("exit 7 ***"), "{err}");
    }

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

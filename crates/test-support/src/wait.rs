//! The one way a test waits: poll a condition with a deadline, never sleep for a guess. On
//! timeout it panics naming what it waited for and, when asked, what the world looked like.

use std::time::{Duration, Instant};

/// A wait for `what`, at most `limit`; run it with [`Wait::until`].
#[must_use = "a wait does nothing until `until` is called"]
pub struct Wait<'a> {
    what: &'a str,
    limit: Duration,
    every: Duration,
    explain: Option<Box<dyn Fn() -> String + 'a>>,
}

/// Starts a wait for `what` of at most `limit`, polling every 20 ms.
pub fn wait(what: &str, limit: Duration) -> Wait<'_> {
    Wait {
        what,
        limit,
        every: Duration::from_millis(20),
        explain: None,
    }
}

impl<'a> Wait<'a> {
    /// Polls every `every` instead (for conditions that are costly to ask).
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// On timeout, adds what `explain` returns to the panic message (a log tail, a status).
    pub fn explain(mut self, explain: impl Fn() -> String + 'a) -> Self {
        self.explain = Some(Box::new(explain));
        self
    }

    /// Polls `f` until it returns `Some`, and returns that; panics at the deadline. `f` is
    /// always asked at least once, and once more at the deadline.
    pub fn until<T>(self, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + self.limit;
        loop {
            let last_chance = Instant::now() >= deadline;
            if let Some(v) = f() {
                return v;
            }
            if last_chance {
                let more = self.explain.as_ref().map(|e| e()).unwrap_or_default();
                panic!(
                    "timed out after {:?} waiting for {}\n{more}",
                    self.limit, self.what
                );
            }
            std::thread::sleep(
                self.every
                    .min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }

    /// [`Wait::until`] for a condition with nothing to return.
    pub fn until_true(self, mut f: impl FnMut() -> bool) {
        self.until(|| f().then_some(()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_what_the_condition_found() {
        let mut n = 0;
        let got = wait("the third call", Duration::from_secs(5)).until(|| {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(got, 3);
    }

    #[test]
    #[should_panic(expected = "waiting for nothing\nit said: no")]
    fn a_timeout_names_the_wait_and_explains() {
        wait("nothing", Duration::from_millis(30))
            .explain(|| "it said: no".to_owned())
            .until_true(|| false);
    }
}

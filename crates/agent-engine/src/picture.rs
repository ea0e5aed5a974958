//! The engine's picture of the host between listings: one full listing, then kept up to date
//! from Docker's event stream, so an idle node asks dockerd nothing on a pass.
//!
//! Pure bookkeeping: it says what to ask Docker ([`Picture::wants`]) and takes the answers; the
//! engine does the asking. It trusts events only while their stream is live: a node without
//! one (`--once`, a watcher that ended) lists on every pass, as before. A reconnected stream,
//! a change the engine made itself, or a Docker error throws the picture away; a slow safety
//! resync lists anyway, in case an event was lost some way Docker does not tell.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use docker_runtime::WatchEvent;
use reconcile_core::{Actual, ObservedContainer};
use tokio::time::Instant;

/// The longest a picture is trusted without a full listing.
pub(crate) const RESYNC: Duration = Duration::from_secs(300);

/// What to ask Docker before a pass can plan.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ask {
    /// List every container.
    Everything,
    /// Look at these containers only (events named them).
    Only(Vec<String>),
    /// Nothing: the picture is current.
    Nothing,
}

/// The host as the engine last saw it, and what has changed since.
#[derive(Debug, Default)]
pub(crate) struct Picture {
    /// The last full listing, with the event-named containers folded in.
    actual: Option<Actual>,
    listed_at: Option<Instant>,
    /// Containers events named since they were last looked at.
    dirty: BTreeSet<String>,
    /// The event stream is open: events can be trusted to name every change.
    live: bool,
    /// Local image ids by reference, for the references asked last.
    images: Option<(Vec<String>, BTreeMap<String, String>)>,
}

impl Picture {
    /// The event stream opened (or closed): a picture is kept only while it is open.
    pub(crate) fn set_live(&mut self, live: bool) {
        self.live = live;
        if !live {
            self.forget();
        }
    }

    /// Throws everything away: the next pass lists containers and images.
    pub(crate) fn forget(&mut self) {
        self.changed();
        self.images = None;
    }

    /// The engine changed containers itself (a rollout landed, a journal was resolved): the
    /// next pass lists them rather than wait for the events to arrive.
    pub(crate) fn changed(&mut self) {
        self.actual = None;
        self.dirty.clear();
    }

    /// Folds in one event.
    pub(crate) fn note(&mut self, event: &WatchEvent) {
        match event {
            WatchEvent::Container { id, .. } => {
                self.dirty.insert(id.clone());
            }
            WatchEvent::Image { .. } => self.images = None,
            WatchEvent::Reconnected => self.forget(),
        }
    }

    /// Looks at `id` again on the next pass, though no event named it: a container this
    /// agent does not manage, whose events it does not watch.
    pub(crate) fn recheck(&mut self, id: &str) {
        self.dirty.insert(id.to_owned());
    }

    /// What Docker must be asked about containers at `now`.
    pub(crate) fn wants(&self, now: Instant) -> Ask {
        let fresh = self
            .listed_at
            .is_some_and(|at| now.saturating_duration_since(at) < RESYNC);
        if !self.live || self.actual.is_none() || !fresh {
            Ask::Everything
        } else if self.dirty.is_empty() {
            Ask::Nothing
        } else {
            Ask::Only(self.dirty.iter().cloned().collect())
        }
    }

    /// A full listing made at `at` (the engine lists after its own changes too).
    pub(crate) fn listed(&mut self, actual: &Actual, at: Instant) {
        if self.live {
            self.actual = Some(actual.clone());
            self.listed_at = Some(at);
        }
        // Events that arrive later for what this listing shows are looked at again: harmless.
        self.dirty.clear();
    }

    /// The answer to [`Ask::Only`]: `ids` were asked, `found` of them still exist.
    pub(crate) fn looked(&mut self, ids: &[String], found: Vec<ObservedContainer>) {
        for id in ids {
            self.dirty.remove(id);
        }
        let Some(actual) = self.actual.as_mut() else {
            return;
        };
        actual.containers.retain(|c| !ids.contains(&c.id));
        actual.containers.extend(found);
    }

    /// The picture, when it is current.
    pub(crate) fn actual(&self) -> Option<&Actual> {
        self.actual.as_ref()
    }

    /// The local ids of `refs` from the last asking, when no image changed since.
    pub(crate) fn images(&self, refs: &[String]) -> Option<&BTreeMap<String, String>> {
        match &self.images {
            Some((asked, ids)) if self.live && asked == refs => Some(ids),
            _ => None,
        }
    }

    /// Image ids as a pass ended up with them (asked, and pulled since).
    pub(crate) fn set_images(&mut self, refs: &[String], ids: &BTreeMap<String, String>) {
        if self.live {
            self.images = Some((refs.to_vec(), ids.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use reconcile_core::{ContainerState, ObservedFields};

    use super::*;

    fn container(id: &str, state: ContainerState) -> ObservedContainer {
        ObservedContainer::from(ObservedFields {
            id: id.to_owned(),
            name: format!("c-{id}"),
            image_id: "sha256:i".to_owned(),
            state,
            health: None,
            labels: BTreeMap::new(),
        })
    }

    fn actual(ids: &[&str]) -> Actual {
        Actual {
            containers: ids
                .iter()
                .map(|id| container(id, ContainerState::Running))
                .collect(),
            images: BTreeMap::new(),
        }
    }

    fn event(id: &str) -> WatchEvent {
        WatchEvent::Container {
            action: "die".to_owned(),
            id: id.to_owned(),
            deployment: None,
        }
    }

    #[test]
    fn what_to_ask_follows_the_stream() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        type Case = (&'static str, fn(&mut Picture, Instant), Instant, Ask);
        let cases: Vec<Case> = vec![
            ("never listed", |_, _| {}, later, Ask::Everything),
            (
                "listed, nothing since",
                |p, t| p.listed(&actual(&["a"]), t),
                later,
                Ask::Nothing,
            ),
            (
                "an event names a container",
                |p, t| {
                    p.listed(&actual(&["a"]), t);
                    p.note(&event("b"));
                },
                later,
                Ask::Only(vec!["b".to_owned()]),
            ),
            (
                "the stream reconnected",
                |p, t| {
                    p.listed(&actual(&["a"]), t);
                    p.note(&WatchEvent::Reconnected);
                },
                later,
                Ask::Everything,
            ),
            (
                "the stream closed",
                |p, t| {
                    p.listed(&actual(&["a"]), t);
                    p.set_live(false);
                },
                later,
                Ask::Everything,
            ),
            (
                "the safety resync is due",
                |p, t| p.listed(&actual(&["a"]), t),
                t0 + RESYNC,
                Ask::Everything,
            ),
            (
                "the engine changed something",
                |p, t| {
                    p.listed(&actual(&["a"]), t);
                    p.changed();
                },
                later,
                Ask::Everything,
            ),
            (
                "a pass failed",
                |p, t| {
                    p.listed(&actual(&["a"]), t);
                    p.forget();
                },
                later,
                Ask::Everything,
            ),
            (
                "a stranger holds a wanted name",
                |p, t| {
                    p.listed(&actual(&["a"]), t);
                    p.recheck("x");
                },
                later,
                Ask::Only(vec!["x".to_owned()]),
            ),
        ];
        for (what, setup, now, want) in cases {
            let mut p = Picture::default();
            p.set_live(true);
            setup(&mut p, t0);
            assert_eq!(p.wants(now), want, "{what}");
        }
    }

    #[test]
    fn without_a_stream_nothing_is_kept() {
        let t0 = Instant::now();
        let mut p = Picture::default();
        p.listed(&actual(&["a"]), t0);
        p.set_images(&["img".to_owned()], &BTreeMap::new());
        assert_eq!(p.wants(t0), Ask::Everything);
        assert!(p.images(&["img".to_owned()]).is_none());
    }

    #[test]
    fn looking_again_replaces_and_drops() {
        let t0 = Instant::now();
        let mut p = Picture::default();
        p.set_live(true);
        p.listed(&actual(&["a", "b"]), t0);
        p.note(&event("a"));
        p.note(&event("b"));
        p.note(&event("c"));
        let Ask::Only(ids) = p.wants(t0) else {
            panic!("should ask about the named containers");
        };
        // `a` exited, `b` is gone, `c` is new.
        p.looked(
            &ids,
            vec![
                container("a", ContainerState::Exited { code: 1 }),
                container("c", ContainerState::Running),
            ],
        );
        let seen: Vec<(&str, ContainerState)> = p
            .actual()
            .unwrap()
            .containers
            .iter()
            .map(|c| (c.id.as_str(), c.state))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("a", ContainerState::Exited { code: 1 }),
                ("c", ContainerState::Running)
            ]
        );
        assert_eq!(p.wants(t0), Ask::Nothing);
    }

    #[test]
    fn image_ids_are_kept_until_an_image_changes() {
        let mut p = Picture::default();
        p.set_live(true);
        let refs = vec!["web:1".to_owned()];
        let ids = BTreeMap::from([("web:1".to_owned(), "sha256:1".to_owned())]);
        p.set_images(&refs, &ids);
        assert_eq!(p.images(&refs), Some(&ids));
        assert!(
            p.images(&["web:2".to_owned()]).is_none(),
            "other references"
        );
        p.note(&WatchEvent::Image {
            action: "tag".to_owned(),
        });
        assert!(p.images(&refs).is_none());
    }
}

//! Docker's event stream, narrowed to this node's containers and to images, as a channel the
//! agent can wait on: a managed container that dies, is stopped, paused, renamed or removed
//! triggers a pass at once instead of at the next poll, and the agent keeps its picture of the
//! host from these events instead of listing everything on every pass.
//!
//! The stream is a long-lived HTTP response that connects lazily; it asks for events `since`
//! the moment [`Docker::watch`] was called (then since the last event seen), so nothing that
//! happens while it connects is lost. When it breaks (daemon restart) the watcher reconnects
//! with a capped backoff and reports [`WatchEvent::Reconnected`], because a restarting daemon
//! may not replay everything and only a full observation tells the truth.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::EventActor;
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt as _;
use reconcile_core::{LABEL_DEPLOYMENT, LABEL_NODE};
use tokio::sync::mpsc;

use crate::Docker;

/// Something happened that may need a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A container of this node changed.
    Container {
        /// Docker's action (`die`, `stop`, `destroy`, `health_status: unhealthy`, ...).
        action: String,
        /// The container id.
        id: String,
        /// Its `orun.deployment` label.
        deployment: Option<String>,
    },
    /// An image was pulled, tagged, untagged, removed, loaded or built; which local id a
    /// reference names may have changed.
    Image {
        /// Docker's action (`pull`, `tag`, `untag`, `delete`, ...).
        action: String,
    },
    /// The stream broke and was opened again; events may have been missed.
    Reconnected,
}

/// Actions that change nothing a listing shows. Every `health_status` change counts: the
/// agent's picture of the host holds each container's health, which `/status` shows and
/// supervision acts on, so a container that turns healthy again must be seen to (Docker
/// reports a health status only when it changes; each check's own `exec_*` events are
/// ignored).
fn ignorable(action: &str) -> bool {
    action.starts_with("exec_")
        || matches!(
            action,
            "attach" | "detach" | "resize" | "top" | "export" | "copy" | "archive-path"
                // Images: these leave every reference where it was.
                | "push" | "save"
        )
}

impl Docker {
    /// Watches this node's containers, and every image, until the receiver is dropped. Two
    /// streams, because Docker ANDs its filters: images carry no node label.
    pub fn watch(&self, node: &str) -> mpsc::Receiver<WatchEvent> {
        let (tx, rx) = mpsc::channel(64);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        let containers = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("label".to_owned(), vec![format!("{LABEL_NODE}={node}")]),
        ]);
        let images = HashMap::from([("type".to_owned(), vec!["image".to_owned()])]);
        tokio::spawn(follow(
            self.api.clone(),
            containers,
            since.clone(),
            tx.clone(),
            |action, actor| {
                let deployment = actor
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(LABEL_DEPLOYMENT).cloned());
                WatchEvent::Container {
                    action,
                    id: actor.id.unwrap_or_default(),
                    deployment,
                }
            },
        ));
        tokio::spawn(follow(self.api.clone(), images, since, tx, |action, _| {
            WatchEvent::Image { action }
        }));
        rx
    }
}

/// Follows one filtered event stream into `tx`, reconnecting with a capped backoff, until the
/// receiver is dropped.
async fn follow(
    api: bollard::Docker,
    filters: HashMap<String, Vec<String>>,
    mut since: String,
    tx: mpsc::Sender<WatchEvent>,
    event: impl Fn(String, EventActor) -> WatchEvent,
) {
    let mut delay = Duration::from_millis(250);
    let mut first = true;
    loop {
        let options = EventsOptions {
            since: Some(since.clone()),
            filters: Some(filters.clone()),
            ..Default::default()
        };
        let mut stream = api.events(Some(options));
        if !first && tx.send(WatchEvent::Reconnected).await.is_err() {
            return;
        }
        first = false;
        while let Some(item) = stream.next().await {
            let Ok(msg) = item else { break };
            delay = Duration::from_millis(250);
            if let Some(nanos) = msg.time_nano {
                // Resume just after this event on reconnect.
                let next = nanos + 1;
                since = format!("{}.{:09}", next / 1_000_000_000, next % 1_000_000_000);
            }
            let action = msg.action.unwrap_or_default();
            if ignorable(&action) {
                continue;
            }
            if tx
                .send(event(action, msg.actor.unwrap_or_default()))
                .await
                .is_err()
            {
                return;
            }
        }
        if tx.is_closed() {
            return;
        }
        tracing::debug!(retry_in = ?delay, "docker event stream ended; reconnecting");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

//! The durable event history: every action with time, commit, deployment, step, reason and
//! outcome, appended to `<data>/events.jsonl` and served by the status API's `/events`.
//!
//! Bounded: the file is compacted to the newest [`EVENTS_KEPT`] entries when it holds twice
//! that many. A line torn by a crash is skipped when the file is read back.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::time::SystemTime;

use status_http::{EVENTS_KEPT, Event, EventOutcome, Status};
use tracing::warn;

use crate::error::{EngineError, report};
use crate::project::rfc3339;
use crate::state::write_atomic;

/// The history: the file and the status API's copy.
#[derive(Debug)]
pub(crate) struct EventLog {
    path: PathBuf,
    status: Status,
    next_seq: u64,
    lines: usize,
}

impl EventLog {
    /// Reads the history back into `status` and continues its numbering.
    pub(crate) fn open(path: PathBuf, status: Status) -> Self {
        let mut kept: Vec<Event> = Vec::new();
        let mut lines = 0;
        let torn = std::fs::read(&path).is_ok_and(|b| b.last().is_some_and(|c| *c != b'\n'));
        if torn {
            // End the torn line, so the next event starts on a line of its own.
            let ended = OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(b"\n"));
            if let Err(e) = ended {
                warn!(error = %e, "cannot repair the event history");
            }
        }
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                lines += 1;
                if let Ok(e) = serde_json::from_str::<Event>(&line) {
                    kept.push(e);
                }
            }
        }
        let start = kept.len().saturating_sub(EVENTS_KEPT);
        let next_seq = kept.last().map_or(1, |e| e.seq + 1);
        for e in kept.drain(start..) {
            status.record(e);
        }
        Self {
            path,
            status,
            next_seq,
            lines,
        }
    }

    /// Records one event. Writing the file may fail (a full disk): the event is still served
    /// and logged, and the agent goes on.
    pub(crate) fn record(
        &mut self,
        at: SystemTime,
        commit: Option<&str>,
        deployment: Option<&str>,
        step: &str,
        reason: &str,
        outcome: EventOutcome,
    ) {
        let event = Event {
            seq: self.next_seq,
            time: rfc3339(at),
            commit: commit.map(str::to_owned),
            deployment: deployment.map(str::to_owned),
            step: step.to_owned(),
            reason: reason.to_owned(),
            outcome,
        };
        self.next_seq += 1;
        if let Err(e) = self.append(&event) {
            warn!(error = %report(&e), "cannot write the event history");
        }
        self.status.record(event);
    }

    fn append(&mut self, event: &Event) -> Result<(), EngineError> {
        // Events are plain structs: encoding them cannot fail.
        let encode =
            |e: serde_json::Error| EngineError::Internal(format!("cannot encode an event: {e}"));
        if self.lines >= 2 * EVENTS_KEPT {
            let mut text = Vec::new();
            for e in self.status.events(0, None, EVENTS_KEPT) {
                serde_json::to_writer(&mut text, &e).map_err(encode)?;
                text.push(b'\n');
            }
            write_atomic(&self.path, &text)?;
            self.lines = EVENTS_KEPT.min(self.lines);
        }
        let mut line = serde_json::to_vec(event).map_err(encode)?;
        line.push(b'\n');
        // One write per line, so a crash tears at most the last one.
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(&line)?;
                f.sync_data()
            })
            .map_err(EngineError::io("append to", &self.path))?;
        self.lines += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn history_survives_restarts_is_bounded_and_skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let status = Status::default();
        let mut log = EventLog::open(path.clone(), status.clone());
        for i in 0..(2 * EVENTS_KEPT + 10) {
            log.record(
                SystemTime::now(),
                Some("c0ffee"),
                Some("web"),
                "replace",
                &format!("r{i}"),
                EventOutcome::Ok,
            );
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 2 * EVENTS_KEPT, "{lines} lines on disk");
        // A crash mid-write leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":99999,\"ti").unwrap();
        drop(f);

        let again = Status::default();
        let mut log = EventLog::open(path, again.clone());
        let events = again.events(0, None, EVENTS_KEPT);
        assert_eq!(events.len(), EVENTS_KEPT);
        let last = events.last().unwrap();
        assert_eq!(last.seq, (2 * EVENTS_KEPT + 10) as u64);
        assert_eq!(last.reason, format!("r{}", 2 * EVENTS_KEPT + 9));
        log.record(
            SystemTime::now(),
            None,
            None,
            "start",
            "agent started",
            EventOutcome::Ok,
        );
        assert_eq!(
            again.events(0, None, 1)[0].seq,
            (2 * EVENTS_KEPT + 11) as u64
        );
        // The event after the torn line reads back whole.
        let third = Status::default();
        let _ = EventLog::open(dir.path().join("events.jsonl"), third.clone());
        assert_eq!(third.events(0, None, 1)[0].reason, "agent started");
    }
}

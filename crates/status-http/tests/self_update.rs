//! The self-update's part of the status: kept across the engine's snapshots, shown in
//! `/status`, `/metrics` and `orun status`, and its notes queued for the engine's history.

#![allow(clippy::unwrap_used, reason = "tests")]

use status_http::{EventOutcome, Note, SelfUpdateStatus, Snapshot, Status, render_text};

fn part() -> SelfUpdateStatus {
    SelfUpdateStatus {
        mode: "notify".into(),
        current: "0.1.0".into(),
        phase: "idle".into(),
        available: Some("0.2.0".into()),
        last_check_unix: Some(1),
        last_error: Some("signature does not verify".into()),
        refused: [("0.1.5".to_owned(), "crashed".to_owned())].into(),
    }
}

#[test]
fn the_part_outlives_the_engines_snapshots_and_is_shown() {
    let status = Status::new(Snapshot::default());
    status.set_self_update(Some(part()));
    assert_eq!(status.get().self_update, Some(part()));
    // The engine publishes whole snapshots without the part: it stays.
    status.publish(Snapshot::default());
    let snap = status.get();
    assert_eq!(snap.self_update, Some(part()));

    let json = serde_json::to_value(&*snap).unwrap();
    assert_eq!(json["self_update"]["available"], "0.2.0");
    assert_eq!(json["self_update"]["refused"]["0.1.5"], "crashed");
    let back: Snapshot = serde_json::from_value(json).unwrap();
    assert_eq!(back.self_update, Some(part()));

    let metrics = snap.metrics.render(&snap);
    assert!(
        metrics.contains("orun_self_update_available 1"),
        "{metrics}"
    );
    assert!(metrics.contains("orun_self_update_failing 1"), "{metrics}");

    let text = render_text(&snap, false);
    assert!(
        text.contains("self-update (notify): running 0.1.0, idle, 0.2.0 available"),
        "{text}"
    );
    assert!(
        text.contains("self-update error: signature does not verify"),
        "{text}"
    );

    status.set_self_update(None);
    let snap = status.get();
    assert_eq!(snap.self_update, None);
    let json = serde_json::to_value(&*snap).unwrap();
    assert!(json.get("self_update").is_none(), "{json}");
    assert!(!snap.metrics.render(&snap).contains("orun_self_update"));
}

#[test]
fn notes_wait_for_the_engine_in_order_and_are_bounded() {
    let status = Status::default();
    for i in 0..100 {
        status.note(Note {
            step: "self-update".into(),
            reason: format!("n{i}"),
            outcome: EventOutcome::Failed,
        });
    }
    let notes = status.take_notes();
    assert_eq!(notes.len(), 64);
    assert_eq!(notes[0].reason, "n36");
    assert_eq!(notes[63].reason, "n99");
    assert!(status.take_notes().is_empty());
}

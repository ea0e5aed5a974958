//! Fuzz target: a whole repository of arbitrary files (and links) loads, resolves and plans
//! without panicking, in work linear in its size, and quotes none of its content.
//!
//! Issue 12, every class at once: the input is a list of files, each `[kind][name
//! length][name][content length: u16][content]`; `kind` picks the folder, or makes the entry
//! a symbolic link. `@@` in a content becomes a canary that no diagnostic may quote.
//! Checked: the report keeps at most its cap; it never finds more diagnostics than a linear
//! bound of the input's size (a quadratic check shows up as thousands of diagnostics from a
//! few kilobytes); no message or field holds the canary; every node resolves or refuses
//! cleanly, and its plan against nothing touches nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use manifest_model::{Limits, MemSource, load, resolve};
use reconcile_core::{Actual, Desired, History, Timestamp, plan};

const CANARY: &str = "fzcanary42";
const FOLDERS: [&str; 4] = ["nodes", "deployments", "services", ""];

fuzz_target!(|data: &[u8]| {
    let mut src = MemSource::new();
    let (mut rest, mut files, mut bytes) = (data, 0usize, 0usize);
    while let [kind, len, tail @ ..] = rest {
        let name_len = usize::from(*len % 24);
        if tail.len() < name_len + 2 {
            break;
        }
        let (name, tail) = tail.split_at(name_len);
        let content_len = usize::from(u16::from_le_bytes([tail[0], tail[1]])) % 4096;
        let tail = &tail[2..];
        let (content, tail) = tail.split_at(content_len.min(tail.len()));
        rest = tail;
        let name = String::from_utf8_lossy(name).replace('/', "_");
        let folder = FOLDERS[usize::from(kind % 4)];
        let path = if folder.is_empty() {
            if name.is_empty() { "secrets.yaml".to_owned() } else { name }
        } else {
            format!("{folder}/{name}.yaml")
        };
        let content = String::from_utf8_lossy(content).replace("@@", CANARY);
        bytes += path.len() + content.len();
        files += 1;
        if kind & 0x80 != 0 {
            src.insert_link(path, content.into_bytes());
        } else {
            src.insert(path, content.into_bytes());
        }
    }
    let limits = Limits { max_diagnostics: 64, ..Limits::default() };
    let report = load(&src, &limits);
    assert!(report.diagnostics.len() <= 64);
    let found = report.error_count() + report.warning_count();
    assert!(
        found <= 4 * bytes + 4 * files + 16,
        "{found} diagnostics from {bytes} bytes in {files} files"
    );
    for d in &report.diagnostics {
        assert!(
            !d.message.contains(CANARY) && !d.field.contains(CANARY),
            "quoted: {d}"
        );
    }
    let Some(rev) = &report.revision else { return };
    for name in rev.nodes.keys() {
        let Ok(node) = resolve(rev, name, None) else { continue };
        let desired = Desired::from_node(&node, None, |_| None, &Default::default());
        let p = plan(&desired, &Actual::default(), &History::default(), Timestamp(0));
        assert!(p.steps.iter().all(|s| matches!(s.action, reconcile_core::Action::Create { .. })));
    }
});

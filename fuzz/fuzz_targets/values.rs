//! Fuzz target: the small languages inside manifest values.
//!
//! Issue 12, classes 6 to 8: whatever the text, a bind path that is accepted splits back into
//! itself in Docker's `host:container` syntax, a string Docker gets holds no NUL, an
//! environment id is a DNS label, and no reason for a refusal quotes the text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use manifest_model::values::{
    bind_path, check_branch, check_docker_string, check_domain, environment_id, parse_bytes,
    parse_duration,
};
use manifest_model::{ImageRef, ProbeTarget};

/// Never in our own messages: if a reason holds it, it quoted the input.
const MARK: &str = "qzx";

/// Checks `check` on the input with the mark spliced in where it would survive most parsers.
fn quiet<T>(input: &str, check: impl Fn(&str) -> Result<T, String>) {
    for t in [
        format!("{input}{MARK}"),
        format!("/{MARK}{input}"),
        format!("{MARK}:{input}"),
        format!("{MARK}.{input}"),
    ] {
        if let Err(reason) = check(&t) {
            assert!(!reason.contains(MARK), "quoted {t:?} in {reason:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(p) = bind_path(s) {
        assert!(!p.contains([':', ',']) && !p.chars().any(char::is_control));
        assert_eq!(format!("{p}:/x:ro").split(':').count(), 3);
    }
    // A string Docker takes as it is: exactly the ones without a NUL.
    assert_eq!(check_docker_string(s).is_ok(), !s.contains('\0'));
    if check_branch(s).is_ok() {
        if let Ok(id) = &environment_id(s) {
            assert!(id.len() <= 63 && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        }
    }
    quiet(s, environment_id);
    quiet(s, bind_path);
    quiet(s, parse_bytes);
    quiet(s, parse_duration);
    quiet(s, check_domain);
    quiet(s, ImageRef::parse);
    quiet(s, ProbeTarget::parse);
});

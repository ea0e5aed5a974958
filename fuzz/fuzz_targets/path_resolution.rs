//! Fuzz target: how a host path is resolved before the host policy judges it, over an
//! arbitrary set of symbolic links.
//!
//! Issue 17. The first line is the path; every later line is a link `path>target`. Checked:
//! resolving never panics and stays bounded (links and length are capped); what it gives is
//! absolute and clean (no `.`, `..`, empty or trailing components), resolves to itself
//! again, and without links equals the loader's lexical normalisation of a bind path.

#![no_main]

use std::collections::BTreeMap;

use docker_runtime::policy::{KnownLinks, MAX_PATH, resolve};
use libfuzzer_sys::fuzz_target;
use manifest_model::values::bind_path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let path = lines.next().unwrap_or_default();
    let links: BTreeMap<String, String> = lines
        .take(256)
        .filter_map(|l| l.split_once('>'))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    let fs = KnownLinks(links);
    let Ok(resolved) = resolve(path, &fs) else {
        return;
    };
    assert!(resolved.starts_with('/'), "{resolved:?}");
    assert!(resolved.len() <= MAX_PATH, "{} bytes", resolved.len());
    if resolved != "/" {
        assert!(
            resolved[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."),
            "{resolved:?} is not clean"
        );
    }
    assert_eq!(
        resolve(&resolved, &fs).as_deref(),
        Ok(resolved.as_str()),
        "not a fixed point"
    );
    let plain = KnownLinks::default();
    if let (Ok(lexical), Ok(walked)) = (bind_path(path), resolve(path, &plain)) {
        assert_eq!(lexical, walked, "{path:?}");
    }
});

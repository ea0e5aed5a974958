//! Fuzz target: any bytes, as any manifest file of a revision, must load without panicking.
//!
//! The first byte picks the file (a node, deployment or service manifest, or `secrets.yaml`);
//! the rest is its content. A valid node and deployment sit beside it so cross-file checks
//! and node resolution run too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use manifest_model::{Limits, MemSource, load, resolve};

const NODE: &str = "apiVersion: run.orcra.dev/v0alpha\nkind: Node\nmetadata:\n  name: n\nspec:\n  host: h\n  gitRepo: /r\n";
const DEPLOYMENT: &str = "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  image: a:1\n  ports:\n    - containerPort: 80\n      port: 80\n";

fuzz_target!(|data: &[u8]| {
    let Some((&pick, content)) = data.split_first() else { return };
    let path = match pick % 4 {
        0 => "nodes/x.yaml",
        1 => "deployments/x.yaml",
        2 => "services/x.yaml",
        _ => "secrets.yaml",
    };
    let src = MemSource::new()
        .with("nodes/n.yaml", NODE)
        .with("deployments/d.yaml", DEPLOYMENT)
        .with(path, content.to_vec());
    let report = load(&src, &Limits::default());
    if let Some(rev) = &report.revision {
        for node in rev.nodes.keys() {
            let _ = resolve(rev, node, None);
        }
    }
});

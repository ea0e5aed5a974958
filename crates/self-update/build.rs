//! Passes the target triple being compiled for to the crate as `TARGET`: the release
//! artifact of this binary is the one built for the same triple.

#![allow(
    clippy::print_stdout,
    reason = "a build script talks to cargo through its standard output"
)]

fn main() {
    // Cargo always sets TARGET for build scripts; the fallback only keeps a hand-run build
    // script from failing.
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}

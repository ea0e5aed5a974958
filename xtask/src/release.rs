//! `cargo xtask release`: turns a built binary into a signed release in a feed directory that
//! self-update reads (`<out>/release.json`, the binary, its `.minisig`).
//!
//! The signature's trusted comment is `"<name> <version> <target>"`: self-update requires
//! exactly that, which binds the version to the signed bytes (a feed cannot relabel an old
//! signed binary as new). The binary's own `--version` must agree before anything is signed.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// What `cargo xtask release` was asked.
struct Options {
    version: String,
    key: PathBuf,
    binary: PathBuf,
    name: String,
    out: PathBuf,
    target: Option<String>,
    build: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let root = super::workspace_root();
    let mut version = None;
    let mut key = None;
    let mut binary = root.join("target/release/orun");
    let mut name = "orun".to_owned();
    let mut out = root.join("dist");
    let mut target = None;
    let mut build = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .with_context(|| format!("`{arg}` needs a value"))
        };
        match arg.as_str() {
            "--version" => version = Some(value()?),
            "--key" => key = Some(PathBuf::from(value()?)),
            "--binary" => binary = PathBuf::from(value()?),
            "--name" => name = value()?,
            "--out" => out = PathBuf::from(value()?),
            "--target" => target = Some(value()?),
            "--build" => build = true,
            other => bail!("`release` does not take `{other}`"),
        }
    }
    let version = version.context("`release` needs --version X.Y.Z")?;
    if !is_version(&version) {
        bail!("--version {version:?} is not MAJOR.MINOR.PATCH[-PRE]");
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("--name {name:?} must be [A-Za-z0-9_-]+");
    }
    Ok(Options {
        version,
        key: key.context("`release` needs --key <minisign secret key>")?,
        binary,
        name,
        out,
        target,
        build,
    })
}

/// `MAJOR.MINOR.PATCH[-PRE]` without leading zeros, as self-update parses versions.
fn is_version(text: &str) -> bool {
    let (core, pre) = match text.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (text, None),
    };
    let number = |p: &str| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'))
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| number(p))
        && pre.is_none_or(|pre| {
            pre.split('.').all(|id| {
                !id.is_empty()
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && (!id.bytes().all(|b| b.is_ascii_digit()) || number(id))
            })
        })
}

/// The host's target triple, which a plain `cargo build --release` builds for.
fn host_target() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}

/// Runs `program args`, failing with its stderr unless it exits 0; returns its stdout.
fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo xtask release --version X.Y.Z --key <secret key> [--binary B] [--name N]
/// [--out DIR] [--target T] [--build]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let target = match o.target.clone() {
        Some(t) => t,
        None => host_target()?,
    };
    if o.build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        output(
            Command::new(cargo)
                .args(["build", "--release", "-p", "orun"])
                .current_dir(super::workspace_root()),
        )?;
    }
    // The binary must call itself what it is released as: self-update's self-test checks
    // the same line, and would refuse the release on every node otherwise.
    let printed = output(Command::new(&o.binary).arg("--version"))
        .with_context(|| format!("{} --version", o.binary.display()))?;
    let agrees = printed.lines().any(|l| {
        l.split_whitespace()
            .last()
            .is_some_and(|w| w == o.version || w.strip_prefix('v') == Some(&o.version))
    });
    if !agrees {
        bail!(
            "{} --version prints {:?}, not version {}",
            o.binary.display(),
            printed.trim(),
            o.version
        );
    }

    fs::create_dir_all(&o.out).with_context(|| format!("create {}", o.out.display()))?;
    let file_name = format!("{}-{}-{target}", o.name, o.version);
    let file = o.out.join(&file_name);
    fs::copy(&o.binary, &file)
        .with_context(|| format!("copy {} to {}", o.binary.display(), file.display()))?;
    fs::set_permissions(&file, fs::Permissions::from_mode(0o755))?;
    let signature_name = format!("{file_name}.minisig");
    let signature = o.out.join(&signature_name);
    let comment = format!("{} {} {target}", o.name, o.version);
    // minisign asks for the key's password on the terminal when it has one.
    let status = Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(&o.key)
        .arg("-m")
        .arg(&file)
        .args(["-t", &comment, "-x"])
        .arg(&signature)
        .status()
        .context("run minisign (apt-get install -y minisign)")?;
    if !status.success() {
        bail!("minisign failed to sign {} ({status})", file.display());
    }
    let size = fs::metadata(&file)?.len();
    let sha256 = output(Command::new("sha256sum").arg(&file))?
        .split_whitespace()
        .next()
        .filter(|h| h.len() == 64)
        .map(str::to_owned)
        .context("sha256sum printed no checksum")?;

    let feed_path = o.out.join("release.json");
    let mut artifacts: Vec<Value> = match fs::read(&feed_path) {
        Ok(bytes) => {
            let feed: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not JSON", feed_path.display()))?;
            if feed["version"].as_str() == Some(o.version.as_str()) {
                feed["artifacts"].as_array().cloned().unwrap_or_default()
            } else {
                // A feed names one version; another version's artifacts do not belong in it.
                println!(
                    "release: {} was for {}; starting it afresh for {}",
                    feed_path.display(),
                    feed["version"],
                    o.version
                );
                Vec::new()
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", feed_path.display())),
    };
    artifacts.retain(|a| {
        !(a["name"].as_str() == Some(o.name.as_str()) && a["target"].as_str() == Some(&target))
    });
    artifacts.push(json!({
        "name": o.name,
        "target": target,
        "url": file_name,
        "size": size,
        "sha256": sha256,
        "signature": signature_name,
    }));
    let feed = json!({ "version": o.version, "artifacts": artifacts });
    let mut text = serde_json::to_string_pretty(&feed)?;
    text.push('\n');
    let tmp = feed_path.with_extension("json.tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, &feed_path)?;
    println!(
        "release: {} ({size} bytes, sha256 {sha256}) signed as {comment:?}; feed {}",
        file.display(),
        feed_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_self_update_reads_them() {
        for good in ["0.1.0", "1.2.3-rc.1", "10.0.0-alpha-2"] {
            assert!(is_version(good), "{good}");
        }
        for bad in [
            "", "1.2", "01.2.3", "1.2.3-", "1.2.3-01", "v1.2.3", "1.2.3+b",
        ] {
            assert!(!is_version(bad), "{bad}");
        }
    }

    #[test]
    fn options_need_a_version_and_a_key() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(parse(&args(&["--key", "k"])).is_err());
        assert!(parse(&args(&["--version", "1.0.0"])).is_err());
        assert!(parse(&args(&["--version", "1.0", "--key", "k"])).is_err());
        assert!(parse(&args(&["--version", "1.0.0", "--key"])).is_err());
        let o = parse(&args(&[
            "--version",
            "1.0.0",
            "--key",
            "k",
            "--build",
            "--name",
            "orun-agent",
        ]))
        .unwrap();
        assert!(o.build);
        assert_eq!(o.name, "orun-agent");
        assert!(o.binary.ends_with("target/release/orun"));
    }
}

//! The systemd unit `orun bootstrap` installs, checked by the real `systemd-analyze` (Debian's
//! `systemd` package): systemd reads every setting without a complaint, and its security
//! score meets the bar of RELIABILITY.md section 3, item 12.
//!
//! PID 1 is not systemd where these run: `verify` and `security --offline=yes` need none.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "tests: a panic is the failure report, and the score is printed for the log"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use node_setup::unit::{UNIT_NAME, UnitParams, render};

/// The highest exposure `systemd-analyze security` may give the unit (the bar; a
/// fully hardened unit that needs nothing scores 1.2).
const MAX_EXPOSURE: f64 = 2.0;

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

/// `systemd-analyze`, or `None` (with a note) when it is missing and the run allows skipping.
fn systemd_analyze() -> Option<&'static Path> {
    let path = Path::new(SYSTEMD_ANALYZE);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !test_support::required(),
        "{SYSTEMD_ANALYZE} is missing (apt-get install systemd) and ORUN_REQUIRE_ALL is set"
    );
    eprintln!("skipped: {SYSTEMD_ANALYZE} is missing (apt-get install systemd)");
    None
}

/// The unit rendered into a fresh temp dir, with its binary a real executable there (verify
/// checks that `ExecStart=` names one), and the dir that holds it all.
struct Rendered {
    _dir: tempfile::TempDir,
    unit: PathBuf,
}

/// A change to the test's parameters, given the temp dir's root.
type Edit = fn(&mut UnitParams, &Path);

fn rendered(edit: Edit) -> Rendered {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("var/lib/orun/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let binary = bin.join("orun");
    std::fs::copy("/bin/true", &binary).unwrap();
    let data = dir.path().join("opt/orun");
    std::fs::create_dir_all(&data).unwrap();
    let mut p = UnitParams {
        binary,
        config: dir.path().join("etc/orun/agent.toml"),
        data_dir: data,
        watchdog: Duration::from_secs(60),
        start_timeout: Duration::from_secs(300),
        ..UnitParams::default()
    };
    edit(&mut p, dir.path());
    let unit = dir.path().join(UNIT_NAME);
    std::fs::write(&unit, render(&p).unwrap()).unwrap();
    Rendered { _dir: dir, unit }
}

fn run(analyze: &Path, args: &[&str], unit: &Path) -> std::process::Output {
    Command::new(analyze)
        .args(args)
        .arg(unit)
        .env("SYSTEMD_LOG_LEVEL", "info")
        .output()
        .unwrap()
}

/// `systemd-analyze verify` accepts the unit without a word: it exits 0 even for settings it
/// ignores, so stderr must be empty too.
///
/// The unit keeps `User=orun` although no such user exists here: verify does not look users
/// up (checked with systemd 252: no complaint for a missing user), so there is nothing to
/// work around.
#[test]
fn systemd_reads_every_setting() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let cases: [(&str, Edit); 3] = [
        ("default", |_, _| {}),
        // Every escape the renderer makes, read back by systemd.
        ("odd paths", |p, root| {
            let odd = root.join("opt/my \"data\" 100%");
            std::fs::create_dir_all(&odd).unwrap();
            p.data_dir = odd;
            // verify looks the command up after unescaping: a wrong escape fails here.
            let bin = root.join("bin dir 100%/$orun");
            std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
            std::fs::copy("/bin/true", &bin).unwrap();
            p.binary = bin;
            p.config = root.join("etc/$orun/agent%.toml");
            p.extra_read_write = vec![root.join("srv")];
        }),
        ("root without the docker group", |p, _| {
            p.user = "root".to_owned();
            p.docker_group = None;
            p.watchdog = Duration::ZERO;
            p.start_timeout = Duration::from_millis(1500);
        }),
    ];
    for (name, edit) in cases {
        let r = rendered(edit);
        let out = run(analyze, &["verify", "--man=no"], &r.unit);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{name}: systemd-analyze verify: {}\n{stderr}\n--- unit ---\n{}",
            out.status,
            std::fs::read_to_string(&r.unit).unwrap()
        );
    }
}

/// A unit systemd would warn about is caught: the check above can fail.
#[test]
fn verify_catches_a_bad_setting() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let r = rendered(|_, _| {});
    let unit = std::fs::read_to_string(&r.unit).unwrap();
    std::fs::write(
        &r.unit,
        unit.replace("ProtectHome=read-only", "ProtectHome=sometimes"),
    )
    .unwrap();
    let out = run(analyze, &["verify", "--man=no"], &r.unit);
    assert!(out.status.success(), "verify exits 0 even here");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sometimes"), "{stderr}");
}

/// The unit's exposure, as `systemd-analyze security` scores it, is at most [`MAX_EXPOSURE`]
/// (RELIABILITY.md section 3, item 12).
#[test]
fn security_score_meets_the_bar() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let r = rendered(|_, _| {});
    let out = run(analyze, &["security", "--offline=yes", "--man=no"], &r.unit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let score = exposure(&stdout).unwrap_or_else(|| {
        panic!(
            "no exposure line ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    println!("systemd-analyze security: {UNIT_NAME} exposure {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{stdout}"
    );
}

/// The number in `Overall exposure level for orun.service: 1.7 OK :-)`.
fn exposure(report: &str) -> Option<f64> {
    let prefix = format!("Overall exposure level for {UNIT_NAME}: ");
    report.lines().find_map(|l| {
        let rest = &l[l.find(&prefix)? + prefix.len()..];
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[test]
fn exposure_line_is_parsed() {
    assert_eq!(
        exposure("x\n→ Overall exposure level for orun.service: 1.7 OK 🙂\n"),
        Some(1.7)
    );
    assert_eq!(
        exposure("Overall exposure level for other.service: 1.7 OK"),
        None
    );
    assert_eq!(exposure("Overall exposure level for orun.service: ?"), None);
}

//! What `deploy/` ships for the user's own fleet tools: the Prometheus alert rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`), every alert has a
//! test, and every metric the rules and the Grafana dashboard name is one the agent serves.

#![allow(clippy::unwrap_used, clippy::print_stdout, reason = "tests")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use status_http::{
    CertificateStatus, DeploymentStatus, ImagesStatus, RouteState, SelfUpdateStatus, ServiceStatus,
    Snapshot,
};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The metric names in `text`: every `orun_…` word.
fn orun_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("orun_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// Every metric the agent can serve: `/metrics` of a snapshot with each part filled in.
fn served() -> BTreeSet<String> {
    let mut snap = Snapshot::default();
    snap.deployments.insert(
        "web".into(),
        DeploymentStatus {
            name: "web".into(),
            ..Default::default()
        },
    );
    snap.services.insert(
        "site".into(),
        ServiceStatus {
            name: "site".into(),
            deployment: "web".into(),
            domain: Some("site.example".into()),
            route: RouteState::Routed,
            certificate: Some(CertificateStatus {
                issuer: "ca".into(),
                not_after: "2027-01-01T00:00:00Z".into(),
                not_after_unix: 1_798_761_600,
            }),
            ..Default::default()
        },
    );
    snap.images = ImagesStatus {
        count: 1,
        ..Default::default()
    };
    snap.self_update = Some(SelfUpdateStatus::default());
    snap.metrics.last_success_unix = Some(1.0);
    snap.metrics.fetch_duration_seconds = Some(0.1);
    snap.metrics.restarts.insert("web".into(), 1);
    snap.metrics.rollouts.insert("ok".into(), 1);
    let text = snap.metrics.render(&snap);
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn rules_and_dashboard_name_only_metrics_the_agent_serves() {
    let served = served();
    assert!(served.contains("orun_ready"), "{served:?}");
    for file in ["prometheus/orun-alerts.yml", "grafana/orun-dashboard.json"] {
        let text = std::fs::read_to_string(deploy().join(file)).unwrap();
        let named = orun_metrics(&text);
        assert!(named.len() >= 5, "{file}: {named:?}");
        let unknown: Vec<_> = named.difference(&served).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics the agent does not serve: {unknown:?}"
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/orun-dashboard.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for p in panels {
        assert!(
            p["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "{p}"
        );
    }
}

#[test]
fn every_alert_has_a_unit_test_and_promtool_passes_them() {
    let rules = std::fs::read_to_string(deploy().join("prometheus/orun-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(deploy().join("prometheus/orun-alerts.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    for a in &alerts {
        assert!(
            tests.contains(&format!(
                "alertname: {a}\n        exp_alerts:\n          - "
            )),
            "{a} has no test where it fires"
        );
    }
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(
            !test_support::required(),
            "promtool is missing and ORUN_REQUIRE_ALL is set"
        );
        println!("skipped: promtool is not installed (apt-get install -y prometheus)");
        return;
    }
    for args in [
        &["check", "rules", "orun-alerts.yml"][..],
        &["test", "rules", "orun-alerts.test.yml"][..],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(deploy().join("prometheus"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

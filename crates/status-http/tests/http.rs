//! The status API over real loopback sockets: the endpoints of REFERENCE §4, 405s, and the
//! bounds of RELIABILITY G2 (huge headers, slow clients, connection floods).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

mod common;

use status_http::{
    CertificateStatus, ContainerPhase, DeploymentState, DeploymentStatus, EVENTS_KEPT, Event,
    EventOutcome, Limits, Metrics, NodeStatus, RouteState, ServiceStatus, Snapshot, Status,
};

/// One exchange: status code and body.
fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let (code, _, body) = common::exchange(addr, method, path, "Content-Length: 0\r\n");
    (code, body)
}

fn snapshot(ready: bool) -> Snapshot {
    let mut s = Snapshot {
        node: NodeStatus {
            name: "web-01".into(),
            started_at: "2026-11-22T03:00:00Z".into(),
            git_head: Some("9f8e7d6".into()),
            ..Default::default()
        },
        ready,
        metrics: Metrics {
            passes_total: 3,
            pass_failures_total: 1,
            restarts: [("web".to_owned(), 2)].into(),
            rollouts: [("rolled-back".to_owned(), 1)].into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut web = DeploymentStatus {
        name: "web".into(),
        image: "nginx:1.27".into(),
        state: DeploymentState::Current(ContainerPhase::Running),
        ..Default::default()
    };
    web.set_container(Some(WEB_ID.into()));
    s.deployments.insert("web".into(), web);
    s
}

/// A container id as Docker writes it: 64 hex digits.
const WEB_ID: &str = "4f1c2a9e8b7d60531f2e3d4c5b6a798877665544332211000ffeeddccbbaa998";

#[test]
fn endpoints_and_methods() {
    let status = Status::new(snapshot(false));
    let (addr, _stop) = common::start(status.clone(), Limits::default(), None);
    for method in ["GET", "POST"] {
        assert_eq!(
            request(addr, method, "/healthz"),
            (200, r#"{"status":"ok"}"#.to_owned())
        );
        let (code, body) = request(addr, method, "/status");
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["node"]["name"], "web-01");
        assert_eq!(v["node"]["git_head"], "9f8e7d6");
        assert!(v["node"]["sync_error"].is_null());
        let web = &v["deployments"]["web"];
        assert_eq!(web["state"], "running");
        // The short id, as `docker ps` shows it (and Orcra Run documented), and the full one.
        assert_eq!(web["container_id"], "4f1c2a9e8b7d");
        assert_eq!(web["container_id_full"], WEB_ID);
        // The schema is an allowlist: exactly these fields, nothing else.
        let fields: Vec<&str> = web
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            [
                "container_id",
                "container_id_full",
                "health",
                "image",
                "last_error",
                "name",
                "restarts",
                "spec_hash",
                "state"
            ]
        );
        assert!(v["services"].as_object().unwrap().is_empty());
    }
    // G4: no write method changes anything; each is refused.
    for (method, path) in [
        ("PUT", "/status"),
        ("DELETE", "/status"),
        ("PATCH", "/healthz"),
        ("POST", "/readyz"),
        ("POST", "/metrics"),
        ("POST", "/events"),
    ] {
        assert_eq!(request(addr, method, path).0, 405, "{method} {path}");
    }
    assert_eq!(request(addr, "GET", "/nope").0, 404);

    // /readyz follows the published snapshot; requests read the cache, never block on it.
    assert_eq!(
        request(addr, "GET", "/readyz"),
        (503, r#"{"ready":false}"#.to_owned())
    );
    status.publish(snapshot(true));
    assert_eq!(
        request(addr, "GET", "/readyz"),
        (200, r#"{"ready":true}"#.to_owned())
    );

    // The event history: newest `limit` after `since`, per deployment, oldest first.
    for seq in 1..=1005 {
        status.record(Event {
            seq,
            time: "2026-11-22T03:00:00Z".into(),
            deployment: Some(if seq % 2 == 0 { "web" } else { "api" }.into()),
            step: "replace".into(),
            reason: format!("event {seq}"),
            outcome: EventOutcome::Ok,
            ..Default::default()
        });
    }
    let events = |q: &str| -> Vec<u64> {
        let (code, body) = request(addr, "GET", &format!("/events{q}"));
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    let all = events("");
    assert_eq!((all.len(), all[0], all[999]), (EVENTS_KEPT, 6, 1005));
    assert_eq!(events("?since=1000"), [1001, 1002, 1003, 1004, 1005]);
    assert_eq!(events("?deployment=web&limit=2"), [1002, 1004]);
    assert_eq!(events("?since=1003&deployment=api&limit=x"), [1005]);

    // A routed Service with its certificate, and one without a domain here.
    let mut snap = snapshot(true);
    snap.services.insert(
        "www".into(),
        ServiceStatus {
            name: "www".into(),
            deployment: "web".into(),
            domain: Some("www.example.com".into()),
            ssl: true,
            route: RouteState::Routed,
            upstream: Some("web".into()),
            upstream_address: Some("172.18.0.2:80".into()),
            certificate: Some(CertificateStatus {
                issuer: "Pebble Intermediate CA".into(),
                not_after: "2031-12-02T08:53:45Z".into(),
                not_after_unix: 1_953_968_025,
            }),
            last_error: None,
        },
    );
    snap.services.insert(
        "api".into(),
        ServiceStatus {
            name: "api".into(),
            deployment: "web".into(),
            ..Default::default()
        },
    );
    status.publish(snap);
    let (code, body) = request(addr, "GET", "/status");
    assert_eq!(code, 200);
    let back: Snapshot = serde_json::from_str(&body).unwrap();
    assert_eq!(back.services["www"].route, RouteState::Routed);
    assert_eq!(back.services["api"].route, RouteState::NotRouted);
    assert_eq!(
        back.services["www"]
            .certificate
            .as_ref()
            .map(|c| c.not_after_unix),
        Some(1_953_968_025)
    );

    let (code, metrics) = request(addr, "GET", "/metrics");
    assert_eq!(code, 200);
    for line in [
        "orun_passes_total 3",
        "orun_pass_failures_total 1",
        "orun_restarts_total{deployment=\"web\"} 2",
        "orun_rollouts_total{outcome=\"rolled-back\"} 1",
        "orun_deployments{state=\"running\"} 1",
        "orun_ready 1",
        "orun_route_up{domain=\"www.example.com\",service=\"www\"} 1",
        "orun_certificate_expiry_timestamp_seconds{domain=\"www.example.com\"} 1953968025",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing `{line}` in:\n{metrics}"
        );
    }
    // Every sample line is `name{labels} value` after its HELP and TYPE.
    for l in metrics.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = l.rsplit_once(' ').unwrap();
        assert!(
            name.starts_with("orun_") && value.parse::<f64>().is_ok(),
            "{l}"
        );
    }
    promtool_accepts(&metrics);
}

/// Prometheus's own linter reads the exposition without a complaint.
fn promtool_accepts(metrics: &str) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            !test_support::required(),
            "promtool is required (ORUN_REQUIRE_ALL; Debian package prometheus)"
        );
        #[allow(clippy::print_stderr, reason = "a skipped check says so")]
        {
            eprintln!("skipped: promtool is not installed (apt-get install prometheus)");
        }
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{metrics}"
    );
}

/// G2: a 1 MB header is refused, and the server keeps serving.
#[test]
fn huge_headers_are_refused() {
    let (addr, _stop) = common::start(Status::new(snapshot(true)), Limits::default(), None);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let big = "a".repeat(1 << 20);
    // The server may close before it has read all we send; that is the point.
    let _ = write!(s, "GET /status HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(
        !reply.starts_with("HTTP/1.1 200"),
        "served a 1 MB header: {}",
        &reply[..reply.len().min(80)]
    );
    assert_eq!(request(addr, "GET", "/healthz").0, 200);
}

/// G2: a client that never finishes its headers is cut off after the header timeout.
#[test]
fn slow_clients_are_cut_off() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (addr, _stop) = common::start(Status::new(snapshot(true)), limits, None);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    // Closed (0 bytes, or an error/408 reply) well before our own 10 s read timeout.
    let n = s.read(&mut buf).unwrap_or(0);
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || !reply.contains(" 200 "), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "still open after {:?}",
        started.elapsed()
    );
    assert_eq!(request(addr, "GET", "/healthz").0, 200);
}

/// G2: connections beyond the limit are closed on arrival; freed slots are reused.
#[test]
fn connection_flood_is_bounded() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let (addr, _stop) = common::start(Status::new(snapshot(true)), limits, None);
    // Two idle connections take both slots (they have sent nothing yet).
    let hold: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Wait until the server has taken both (it accepts asynchronously): a third connection
    // is then closed without an answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
        let mut reply = Vec::new();
        match s.read_to_end(&mut reply) {
            Ok(_) if reply.is_empty() => break,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                break;
            }
            _ => assert!(Instant::now() < deadline, "third connection still served"),
        }
    }
    drop(hold);
    // Slots come back once the held connections close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ok =
            std::panic::catch_unwind(|| request(addr, "GET", "/healthz").0 == 200).unwrap_or(false);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed");
    }
}

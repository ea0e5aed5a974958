//! The status API's bearer token over real loopback sockets: every endpoint but `/healthz`
//! needs it, a wrong or partial one is a bare 401, and the token itself shows up nowhere: not
//! in an answer, not in an error, not in a `Debug`.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::net::SocketAddr;
use std::time::Duration;

mod common;

use status_http::{
    BearerToken, ClientError, DeploymentStatus, Event, Limits, NodeStatus, Snapshot, Status,
    StatusError, get_authorized,
};

const TOKEN: &str = "Zq8-vN3_kP1.wR7~tY5xE2uI9oA4sD6f";
/// A name only the node's own answers carry: a 401 must not.
const CANARY: &str = "canary-node-41";

/// Starts a server on an ephemeral loopback port; it stops when the returned sender drops.
fn start(token: Option<BearerToken>) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut snap = Snapshot {
        node: NodeStatus {
            name: CANARY.into(),
            ..Default::default()
        },
        ready: true,
        ..Default::default()
    };
    snap.deployments.insert(
        CANARY.into(),
        DeploymentStatus {
            name: CANARY.into(),
            ..Default::default()
        },
    );
    let status = Status::new(snap);
    status.record(Event {
        seq: 1,
        deployment: Some(CANARY.into()),
        ..Default::default()
    });
    common::start(status, Limits::default(), token)
}

use common::exchange;

fn token() -> BearerToken {
    BearerToken::parse(TOKEN).unwrap()
}

fn bearer(t: &str) -> String {
    format!("Authorization: Bearer {t}\r\n")
}

#[test]
fn a_token_guards_every_endpoint_but_healthz() {
    let (addr, _stop) = start(Some(token()));
    let same_length_wrong = format!("{}X", &TOKEN[..TOKEN.len() - 1]);
    let wrong = [
        String::new(),
        bearer("not-the-token-at-all-0123456789"),
        bearer(&same_length_wrong),
        bearer(&TOKEN[..TOKEN.len() - 1]),
        bearer(&TOKEN[..16]),
        bearer(&format!("{TOKEN}X")),
        bearer(""),
        format!("Authorization: Basic {TOKEN}\r\n"),
        format!("Authorization: {TOKEN}\r\n"),
        format!("X-Token: {TOKEN}\r\n"),
    ];
    for path in [
        "/status",
        "/readyz",
        "/metrics",
        "/events",
        "/events?since=0",
        "/nope",
    ] {
        for method in ["GET", "POST", "PUT"] {
            for extra in &wrong {
                let (code, head, body) = exchange(addr, method, path, extra);
                assert_eq!(code, 401, "{method} {path} {extra:?}");
                assert!(
                    head.lines()
                        .any(|l| l.eq_ignore_ascii_case(r#"www-authenticate: Bearer realm="orun""#)),
                    "{head}"
                );
                assert_eq!(body, "unauthorized\n");
                assert!(!head.contains(CANARY) && !head.contains(TOKEN), "{head}");
            }
        }
    }

    // The right token opens every endpoint, whatever the scheme's case.
    let (code, _, body) = exchange(addr, "GET", "/status", &bearer(TOKEN));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["node"]["name"], CANARY);
    let lower = format!("authorization: bearer {TOKEN}\r\n");
    for path in ["/readyz", "/metrics", "/events"] {
        let (code, _, body) = exchange(addr, "GET", path, &lower);
        assert_eq!(code, 200, "{path}: {body}");
    }
    // ...and leaves the method rules and unknown paths as they were.
    assert_eq!(exchange(addr, "PUT", "/status", &bearer(TOKEN)).0, 405);
    assert_eq!(exchange(addr, "GET", "/nope", &bearer(TOKEN)).0, 404);

    // /healthz stays open for load balancers, with any Authorization or none.
    for extra in &wrong {
        let (code, _, body) = exchange(addr, "GET", "/healthz", extra);
        assert_eq!((code, body.as_str()), (200, r#"{"status":"ok"}"#));
    }
    assert_eq!(exchange(addr, "PUT", "/healthz", "").0, 405);
}

#[test]
fn without_a_token_every_request_is_answered_as_before() {
    let (addr, _stop) = start(None);
    for extra in ["", "Authorization: Bearer whatever-it-may-be-0123\r\n"] {
        let (code, head, body) = exchange(addr, "GET", "/status", extra);
        assert_eq!(code, 200);
        assert!(!head.to_ascii_lowercase().contains("www-authenticate"));
        assert!(body.contains(CANARY));
        assert_eq!(exchange(addr, "GET", "/readyz", extra).0, 200);
    }
}

#[test]
fn the_client_presents_the_token() {
    let (addr, _stop) = start(Some(token()));
    let t = Duration::from_secs(5);
    let ok = get_authorized(addr, "/status", Some(&token()), t).unwrap();
    assert_eq!(ok.code, 200);
    assert!(ok.body.contains(CANARY));
    let other = BearerToken::parse("another-token-of-enough-length").unwrap();
    for token in [None, Some(&other)] {
        let a = get_authorized(addr, "/status", token, t).unwrap();
        assert_eq!((a.code, a.body.as_str()), (401, "unauthorized\n"));
    }
    assert_eq!(get_authorized(addr, "/healthz", None, t).unwrap().code, 200);

    // An error reaching a server names the address, never the token.
    let closed: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err: ClientError = get_authorized(closed, "/status", Some(&token()), t).unwrap_err();
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(TOKEN), "{shown}");
    }
}

#[test]
fn tokens_load_from_files_and_are_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, content: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    // One trailing newline is the file's, not the token's.
    let (addr, _stop) = start(Some(
        BearerToken::load(&file("ok", format!("{TOKEN}\n").as_bytes())).unwrap(),
    ));
    assert_eq!(exchange(addr, "GET", "/status", &bearer(TOKEN)).0, 200);
    assert_eq!(format!("{:?}", token()), "BearerToken(…)");

    // Refusals name the file and the reason, and quote nothing of it.
    let secretish = "SECRETSECRET";
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "short",
            format!("{secretish}\n").into_bytes(),
            "shorter than 16 bytes",
        ),
        (
            "long",
            secretish.repeat(400).into_bytes(),
            "longer than 4096 bytes",
        ),
        (
            "space",
            format!("{secretish} {secretish}").into_bytes(),
            "not all visible ASCII",
        ),
        (
            "two-newlines",
            format!("{secretish}{secretish}\n\n").into_bytes(),
            "not all visible ASCII",
        ),
        ("huge", vec![b'S'; 10 << 20], "longer than 4096 bytes"),
    ];
    for (name, content, why) in cases {
        let path = file(name, &content);
        let err = BearerToken::load(&path).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("the status token in {} is {why}", path.display())),
            "{shown}"
        );
        let debug = format!("{err:?}");
        assert!(
            !shown.contains(secretish) && !debug.contains(secretish),
            "{debug}"
        );
        assert!(!debug.contains("SSSSSSSSSSSSSSSS"), "{debug}");
    }
    let missing = dir.path().join("missing");
    let err = BearerToken::load(&missing).unwrap_err();
    assert!(matches!(err, StatusError::TokenFile { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot read the status token file {}", missing.display())
    );
    // Text given directly: the same rules, no file to name.
    let err = BearerToken::parse("short").unwrap_err();
    assert_eq!(err.to_string(), "the status token is shorter than 16 bytes");
}

/// Without a token, a request naming a DNS name other than `localhost` in `Host` (a page the
/// operator visits, whose name was pointed at 127.0.0.1) is refused; loopback names and IP
/// literals are answered.
#[test]
fn without_a_token_only_local_host_names_are_answered() {
    let (addr, _stop) = start(None);
    let ask = |host: &str, path: &str| {
        status_http::request(
            addr,
            "GET",
            path,
            &[("Host", host)],
            None,
            Duration::from_secs(5),
        )
        .unwrap()
    };
    for host in [
        "rebind.attacker.example",
        "rebind.attacker.example:9100",
        "127.0.0.1.nip.io",
        "localhost.attacker.example",
    ] {
        for path in ["/", "/status", "/events", "/metrics"] {
            let a = ask(host, path);
            assert_eq!(a.code, 421, "{host} {path}");
            assert!(!a.body.contains(CANARY), "{host} {path}: {}", a.body);
        }
    }
    for host in [
        "localhost",
        "LOCALHOST:9100",
        "127.0.0.1",
        &addr.to_string(),
        "[::1]:9100",
        "10.0.0.5:9100",
    ] {
        assert_eq!(ask(host, "/status").code, 200, "{host}");
    }
    // With a token, the token is what counts (a scrape through a DNS name works).
    let (addr, _stop) = start(Some(token()));
    let value = format!("Bearer {TOKEN}");
    let a = status_http::request(
        addr,
        "GET",
        "/status",
        &[("Host", "node.internal:9100"), ("Authorization", &value)],
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(a.code, 200);
}

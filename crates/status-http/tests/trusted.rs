//! `call` over HTTPS against a real TLS server (pebble, whose API certificate is made for
//! `localhost` by the test): answered when the certificate is trusted, refused when it is not.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use status_http::{Transport, call};
use test_support::caddy::Pebble;

#[test]
fn https_is_verified_against_the_roots_given_and_refused_without_them() {
    if !Pebble::available() {
        assert!(
            std::env::var_os("ORUN_REQUIRE_ALL").is_none(),
            "pebble is required (ORUN_REQUIRE_ALL)"
        );
        return;
    }
    let pebble = Pebble::start();
    let port: u16 = pebble
        .directory()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/dir")
        .parse()
        .unwrap();
    let root = std::fs::read(pebble.ca_cert_path()).unwrap();
    let trusted = Transport::Https { extra_roots: root };
    let reply = call(
        "localhost",
        port,
        &trusted,
        "GET",
        "/dir",
        &[],
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(reply.code, 200);
    assert!(reply.header("content-type").is_some());
    assert!(String::from_utf8_lossy(&reply.body).contains("newAccount"));

    // The system's roots alone do not trust it: nothing is sent.
    let err = call(
        "localhost",
        port,
        &Transport::Https {
            extra_roots: Vec::new(),
        },
        "GET",
        "/dir",
        &[],
        Duration::from_secs(10),
    )
    .unwrap_err();
    assert!(err.to_string().contains("cannot reach"), "{err}");
}

//! `get_https` against a real TLS server on loopback: a self-signed certificate is accepted
//! (probes do not verify certificates, as Kubernetes' do not), the answer is read whole, and
//! a port that does not speak TLS fails the request instead of passing it.
//!
//! The server is rustls over a blocking socket, one connection per test. Its certificate and
//! P-256 key (`tests/fixtures/self-signed.*.der`, CN=localhost, valid for 100 years) were made
//! for this test only with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256
//! -nodes -days 36500 -subj /CN=localhost`, then written as DER (`openssl x509 -outform der`,
//! `openssl pkcs8 -topk8 -nocrypt -outform der`); they protect nothing.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use status_http::{Answer, ClientError, get_https};

const CERT: &[u8] = include_bytes!("fixtures/self-signed.cert.der");
const KEY: &[u8] = include_bytes!("fixtures/self-signed.key.der");

fn server_config() -> Arc<ServerConfig> {
    common::tls_config(CERT.to_vec(), KEY.to_vec())
}

/// Serves one TLS connection: reads the request head, answers `answer`, and returns the
/// request line it saw and the SNI name the client sent.
fn serve_once(answer: &'static str) -> (SocketAddr, JoinHandle<(String, Option<String>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = server_config();
    let handle = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = StreamOwned::new(ServerConnection::new(config).unwrap(), tcp);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tls.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let sni = tls.conn.server_name().map(str::to_owned);
        tls.write_all(answer.as_bytes()).unwrap();
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        let request = String::from_utf8(head).unwrap();
        (request.lines().next().unwrap().to_owned(), sni)
    });
    (addr, handle)
}

#[test]
fn a_self_signed_endpoint_answers_the_probe() {
    let (addr, server) =
        serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    let answer = get_https(addr, "localhost", "/health?x=1", Duration::from_secs(5)).unwrap();
    assert_eq!(
        answer,
        Answer {
            code: 200,
            body: "ok".into()
        }
    );
    let (request, sni) = server.join().unwrap();
    assert_eq!(request, "GET /health?x=1 HTTP/1.1");
    assert_eq!(sni.as_deref(), Some("localhost"));
}

#[test]
fn an_error_status_comes_back_as_it_is() {
    let (addr, server) = serve_once(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 8\r\nConnection: close\r\n\r\nstarting",
    );
    // An IP address as server name: no SNI is sent, as Go's client sends none for an IP.
    let answer = get_https(addr, "127.0.0.1", "/ready", Duration::from_secs(5)).unwrap();
    assert_eq!((answer.code, answer.body.as_str()), (503, "starting"));
    assert_eq!(server.join().unwrap().1, None);
}

#[test]
fn a_port_without_tls_fails_the_probe() {
    // A plain HTTP server: it reads the ClientHello as a request and answers in clear text.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let mut buf = [0u8; 512];
        let _ = tcp.read(&mut buf).unwrap();
        tcp.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    });
    let err = get_https(addr, "localhost", "/", Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err, ClientError::Io { .. }), "{err:?}");
    server.join().unwrap();
}

//! `download` against a real TLS server on loopback whose certificate is issued by a CA made
//! fresh with `rcgen`: the CA file makes it trusted, without it (system roots only) or with
//! another CA the handshake fails; bodies cut short, over the cap, redirects and plain HTTP
//! are refused.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::{ServerConnection, StreamOwned};
use status_http::{ClientError, download};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A CA (its PEM written to `ca.pem` in a temporary directory) and a server certificate it
/// issued for 127.0.0.1 and localhost.
struct Pki {
    dir: tempfile::TempDir,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        Self {
            dir,
            server_cert: cert.der().clone(),
            server_key: key.serialize_der(),
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// A TLS server for one connection: reads the request head, writes `answer`, then closes
/// with `close_notify` when `notify`. Returns the request head seen (empty when the
/// handshake failed).
fn serve(pki: &Pki, answer: Vec<u8>, notify: bool) -> (SocketAddr, JoinHandle<String>) {
    let config = common::tls_config(pki.server_cert.to_vec(), pki.server_key.clone());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut conn = ServerConnection::new(config).unwrap();
        while conn.is_handshaking() {
            if conn.complete_io(&mut tcp).is_err() {
                return String::new();
            }
        }
        let mut tls = StreamOwned::new(conn, tcp);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if tls.read_exact(&mut byte).is_err() {
                return String::from_utf8_lossy(&head).into_owned();
            }
            head.push(byte[0]);
        }
        // The client may stop reading early (over its cap): a failed write is its choice.
        let _ = tls.write_all(&answer);
        if notify {
            tls.conn.send_close_notify();
        }
        let _ = tls.flush();
        String::from_utf8(head).unwrap()
    });
    (addr, handle)
}

fn ok_with_length(body: &[u8]) -> Vec<u8> {
    let mut answer =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    answer.extend_from_slice(body);
    answer
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn get(addr: SocketAddr, ca: Option<&Path>, max: u64) -> (Result<u64, ClientError>, Vec<u8>) {
    let mut sink = Vec::new();
    let url = format!("https://127.0.0.1:{}/dl/orun-0.2.0?x=1", addr.port());
    (download(&url, ca, max, TIMEOUT, &mut sink), sink)
}

fn kind(result: &Result<u64, ClientError>) -> ErrorKind {
    match result {
        Err(ClientError::Io { source, .. }) => source.kind(),
        other => panic!("expected an I/O error: {other:?}"),
    }
}

#[test]
fn downloads_a_body_whole_over_verified_tls() {
    let pki = Pki::new();
    let data = body(300_000);
    let (addr, server) = serve(&pki, ok_with_length(&data), true);
    let (result, sink) = get(addr, Some(&pki.ca()), 1 << 20);
    assert_eq!(result.unwrap(), data.len() as u64);
    assert!(sink == data, "the body differs");
    let head = server.join().unwrap();
    assert!(
        head.starts_with(&format!(
            "GET /dl/orun-0.2.0?x=1 HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n",
            addr.port()
        )),
        "{head}"
    );

    // A body delimited by the end of the connection, ended with close_notify, is whole too.
    let mut answer = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    answer.extend_from_slice(&data[..1000]);
    let (addr, server) = serve(&pki, answer, true);
    let (result, sink) = get(addr, Some(&pki.ca()), 1000);
    assert_eq!(result.unwrap(), 1000);
    assert!(sink == data[..1000]);
    server.join().unwrap();
}

#[test]
fn a_body_cut_short_is_an_error() {
    let pki = Pki::new();
    let data = body(1000);
    let mut answer = ok_with_length(&data);
    answer.truncate(answer.len() - 100);
    for notify in [true, false] {
        let (addr, server) = serve(&pki, answer.clone(), notify);
        let (result, sink) = get(addr, Some(&pki.ca()), 1 << 20);
        assert_eq!(kind(&result), ErrorKind::UnexpectedEof, "{result:?}");
        assert!(
            result
                .unwrap_err()
                .to_string()
                .contains("cut short after 900 of 1000 bytes"),
            "notify {notify}"
        );
        assert_eq!(sink.len(), 900);
        server.join().unwrap();
    }
    // Without a length, an end without close_notify may be an attacker's cut: refused.
    let mut answer = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    answer.extend_from_slice(&data);
    let (addr, server) = serve(&pki, answer, false);
    let (result, _) = get(addr, Some(&pki.ca()), 1 << 20);
    assert_eq!(kind(&result), ErrorKind::UnexpectedEof, "{result:?}");
    server.join().unwrap();
}

#[test]
fn a_body_over_the_cap_is_refused() {
    let pki = Pki::new();
    let data = body(5000);
    // Announced too large: refused before the body is read.
    let (addr, server) = serve(&pki, ok_with_length(&data), true);
    let (result, sink) = get(addr, Some(&pki.ca()), 4999);
    assert_eq!(kind(&result), ErrorKind::FileTooLarge, "{result:?}");
    assert!(sink.is_empty());
    server.join().unwrap();
    // Unannounced: stopped at the cap.
    let mut answer = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    answer.extend_from_slice(&data);
    let (addr, server) = serve(&pki, answer, true);
    let (result, sink) = get(addr, Some(&pki.ca()), 4000);
    assert_eq!(kind(&result), ErrorKind::FileTooLarge, "{result:?}");
    assert!(sink.len() <= 4000, "{}", sink.len());
    server.join().unwrap();
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let pki = Pki::new();
    // The system's roots alone do not know the test CA.
    let (addr, server) = serve(&pki, ok_with_length(b"secret"), true);
    let (result, sink) = get(addr, None, 1 << 20);
    assert_eq!(kind(&result), ErrorKind::InvalidData, "{result:?}");
    assert!(sink.is_empty());
    assert_eq!(server.join().unwrap(), "");
    // Nor does another CA.
    let other = Pki::new();
    let (addr, server) = serve(&pki, ok_with_length(b"secret"), true);
    let (result, sink) = get(addr, Some(&other.ca()), 1 << 20);
    assert_eq!(kind(&result), ErrorKind::InvalidData, "{result:?}");
    assert!(sink.is_empty());
    assert_eq!(server.join().unwrap(), "");
}

#[test]
fn redirects_and_other_statuses_are_errors() {
    let pki = Pki::new();
    for (answer, expected) in [
        (
            "HTTP/1.1 302 Found\r\nLocation: https://elsewhere.example/x\r\nContent-Length: 0\r\n\r\n",
            "HTTP 302",
        ),
        (
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            "HTTP 404",
        ),
    ] {
        let (addr, server) = serve(&pki, answer.as_bytes().to_vec(), true);
        let (result, sink) = get(addr, Some(&pki.ca()), 1 << 20);
        let err = result.unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        assert!(sink.is_empty());
        server.join().unwrap();
    }
}

#[test]
fn only_https_urls_are_fetched() {
    for url in [
        "http://127.0.0.1:1/x",
        "ftp://127.0.0.1/x",
        "https://user:pw@127.0.0.1/x",
        "https:///x",
        "https://127.0.0.1:0/x",
        "https://127.0.0.1/a b",
    ] {
        let mut sink = Vec::new();
        let result = download(url, None, 10, TIMEOUT, &mut sink);
        assert_eq!(kind(&result), ErrorKind::InvalidInput, "{url}");
    }
}

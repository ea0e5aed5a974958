//! What the status API's socket tests share: a server on an ephemeral loopback port and one
//! raw HTTP exchange with it.

#![allow(dead_code, reason = "each test file uses its own part")]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use status_http::{BearerToken, Limits, Status, serve};

/// Serves `status` on an ephemeral loopback port; it stops when the returned sender drops.
pub(crate) fn start(
    status: Status,
    limits: Limits,
    token: Option<BearerToken>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(serve(listener, status, limits, token, async {
            let _ = rx.await;
        }))
        .unwrap();
    });
    (addr, tx)
}

/// One raw HTTP/1.1 exchange (`Host: localhost`, the connection closed after it) with
/// `extra` header lines: status code, head, body.
pub(crate) fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (code, head.to_owned(), body.to_owned())
}

/// A TLS server configuration (ring, safe default versions) presenting `cert` with `key`
/// (PKCS#8 DER).
pub(crate) fn tls_config(cert: Vec<u8>, key: Vec<u8>) -> std::sync::Arc<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .unwrap();
    std::sync::Arc::new(config)
}

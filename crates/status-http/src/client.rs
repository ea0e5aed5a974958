//! A minimal HTTP client: one `GET` over HTTP/1.1, bounded in time and size, plain for the
//! status API (`orun status`, tests) and for probes, or over TLS for `https://` probes.
//!
//! Kept here so HTTP has one owner; it needs none of hyper's machinery for a single request
//! whose answer carries `Content-Length` or ends with the connection. TLS goes through
//! `rustls`, known to this crate alone.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

/// Largest answer read.
const MAX_RESPONSE: u64 = 8 << 20;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there, the connection broke, or the TLS handshake failed.
    #[error("cannot reach the agent's status API at {addr}: {source}")]
    Io {
        /// The address asked.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The answer is not HTTP as the agent writes it.
    #[error("the status API at {addr} gave a malformed answer")]
    Malformed {
        /// The address asked.
        addr: SocketAddr,
    },
}

/// An HTTP answer: status code and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub code: u16,
    /// The body, as text.
    pub body: String,
}

/// `GET path` over plain HTTP from `addr`, within `timeout` per read or write.
///
/// # Errors
/// When `addr` cannot be reached or answers something that is not HTTP.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Answer, ClientError> {
    let io = |source| ClientError::Io { addr, source };
    let stream = connect(addr, timeout).map_err(io)?;
    exchange(stream, addr, path)
}

/// `GET path` over HTTPS from `addr`, within `timeout` per read or write, for probes.
///
/// The server's certificate is **not** verified, as Kubernetes does not verify it for its
/// HTTPS probes: a probe asks whether the container's own endpoint answers, and that
/// endpoint's certificate is typically self-signed or issued for a public name, never for the
/// address probed. The handshake is otherwise real (TLS 1.2 or 1.3, its signatures checked),
/// so a plain-HTTP port or a broken TLS server fails the probe. `server_name` is sent as SNI
/// when it is a DNS name; an IP address sends none.
///
/// # Errors
/// When `addr` cannot be reached, the handshake fails, or the answer is not HTTP.
pub fn get_https(
    addr: SocketAddr,
    server_name: &str,
    path: &str,
    timeout: Duration,
) -> Result<Answer, ClientError> {
    let io = |source| ClientError::Io { addr, source };
    let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
        io(std::io::Error::new(
            ErrorKind::InvalidInput,
            "invalid TLS server name",
        ))
    })?;
    let conn = ClientConnection::new(unverified_config(), name)
        .map_err(|e| io(std::io::Error::new(ErrorKind::InvalidData, e)))?;
    let tcp = connect(addr, timeout).map_err(io)?;
    exchange(StreamOwned::new(conn, tcp), addr, path)
}

fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

fn exchange(
    mut stream: impl Read + Write,
    addr: SocketAddr,
    path: &str,
) -> Result<Answer, ClientError> {
    let io = |source| ClientError::Io { addr, source };
    // One write, so the request leaves as one segment (or one TLS record).
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    stream.flush().map_err(io)?;
    let mut raw = Vec::new();
    match stream.take(MAX_RESPONSE).read_to_end(&mut raw) {
        Ok(_) => {}
        // Many TLS servers close without `close_notify`; what came before is the answer, and
        // a truncated one fails to parse below.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(io(e)),
    }
    parse(&raw).ok_or(ClientError::Malformed { addr })
}

/// The TLS client configuration of probes, built once.
fn unverified_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(NoCertificateCheck(
                provider.signature_verification_algorithms,
            ));
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                // The ring provider supports the default versions (TLS 1.2 and 1.3) by
                // construction; rustls fails here only for a provider lacking them.
                .expect("the ring provider supports TLS 1.2 and 1.3")
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Accepts any certificate, and still checks the handshake's signatures with it (so the
/// server must hold the key of the certificate it shows).
#[derive(Debug)]
struct NoCertificateCheck(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

fn parse(raw: &[u8]) -> Option<Answer> {
    let text = std::str::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    let mut parts = status.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?.parse().ok()?;
    let length = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let body = match length {
        Some(n) => body.get(..n)?,
        None => body,
    };
    Some(Answer {
        code,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers_and_refuses_junk() {
        let a =
            parse(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\nokEXTRA").unwrap();
        assert_eq!(
            a,
            Answer {
                code: 503,
                body: "ok".into()
            }
        );
        assert!(parse(b"SSH-2.0-OpenSSH\r\n").is_none());
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").is_none());
    }
}

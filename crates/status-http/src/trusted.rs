//! Requests to servers orun must trust (a container registry it sends a login to): over
//! HTTPS with the server's certificate verified against the system's roots, or over plain
//! HTTP where the caller decides that is right (a registry on loopback, as Docker allows);
//! with the answer's headers read back, and `HEAD` understood.
//!
//! The probes' client ([`crate::request`], [`crate::get_https`]) verifies nothing, which is
//! right for asking a container whether it answers and wrong for sending credentials.

use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::ClientError;
use crate::client::{MAX_RESPONSE, compose, connect, dechunk, tls_name};

/// Where the system keeps its trusted roots, by distribution; `SSL_CERT_FILE` comes first.
const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// How to reach a server.
#[derive(Clone, Debug)]
pub enum Transport {
    /// Plain HTTP.
    Http,
    /// HTTPS, the certificate verified for the host name against the system's roots and
    /// these PEM certificates (a private CA).
    Https {
        /// Extra roots, PEM.
        extra_roots: Vec<u8>,
    },
}

/// An answer with its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub code: u16,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (empty for `HEAD`).
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header named `name`, any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request to `host:port`: `method path` with `headers`, within `timeout` per read or
/// write. `host` is resolved, sent as `Host` and, over HTTPS, verified against the
/// certificate. Requests are composed as [`crate::request`] composes them (nothing is sent
/// that could smuggle a header).
///
/// # Errors
/// When the name does not resolve, the server cannot be reached, its certificate is not
/// trusted for `host`, or the answer is not HTTP.
pub fn call(
    host: &str,
    port: u16,
    transport: &Transport,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let unresolved = SocketAddr::from(([0, 0, 0, 0], port));
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| ClientError::Io {
            addr: unresolved,
            source,
        })?
        .collect();
    // The first address that takes the connection (`localhost` may resolve to `::1` first
    // on a host whose server listens on 127.0.0.1 only).
    let mut last = std::io::Error::new(ErrorKind::NotFound, format!("{host} does not resolve"));
    let mut connected = None;
    for a in &addrs {
        match connect(*a, timeout) {
            Ok(tcp) => {
                connected = Some((*a, tcp));
                break;
            }
            Err(e) => last = e,
        }
    }
    let Some((addr, tcp)) = connected else {
        return Err(ClientError::Io {
            addr: addrs.first().copied().unwrap_or(unresolved),
            source: last,
        });
    };
    let io = |source| ClientError::Io { addr, source };
    let default_port = match transport {
        Transport::Http => 80,
        Transport::Https { .. } => 443,
    };
    let host_header = if port == default_port {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    let request = compose(&host_header, method, path, headers, None).map_err(io)?;
    let raw = match transport {
        Transport::Http => read_all(tcp, &request),
        Transport::Https { extra_roots } => {
            let config = verified_config(extra_roots).map_err(io)?;
            let conn = ClientConnection::new(config, tls_name(host).map_err(io)?)
                .map_err(|e| io(std::io::Error::new(ErrorKind::InvalidData, e)))?;
            read_all(StreamOwned::new(conn, tcp), &request)
        }
    }
    .map_err(io)?;
    parse_reply(&raw, method == "HEAD").ok_or(ClientError::Malformed { addr })
}

fn read_all(
    mut stream: impl std::io::Read + std::io::Write,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    stream.write_all(request)?;
    stream.flush()?;
    let mut raw = Vec::new();
    match std::io::Read::read_to_end(
        &mut std::io::Read::take(&mut stream, MAX_RESPONSE),
        &mut raw,
    ) {
        Ok(_) => Ok(raw),
        // Many TLS servers close without `close_notify`; a cut answer fails to parse.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

/// A client configuration trusting the system's roots and `extra` (PEM).
fn verified_config(extra: &[u8]) -> std::io::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(SYSTEM_ROOTS.iter().map(std::path::PathBuf::from))
        .find_map(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    // A bundle entry rustls cannot use is skipped, as every TLS client skips it.
    roots.add_parsable_certificates(pem_certificates(&system));
    let (added, _) = roots.add_parsable_certificates(pem_certificates(extra));
    if !extra.is_empty() && added == 0 {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "the extra roots hold no usable certificate",
        ));
    }
    if roots.is_empty() {
        return Err(std::io::Error::new(
            ErrorKind::NotFound,
            "no trusted roots: the system's certificate bundle is missing (install ca-certificates)",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificates of a PEM bundle; anything else in it is skipped.
fn pem_certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let Some(end) = after.find(END) else { break };
        let b64: String = after[..end].split_whitespace().collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push(CertificateDer::from(der));
        }
        rest = &after[end + END.len()..];
    }
    out
}

/// The answer's status, headers and body; a `HEAD` answer has no body whatever its
/// `Content-Length` says.
fn parse_reply(raw: &[u8], head_request: bool) -> Option<Reply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let rest = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines.next()?;
    let mut parts = status.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    let reply = Reply {
        code,
        headers,
        body: Vec::new(),
    };
    if head_request {
        return Some(reply);
    }
    let chunked = reply.header("transfer-encoding").is_some_and(|te| {
        te.rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        match reply.header("content-length") {
            Some(n) => rest.get(..n.parse::<usize>().ok()?)?.to_vec(),
            None => rest.to_vec(),
        }
    };
    Some(Reply { body, ..reply })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_answers_have_no_body_and_headers_read_back() {
        let raw =
            b"HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:ab\r\nContent-Length: 525\r\n\r\n";
        let r = parse_reply(raw, true).unwrap();
        assert_eq!(r.code, 200);
        assert_eq!(r.header("docker-content-digest"), Some("sha256:ab"));
        assert!(r.body.is_empty());
        assert!(parse_reply(raw, false).is_none(), "a GET answer cut short");
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_reply(raw, false).unwrap().body, b"{}");
        assert!(parse_reply(b"junk", true).is_none());
    }

    #[test]
    fn pem_bundles_give_their_certificates() {
        let pem = b"junk\n-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n\
                    -----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n\
                    -----BEGIN CERTIFICATE-----\nBAU=\n-----END CERTIFICATE-----\n";
        let certs = pem_certificates(pem);
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].as_ref(), &[0, 1, 2, 3]);
        assert_eq!(certs[1].as_ref(), &[4, 5]);
    }
}

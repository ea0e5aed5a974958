//! A minimal HTTP client: one request over HTTP/1.1, bounded in time and size, plain for the
//! status API (`orun status`, tests), for probes and for Caddy's admin API, or over TLS for
//! `https://` probes; and a TLS handshake that reads the certificate a server presents.
//!
//! Kept here so HTTP has one owner; it needs none of hyper's machinery for a single request
//! whose answer carries `Content-Length` or ends with the connection. TLS goes through
//! `rustls`, and certificates are read with `x509-parser`, both known to this crate alone.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use x509_parser::extensions::GeneralName;

use crate::BearerToken;

/// Largest answer read.
pub(crate) const MAX_RESPONSE: u64 = 8 << 20;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there, the connection broke, the TLS handshake failed, or the request
    /// was refused before sending because it could not be written as asked (a line break in a
    /// header value, a method that is not a token: kind `InvalidInput`).
    #[error("cannot reach {addr}: {source}")]
    Io {
        /// The address asked.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The answer is not HTTP, or the certificate presented cannot be read.
    #[error("{addr} gave a malformed answer")]
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

/// What a TLS server presents as its own (end-entity) certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The issuer's common name, or its whole distinguished name when it has none.
    pub issuer: String,
    /// The DNS names among the subject alternative names, in the certificate's order.
    pub subject_names: Vec<String>,
    /// Start of validity, in Unix seconds.
    pub not_before: i64,
    /// End of validity, in Unix seconds.
    pub not_after: i64,
}

/// `GET path` over plain HTTP from `addr`, within `timeout` per read or write.
///
/// # Errors
/// When `addr` cannot be reached or answers something that is not HTTP.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Answer, ClientError> {
    request(addr, "GET", path, &[], None, timeout)
}

/// `GET path` over plain HTTP from `addr`, within `timeout` per read or write, presenting
/// `token` (when there is one) as `Authorization: Bearer`: the status API of an agent that
/// listens beyond loopback.
///
/// # Errors
/// As [`get`]; no error quotes the token.
pub fn get_authorized(
    addr: SocketAddr,
    path: &str,
    token: Option<&BearerToken>,
    timeout: Duration,
) -> Result<Answer, ClientError> {
    match token {
        Some(token) => {
            let value = token.header_value();
            request(
                addr,
                "GET",
                path,
                &[("Authorization", &value)],
                None,
                timeout,
            )
        }
        None => get(addr, path, timeout),
    }
}

/// One request over plain HTTP to `addr`, within `timeout` per read or write: `method path`,
/// the given `headers`, and `body` as `(content type, bytes)`, sent with its
/// `Content-Length` and `Connection: close`.
///
/// `Host` is `addr` unless `headers` names one (to reach a virtual host through a proxy).
/// `Content-Length`, `Connection` and `Transfer-Encoding` are the client's own and refused in
/// `headers`. A `POST`, `PUT` or `PATCH` without a body says `Content-Length: 0`.
///
/// # Guarantees
/// Nothing is sent unless the whole request is well-formed: the method and header names are
/// HTTP tokens, the path has no space or control character, and no header value (nor the
/// content type) holds a CR, LF or NUL, so a value cannot smuggle a header or a request.
///
/// # Errors
/// [`ClientError::Io`] of kind `InvalidInput` for a request that cannot be written as asked;
/// otherwise when `addr` cannot be reached or answers something that is not HTTP.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> Result<Answer, ClientError> {
    let io = |source| ClientError::Io { addr, source };
    let request = compose(&addr.to_string(), method, path, headers, body).map_err(io)?;
    let stream = connect(addr, timeout).map_err(io)?;
    exchange(stream, addr, &request)
}

/// `GET path` over HTTPS from `addr`, within `timeout` per read or write, for probes.
///
/// The server's certificate is **not** verified, as Kubernetes does not verify it for its
/// HTTPS probes: a probe asks whether the container's own endpoint answers, and that
/// endpoint's certificate is typically self-signed or issued for a public name, never for the
/// address probed. The handshake is otherwise real (TLS 1.2 or 1.3, its signatures checked),
/// so a plain-HTTP port or a broken TLS server fails the probe. `server_name` is sent as SNI
/// and as `Host` (with the port unless it is 443) when it is a DNS name, so a server with
/// virtual hosts (a proxy such as Caddy) answers for that name; an IP address sends no SNI,
/// and `Host` is then `addr`.
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
    let name = tls_name(server_name).map_err(io)?;
    let host = match &name {
        ServerName::DnsName(dns) if addr.port() == 443 => dns.as_ref().to_owned(),
        ServerName::DnsName(dns) => format!("{}:{}", dns.as_ref(), addr.port()),
        _ => addr.to_string(),
    };
    let request = compose(&host, "GET", path, &[], None).map_err(io)?;
    let conn = ClientConnection::new(unverified_config(), name)
        .map_err(|e| io(std::io::Error::new(ErrorKind::InvalidData, e)))?;
    let tcp = connect(addr, timeout).map_err(io)?;
    exchange(StreamOwned::new(conn, tcp), addr, &request)
}

/// The certificate `addr` presents in a TLS handshake that sends `server_name` as SNI (none
/// for an IP address), within `timeout` per read or write.
///
/// Like [`get_https`], the certificate is not verified: the question is which certificate a
/// server (Caddy, for a route) actually serves, trusted or not, and the answer says who
/// issued it, for which names and until when. The handshake's signatures are still checked,
/// so the server holds the key of the certificate reported. Nothing is sent after the
/// handshake but `close_notify`.
///
/// # Errors
/// [`ClientError::Io`] when `addr` cannot be reached or the handshake fails (a server with no
/// certificate for that name typically answers with a TLS alert: kind `InvalidData`);
/// [`ClientError::Malformed`] when the certificate presented cannot be read as X.509.
pub fn peer_certificate(
    addr: SocketAddr,
    server_name: &str,
    timeout: Duration,
) -> Result<PeerCertificate, ClientError> {
    let io = |source| ClientError::Io { addr, source };
    let name = tls_name(server_name).map_err(io)?;
    let mut conn = ClientConnection::new(unverified_config(), name)
        .map_err(|e| io(std::io::Error::new(ErrorKind::InvalidData, e)))?;
    let mut tcp = connect(addr, timeout).map_err(io)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(io)?;
    }
    let der = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or(ClientError::Malformed { addr })?;
    let certificate = read_certificate(der).ok_or(ClientError::Malformed { addr })?;
    // Polite, not needed: the answer is already in hand, so a failure here changes nothing.
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    Ok(certificate)
}

/// Issuer, DNS names and validity of a DER certificate; `None` when it is not X.509.
fn read_certificate(der: &[u8]) -> Option<PeerCertificate> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let issuer = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map_or_else(|| cert.issuer().to_string(), str::to_owned);
    let subject_names = match cert.subject_alternative_name().ok()? {
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    Some(PeerCertificate {
        issuer,
        subject_names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The TLS name for `server_name`: a DNS name (sent as SNI) or an IP address (no SNI).
pub(crate) fn tls_name(server_name: &str) -> std::io::Result<ServerName<'static>> {
    ServerName::try_from(server_name.to_owned())
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "invalid TLS server name"))
}

pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// Whether `s` is an HTTP token (RFC 9110 §5.6.2): a method or a header name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The whole request, head and body, as one buffer; refuses what cannot be written safely.
pub(crate) fn compose(
    default_host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> std::io::Result<Vec<u8>> {
    let refuse = |why: &str| {
        Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            format!("refused to send the request: {why}"),
        ))
    };
    // A value may hold any visible text and spaces, but a CR or LF would end the header
    // early (and start another one, or another request), and NUL is refused by servers.
    let safe_value = |v: &str| !v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
    if !is_token(method) {
        return refuse("the method is not an HTTP token");
    }
    if path.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return refuse("the path is empty or holds a space or a control character");
    }
    let mut host = default_host;
    for &(name, value) in headers {
        if !is_token(name) {
            return refuse("a header name is not an HTTP token");
        }
        if !safe_value(value) {
            return refuse("a header value holds a line break or NUL");
        }
        if ["content-length", "connection", "transfer-encoding"]
            .iter()
            .any(|own| name.eq_ignore_ascii_case(own))
        {
            return refuse("Content-Length, Connection and Transfer-Encoding are the client's own");
        }
        if name.eq_ignore_ascii_case("host") {
            host = value;
        }
    }
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("accept"))
    {
        head.push_str("Accept: */*\r\n");
    }
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let content: &[u8] = match body {
        Some((content_type, bytes)) => {
            if !safe_value(content_type) {
                return refuse("the content type holds a line break or NUL");
            }
            head.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                bytes.len()
            ));
            bytes
        }
        None if matches!(method, "POST" | "PUT" | "PATCH") => {
            head.push_str("Content-Length: 0\r\n");
            &[]
        }
        None => &[],
    };
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(content);
    Ok(request)
}

fn exchange(
    mut stream: impl Read + Write,
    addr: SocketAddr,
    request: &[u8],
) -> Result<Answer, ClientError> {
    let io = |source| ClientError::Io { addr, source };
    // One write, so the request leaves as one segment (or one TLS record) when it fits.
    stream.write_all(request).map_err(io)?;
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

/// The status code and body of a whole answer; `None` when it is not HTTP/1.x, is cut short,
/// or its body is not UTF-8. The body is delimited by `Content-Length`, by chunks
/// (`Transfer-Encoding: chunked`, which Go servers such as Caddy's admin API use for larger
/// answers even to a `Connection: close` request), or by the end of the connection.
fn parse(raw: &[u8]) -> Option<Answer> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = &raw[split + 4..];
    let status = head.lines().next()?;
    let mut parts = status.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?.parse().ok()?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    let chunked = header("transfer-encoding").is_some_and(|te| {
        te.rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        match header("content-length") {
            Some(n) => body.get(..n.parse::<usize>().ok()?)?.to_vec(),
            None => body.to_vec(),
        }
    };
    Some(Answer {
        code,
        body: String::from_utf8(body).ok()?,
    })
}

/// The data of a chunked body (RFC 9112 §7.1), up to its last chunk; trailers are ignored.
/// `None` when it is cut short or malformed.
pub(crate) fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&rest[..line_end]).ok()?;
        // A size may carry extensions after `;`, which mean nothing here.
        let size_text = line.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(data);
        }
        data.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

// ---- Verified HTTPS downloads (self-update's release feed, signatures and binaries). ----

use std::net::{Ipv4Addr, ToSocketAddrs};
use std::path::Path;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject as _;

/// Largest response head [`download`] reads before the body.
const MAX_DOWNLOAD_HEAD: usize = 16 << 10;

/// `GET url` over HTTPS with the server's certificate **verified** against the system's root
/// certificates plus, when `roots` names one, the PEM certificates of that file (a private
/// CA); the body is streamed to `sink`. Returns the number of body bytes written.
///
/// The request is HTTP/1.0, so the server answers with a `Content-Length` or ends the body
/// with the connection, never in chunks; a body that ends with the connection must end with
/// TLS `close_notify`, so an attacker cutting the connection cannot pass a short body off as
/// whole. `timeout` bounds each connect, read and write.
///
/// # Guarantees
/// - Only `https://` URLs, without credentials, are fetched; plain HTTP is refused before
///   anything is sent.
/// - No redirect is followed: a 3xx answer is an error naming the status; only 200 is a
///   success.
/// - At most `max_bytes` body bytes reach `sink`: a `Content-Length` beyond it is refused
///   before the body is read, and a body that grows beyond it stops with an error.
///
/// # Errors
/// [`ClientError::Io`] for everything, by kind: `InvalidInput` for a URL that is not
/// `https://host[:port]/path`, `InvalidData` for a failed TLS handshake (an untrusted
/// certificate) or an answer that is not HTTP, `FileTooLarge` beyond `max_bytes`,
/// `UnexpectedEof` for a body cut short, `Other` for a status other than 200 (the message
/// names it), or the connection's own error. `addr` is `0.0.0.0:<port>` when the failure came
/// before an address was reached (a bad URL, a name that does not resolve, unusable roots).
/// `sink`'s own write errors come back the same way.
pub fn download(
    url: &str,
    roots: Option<&Path>,
    max_bytes: u64,
    timeout: Duration,
    sink: &mut dyn Write,
) -> Result<u64, ClientError> {
    let target = HttpsUrl::parse(url).map_err(|source| ClientError::Io {
        addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 443)),
        source,
    })?;
    let unreached = SocketAddr::from((Ipv4Addr::UNSPECIFIED, target.port));
    let early = |source| ClientError::Io {
        addr: unreached,
        source,
    };
    let name = tls_name(&target.host).map_err(early)?;
    let config = verified_config(roots).map_err(early)?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\nAccept: */*\r\nUser-Agent: orun\r\n\r\n",
        target.path, target.authority
    );
    let (tcp, addr) = connect_any(&target.host, target.port, timeout, unreached)?;
    let io = |source| ClientError::Io { addr, source };
    let conn = ClientConnection::new(config, name)
        .map_err(|e| io(std::io::Error::new(ErrorKind::InvalidData, e)))?;
    let mut tls = StreamOwned::new(conn, tcp);
    tls.write_all(request.as_bytes()).map_err(io)?;
    tls.flush().map_err(io)?;
    receive(&mut tls, max_bytes, sink).map_err(io)
}

/// The parts of an `https://` URL that a request needs.
#[derive(Debug, PartialEq, Eq)]
struct HttpsUrl {
    /// `host[:port]` as written, for the `Host` header.
    authority: String,
    /// The host: a DNS name or an IP address (without brackets).
    host: String,
    port: u16,
    /// The path and query, starting with `/`; the fragment is dropped.
    path: String,
}

impl HttpsUrl {
    fn parse(url: &str) -> std::io::Result<Self> {
        let bad = |why: &str| {
            Err(std::io::Error::new(
                ErrorKind::InvalidInput,
                format!("not a usable https URL: {why}"),
            ))
        };
        let Some(rest) = url.strip_prefix("https://") else {
            return bad("only https:// is fetched");
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return bad("the path holds a space or a control character");
        }
        if authority.contains('@') {
            return bad("credentials in the URL");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return bad("unclosed [");
            };
            (host, after)
        } else {
            match authority.find(':') {
                Some(i) => (&authority[..i], &authority[i..]),
                None => (authority, ""),
            }
        };
        let port = match port {
            "" => 443,
            p => match p.strip_prefix(':').and_then(|n| n.parse::<u16>().ok()) {
                Some(n) if n != 0 => n,
                _ => return bad("bad port"),
            },
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        {
            return bad("bad host");
        }
        Ok(Self {
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            path,
        })
    }
}

/// The TLS client configuration of [`download`]: certificates verified against the system's
/// roots and those of `extra` (PEM).
fn verified_config(extra: Option<&Path>) -> std::io::Result<Arc<ClientConfig>> {
    let mut store = RootCertStore::empty();
    // A system store may hold certificates that webpki cannot use (old or odd encodings);
    // those are skipped, as TLS clients commonly do, and the rest still count.
    let native = rustls_native_certs::load_native_certs();
    let _ = store.add_parsable_certificates(native.certs);
    if let Some(path) = extra {
        let unreadable = |e: rustls::pki_types::pem::Error| {
            std::io::Error::new(
                ErrorKind::InvalidData,
                format!("cannot read CA certificates from {}: {e}", path.display()),
            )
        };
        let mut added = 0usize;
        for cert in CertificateDer::pem_file_iter(path).map_err(unreadable)? {
            store
                .add(cert.map_err(unreadable)?)
                .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
            added += 1;
        }
        if added == 0 {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("no CA certificate in {}", path.display()),
            ));
        }
    }
    if store.is_empty() {
        return Err(std::io::Error::new(
            ErrorKind::NotFound,
            "no trusted root certificate: the system has none and no CA file was given",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(std::io::Error::other)?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connection to the first address of `host:port` that accepts one.
fn connect_any(
    host: &str,
    port: u16,
    timeout: Duration,
    unreached: SocketAddr,
) -> Result<(TcpStream, SocketAddr), ClientError> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|source| ClientError::Io {
            addr: unreached,
            source,
        })?;
    let mut last = ClientError::Io {
        addr: unreached,
        source: std::io::Error::new(ErrorKind::NotFound, "the name has no address"),
    };
    for addr in addrs {
        match connect(addr, timeout) {
            Ok(tcp) => return Ok((tcp, addr)),
            Err(source) => last = ClientError::Io { addr, source },
        }
    }
    Err(last)
}

/// Reads an answer from `stream`: checks the head, then copies the body to `sink`.
fn receive(stream: &mut impl Read, max_bytes: u64, sink: &mut dyn Write) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 << 10];
    let mut head = Vec::new();
    let split = loop {
        let n = read_some(stream, &mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "the connection ended before the answer's head",
            ));
        }
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            break from + i;
        }
        if head.len() > MAX_DOWNLOAD_HEAD {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "the answer's head is too large",
            ));
        }
    };
    let malformed = || std::io::Error::new(ErrorKind::InvalidData, "the answer is not HTTP");
    let text = std::str::from_utf8(&head[..split]).map_err(|_| malformed())?;
    let mut lines = text.split("\r\n");
    let status = lines.next().ok_or_else(malformed)?;
    let mut parts = status.splitn(3, ' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(malformed());
    }
    let code: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(malformed)?;
    match code {
        200 => {}
        300..=399 => {
            return Err(std::io::Error::other(format!(
                "HTTP {code}: redirects are not followed"
            )));
        }
        _ => return Err(std::io::Error::other(format!("HTTP {code}"))),
    }
    let mut length: Option<u64> = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(malformed());
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| malformed())?;
            // Two different lengths are a smuggling attempt or a broken server.
            if length.is_some_and(|l| l != n) {
                return Err(malformed());
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "a transfer encoding in an answer to HTTP/1.0",
            ));
        }
    }
    let too_large = || {
        std::io::Error::new(
            ErrorKind::FileTooLarge,
            format!("the body is larger than {max_bytes} bytes"),
        )
    };
    if length.is_some_and(|l| l > max_bytes) {
        return Err(too_large());
    }
    let limit = length.unwrap_or(max_bytes);
    let mut written: u64 = 0;
    // What came with the head is the body's start.
    let mut pending: Vec<u8> = head[split + 4..].to_vec();
    loop {
        let take = pending
            .len()
            .min(usize::try_from(limit - written).unwrap_or(usize::MAX));
        if pending.len() > take && length.is_none() {
            return Err(too_large());
        }
        sink.write_all(&pending[..take])?;
        written += take as u64;
        if length == Some(written) {
            sink.flush()?;
            return Ok(written);
        }
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                return Err(cut_short(written, length));
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return match length {
                Some(_) => Err(cut_short(written, length)),
                None => {
                    sink.flush()?;
                    Ok(written)
                }
            };
        }
        pending.clear();
        pending.extend_from_slice(&buf[..n]);
    }
}

/// One read, retried when interrupted.
fn read_some(stream: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn cut_short(written: u64, length: Option<u64>) -> std::io::Error {
    let expected = length.map_or_else(String::new, |l| format!(" of {l}"));
    std::io::Error::new(
        ErrorKind::UnexpectedEof,
        format!("the body was cut short after {written}{expected} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::TcpListener;
    use std::thread::JoinHandle;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ServerConfig, ServerConnection};

    // The test certificate of `tests/https_probe.rs` (self-signed, CN=localhost, no SAN,
    // valid 2026-12-02T05:52:54Z to 2126-11-08T05:52:54Z); it protects nothing.
    const CERT: &[u8] = include_bytes!("../tests/fixtures/self-signed.cert.der");
    const KEY: &[u8] = include_bytes!("../tests/fixtures/self-signed.key.der");

    /// Reads one request (head, then `Content-Length` bytes of body) from `stream`.
    fn read_request(stream: &mut impl Read) -> String {
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            raw.push(byte[0]);
        }
        let head = String::from_utf8(raw.clone()).unwrap();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |n| n.parse::<usize>().unwrap());
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).unwrap();
        raw.extend(body);
        String::from_utf8(raw).unwrap()
    }

    /// A plain HTTP server for one request: answers 200 `ok` and returns the request seen.
    fn serve_once() -> (SocketAddr, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let seen = read_request(&mut tcp);
            tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            seen
        });
        (addr, handle)
    }

    /// A TLS server for one connection with the test certificate: when `answer`, reads a
    /// request and answers it, returning the request; otherwise only completes the handshake.
    fn serve_tls_once(answer: bool) -> (SocketAddr, JoinHandle<String>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(CERT.to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(KEY.to_vec())),
            )
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut conn = ServerConnection::new(Arc::new(config)).unwrap();
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp).unwrap();
            }
            let mut tls = StreamOwned::new(conn, tcp);
            if !answer {
                // Wait for the client's close_notify (or its going away) before closing.
                let _ = tls.read(&mut [0u8; 1]);
                return String::new();
            }
            let seen = read_request(&mut tls);
            tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            tls.conn.send_close_notify();
            tls.flush().unwrap();
            seen
        });
        (addr, handle)
    }

    #[test]
    fn request_sends_method_headers_and_body_with_its_length() {
        let (addr, server) = serve_once();
        let answer = request(
            addr,
            "POST",
            "/load",
            &[("Host", "app.example.test"), ("X-Trace", "a b")],
            Some(("application/json", b"{\"a\":1}")),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(answer.code, 200);
        assert_eq!(answer.body, "ok");
        assert_eq!(
            server.join().unwrap(),
            "POST /load HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\
             Accept: */*\r\nX-Trace: a b\r\nContent-Type: application/json\r\n\
             Content-Length: 7\r\n\r\n{\"a\":1}"
        );

        // `get` is the same request with nothing added; `Host` is then the address.
        let (addr, server) = serve_once();
        assert_eq!(
            get(addr, "/status", Duration::from_secs(5)).unwrap().code,
            200
        );
        assert_eq!(
            server.join().unwrap(),
            format!(
                "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
            )
        );

        // A POST without a body still says how long it is.
        let (addr, server) = serve_once();
        request(addr, "POST", "/stop", &[], None, Duration::from_secs(5)).unwrap();
        assert!(
            server
                .join()
                .unwrap()
                .ends_with("Content-Length: 0\r\n\r\n")
        );
    }

    #[test]
    fn a_request_that_cannot_be_written_safely_is_refused_before_connecting() {
        // Nothing listens there: a refusal must come before any connection is tried.
        let closed: SocketAddr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let t = Duration::from_secs(5);
        // Method, path, headers and body of each request refused.
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<(&'a str, &'a [u8])>,
        );
        let cases: [Case; 9] = [
            ("GET", "/", &[("Host", "a\r\nX-Evil: 1")], None),
            ("GET", "/", &[("X-A", "line\nbreak")], None),
            ("GET", "/", &[("X-A", "nul\0")], None),
            ("GET", "/", &[("X-A:", "v")], None),
            ("GET", "/", &[("Content-Length", "3")], None),
            ("GET", "/", &[("connection", "keep-alive")], None),
            ("GET /x HTTP/1.1\r\n", "/", &[], None),
            ("GET", "/a b", &[], None),
            ("POST", "/", &[], Some(("text/plain\r\nX-Evil: 1", b"x"))),
        ];
        for (method, path, headers, body) in cases {
            let err = request(closed, method, path, headers, body, t).unwrap_err();
            match &err {
                ClientError::Io { source, .. } => {
                    assert_eq!(
                        source.kind(),
                        ErrorKind::InvalidInput,
                        "{method:?} {headers:?}"
                    )
                }
                other => panic!("{other:?}"),
            }
            assert!(
                err.to_string().contains("refused to send the request"),
                "{err}"
            );
        }
        // The same address, asked properly, fails as unreachable: the refusals were early.
        let err = get(closed, "/", t).unwrap_err();
        assert!(
            matches!(&err, ClientError::Io { source, .. } if source.kind() == ErrorKind::ConnectionRefused),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("cannot reach {closed}: Connection refused (os error 111)")
        );
    }

    #[test]
    fn get_https_names_the_virtual_host_it_asks_for() {
        let (addr, server) = serve_tls_once(true);
        get_https(addr, "app.example.test", "/", Duration::from_secs(5)).unwrap();
        let seen = server.join().unwrap();
        assert!(
            seen.starts_with(&format!(
                "GET / HTTP/1.1\r\nHost: app.example.test:{}\r\n",
                addr.port()
            )),
            "{seen}"
        );

        let (addr, server) = serve_tls_once(true);
        get_https(addr, "127.0.0.1", "/", Duration::from_secs(5)).unwrap();
        let seen = server.join().unwrap();
        assert!(
            seen.starts_with(&format!("GET / HTTP/1.1\r\nHost: {addr}\r\n")),
            "{seen}"
        );
    }

    #[test]
    fn peer_certificate_reads_what_the_server_presents() {
        let (addr, server) = serve_tls_once(false);
        let cert = peer_certificate(addr, "localhost", Duration::from_secs(5)).unwrap();
        server.join().unwrap();
        assert_eq!(
            cert,
            PeerCertificate {
                issuer: "localhost".into(),
                subject_names: Vec::new(),
                not_before: 1_796_190_774,
                not_after: 4_949_790_774,
            }
        );
    }

    #[test]
    fn peer_certificate_of_a_plain_http_port_is_a_failed_handshake() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let _ = tcp.read(&mut [0u8; 512]);
            tcp.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        });
        let err = peer_certificate(addr, "localhost", Duration::from_secs(5)).unwrap_err();
        server.join().unwrap();
        assert!(
            matches!(&err, ClientError::Io { source, .. } if source.kind() == ErrorKind::InvalidData),
            "{err:?}"
        );
    }

    #[test]
    fn junk_is_not_a_certificate() {
        assert_eq!(read_certificate(b"not a certificate"), None);
    }

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
        assert!(parse(b"HTTP/1.1 200 OK\r\n\r\n\xff").is_none());
    }

    #[test]
    fn reads_chunked_answers_whole_and_refuses_them_cut_short() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\n{\"a\":\r\n3;ext=1\r\n1}\n\r\n0\r\nTrailer: x\r\n\r\n";
        assert_eq!(
            parse(raw),
            Some(Answer {
                code: 200,
                body: "{\"a\":1}\n".into()
            })
        );
        // Every byte counts: a chunk of multi-byte characters is measured in bytes.
        let raw = "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n4\r\néé\r\n0\r\n\r\n";
        assert_eq!(parse(raw.as_bytes()).unwrap().body, "éé");
        for cut in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
        ] {
            assert_eq!(parse(cut), None, "{}", String::from_utf8_lossy(cut));
        }
    }
}

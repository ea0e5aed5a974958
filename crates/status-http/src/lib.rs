//! The agent's read-only status API on loopback.
//!
//! This crate owns the HTTP server (through `hyper`, known to no other crate) for REFERENCE
//! §4: `GET|POST /healthz`, `GET|POST /status`, `GET /readyz`, `GET /metrics`, the event
//! history `GET /events?since=&deployment=&limit=` and the status page `GET /` (with its
//! `/page.css` and `/page.js`: [`render_page`]); any other
//! method on those paths is 405, any other path 404. It never calls Docker or Git on a
//! request path: the agent [`Status::publish`]es a [`Snapshot`] after each pass and every
//! request reads the last one, in constant time. It accepts no command of any kind.
//!
//! The schema is an allowlist: no field can carry an env value, a secret, a key path or a
//! credential-bearing URL (RELIABILITY G3). Requests are bounded (G2): header size, time to
//! send the headers, connection lifetime and the number of connections at once.
//!
//! Off loopback the API is guarded by a [`BearerToken`] from node-local configuration: every
//! request but `/healthz` (left open for load balancers) must carry
//! `Authorization: Bearer <token>`, or is answered 401 with nothing about the node.
//!
//! [`get`] is the matching client (`orun status`, tests, and the agent's http probes): one
//! bounded request; [`get_https`] is the same over TLS, without certificate verification, for
//! `https://` probes (`rustls`, like `hyper`, is known to this crate alone); [`request`] sends
//! any method, headers and body (Caddy's admin API), and [`peer_certificate`] reads the
//! certificate a TLS server presents for a name (`x509-parser`, known to this crate alone).
//! [`get_authorized`] is [`get`] with the status API's token.
//! [`download`] streams one file over **verified** HTTPS (system roots plus an optional CA
//! file, no redirects, a byte cap): self-update's release feed, signatures and binaries.

mod client;
mod page;
mod snapshot;
mod text;
mod token;
mod trusted;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use client::{
    Answer, ClientError, PeerCertificate, download, get, get_authorized, get_https,
    peer_certificate, request,
};
pub use page::{PAGE_EVENTS, parse_rfc3339, render_main, render_page, span};
pub use snapshot::{
    CertificateStatus, ContainerPhase, DeploymentState, DeploymentStatus, Event, EventOutcome,
    ImageProgress, ImagesStatus, Metrics, NodeStatus, RouteState, SelfUpdateStatus, ServiceStatus,
    Snapshot, human_bytes, short_container_id,
};
pub use text::{render_events, render_text};
pub use token::{BearerToken, TOKEN_MAX_BYTES, TOKEN_MIN_BYTES, access};
pub use trusted::{Reply, Transport, call};

/// Everything that can go wrong serving the status API.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The listening socket could not be set up.
    #[error("cannot listen for the status API")]
    Listen(#[source] std::io::Error),
    /// The status token file cannot be read.
    #[error("cannot read the status token file {}", path.display())]
    TokenFile {
        /// The file named.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// The status token is unusable (too short, too long, or not visible ASCII); the message
    /// names the file but never quotes the token.
    #[error("the status token{} is {why}", token::from_where(path.as_ref()))]
    BadToken {
        /// The file it came from, when it came from one.
        path: Option<PathBuf>,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A status address beyond loopback without `--status-allow-remote` and a token.
    #[error(
        "--status-addr {addr} is not a loopback address: the status API goes beyond this host only with --status-allow-remote and a bearer token (`status.tokenFile` in the node policy)"
    )]
    Exposed {
        /// The address asked for.
        addr: std::net::SocketAddr,
    },
}

/// Bounds on what one client can make the server do (RELIABILITY G2).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; more are closed on arrival.
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    pub header_timeout: Duration,
    /// Longest life of one connection, keep-alive included.
    pub connection_lifetime: Duration,
    /// Largest request head, in bytes (hyper's floor is 8 KiB).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// The last published snapshot, shared by the agent (writer) and the server (readers).
#[derive(Clone, Debug, Default)]
pub struct Status {
    current: Arc<RwLock<Arc<Snapshot>>>,
    events: Arc<RwLock<VecDeque<Event>>>,
    /// The daemon's self-update part, laid over every snapshot the engine publishes.
    self_update: Arc<RwLock<Option<SelfUpdateStatus>>>,
    /// Events from outside the engine (the self-update), waiting for the engine to number
    /// them and write them to its durable history.
    notes: Arc<std::sync::Mutex<Vec<Note>>>,
}

/// An event from outside the engine, before it has a number and a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// As [`Event::step`].
    pub step: String,
    /// As [`Event::reason`].
    pub reason: String,
    /// As [`Event::outcome`].
    pub outcome: EventOutcome,
}

/// Most notes kept waiting for the engine; older ones are dropped.
const NOTES_KEPT: usize = 64;

/// Most events kept in memory and served by `/events`.
pub const EVENTS_KEPT: usize = 1000;

impl Status {
    /// A status holding `initial`.
    pub fn new(initial: Snapshot) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(initial))),
            events: Arc::default(),
            self_update: Arc::default(),
            notes: Arc::default(),
        }
    }

    /// Replaces the snapshot every later request sees, with the self-update's part laid over
    /// it.
    pub fn publish(&self, mut snapshot: Snapshot) {
        snapshot.self_update = self
            .self_update
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        // A poisoned lock only means a reader panicked; the data is a plain value, still whole.
        let mut guard = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Arc::new(snapshot);
    }

    /// Adds an event to the history `/events` serves, dropping the oldest beyond
    /// [`EVENTS_KEPT`]. The agent keeps the durable copy.
    pub fn record(&self, event: Event) {
        let mut ring = self
            .events
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ring.len() == EVENTS_KEPT {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// Events with `seq > since`, optionally of one deployment: the newest `limit`, oldest
    /// first.
    pub fn events(&self, since: u64, deployment: Option<&str>, limit: usize) -> Vec<Event> {
        let ring = self
            .events
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<Event> = ring
            .iter()
            .rev()
            .filter(|e| e.seq > since)
            .filter(|e| deployment.is_none_or(|d| e.deployment.as_deref() == Some(d)))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// Sets the self-update's part of `/status`, now and in every later snapshot.
    pub fn set_self_update(&self, part: Option<SelfUpdateStatus>) {
        *self
            .self_update
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = part;
        let snapshot = (*self.get()).clone();
        self.publish(snapshot);
    }

    /// Queues an event from outside the engine; the engine records it (numbered, timed and
    /// durable) at its next pass. Beyond 64 waiting, the oldest is dropped.
    pub fn note(&self, note: Note) {
        let mut notes = self
            .notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if notes.len() == NOTES_KEPT {
            notes.remove(0);
        }
        notes.push(note);
    }

    /// Takes the queued notes, oldest first.
    pub fn take_notes(&self) -> Vec<Note> {
        std::mem::take(
            &mut *self
                .notes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The last published snapshot.
    pub fn get(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Serves the status API on `listener` until `shutdown` completes.
///
/// With a `token`, every request but `/healthz` must carry `Authorization: Bearer <token>`;
/// without one, every request is answered (right for loopback only: the agent refuses a
/// non-loopback address without a token).
///
/// # Errors
/// [`StatusError::Listen`] when the listener cannot be handed to the runtime.
pub async fn serve(
    listener: std::net::TcpListener,
    status: Status,
    limits: Limits,
    token: Option<BearerToken>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StatusError> {
    listener
        .set_nonblocking(true)
        .map_err(StatusError::Listen)?;
    let listener = TcpListener::from_std(listener).map_err(StatusError::Listen)?;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // Running out of file descriptors or a reset during accept: keep serving.
                Err(e) => {
                    tracing::warn!(error = %e, "status API: accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "status API: connection limit reached, closing");
            drop(stream);
            continue;
        };
        let (status, token) = (status.clone(), token.clone());
        tokio::spawn(async move {
            serve_connection(stream, status, limits, token).await;
            drop(permit);
        });
    }
}

/// Serves the status API over one connection (`serve` calls it for each one it accepts; the
/// fuzz target drives it over an in-memory stream), until the client closes it, breaks the
/// protocol, or overstays `limits`' header timeout or connection lifetime. Errors end the
/// connection and are not reported: a client gets what HTTP says and nothing more.
///
/// Needs a tokio runtime with its timer enabled.
pub async fn serve_connection<IO>(
    io: IO,
    status: Status,
    limits: Limits,
    token: Option<BearerToken>,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let service = service_fn(move |req| {
        let answer = respond(&req, &status, token.as_ref());
        async move { Ok::<_, Infallible>(answer) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .serve_connection(TokioIo::new(io), service);
    // The lifetime bound also ends slow bodies and idle keep-alives.
    let _ = tokio::time::timeout(limits.connection_lifetime, conn).await;
}

/// Whether a `Host` header names this machine without a DNS name that someone else
/// controls: `localhost`, or an IP literal, with or without a port.
fn local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:9100`
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Answers one request from the snapshot; the request body is never read.
fn respond<B>(
    req: &Request<B>,
    status: &Status,
    token: Option<&BearerToken>,
) -> Response<Full<Bytes>> {
    // `/healthz` stays open (load balancers); everything else, known path or not, first
    // proves the token, so a stranger learns nothing but that the API exists.
    if let Some(token) = token
        && req.uri().path() != "/healthz"
        && !req
            .headers()
            .get(AUTHORIZATION)
            .is_some_and(|v| token.admits(v.as_bytes()))
    {
        let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"orun\""),
        );
        return r;
    }
    // Without a token the API trusts whoever reaches loopback; a web page the operator
    // visits could reach it too by pointing its own name at 127.0.0.1 (DNS rebinding), and
    // it would send that name as `Host`. Only loopback names and IP literals are answered.
    if token.is_none()
        && req
            .headers()
            .get(HOST)
            .is_some_and(|h| !h.to_str().is_ok_and(local_host))
    {
        return text(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected request: reach the status API by IP address or localhost\n",
        );
    }
    let snap: &Snapshot = &status.get();
    let method = req.method();
    let allowed: &[Method] = match req.uri().path() {
        "/healthz" | "/status" => &[Method::GET, Method::POST],
        "/readyz" | "/metrics" | "/events" | "/" | "/page.js" | "/page.css" => &[Method::GET],
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    if !allowed.contains(method) {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        let allow = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(v) = HeaderValue::from_str(&allow) {
            r.headers_mut().insert(ALLOW, v);
        }
        return r;
    }
    match req.uri().path() {
        "/healthz" => json(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        "/status" => json(StatusCode::OK, snap),
        "/readyz" => {
            let code = if snap.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(code, &serde_json::json!({ "ready": snap.ready }))
        }
        "/" => {
            // The page: the same snapshot, rendered; `?part=main` is what its script swaps in.
            let events = status.events(0, None, PAGE_EVENTS);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let fragment = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .any(|p| p == "part=main");
            let body = if fragment {
                render_main(snap, &events, now)
            } else {
                render_page(snap, &events, now)
            };
            page_asset(body, "text/html; charset=utf-8")
        }
        "/page.js" => page_asset(page::PAGE_JS.to_owned(), "text/javascript; charset=utf-8"),
        "/page.css" => page_asset(page::PAGE_CSS.to_owned(), "text/css; charset=utf-8"),
        "/events" => {
            let q = EventQuery::parse(req.uri().query().unwrap_or(""));
            let events = status.events(q.since, q.deployment.as_deref(), q.limit);
            json(StatusCode::OK, &serde_json::json!({ "events": events }))
        }
        _ => {
            let mut r = text(StatusCode::OK, &snap.metrics.render(snap));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
    }
}

/// `/events?since=SEQ&deployment=NAME&limit=N`: events after `since`, the newest `limit`
/// (default and most [`EVENTS_KEPT`]). Unknown or malformed parameters are ignored.
struct EventQuery {
    since: u64,
    deployment: Option<String>,
    limit: usize,
}

impl EventQuery {
    fn parse(query: &str) -> Self {
        let mut q = Self {
            since: 0,
            deployment: None,
            limit: EVENTS_KEPT,
        };
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "since" => q.since = v.parse().unwrap_or(0),
                "limit" => q.limit = v.parse().unwrap_or(EVENTS_KEPT).min(EVENTS_KEPT),
                // Deployment names are DNS labels: nothing to percent-decode.
                "deployment" if !v.is_empty() => q.deployment = Some(v.to_owned()),
                _ => {}
            }
        }
        q
    }
}

/// The status page's policy: nothing but its own style, its own script and the fragment the
/// script fetches; no frames, no forms, no other origin.
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A part of the status page (`/`, `/page.js`, `/page.css`), with the headers that keep it
/// inert: a strict CSP, no sniffing, no caching, no referrer, no framing.
fn page_asset(body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    h.insert(
        hyper::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        hyper::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    r
}

fn text(code: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(code: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    // Our own plain types always serialize.
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

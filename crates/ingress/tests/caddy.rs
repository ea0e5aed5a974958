//! The ingress against the real Caddy (Debian's 2.6.2) and, for ACME, the real `pebble`:
//! routing by `Host`, the 503 and 404 answers, certificates obtained through the ACME flow
//! or from Caddy's internal CA, redirects, drift repaired after a restart or a foreign load,
//! certificates kept across restarts, and route swaps under load without a failed request.
//!
//! Upstreams are tiny HTTP servers on loopback threads, each answering its own name.

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test helpers: a panic is the failure report, timings are printed for the record"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ingress::{Applied, Caddy, Certificate, IngressError, Issuer, Route, Settings, render};
use serde_json::json;
use test_support::caddy::{Caddy as RealCaddy, Pebble};
use test_support::wait::wait;

const T: Duration = Duration::from_secs(10);

/// An HTTP server on loopback that answers every request with its name, one thread per
/// connection; stopped on drop.
struct Upstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(name: &'static str) -> Self {
        // A port from `free_port`, not the kernel's pick: that could be a port promised to
        // a Caddy of a parallel test that has not bound it yet.
        let listener = TcpListener::bind(("127.0.0.1", test_support::free_port())).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || serve(&mut conn, name));
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// Answers each request on `conn` with `name` until the client closes (Caddy keeps
/// connections to upstreams alive).
fn serve(conn: &mut TcpStream, name: &str) {
    let _ = conn.set_read_timeout(Some(T));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        head.clear();
        while !head.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{name}",
            name.len()
        );
        if conn.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn settings(caddy: &RealCaddy, issuer: Issuer) -> Settings {
    Settings {
        admin: caddy.admin(),
        http_port: caddy.http_port(),
        https_port: caddy.https_port(),
        issuer,
        try_duration_ms: 2000,
    }
}

fn route(service: &str, domain: &str, ssl: bool, upstream: Option<&Upstream>) -> Route {
    Route {
        service: service.to_owned(),
        domain: domain.to_owned(),
        ssl,
        upstream: upstream.map(|u| u.addr),
    }
}

/// `GET path` to Caddy's HTTP port for the virtual host `host`: status and body.
fn get_host(caddy: &RealCaddy, host: &str, path: &str) -> (u16, String) {
    let a =
        status_http::request(caddy.http_addr(), "GET", path, &[("Host", host)], None, T).unwrap();
    (a.code, a.body)
}

/// Waits until `host` answers 200 with `body`. Caddy 2.6 answers a load once the new config
/// runs and the old servers' shutdown has *started*: for a moment after, the old server may
/// still accept a connection on its listener (`SO_REUSEPORT`) and answer with the old routes.
fn answers_soon(caddy: &RealCaddy, host: &str, body: &str) {
    wait(&format!("{host} to answer {body}"), T)
        .until_true(|| get_host(caddy, host, "/") == (200, body.to_owned()));
}

/// The status line and `Location` of a raw `GET path` for `host` (the client returns no
/// headers, and a redirect is all headers).
fn redirect_of(caddy: &RealCaddy, host: &str, path: &str) -> (String, Option<String>) {
    let mut tcp = TcpStream::connect(caddy.http_addr()).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    let mut lines = raw.lines();
    let status = lines.next().unwrap().to_owned();
    let location = lines
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Location: "))
        .map(str::to_owned);
    (status, location)
}

/// Polls until Caddy serves a certificate for `domain` whose issuer contains `issuer`.
fn certificate_from(caddy: &RealCaddy, api: &Caddy, domain: &str, issuer: &str) -> Certificate {
    wait(
        &format!("a certificate for {domain} from {issuer}"),
        Duration::from_secs(60),
    )
    .every(Duration::from_millis(100))
    .explain(|| caddy.log())
    .until(|| {
        api.certificate(caddy.https_addr(), domain)
            .ok()
            .flatten()
            .filter(|c| c.issuer.contains(issuer))
    })
}

#[test]
fn routes_by_host_with_a_503_for_no_container_and_a_404_for_unknown_hosts() {
    if !RealCaddy::available() {
        return;
    }
    let real = RealCaddy::start();
    let a = Upstream::start("alpha");
    let b = Upstream::start("bravo");
    let api = Caddy::new(real.admin(), T);
    let config = render(
        &settings(&real, Issuer::Internal),
        &[
            route("alpha", "alpha.test", false, Some(&a)),
            route("bravo", "bravo.test", false, Some(&b)),
            route("charlie", "charlie.test", false, None),
        ],
    );
    api.load(&config).unwrap();

    assert_eq!(get_host(&real, "alpha.test", "/"), (200, "alpha".into()));
    assert_eq!(
        get_host(&real, "bravo.test", "/x?y=1"),
        (200, "bravo".into())
    );
    // The port in Host does not stop the match.
    let with_port = format!("alpha.test:{}", real.http_port());
    assert_eq!(get_host(&real, &with_port, "/"), (200, "alpha".into()));
    assert_eq!(
        get_host(&real, "charlie.test", "/"),
        (503, "no healthy container for charlie".into())
    );
    assert_eq!(get_host(&real, "unknown.test", "/").0, 404);
    assert_eq!(get_host(&real, "127.0.0.1", "/").0, 404);
    // No HTTPS route, so no HTTPS listener: Caddy made no certificate for plain domains.
    assert!(matches!(
        api.certificate(real.https_addr(), "alpha.test"),
        Err(IngressError::Unreachable { .. })
    ));
    // Caddy keeps exactly what was loaded, so a re-read compares equal.
    assert_eq!(api.current().unwrap(), config);
    assert_eq!(api.ensure(&config).unwrap(), Applied::Unchanged);
}

#[test]
fn a_config_caddy_refuses_leaves_the_old_one_serving() {
    if !RealCaddy::available() {
        return;
    }
    let real = RealCaddy::start();
    let a = Upstream::start("alpha");
    let api = Caddy::new(real.admin(), T);
    let good = render(
        &settings(&real, Issuer::Internal),
        &[route("alpha", "alpha.test", false, Some(&a))],
    );
    api.load(&good).unwrap();
    let mut bad = good.clone();
    bad["apps"]["http"]["servers"]["http"]["routes"][0]["handle"][0]["handler"] = json!("nope");
    let err = api.load(&bad).unwrap_err();
    let IngressError::Refused { code, message } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*code, 400);
    assert!(
        message.contains("unknown module: http.handlers.nope"),
        "{message}"
    );
    assert_eq!(get_host(&real, "alpha.test", "/"), (200, "alpha".into()));
    assert_eq!(api.current().unwrap(), good);

    // A stopped Caddy is unreachable, not a refusal.
    drop(real);
    assert!(matches!(
        api.load(&good),
        Err(IngressError::Unreachable { .. })
    ));
}

#[test]
fn acme_certificates_from_pebble_survive_restarts_and_drift_is_repaired() {
    if !RealCaddy::available() || !Pebble::available() {
        return;
    }
    let pebble = Pebble::start();
    let mut real = RealCaddy::start();
    let a = Upstream::start("alpha");
    let b = Upstream::start("bravo");
    let api = Caddy::new(real.admin(), T);
    let issuer = Issuer::Acme {
        directory: pebble.directory(),
        email: Some("ops@example.test".to_owned()),
        trusted_roots: vec![pebble.ca_cert_path()],
    };
    let config = render(
        &settings(&real, issuer),
        &[
            route("secure", "secure.test", true, Some(&a)),
            route("plain", "plain.test", false, Some(&b)),
        ],
    );
    let started = Instant::now();
    assert_eq!(api.ensure(&config).unwrap(), Applied::Loaded);
    let cert = certificate_from(&real, &api, "secure.test", "Pebble Intermediate CA");
    eprintln!("certificate from pebble after {:?}", started.elapsed());
    assert_eq!(pebble.issued(), 1, "{}", pebble.log());
    assert!(cert.not_before <= cert.not_after);

    // Served over HTTPS with the domain as SNI and Host; plain HTTP redirects to it.
    let answer = status_http::get_https(real.https_addr(), "secure.test", "/", T).unwrap();
    assert_eq!((answer.code, answer.body.as_str()), (200, "alpha"));
    let (status, location) = redirect_of(&real, "secure.test", "/a/b?c=d");
    assert!(status.starts_with("HTTP/1.1 308"), "{status}");
    assert_eq!(
        location.as_deref(),
        Some(format!("https://secure.test:{}/a/b?c=d", real.https_port()).as_str())
    );
    // A plain domain is proxied over HTTP, and no certificate is made for it.
    assert_eq!(get_host(&real, "plain.test", "/"), (200, "bravo".into()));
    assert_eq!(
        api.certificate(real.https_addr(), "plain.test").unwrap(),
        None
    );

    assert_eq!(api.ensure(&config).unwrap(), Applied::Unchanged);

    // Someone loads another config: drift, repaired by the next ensure.
    let foreign = render(
        &settings(&real, Issuer::Internal),
        &[route("plain", "plain.test", false, Some(&a))],
    );
    let body = serde_json::to_vec(&foreign).unwrap();
    let answer = status_http::request(
        real.admin(),
        "POST",
        "/load",
        &[],
        Some(("application/json", &body)),
        T,
    )
    .unwrap();
    assert_eq!(answer.code, 200, "{}", answer.body);
    answers_soon(&real, "plain.test", "alpha");
    assert_eq!(api.ensure(&config).unwrap(), Applied::Loaded);
    answers_soon(&real, "plain.test", "bravo");
    assert_eq!(api.ensure(&config).unwrap(), Applied::Unchanged);

    // Caddy restarts with only its admin API: drift again. The certificate comes back from
    // its data folder, not from a new issuance.
    real.kill();
    assert!(matches!(
        api.ensure(&config),
        Err(IngressError::Unreachable { .. })
    ));
    real.restart();
    assert_eq!(
        api.current().unwrap(),
        json!({"admin": {"listen": real.admin().to_string()}})
    );
    let reloaded = Instant::now();
    assert_eq!(api.ensure(&config).unwrap(), Applied::Loaded);
    let again = certificate_from(&real, &api, "secure.test", "Pebble Intermediate CA");
    eprintln!(
        "certificate served again {:?} after the reload",
        reloaded.elapsed()
    );
    assert_eq!(again, cert);
    assert_eq!(pebble.issued(), 1, "{}", pebble.log());
    let answer = status_http::get_https(real.https_addr(), "secure.test", "/", T).unwrap();
    assert_eq!((answer.code, answer.body.as_str()), (200, "alpha"));
}

#[test]
fn the_internal_ca_issues_without_touching_the_trust_store() {
    if !RealCaddy::available() {
        return;
    }
    let trust_store = || {
        std::fs::read_dir("/usr/local/share/ca-certificates")
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let before = trust_store();
    let real = RealCaddy::start();
    let a = Upstream::start("alpha");
    let api = Caddy::new(real.admin(), T);
    let config = render(
        &settings(&real, Issuer::Internal),
        &[route("alpha", "alpha.lan", true, Some(&a))],
    );
    api.load(&config).unwrap();
    let cert = certificate_from(&real, &api, "alpha.lan", "Caddy Local Authority");
    assert!(cert.not_after > cert.not_before);
    let answer = status_http::get_https(real.https_addr(), "alpha.lan", "/", T).unwrap();
    assert_eq!((answer.code, answer.body.as_str()), (200, "alpha"));
    // No certificate for a name Caddy was not told about: the handshake fails.
    assert_eq!(
        api.certificate(real.https_addr(), "other.lan").unwrap(),
        None
    );
    assert_eq!(trust_store(), before);
    assert!(
        real.log().contains("trust store installation disabled"),
        "{}",
        real.log()
    );
}

/// Whether the kernel moves connections queued on a closing `SO_REUSEPORT` listener to its
/// sibling (`net.ipv4.tcp_migrate_req`, Linux 5.14+). Caddy 2.6 reloads by opening new
/// listeners with `SO_REUSEPORT` and closing the old ones; without this, the kernel resets
/// the connections still waiting in a closed listener's queue (measured here: 4 to 11 of
/// about 1000 requests over 50 reloads; none with it).
fn connections_migrate() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|v| v.trim() == "1")
}

#[test]
fn swapping_the_upstream_fifty_times_under_load_fails_no_request() {
    if !RealCaddy::available() {
        return;
    }
    if !connections_migrate() {
        assert!(
            !test_support::required(),
            "net.ipv4.tcp_migrate_req must be 1 (ORUN_REQUIRE_ALL; cargo xtask test sets it)"
        );
        eprintln!(
            "skipped: net.ipv4.tcp_migrate_req is not 1, so Caddy's reloads reset queued \
             connections (sysctl -w net.ipv4.tcp_migrate_req=1)"
        );
        return;
    }
    let real = RealCaddy::start();
    let a = Upstream::start("alpha");
    let b = Upstream::start("bravo");
    let api = Caddy::new(real.admin(), T);
    let s = settings(&real, Issuer::Internal);
    let configs = [
        render(&s, &[route("swap", "swap.test", false, Some(&a))]),
        render(&s, &[route("swap", "swap.test", false, Some(&b))]),
    ];
    api.load(&configs[0]).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let http = real.http_addr();
    let client = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::SeqCst) {
                // A new connection each time, so every request meets the listener anew.
                match status_http::request(http, "GET", "/", &[("Host", "swap.test")], None, T) {
                    Ok(a) if a.code == 200 => {
                        seen.insert(a.body);
                    }
                    Ok(a) => failures.push(format!("HTTP {}: {}", a.code, a.body)),
                    Err(e) => failures.push(e.to_string()),
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
            (failures, seen)
        })
    };
    let mut took = Vec::new();
    for i in 1..=50 {
        let before = sent.load(Ordering::SeqCst);
        let started = Instant::now();
        api.load(&configs[i % 2]).unwrap();
        took.push(started.elapsed());
        // Some requests meet each config, without sleeping for a guess.
        wait("requests to go through", T).until_true(|| sent.load(Ordering::SeqCst) >= before + 3);
    }
    stop.store(true, Ordering::SeqCst);
    let (failures, seen) = client.join().unwrap();
    took.sort();
    eprintln!(
        "{} requests over 50 swaps; load took {:?} median, {:?} max",
        sent.load(Ordering::SeqCst),
        took[took.len() / 2],
        took[took.len() - 1]
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["alpha", "bravo"]);
}

#[test]
fn a_hundred_routes_load_in_milliseconds() {
    if !RealCaddy::available() {
        return;
    }
    let real = RealCaddy::start();
    let up = Upstream::start("alpha");
    let api = Caddy::new(real.admin(), T);
    let s = settings(&real, Issuer::Internal);
    let routes: Vec<Route> = (0..100)
        .map(|i| {
            route(
                &format!("svc{i}"),
                &format!("svc{i}.test"),
                false,
                Some(&up),
            )
        })
        .collect();
    let rendering = Instant::now();
    let config = render(&s, &routes);
    let rendered = rendering.elapsed();
    let mut loads = Vec::new();
    for flip in 0..5 {
        // Alternate two configs so every load is a real reload, not Caddy's no-op.
        let config = if flip % 2 == 0 {
            config.clone()
        } else {
            render(&s, &routes[1..])
        };
        let started = Instant::now();
        api.load(&config).unwrap();
        loads.push(started.elapsed());
    }
    let ensuring = Instant::now();
    assert_eq!(api.ensure(&config).unwrap(), Applied::Unchanged);
    let ensured = ensuring.elapsed();
    loads.sort();
    eprintln!(
        "100 routes: render {rendered:?}, load {:?} median ({loads:?}), ensure when unchanged {ensured:?}",
        loads[loads.len() / 2]
    );
    assert_eq!(get_host(&real, "svc99.test", "/"), (200, "alpha".into()));
    // Generous: the point is milliseconds, not seconds, even on a shared machine.
    assert!(loads[loads.len() / 2] < Duration::from_secs(1), "{loads:?}");
}

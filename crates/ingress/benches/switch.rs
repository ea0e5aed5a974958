//! The ingress benchmark against the real Caddy: how long a route switch takes with 1, 10 and
//! 100 routes (read Caddy's config, move one route, `POST /load`: what the agent does between
//! a promotion and the old container's drain), and what the proxy adds to a request, measured
//! against asking the upstream directly. Prints `orun-bench KEY VALUE` lines for `cargo xtask bench`.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it makes a few of each, only to
//! check that it still works.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark program: its output is its report"
)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use ingress::{Caddy, Issuer, Route, Settings, render, retarget};
use test_support::caddy::Caddy as RealCaddy;

/// A tiny HTTP/1.1 upstream on loopback: answers `ok` to every request, one thread per
/// connection, as a container's server would.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = s.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                        seen.drain(..end + 4);
                        // Keep-alive as Caddy asks; a client asking to close gets its end.
                        let close = head.contains("connection: close");
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if s.write_all(answer).is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(key: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!(
        "orun-bench {key} {:.3} {:.3}",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99)
    );
}

fn main() {
    if !RealCaddy::available() {
        eprintln!("ingress bench: caddy is not installed; nothing measured");
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let (loads, requests) = if full { (50, 2_000) } else { (3, 20) };
    let real = RealCaddy::start();
    let settings = Settings {
        admin: real.admin(),
        http_port: real.http_port(),
        https_port: real.https_port(),
        issuer: Issuer::Internal,
        ..Settings::default()
    };
    let caddy = Caddy::new(real.admin(), Duration::from_secs(5));
    let (a, b) = (upstream(), upstream());

    // A switch as the agent makes it: read what Caddy serves, move one deployment's route
    // to the other upstream (`retarget`), load it; Caddy answers once the new config runs.
    for n in [1usize, 10, 100] {
        let routes: Vec<Route> = (0..n)
            .map(|i| Route {
                service: format!("s{i}"),
                domain: format!("s{i}.bench.test"),
                ssl: false,
                upstream: Some(a),
            })
            .collect();
        caddy.load(&render(&settings, &routes)).unwrap();
        let mut samples = Vec::new();
        for k in 0..loads {
            let target = if k % 2 == 0 { b } else { a };
            let started = Instant::now();
            let mut config = caddy.current().unwrap();
            assert!(retarget(&settings, &mut config, "s0.bench.test", target));
            caddy.load(&config).unwrap();
            samples.push(started.elapsed().as_secs_f64() * 1e3);
        }
        report(&format!("switch_ms_{n}"), samples);
    }

    // What the proxy adds: the same request, one connection each (as a client that does not
    // keep connections alive), straight to the upstream and through Caddy by Host header.
    let proxy = SocketAddr::from(([127, 0, 0, 1], real.http_port()));
    for (key, addr, host) in [
        ("direct_us", a, "upstream"),
        ("proxied_us", proxy, "s0.bench.test"),
    ] {
        let mut samples = Vec::new();
        for _ in 0..requests {
            let started = Instant::now();
            let answer = status_http::request(
                addr,
                "GET",
                "/",
                &[("Host", host)],
                None,
                Duration::from_secs(5),
            )
            .unwrap();
            samples.push(started.elapsed().as_secs_f64() * 1e6);
            assert_eq!(answer.code, 200, "{key}: {answer:?}");
        }
        report(key, samples);
    }
}

//! HTTP probes for readiness and liveness. `localhost:PORT/path` means the container's own
//! port, so the probe goes to the container's address on its network (or to the host's
//! loopback when it shares the host network), never through a published host port.
//! `https://` probes speak TLS without verifying the certificate, as Kubernetes' do
//! (`status_http::get_https` says why).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::time::Duration;

use docker_runtime::ContainerInfo;
use manifest_model::ProbeTarget;

/// Most characters of an answer's body kept in a probe's result.
const BODY_SHOWN: usize = 120;

/// One probe's result: passed, and what was seen (`HTTP 200`, `HTTP 404: Not Found`,
/// `cannot connect to 172.17.0.3:80: Connection refused`).
pub(crate) async fn http(
    target: &ProbeTarget,
    c: &ContainerInfo,
    timeout: Duration,
) -> (bool, String) {
    let https = target.https;
    let scheme = if https { "https://" } else { "" };
    let local = matches!(target.host.as_str(), "localhost" | "127.0.0.1" | "::1");
    let host = target.host.clone();
    let port = target.port;
    let path = target.path.clone();
    let address = c.address;
    let host_network = c.host_network;
    let work = tokio::task::spawn_blocking(move || {
        let addr = if local {
            match (address, host_network) {
                (_, true) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                (Some(ip), false) => SocketAddr::new(ip, port),
                (None, false) => {
                    return (false, "the container has no network address".to_owned());
                }
            }
        } else {
            match (host.as_str(), port)
                .to_socket_addrs()
                .map(|mut a| a.next())
            {
                Ok(Some(a)) => a,
                Ok(None) | Err(_) => return (false, format!("cannot resolve {host}")),
            }
        };
        let answer = if https {
            // SNI names the host written, or, for the container itself, none: the address
            // probed is an IP, for which no SNI is sent.
            let server_name = if local { addr.ip().to_string() } else { host };
            status_http::get_https(addr, &server_name, &path, timeout)
        } else {
            status_http::get(addr, &path, timeout)
        };
        match answer {
            Ok(a) if (200..400).contains(&a.code) => (true, format!("HTTP {}", a.code)),
            Ok(a) => {
                let body: String = a
                    .body
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(BODY_SHOWN)
                    .collect();
                if body.trim().is_empty() {
                    (false, format!("HTTP {} from {scheme}{addr}{path}", a.code))
                } else {
                    (
                        false,
                        format!("HTTP {} from {scheme}{addr}{path}: {}", a.code, body.trim()),
                    )
                }
            }
            Err(status_http::ClientError::Io { source, .. }) => (
                false,
                format!("cannot reach {scheme}{addr}{path}: {source}"),
            ),
            Err(status_http::ClientError::Malformed { .. }) => (
                false,
                format!("{scheme}{addr}{path} did not answer with HTTP"),
            ),
        }
    });
    // The blocking read has its own timeout per read; this bounds the whole probe.
    match tokio::time::timeout(timeout + Duration::from_millis(100), work).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => (false, format!("probe failed: {e}")),
        Err(_) => (
            false,
            format!("no answer within {}s", timeout.as_secs_f32()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;

    use reconcile_core::ContainerState;

    use super::*;

    /// A container at 127.0.0.1 and a plain HTTP server on a port there, answering each of
    /// `connections` requests with 200.
    fn container_with_plain_server(connections: usize) -> (ContainerInfo, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for _ in 0..connections {
                let (mut tcp, _) = listener.accept().unwrap();
                // The head of an HTTP request, or the first byte of a TLS handshake record.
                let mut seen = Vec::new();
                let mut byte = [0u8; 1];
                while !(seen.ends_with(b"\r\n\r\n") || seen.first() == Some(&0x16)) {
                    tcp.read_exact(&mut byte).unwrap();
                    seen.push(byte[0]);
                }
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let c = ContainerInfo {
            id: "c".into(),
            state: ContainerState::Running,
            health: None,
            health_output: None,
            last_exit_code: None,
            restart_count: 0,
            oom_killed: false,
            error: None,
            address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            host_network: false,
            started_at: None,
        };
        (c, port)
    }

    /// An `https://` probe speaks TLS to the container's own address: the same plain-HTTP
    /// port that passes an `http` probe fails it, and the report says it was https.
    #[tokio::test]
    async fn https_probes_speak_tls_to_the_container() {
        let (c, port) = container_with_plain_server(2);
        let timeout = Duration::from_secs(5);
        let plain = ProbeTarget::parse(&format!("localhost:{port}/health")).unwrap();
        assert_eq!(http(&plain, &c, timeout).await, (true, "HTTP 200".into()));
        let tls = ProbeTarget::parse(&format!("https://localhost:{port}/health")).unwrap();
        let (passed, seen) = http(&tls, &c, timeout).await;
        assert!(!passed);
        assert!(
            seen.starts_with(&format!("cannot reach https://127.0.0.1:{port}/health: ")),
            "{seen}"
        );
    }
}

//! HTTP probes for readiness and liveness. `localhost:PORT/path` means the container's own
//! port, so the probe goes to the container's address on its network (or to the host's
//! loopback when it shares the host network), never through a published host port.

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
    if target.https {
        return (
            false,
            "https probes are not supported yet; probe the container's plain HTTP port".to_owned(),
        );
    }
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
        match status_http::get(addr, &path, timeout) {
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
                    (false, format!("HTTP {} from {addr}{path}", a.code))
                } else {
                    (
                        false,
                        format!("HTTP {} from {addr}{path}: {}", a.code, body.trim()),
                    )
                }
            }
            Err(status_http::ClientError::Io { source, .. }) => {
                (false, format!("cannot reach {addr}{path}: {source}"))
            }
            Err(e) => (false, format!("{addr}{path}: {e}")),
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

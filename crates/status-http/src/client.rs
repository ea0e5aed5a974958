//! A minimal client for the status API, for `orun status` and tests: one `GET` over plain
//! HTTP/1.1 on loopback, bounded in time and size.
//!
//! Kept here so the wire format has one owner; it needs none of hyper's machinery for a single
//! request to a server we wrote, which always answers with `Content-Length`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest answer read.
const MAX_RESPONSE: u64 = 8 << 20;

/// Why a status request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there, or the connection broke.
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

/// `GET path` from the status API at `addr`, within `timeout` per read or write.
///
/// # Errors
/// When the agent cannot be reached or answers something that is not HTTP.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Answer, ClientError> {
    let io = |source| ClientError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .map_err(io)?;
    parse(&raw).ok_or(ClientError::Malformed { addr })
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

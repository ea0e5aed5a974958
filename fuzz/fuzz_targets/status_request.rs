//! Fuzz target: arbitrary bytes, sent as one client connection's whole input to the status
//! API's own connection handling, with a bearer token configured, are answered without a
//! panic, in bounded output, and never give the node away to a client without the token.
//!
//! The input goes through `status_http::serve_connection` (what `serve` runs for each client
//! it accepts: hyper's HTTP/1.1 parser with the agent's limits, then the router) over an
//! in-memory stream. The client sends it all and then waits, as a real client does (it does
//! not half-close, which hyper takes as the end of the connection), until the server closes:
//! the runtime's clock is paused, so the server's idle and lifetime timeouts fire as soon as
//! nothing else can happen. The snapshot and the event history carry a canary name.
//!
//! Checked, for any input up to 64 KiB: the answer is at most 64 times the input plus 64 KiB
//! (pipelined requests each get an answer; the largest, `/metrics`, is some 20 times its
//! request); the token never appears in it; and when the input does not hold the token, the
//! answer is at most 1 MiB (401s and `/healthz` only, some 12 times the shortest request), the
//! canary does not appear, and every `200` is `/healthz`'s (`{"status":"ok"}`): `/status`,
//! `/events`, `/metrics` and `/readyz` told a stranger nothing.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use status_http::{
    BearerToken, DeploymentStatus, Event, Limits, NodeStatus, Snapshot, Status, serve_connection,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TOKEN: &str = "fuzz-token-0123456789";
const CANARY: &str = "fzcanary42node";
const MAX_INPUT: usize = 64 << 10;

/// The runtime, the status and the token, made once for every input.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    status: Status,
    token: BearerToken,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Paused time: a wait on a timer ends as soon as every task is idle.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime builds");
        let mut snap = Snapshot {
            node: NodeStatus {
                name: CANARY.into(),
                git_head: Some(CANARY.into()),
                ..Default::default()
            },
            ready: true,
            ..Default::default()
        };
        snap.deployments.insert(
            CANARY.into(),
            DeploymentStatus {
                name: CANARY.into(),
                image: format!("{CANARY}:1"),
                ..Default::default()
            },
        );
        snap.metrics.restarts.insert(CANARY.into(), 1);
        let status = Status::new(snap);
        status.record(Event {
            seq: 1,
            deployment: Some(CANARY.into()),
            reason: CANARY.into(),
            ..Default::default()
        });
        let token = BearerToken::parse(TOKEN).expect("the fuzz token is a valid token");
        Fixture {
            runtime,
            status,
            token,
        }
    })
}

/// Everything the server writes back to `input` until it closes the connection.
async fn exchange(f: &Fixture, input: &[u8]) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(16 << 10);
    let serving = serve_connection(
        server,
        f.status.clone(),
        Limits::default(),
        Some(f.token.clone()),
    );
    let talking = async move {
        let (mut rx, mut tx) = tokio::io::split(client);
        // The server may stop reading early (a bad request); a failed write is its answer.
        // The write half is returned, not dropped: the connection stays open both ways.
        let send = async move {
            let _ = tx.write_all(input).await;
            tx
        };
        let receive = async move {
            let mut out = Vec::new();
            let _ = rx.read_to_end(&mut out).await;
            out
        };
        tokio::join!(send, receive).1
    };
    tokio::join!(serving, talking).1
}

fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let f = fixture();
    let out = f.runtime.block_on(exchange(f, data));
    let shown = String::from_utf8_lossy(&out[..out.len().min(600)]).into_owned();

    assert!(
        out.len() <= 64 * data.len() + (64 << 10),
        "{} bytes out for {} in: {shown}",
        out.len(),
        data.len()
    );
    assert!(
        find_all(&out, TOKEN.as_bytes()).next().is_none(),
        "the token came back: {shown}"
    );

    if find_all(data, TOKEN.as_bytes()).next().is_some() {
        return;
    }
    assert!(
        out.len() <= 1 << 20,
        "{} bytes out without the token",
        out.len()
    );
    assert!(
        find_all(&out, CANARY.as_bytes()).next().is_none(),
        "the node's status went to a client without the token: {shown}"
    );
    // Without the token, no answer carries anything of the node, so every 200 must be
    // `/healthz`'s: its head, then exactly its body.
    for at in find_all(&out, b" 200 OK\r\n") {
        let rest = &out[at..];
        let body = find_all(rest, b"\r\n\r\n")
            .next()
            .map(|end| &rest[end + 4..]);
        assert!(
            body.is_some_and(|b| b.starts_with(br#"{"status":"ok"}"#)),
            "a 200 other than /healthz without the token: {shown}"
        );
    }
});

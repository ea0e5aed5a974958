//! The status page (`GET /`) as HTML: each part present with its words, hostile text escaped
//! wherever it can appear, an empty node, ages counted to an injected time, and the page
//! served with its strict headers, its script and style, and behind the token like every path.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

mod common;

use status_http::{
    BearerToken, CertificateStatus, ContainerPhase, DeploymentState, DeploymentStatus, Event,
    EventOutcome, Limits, NodeStatus, RouteState, SelfUpdateStatus, ServiceStatus, Snapshot,
    Status, render_main, render_page,
};

/// 2026-11-22T12:00:00Z.
const NOW: i64 = 1_795_348_800;
const HOSTILE: &str = "<script>alert('x')</script>&\"";

fn node() -> Snapshot {
    let mut snap = Snapshot {
        node: NodeStatus {
            name: "web-01".into(),
            started_at: "2026-11-20T12:00:00Z".into(),
            last_sync_time: Some("2026-11-22T11:59:57Z".into()),
            git_head: Some("9f8e7d6c5b4a39281706f5e4d3c2b1a098765432".into()),
            branch: Some("main".into()),
            git_subject: Some("web: raise workers to 4".into()),
            ..NodeStatus::default()
        },
        ready: true,
        ..Snapshot::default()
    };
    let mut web = DeploymentStatus {
        name: "web".into(),
        image: "nginx:1.27".into(),
        state: DeploymentState::Current(ContainerPhase::Running),
        health: Some("healthy".into()),
        restarts: 2,
        started_at: Some("2026-11-22T09:00:00Z".into()),
        ..DeploymentStatus::default()
    };
    web.set_container(Some(
        "4f1c2a9e8b7d60531f2e3d4c5b6a798877665544332211000ffeeddccbbaa998".into(),
    ));
    snap.deployments.insert("web".into(), web);
    snap.deployments.insert(
        "worker".into(),
        DeploymentStatus {
            name: "worker".into(),
            image: "busybox:1".into(),
            state: DeploymentState::RollingOut,
            rollout: Some("waiting for health: 3s of minHealthySeconds 10".into()),
            started_at: Some("2026-11-17T12:00:00Z".into()),
            ..DeploymentStatus::default()
        },
    );
    snap.services.insert(
        "site".into(),
        ServiceStatus {
            name: "site".into(),
            deployment: "web".into(),
            domain: Some("example.test".into()),
            ssl: true,
            route: RouteState::Routed,
            upstream_address: Some("172.18.0.3:80".into()),
            certificate: Some(CertificateStatus {
                issuer: "Caddy Local Authority".into(),
                not_after: "2026-12-22T12:00:00Z".into(),
                not_after_unix: NOW + 30 * 86_400,
            }),
            ..ServiceStatus::default()
        },
    );
    snap
}

fn events() -> Vec<Event> {
    vec![
        Event {
            seq: 1,
            time: "2026-11-22T11:50:00Z".into(),
            commit: Some("9f8e7d6c5b4a".into()),
            deployment: Some("web".into()),
            step: "replace".into(),
            reason: "env changed".into(),
            outcome: EventOutcome::Started,
        },
        Event {
            seq: 2,
            time: "2026-11-22T11:55:00Z".into(),
            commit: Some("9f8e7d6c5b4a".into()),
            deployment: Some("web".into()),
            step: "promote".into(),
            reason: "healthy for 10s".into(),
            outcome: EventOutcome::Ok,
        },
    ]
}

/// The text between `<section id="ID"` and its `</section>`.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section id=\"{id}\""))
        .unwrap_or_else(|| panic!("no section {id} in\n{html}"));
    let end = html[start..].find("</section>").unwrap() + start;
    &html[start..end]
}

/// The `<tr>` whose attribute is `attr="value"`.
fn row<'a>(html: &'a str, attr: &str) -> &'a str {
    let start = html
        .find(&format!("<tr {attr}"))
        .unwrap_or_else(|| panic!("no row {attr} in\n{html}"));
    let end = html[start..].find("</tr>").unwrap() + start;
    &html[start..end]
}

fn contains_all(part: &str, words: &[&str]) {
    for w in words {
        assert!(part.contains(w), "{w:?} missing from\n{part}");
    }
}

#[test]
fn each_part_is_shown_with_its_words() {
    let html = render_page(&node(), &events(), NOW);
    assert!(html.starts_with("<!doctype html>"), "{html}");
    contains_all(
        &html,
        &[
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
            "<link rel=\"stylesheet\" href=\"/page.css\">",
            "<script src=\"/page.js\" defer></script>",
            "<noscript><meta http-equiv=\"refresh\"",
            "<main id=\"main\"",
            "<title>web-01 · orun</title>",
        ],
    );
    // Nothing from elsewhere, nothing inline to run.
    for outside in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!html.contains(outside), "{outside}: {html}");
    }
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "{html}"
    );
    contains_all(
        &html,
        &[
            "<h1 id=\"node\">web-01</h1>",
            "<span id=\"converged\" class=\"badge ok\">converged</span>",
        ],
    );
    contains_all(section(&html, "problems"), &["No problems."]);
    contains_all(
        section(&html, "git"),
        &[
            "<code>main</code>",
            "<code title=\"9f8e7d6c5b4a39281706f5e4d3c2b1a098765432\">9f8e7d6c</code>",
            "<span id=\"subject\">web: raise workers to 4</span>",
            "3s ago",
            "2d (since",
        ],
    );
    let deployments = section(&html, "deployments");
    contains_all(
        row(deployments, "data-deployment=\"web\""),
        &[
            "<strong>web</strong>",
            "class=\"badge ok\">running</span>",
            "class=\"ok\">healthy</span>",
            ">2</td>",
            "<code>nginx:1.27</code>",
            ">3h</span>",
            "<code>4f1c2a9e8b7d</code>",
        ],
    );
    contains_all(
        row(deployments, "data-deployment=\"worker\""),
        &[
            "class=\"badge info\">rolling out</span>",
            "waiting for health: 3s of minHealthySeconds 10",
            ">5d</span>",
        ],
    );
    contains_all(
        row(section(&html, "routes"), "data-service=\"site\""),
        &[
            "<code>https://example.test</code>",
            "class=\"badge ok\">routed</span>",
            "<code>172.18.0.3:80</code>",
            "Caddy Local Authority · expires in 30d",
        ],
    );
    assert!(!html.contains("id=\"self-update\""), "shown only when on");
    let timeline = section(&html, "timeline");
    // Newest first.
    let (promote, replace) = (
        timeline.find("data-seq=\"2\"").unwrap(),
        timeline.find("data-seq=\"1\"").unwrap(),
    );
    assert!(promote < replace, "{timeline}");
    contains_all(
        row(timeline, "data-seq=\"2\""),
        &[
            "<time datetime=\"2026-11-22T11:55:00Z\">2026-11-22 11:55:00 UTC</time>",
            "5m ago",
            "<strong>web</strong>",
            ">promote<",
            "class=\"badge ok\">ok</span>",
            "healthy for 10s",
            "<code>9f8e7d6c</code>",
        ],
    );
    contains_all(
        row(timeline, "data-seq=\"1\""),
        &["class=\"badge info\">started</span>", "env changed"],
    );
    // The fragment the script swaps in is the same content, without the document around it.
    let main = render_main(&node(), &events(), NOW);
    assert!(html.contains(&main));
    assert!(!main.contains("<html") && !main.contains("<main"), "{main}");
}

#[test]
fn failures_are_told_in_plain_words_with_what_to_do() {
    let mut snap = node();
    snap.ready = false;
    snap.node.sync_error = Some("fetch failed: cannot reach git.example: timed out".into());
    snap.node.stale_since = Some("2026-11-22T11:30:00Z".into());
    let web = snap.deployments.get_mut("web").unwrap();
    web.state = DeploymentState::FailedRolledBack;
    web.last_error = Some("exited with code 3: boom: missing config".into());
    snap.services.get_mut("site").unwrap().last_error = Some("caddy refused the config".into());
    snap.self_update = Some(SelfUpdateStatus {
        mode: "notify".into(),
        current: "0.4.0".into(),
        phase: "idle".into(),
        available: Some("0.5.0".into()),
        last_error: Some("the feed answered 503".into()),
        ..SelfUpdateStatus::default()
    });
    let html = render_page(&snap, &events(), NOW);
    assert!(
        html.contains("<span id=\"converged\" class=\"badge bad\">not converged</span>"),
        "{html}"
    );
    let problems = section(&html, "problems");
    contains_all(
        problems,
        &[
            "The agent cannot reach or read the Git remote. It has failed since",
            "(30m ago)",
            "Check the remote URL, the deploy key or token, and the network; the node keeps running the last good commit (<code>9f8e7d6c</code>)",
            "fetch failed: cannot reach git.example: timed out",
            "Deployment <strong>web</strong>: the new release failed, so it was rolled back and the previous container serves again.",
            "<code>orun events --deployment web</code>",
            "exited with code 3: boom: missing config",
            "The route of Service <strong>site</strong> (example.test)",
            "caddy refused the config",
            "The self-update failed; the agent keeps running version 0.4.0",
            "the feed answered 503",
        ],
    );
    assert!(!problems.contains("No problems."));
    contains_all(
        section(&html, "self-update"),
        &[
            "notify",
            "<code>0.4.0</code>",
            "0.5.0",
            "the feed answered 503",
        ],
    );
    contains_all(
        row(section(&html, "deployments"), "data-deployment=\"web\""),
        &["class=\"badge bad\">failed, rolled back</span>"],
    );

    // A refused commit, and a deployment with nothing to go back to.
    snap.node.sync_error =
        Some("revision 1a2b3c4d refused: deployments/web.yaml:3: spec.image: required".into());
    snap.node.stale_since = None;
    snap.deployments.get_mut("web").unwrap().state = DeploymentState::Failed;
    let problems = render_main(&snap, &[], NOW);
    contains_all(
        section(&problems, "problems"),
        &[
            "The newest commit was refused",
            "<code>orun validate --node web-01</code>",
            "deployments/web.yaml:3: spec.image: required",
            "failed, and there was no earlier container to go back to",
        ],
    );
}

#[test]
fn hostile_text_is_escaped_everywhere() {
    let mut snap = node();
    snap.node.name = HOSTILE.into();
    snap.node.branch = Some(HOSTILE.into());
    snap.node.git_subject = Some(HOSTILE.into());
    snap.node.git_head = Some(HOSTILE.into());
    snap.node.sync_error = Some(format!("fetch failed: {HOSTILE}"));
    snap.node.stale_since = Some(HOSTILE.into());
    let mut d = snap.deployments["web"].clone();
    d.name = HOSTILE.into();
    d.image = HOSTILE.into();
    d.health = Some(HOSTILE.into());
    d.last_error = Some(HOSTILE.into());
    d.rollout = Some(HOSTILE.into());
    d.started_at = Some(HOSTILE.into());
    d.state = DeploymentState::Other(HOSTILE.into());
    d.container_id = Some(HOSTILE.into());
    snap.deployments = BTreeMap::from([(HOSTILE.to_owned(), d)]);
    let s = snap.services.get_mut("site").unwrap();
    s.name = HOSTILE.into();
    s.domain = Some(HOSTILE.into());
    s.deployment = HOSTILE.into();
    s.upstream_address = Some(HOSTILE.into());
    s.last_error = Some(HOSTILE.into());
    s.certificate.as_mut().unwrap().issuer = HOSTILE.into();
    snap.self_update = Some(SelfUpdateStatus {
        mode: HOSTILE.into(),
        current: HOSTILE.into(),
        phase: HOSTILE.into(),
        available: Some(HOSTILE.into()),
        last_error: Some(HOSTILE.into()),
        ..SelfUpdateStatus::default()
    });
    let events = vec![Event {
        seq: 7,
        time: HOSTILE.into(),
        commit: Some(HOSTILE.into()),
        deployment: Some(HOSTILE.into()),
        step: HOSTILE.into(),
        reason: format!("probe said {HOSTILE}"),
        outcome: EventOutcome::Failed,
    }];
    let html = render_page(&snap, &events, NOW);
    // Not one raw `<script>`: the page's own script is loaded by `src`.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("alert('x')"), "quotes escaped too: {html}");
    assert!(!html.contains("&\""), "{html}");
    let escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;";
    assert!(html.matches(escaped).count() >= 20, "{html}");
    // An attribute value cannot be broken out of either.
    assert!(
        html.contains(&format!("data-deployment=\"{escaped}\"")),
        "{html}"
    );
}

#[test]
fn an_empty_node_says_so() {
    let html = render_page(&Snapshot::default(), &[], NOW);
    contains_all(
        &html,
        &[
            "<title>orun</title>",
            "<h1 id=\"node\">(this node)</h1>",
            "not converged",
            "No problems.",
            "none applied yet",
            "No deployments on this node.",
            "No Services on this node.",
            "0 images kept, 0 B on disk",
            "Nothing has happened yet.",
            "<time datetime=\"2026-11-22T12:00:00Z\">",
        ],
    );
}

fn start(
    status: Status,
    token: Option<BearerToken>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    common::start(status, Limits::default(), token)
}

/// One exchange: the head (lowercased) and the body.
fn exchange(addr: SocketAddr, method: &str, path: &str, extra: &str) -> (String, String) {
    let (_, head, body) = common::exchange(addr, method, path, extra);
    (head.to_lowercase(), body)
}

#[test]
fn the_page_is_served_with_strict_headers() {
    let status = Status::new(node());
    for e in events() {
        status.record(e);
    }
    let (addr, _stop) = start(status, None);
    let (head, body) = exchange(addr, "GET", "/", "");
    assert!(
        head.starts_with("http/1.0 200") || head.starts_with("http/1.1 200"),
        "{head}"
    );
    for h in [
        "content-type: text/html; charset=utf-8",
        "content-security-policy: default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'",
        "x-content-type-options: nosniff",
        "cache-control: no-store",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(h), "{h} missing from\n{head}");
    }
    assert!(
        body.contains("<h1 id=\"node\">web-01</h1>") && body.contains("healthy for 10s"),
        "{body}"
    );
    let (_, fragment) = exchange(addr, "GET", "/?part=main", "");
    assert!(
        fragment.starts_with("<header>") && !fragment.contains("<html"),
        "{fragment}"
    );
    let (head, js) = exchange(addr, "GET", "/page.js", "");
    assert!(
        head.contains("content-type: text/javascript") && js.contains("/?part=main"),
        "{head}"
    );
    let (head, css) = exchange(addr, "GET", "/page.css", "");
    assert!(
        head.contains("content-type: text/css") && css.contains("prefers-color-scheme:dark"),
        "{head}"
    );
    let (head, _) = exchange(addr, "POST", "/", "Content-Length: 0\r\n");
    assert!(
        head.contains(" 405 ") && head.contains("allow: get"),
        "{head}"
    );
}

#[test]
fn the_page_is_behind_the_token_like_every_path() {
    let token = BearerToken::parse("a-long-enough-token-for-the-page-test").unwrap();
    let (addr, _stop) = start(Status::new(node()), Some(token));
    for path in ["/", "/?part=main", "/page.js", "/page.css"] {
        let (head, body) = exchange(addr, "GET", path, "");
        assert!(head.contains(" 401 "), "{path}: {head}");
        assert!(!body.contains("web-01"), "{path}: {body}");
    }
    let (head, body) = exchange(
        addr,
        "GET",
        "/",
        "Authorization: Bearer a-long-enough-token-for-the-page-test\r\n",
    );
    assert!(head.contains(" 200 ") && body.contains("web-01"), "{head}");
}

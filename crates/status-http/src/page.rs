//! The status page (`GET /`): the snapshot and the newest events as one server-rendered HTML
//! page, a pure function of its inputs (the time included, for ages), so every part is tested
//! without a server or a clock.
//!
//! The page has no framework and loads nothing from elsewhere: its style is `/page.css` and
//! its one script `/page.js`, same-origin, which every few seconds fetches `/?part=main` (the
//! `<main>` element alone) and swaps it in, so the page refreshes without a reload's flash.
//! Without scripts a `<noscript>` refresh reloads the whole page. Every value is escaped: the
//! page shows only allowlisted [`Snapshot`] and [`Event`] fields, and none of them can carry
//! markup into it.

use std::fmt::Write as _;

use crate::snapshot::{
    ContainerPhase, DeploymentState, DeploymentStatus, Event, EventOutcome, RouteState, Snapshot,
    human_bytes,
};

/// Events the page's timeline shows, newest first.
pub const PAGE_EVENTS: usize = 30;

/// How often the page's script refreshes `<main>`, in milliseconds.
const REFRESH_MS: u32 = 3000;

/// The whole page for `snap` and `events` (oldest first, as [`crate::Status::events`] gives
/// them), with ages counted to `now_unix` (Unix seconds).
pub fn render_page(snap: &Snapshot, events: &[Event], now_unix: i64) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let title = if snap.node.name.is_empty() {
        "orun".to_owned()
    } else {
        format!("{} · orun", snap.node.name)
    };
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"/page.css\">\n\
         <script src=\"/page.js\" defer></script>\n\
         <noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>\n</head>\n<body>\n\
         <p id=\"offline\" class=\"banner bad\" hidden>The agent does not answer: this page \
         shows what it said last. Is <code>orun-agent</code> running?</p>\n\
         <main id=\"main\" data-refresh-ms=\"{REFRESH_MS}\">\n",
        esc(&title)
    );
    out.push_str(&render_main(snap, events, now_unix));
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The content of the page's `<main>` element alone (`/?part=main`): what the script swaps in.
pub fn render_main(snap: &Snapshot, events: &[Event], now_unix: i64) -> String {
    let mut out = String::with_capacity(16 * 1024);
    header(&mut out, snap);
    problems(&mut out, snap, now_unix);
    git(&mut out, snap, now_unix);
    deployments(&mut out, snap, now_unix);
    timeline(&mut out, events, now_unix);
    routes(&mut out, snap, now_unix);
    self_update(&mut out, snap, now_unix);
    images(&mut out, snap);
    let _ = writeln!(
        out,
        "<footer><p>Shown at {}. Read-only; refreshes every {} s.</p></footer>",
        time_tag_unix(now_unix),
        REFRESH_MS / 1000
    );
    out
}

/// The page's style: light and dark by the reader's preference; tables turn into stacked
/// cards on a narrow screen, so nothing scrolls sideways on a phone.
pub(crate) const PAGE_CSS: &str = r#":root{--bg:#fbfbfa;--fg:#1d1f21;--muted:#5f6368;--line:#dadce0;--card:#fff;
--ok:#137333;--ok-bg:#e6f4ea;--warn:#8a5300;--warn-bg:#fef3d6;--bad:#b3261e;--bad-bg:#fce8e6;
--info:#174ea6;--info-bg:#e8f0fe}
@media (prefers-color-scheme:dark){:root{--bg:#15171a;--fg:#e8eaed;--muted:#9aa0a6;--line:#3c4043;
--card:#1e2125;--ok:#81c995;--ok-bg:#1e3a29;--warn:#fdd663;--warn-bg:#3d3214;--bad:#f28b82;
--bad-bg:#47201d;--info:#8ab4f8;--info-bg:#1c2b41}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1200px;margin:0 auto;padding:12px 16px 32px}
header{display:flex;flex-wrap:wrap;align-items:center;gap:8px 16px;margin:8px 0 4px}
h1{font-size:1.5em;margin:0;overflow-wrap:anywhere}
h2{font-size:1.1em;margin:24px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
section{margin:0}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
.muted{color:var(--muted)}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;font-weight:600;font-size:.9em;white-space:nowrap}
.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}.info{color:var(--info)}
.badge.ok{background:var(--ok-bg)}.badge.warn{background:var(--warn-bg)}.badge.bad{background:var(--bad-bg)}.badge.info{background:var(--info-bg)}
.banner{margin:0;padding:8px 16px;background:var(--bad-bg);font-weight:600}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:6px}
th,td{text-align:left;vertical-align:top;padding:6px 10px;border-bottom:1px solid var(--line);overflow-wrap:break-word}
td.nowrap{white-space:nowrap}
th{font-size:.85em;color:var(--muted);font-weight:600}
tr:last-child td{border-bottom:0}
td.reason{white-space:pre-wrap;overflow-wrap:anywhere;width:45%}
ul.problems{list-style:none;padding:0;margin:0}
ul.problems li{background:var(--bad-bg);border-left:4px solid var(--bad);padding:8px 12px;margin:0 0 8px;border-radius:4px;overflow-wrap:anywhere}
ul.problems li.warn{background:var(--warn-bg);border-left-color:var(--warn)}
ul.problems .detail{display:block;margin-top:4px;white-space:pre-wrap;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em}
footer{margin-top:24px;font-size:.85em;color:var(--muted)}
@media (max-width:700px){main{padding:8px 10px 24px}
table,thead,tbody,tr,th,td{display:block;border:0}
table{background:none}
thead{display:none}
tr{background:var(--card);border:1px solid var(--line);border-radius:6px;margin:0 0 8px;padding:4px 0}
td,td.nowrap,td.reason{position:relative;padding:3px 10px 3px 8.5em;border:0;width:auto;min-height:1.8em;white-space:normal;overflow-wrap:anywhere}
td.reason{white-space:pre-wrap}
td::before{content:attr(data-label);position:absolute;left:10px;top:5px;width:7.5em;color:var(--muted);font-size:.85em}
dl{grid-template-columns:1fr}dt{margin-top:6px}}
"#;

/// The page's script: refreshes `<main>` in place from `/?part=main`, and says so plainly when
/// the agent stops answering. Same-origin only; it sends nothing but that request.
pub(crate) const PAGE_JS: &str = r#"// orun status page: swaps in a fresh <main> every few seconds (no reload, no flash).
(function () {
  "use strict";
  var main = document.getElementById("main");
  var offline = document.getElementById("offline");
  if (!main || !window.fetch) { return; }
  var every = parseInt(main.getAttribute("data-refresh-ms"), 10) || 3000;
  var busy = false;
  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch("/?part=main", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        main.innerHTML = html;
        offline.hidden = true;
        document.documentElement.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { offline.hidden = false; })
      .then(function () { busy = false; });
  }
  setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
})();
"#;

fn header(out: &mut String, snap: &Snapshot) {
    let name = if snap.node.name.is_empty() {
        "(this node)"
    } else {
        snap.node.name.as_str()
    };
    let (class, word) = if snap.ready {
        ("ok", "converged")
    } else {
        ("bad", "not converged")
    };
    let _ = writeln!(
        out,
        "<header><h1 id=\"node\">{}</h1><span id=\"converged\" class=\"badge {class}\">{word}</span></header>",
        esc(name)
    );
}

/// What went wrong, in plain words, each with what to do.
fn problems(out: &mut String, snap: &Snapshot, now: i64) {
    let mut items: Vec<(&str, String)> = Vec::new();
    let node = &snap.node;
    let running = node.git_head.as_deref().map_or_else(
        || "none yet: no commit has been applied".to_owned(),
        |h| format!("<code>{}</code>", esc(short(h))),
    );
    let stale = node.stale_since.as_deref().map(|t| {
        format!(
            " It has failed since {} ({} ago).",
            time_tag(t),
            age(t, now).unwrap_or_else(|| "a while".to_owned())
        )
    });
    if let Some(e) = &node.sync_error {
        let mut words = String::new();
        if e.contains("fetch failed") {
            let _ = write!(
                words,
                "The agent cannot reach or read the Git remote.{} Check the remote URL, the deploy key or token, and the network; the node keeps running the last good commit ({running}). ",
                stale.as_deref().unwrap_or("")
            );
        }
        if e.contains(" refused:") {
            let _ = write!(
                words,
                "The newest commit was refused: the manifests are not valid for this node, or a secret does not decrypt, or the host policy forbids something. Fix it in the repository and push; the node keeps running the last good commit ({running}). Run <code>orun validate --node {}</code> on a checkout to see every problem. ",
                esc(&node.name)
            );
        }
        if e.contains("docker:") {
            words.push_str(
                "The agent cannot talk to Docker. Check that the Docker daemon runs and that the agent may use its socket; containers keep running as they are. ",
            );
        }
        if words.is_empty() {
            let _ = write!(
                words,
                "The agent cannot follow its branch. Check the node's manifest on the default branch and the agent's log (<code>journalctl -u orun-agent</code>); the node keeps running the last good commit ({running}). "
            );
        }
        let _ = write!(words, "<span class=\"detail\">{}</span>", esc(e));
        items.push(("bad", words));
    } else if let Some(s) = &stale {
        items.push((
            "warn",
            format!("The Git remote was unreachable.{s} The node keeps running commit {running}."),
        ));
    }
    for d in snap.deployments.values() {
        if let Some(words) = deployment_problem(d) {
            items.push(("bad", words));
        }
    }
    for s in snap.services.values() {
        if let Some(e) = &s.last_error {
            let domain = s.domain.as_deref().map(esc).unwrap_or_default();
            items.push((
                "bad",
                format!(
                    "The route of Service <strong>{}</strong> ({domain}) has a problem. The ingress keeps serving what it served before; check that Caddy runs and, for HTTPS, that the domain points at this host. <span class=\"detail\">{}</span>",
                    esc(&s.name),
                    esc(e)
                ),
            ));
        }
    }
    if let Some(u) = &snap.self_update
        && let Some(e) = &u.last_error
    {
        items.push((
            "warn",
            format!(
                "The self-update failed; the agent keeps running version {} and tries again at the next check. Check the release feed's URL, its signing key and the network. <span class=\"detail\">{}</span>",
                esc(&u.current),
                esc(e)
            ),
        ));
    }
    out.push_str("<section id=\"problems\"><h2>Problems</h2>\n");
    if items.is_empty() {
        out.push_str("<p class=\"ok\">No problems.</p>\n");
    } else {
        out.push_str("<ul class=\"problems\">\n");
        for (class, words) in items {
            let _ = writeln!(out, "<li class=\"{class}\">{words}</li>");
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

/// A deployment's failure in words, with what to do; `None` when it has none.
fn deployment_problem(d: &DeploymentStatus) -> Option<String> {
    let name = esc(&d.name);
    let see =
        format!("See <code>orun events --deployment {name}</code> and <code>orun status</code>.");
    let detail = d
        .last_error
        .as_deref()
        .map(|e| format!(" <span class=\"detail\">{}</span>", esc(e)))
        .unwrap_or_default();
    let words = match &d.state {
        DeploymentState::FailedRolledBack => format!(
            "Deployment <strong>{name}</strong>: the new release failed, so it was rolled back and the previous container serves again. Fix the release and push a new commit. {see}"
        ),
        DeploymentState::Failed => format!(
            "Deployment <strong>{name}</strong> failed, and there was no earlier container to go back to: it does not serve. Fix it and push a new commit. {see}"
        ),
        DeploymentState::Current(ContainerPhase::Exited(code)) => format!(
            "Deployment <strong>{name}</strong> exited with code {code} and is not restarted. Look at its log (<code>docker logs {}</code>). {see}",
            esc(d.container_id.as_deref().unwrap_or(&d.name))
        ),
        DeploymentState::Current(ContainerPhase::Dead) => {
            format!("Deployment <strong>{name}</strong>'s container is dead. {see}")
        }
        _ if d.health.as_deref() == Some("unhealthy") => format!(
            "Deployment <strong>{name}</strong> is unhealthy: its health check fails, and orun restarts it. {see}"
        ),
        _ if d.last_error.is_some() => format!("Deployment <strong>{name}</strong>: {see}"),
        _ => return None,
    };
    Some(words + &detail)
}

fn git(out: &mut String, snap: &Snapshot, now: i64) {
    let node = &snap.node;
    out.push_str("<section id=\"git\"><h2>Git</h2>\n<dl>\n");
    let branch = node.branch.as_deref().map_or_else(
        || none("not known yet"),
        |b| format!("<code>{}</code>", esc(b)),
    );
    let _ = writeln!(out, "<dt>Branch</dt><dd id=\"branch\">{branch}</dd>");
    let commit = match &node.git_head {
        Some(h) => format!(
            "<code title=\"{}\">{}</code> {}",
            esc(h),
            esc(short(h)),
            node.git_subject
                .as_deref()
                .map(|s| format!("<span id=\"subject\">{}</span>", esc(s)))
                .unwrap_or_default()
        ),
        None => none("none applied yet"),
    };
    let _ = writeln!(out, "<dt>Commit</dt><dd id=\"commit\">{commit}</dd>");
    let synced = node.last_sync_time.as_deref().map_or_else(
        || none("not yet"),
        |t| format!("{} ago ({})", ago(t, now), time_tag(t)),
    );
    let _ = writeln!(out, "<dt>Last fetch</dt><dd>{synced}</dd>");
    if let Some(t) = &node.stale_since {
        let _ = writeln!(
            out,
            "<dt>Remote failing since</dt><dd class=\"bad\">{} ({} ago)</dd>",
            time_tag(t),
            ago(t, now)
        );
    }
    if !node.started_at.is_empty() {
        let _ = writeln!(
            out,
            "<dt>Agent up</dt><dd>{} (since {})</dd>",
            ago(&node.started_at, now),
            time_tag(&node.started_at)
        );
    }
    out.push_str("</dl>\n</section>\n");
}

fn deployments(out: &mut String, snap: &Snapshot, now: i64) {
    out.push_str("<section id=\"deployments\"><h2>Deployments</h2>\n");
    if snap.deployments.is_empty() {
        out.push_str("<p class=\"muted\">No deployments on this node.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Deployment</th><th>State</th><th>Health</th><th>Restarts</th><th>Image</th><th>Age</th><th>Container</th></tr></thead><tbody>\n",
    );
    for d in snap.deployments.values() {
        let state = d.state.to_string();
        let rollout = d
            .rollout
            .as_deref()
            .map(|r| format!("<br><span class=\"muted\">{}</span>", esc(r)))
            .unwrap_or_default();
        let health = d.health.as_deref().map_or_else(
            || none("—"),
            |h| format!("<span class=\"{}\">{}</span>", health_class(h), esc(h)),
        );
        let restarts_class = if d.restarts > 0 { "warn" } else { "" };
        let started = d.started_at.as_deref().map_or_else(
            || none("—"),
            |t| format!("<span title=\"{}\">{}</span>", esc(t), ago(t, now)),
        );
        let container = d
            .container_id
            .as_deref()
            .map_or_else(|| none("—"), |c| format!("<code>{}</code>", esc(c)));
        let _ = writeln!(
            out,
            "<tr data-deployment=\"{name}\"><td data-label=\"Deployment\"><strong>{name}</strong></td>\
             <td data-label=\"State\" class=\"state\"><span class=\"badge {}\">{}</span>{rollout}</td>\
             <td data-label=\"Health\" class=\"health\">{health}</td>\
             <td data-label=\"Restarts\" class=\"restarts {restarts_class}\">{}</td>\
             <td data-label=\"Image\" class=\"image\"><code>{}</code></td>\
             <td data-label=\"Age\" class=\"age\">{started}</td>\
             <td data-label=\"Container\" class=\"container\">{container}</td></tr>",
            state_class(&d.state),
            esc(&state),
            d.restarts,
            esc(&d.image),
            name = esc(&d.name),
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn routes(out: &mut String, snap: &Snapshot, now: i64) {
    out.push_str("<section id=\"routes\"><h2>Routes and certificates</h2>\n");
    if snap.services.is_empty() {
        out.push_str("<p class=\"muted\">No Services on this node.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Service</th><th>Domain</th><th>Deployment</th><th>Route</th><th>Upstream</th><th>Certificate</th></tr></thead><tbody>\n",
    );
    for s in snap.services.values() {
        let domain = s.domain.as_deref().map_or_else(
            || none("—"),
            |d| {
                let scheme = if s.ssl { "https" } else { "http" };
                format!("<code>{scheme}://{}</code>", esc(d))
            },
        );
        let route_class = match s.route {
            RouteState::Routed => "ok",
            RouteState::NotRouted => "",
            RouteState::Pending | RouteState::Other => "warn",
            RouteState::NoContainer => "bad",
        };
        let upstream = match (&s.upstream, &s.upstream_address) {
            (_, Some(a)) => format!("<code>{}</code>", esc(a)),
            (Some(u), None) => format!("<code>{}</code>", esc(u)),
            (None, None) => none("—"),
        };
        let cert = match &s.certificate {
            Some(c) => {
                let left = if c.not_after_unix > 0 {
                    let secs = c.not_after_unix - now;
                    if secs > 0 {
                        format!("expires in {}", span(secs))
                    } else {
                        "<span class=\"bad\">expired</span>".to_owned()
                    }
                } else {
                    format!("expires {}", time_tag(&c.not_after))
                };
                format!("{} · {left}", esc(&c.issuer))
            }
            None if s.ssl => none("not served yet"),
            None => none("plain HTTP"),
        };
        let _ = writeln!(
            out,
            "<tr data-service=\"{name}\"><td data-label=\"Service\"><strong>{name}</strong></td>\
             <td data-label=\"Domain\">{domain}</td><td data-label=\"Deployment\">{}</td>\
             <td data-label=\"Route\"><span class=\"badge {route_class}\">{}</span></td>\
             <td data-label=\"Upstream\">{upstream}</td><td data-label=\"Certificate\">{cert}</td></tr>",
            esc(&s.deployment),
            s.route,
            name = esc(&s.name),
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn self_update(out: &mut String, snap: &Snapshot, now: i64) {
    let Some(u) = &snap.self_update else { return };
    out.push_str("<section id=\"self-update\"><h2>Self-update</h2>\n<dl>\n");
    let _ = writeln!(
        out,
        "<dt>Mode</dt><dd>{}</dd><dt>Running</dt><dd><code>{}</code></dd><dt>Doing</dt><dd>{}</dd>",
        esc(&u.mode),
        esc(&u.current),
        esc(&u.phase)
    );
    let available = u.available.as_deref().map_or_else(
        || none("nothing newer"),
        |v| format!("<code class=\"info\">{}</code>", esc(v)),
    );
    let _ = writeln!(out, "<dt>Available</dt><dd>{available}</dd>");
    if let Some(t) = u.last_check_unix.and_then(|t| i64::try_from(t).ok()) {
        let _ = writeln!(
            out,
            "<dt>Last check</dt><dd>{} ago</dd>",
            span((now - t).max(0))
        );
    }
    if let Some(e) = &u.last_error {
        let _ = writeln!(out, "<dt>Last error</dt><dd class=\"bad\">{}</dd>", esc(e));
    }
    out.push_str("</dl>\n</section>\n");
}

fn images(out: &mut String, snap: &Snapshot) {
    let i = &snap.images;
    let _ = write!(
        out,
        "<section id=\"images\"><h2>Images</h2>\n<p>{} image{} kept, {} on disk; {} removed by retention.</p>\n",
        i.count,
        if i.count == 1 { "" } else { "s" },
        human_bytes(i.disk_bytes),
        i.removed
    );
    if !i.in_progress.is_empty() {
        out.push_str("<ul>\n");
        for (dep, p) in &i.in_progress {
            let _ = writeln!(
                out,
                "<li><strong>{}</strong>: {}</li>",
                esc(dep),
                esc(&p.to_string())
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

/// The rollout timeline: the newest events first.
fn timeline(out: &mut String, events: &[Event], now: i64) {
    out.push_str("<section id=\"timeline\"><h2>Timeline</h2>\n");
    if events.is_empty() {
        out.push_str("<p class=\"muted\">Nothing has happened yet.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>When</th><th>Deployment</th><th>Step</th><th>Outcome</th><th>Why</th><th>Commit</th></tr></thead><tbody>\n",
    );
    for e in events.iter().rev().take(PAGE_EVENTS) {
        let deployment = e
            .deployment
            .as_deref()
            .map_or_else(|| none("node"), |d| format!("<strong>{}</strong>", esc(d)));
        let commit = e
            .commit
            .as_deref()
            .map_or_else(|| none("—"), |c| format!("<code>{}</code>", esc(short(c))));
        let _ = writeln!(
            out,
            "<tr data-seq=\"{}\"><td data-label=\"When\">{} <span class=\"muted\">{} ago</span></td>\
             <td data-label=\"Deployment\">{deployment}</td><td data-label=\"Step\" class=\"nowrap\">{}</td>\
             <td data-label=\"Outcome\" class=\"nowrap\"><span class=\"badge {}\">{}</span></td>\
             <td data-label=\"Why\" class=\"reason\">{}</td><td data-label=\"Commit\" class=\"nowrap\">{commit}</td></tr>",
            e.seq,
            time_tag(&e.time),
            ago(&e.time, now),
            esc(&e.step),
            outcome_class(e.outcome),
            e.outcome,
            esc(&e.reason),
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn state_class(s: &DeploymentState) -> &'static str {
    match s {
        DeploymentState::Current(ContainerPhase::Running) => "ok",
        DeploymentState::Current(ContainerPhase::Exited(_) | ContainerPhase::Dead)
        | DeploymentState::Failed
        | DeploymentState::FailedRolledBack => "bad",
        DeploymentState::RollingOut => "info",
        _ => "warn",
    }
}

fn health_class(h: &str) -> &'static str {
    match h {
        "healthy" => "ok",
        "unhealthy" => "bad",
        _ => "warn",
    }
}

fn outcome_class(o: EventOutcome) -> &'static str {
    match o {
        EventOutcome::Ok => "ok",
        EventOutcome::Started => "info",
        EventOutcome::Failed | EventOutcome::RolledBack => "bad",
        EventOutcome::Cancelled | EventOutcome::Superseded | EventOutcome::Other => "warn",
    }
}

/// A greyed placeholder.
fn none(words: &str) -> String {
    format!("<span class=\"muted\">{}</span>", esc(words))
}

/// A commit's short form: its first 8 characters, as `orun status` shows it.
fn short(commit: &str) -> &str {
    commit.get(..8).unwrap_or(commit)
}

/// `<time>` for an RFC 3339 time, shown as `YYYY-MM-DD HH:MM:SS` (UTC).
fn time_tag(t: &str) -> String {
    let shown = t.get(..19).unwrap_or(t).replacen('T', " ", 1);
    format!("<time datetime=\"{}\">{} UTC</time>", esc(t), esc(&shown))
}

fn time_tag_unix(t: i64) -> String {
    time_tag(&rfc3339_of(t))
}

/// How long ago `t` was, in words (`3m`), or `?` when it does not parse.
fn ago(t: &str, now: i64) -> String {
    age(t, now).unwrap_or_else(|| "?".to_owned())
}

fn age(t: &str, now: i64) -> Option<String> {
    Some(span((now - parse_rfc3339(t)?).max(0)))
}

/// A duration in the largest whole unit: `42s`, `3m`, `2h`, `5d` (the page's ages, and
/// `orun fleet`'s).
pub fn span(secs: i64) -> String {
    match secs {
        ..60 => format!("{}s", secs.max(0)),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Unix seconds of an RFC 3339 time in UTC, `YYYY-MM-DDTHH:MM:SS` then an optional fraction
/// and `Z` or `+00:00` (as the agent writes times); `None` for anything else.
pub fn parse_rfc3339(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = t.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    if !matches!(rest, "Z" | "z" | "+00:00") {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The RFC 3339 form (UTC, seconds) of Unix seconds: the inverse of [`days_from_civil`].
fn rfc3339_of(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `text` safe inside HTML text and double- or single-quoted attributes.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_print_back() {
        for (text, unix) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T00:00:00Z", 951_782_400),
            ("2026-11-22T12:34:56Z", 1_795_350_896),
            ("2099-12-31T23:59:59Z", 4_102_444_799),
        ] {
            assert_eq!(parse_rfc3339(text), Some(unix), "{text}");
            assert_eq!(rfc3339_of(unix), text);
        }
        assert_eq!(
            parse_rfc3339("2026-11-22T12:34:56.123456789Z"),
            Some(1_795_350_896)
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T12:34:56+00:00"),
            Some(1_795_350_896)
        );
        for bad in [
            "",
            "t",
            "2026-11-22T12:34:56",
            "2026-11-22T12:34:56+01:00",
            "2026-13-01T00:00:00Z",
            "2026-11-22T1x:34:56Z",
            "２026-11-22T12:34:56Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn spans_use_the_largest_whole_unit() {
        let shown: Vec<String> = [-5, 0, 59, 60, 3599, 3600, 86_399, 86_400, 10 * 86_400]
            .iter()
            .map(|s| span(*s))
            .collect();
        assert_eq!(
            shown,
            ["0s", "0s", "59s", "1m", "59m", "1h", "23h", "1d", "10d"]
        );
    }
}

//! `/status` as text: the tables `orun status` prints, from the typed snapshot it reads back.

use std::fmt::Write as _;

use crate::Snapshot;

fn or_dash(v: Option<&str>) -> String {
    v.unwrap_or("-").to_owned()
}

/// `/status` as `orun status` prints it: the node, a table of deployments, a table of
/// Services when there are any, then each error and rollout in progress on a line of its own.
/// `ready` is `/readyz`'s verdict, which the snapshot does not carry.
pub fn render_text(snap: &Snapshot, ready: bool) -> String {
    let node = &snap.node;
    let mut out = String::new();
    let head: String = or_dash(node.git_head.as_deref()).chars().take(12).collect();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "node {}  commit {}  {}",
        node.name,
        head,
        if ready { "ready" } else { "not ready" }
    );
    let _ = writeln!(
        out,
        "started {}  last sync {}",
        node.started_at,
        or_dash(node.last_sync_time.as_deref())
    );
    if let Some(s) = &node.stale_since {
        let _ = writeln!(out, "remote unreachable since {s}");
    }
    if let Some(e) = &node.sync_error {
        let _ = writeln!(out, "sync error: {e}");
    }
    if let Some(u) = &snap.self_update {
        let _ = write!(
            out,
            "self-update ({}): running {}, {}",
            u.mode, u.current, u.phase
        );
        if let Some(v) = &u.available {
            let _ = write!(out, ", {v} available");
        }
        out.push('\n');
        if let Some(e) = &u.last_error {
            let _ = writeln!(out, "self-update error: {e}");
        }
    }
    let mut rows = vec![[
        "DEPLOYMENT".to_owned(),
        "STATE".to_owned(),
        "HEALTH".to_owned(),
        "RESTARTS".to_owned(),
        "IMAGE".to_owned(),
        "CONTAINER".to_owned(),
    ]];
    let mut errors = Vec::new();
    for (name, d) in &snap.deployments {
        rows.push([
            name.clone(),
            d.state.to_string(),
            or_dash(d.health.as_deref()),
            d.restarts.to_string(),
            d.image.clone(),
            // Short already; cut anyway for agents older than `container_id_full`, whose
            // `container_id` was the full id.
            or_dash(d.container_id.as_deref())
                .chars()
                .take(12)
                .collect(),
        ]);
        if let Some(r) = &d.rollout {
            errors.push(format!("{name}: rolling out: {r}"));
        }
        if let Some(e) = &d.last_error {
            errors.push(format!("{name}: {e}"));
        }
    }
    out.push('\n');
    table(&mut out, &rows);
    if rows.len() == 1 {
        let _ = writeln!(out, "(no deployments on this node)");
    }
    let mut routes = vec![
        [
            "SERVICE",
            "DOMAIN",
            "ROUTE",
            "UPSTREAM",
            "TLS",
            "CERTIFICATE",
        ]
        .map(str::to_owned),
    ];
    for (name, s) in &snap.services {
        let cert = s
            .certificate
            .as_ref()
            .map(|c| format!("{} until {}", c.issuer, c.not_after));
        routes.push([
            name.clone(),
            or_dash(s.domain.as_deref()),
            s.route.to_string(),
            or_dash(s.upstream.as_deref()),
            if s.ssl { "https" } else { "http" }.to_owned(),
            or_dash(cert.as_deref()),
        ]);
        if let Some(e) = &s.last_error {
            errors.push(format!("service {name}: {e}"));
        }
    }
    if routes.len() > 1 {
        out.push('\n');
        table(&mut out, &routes);
    }
    let images = &snap.images;
    if images.count > 0 || !images.in_progress.is_empty() {
        let _ = writeln!(
            out,
            "\nimages: {} kept by orun, {}{}",
            images.count,
            crate::human_bytes(images.disk_bytes),
            if images.removed > 0 {
                format!(", {} removed", images.removed)
            } else {
                String::new()
            }
        );
    }
    // A deployment's first pull or build is shown before it has a row.
    for (name, p) in &images.in_progress {
        let _ = writeln!(out, "> {name}: {p}");
    }
    for e in errors {
        let _ = writeln!(out, "! {e}");
    }
    out
}

/// Rows as columns padded to their widest cell.
fn table(out: &mut String, rows: &[[String; 6]]) {
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
}

/// One line per event: time, deployment, step, outcome, commit, reason.
pub fn render_events(events: &[crate::Event]) -> String {
    let mut out = String::new();
    for e in events {
        let commit: String = e.commit.as_deref().unwrap_or("-").chars().take(8).collect();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{}  {:<16} {:<9} {:<12} {:<8} {}",
            e.time,
            e.deployment.as_deref().unwrap_or("-"),
            e.step,
            e.outcome.to_string(),
            commit,
            e.reason
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn renders_a_table_with_errors_below() {
        let doc: Snapshot = serde_json::from_str(
            r#"{"node":{"name":"web-01","started_at":"2026-11-22T10:00:00Z","last_sync_time":null,
                "git_head":"fbf4cd18513e66989ab9e74b3c0f9b71dfce52d2","sync_error":"fetch failed: x",
                "stale_since":"2026-11-22T10:01:00Z"},
               "deployments":{"api":{"name":"api","image":"reg/api:2","container_id":null,
                 "state":"failed","health":null,"spec_hash":"ab","last_error":"cannot pull reg/api:2: denied","restarts":0},
                 "web":{"name":"web","image":"nginx:1","container_id":"0123456789ab",
                 "container_id_full":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                 "state":"rolling out","health":"healthy","spec_hash":"cd","last_error":null,"restarts":3,
                 "rollout":"healthy for 2s of minHealthySeconds 10"}},
               "services":{"www":{"name":"www","deployment":"web","domain":"www.example.com",
                 "ssl":true,"route":"routed","upstream":"web","upstream_address":"172.18.0.2:80",
                 "certificate":{"issuer":"R11","not_after":"2027-03-01T00:00:00Z"}},
                 "old":{"name":"old","deployment":"api","domain":"old.example.com","route":"no-container",
                 "last_error":"no promoted, running container of api to route to"}},
               "images":{"count":3,"disk_bytes":45600000,"removed":2,"in_progress":{
                 "api":{"kind":"pull","image":"reg/api:2","layers":[2,5],"bytes":[1200000,3400000]},
                 "new":{"kind":"build","image":"orun-build/new:0123","step":[2,4],"line":"Step 2/4 : RUN make"}}}}"#,
        )
        .unwrap();
        expect_test::expect![[r#"
            node web-01  commit fbf4cd18513e  not ready
            started 2026-11-22T10:00:00Z  last sync -
            remote unreachable since 2026-11-22T10:01:00Z
            sync error: fetch failed: x

            DEPLOYMENT  STATE        HEALTH   RESTARTS  IMAGE      CONTAINER
            api         failed       -        0         reg/api:2  -
            web         rolling out  healthy  3         nginx:1    0123456789ab

            SERVICE  DOMAIN           ROUTE         UPSTREAM  TLS    CERTIFICATE
            old      old.example.com  no-container  -         http   -
            www      www.example.com  routed        web       https  R11 until 2027-03-01T00:00:00Z

            images: 3 kept by orun, 45.6 MB, 2 removed
            > api: pull reg/api:2: 2/5 layers, 1.2 MB of 3.4 MB
            > new: build orun-build/new:0123: step 2/4
            ! api: cannot pull reg/api:2: denied
            ! web: rolling out: healthy for 2s of minHealthySeconds 10
            ! service old: no promoted, running container of api to route to
        "#]]
        .assert_eq(&render_text(&doc, false));
    }

    #[test]
    fn renders_one_line_per_event() {
        let events: Vec<crate::Event> = serde_json::from_str(
            r#"[{"seq":1,"time":"2026-11-22T10:00:00Z","commit":"fbf4cd18513e","deployment":"web",
                 "step":"replace","reason":"image changed","outcome":"started"},
                {"seq":2,"time":"2026-11-22T10:00:09Z","commit":"fbf4cd18513e","deployment":"web",
                 "step":"rollback","reason":"the new container exited with code 3","outcome":"rolled-back"}]"#,
        )
        .unwrap_or_default();
        expect_test::expect![[r#"
            2026-11-22T10:00:00Z  web              replace   started      fbf4cd18 image changed
            2026-11-22T10:00:09Z  web              rollback  rolled-back  fbf4cd18 the new container exited with code 3
        "#]]
        .assert_eq(&render_events(&events));
    }
}

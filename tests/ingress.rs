//! End to end with the real ingress: the agent configures a real Caddy (the Debian package as
//! a host service, and the same binary in a container the agent runs itself) through its
//! admin API. Services answer on their domains by Host header, over HTTP and over HTTPS with
//! a certificate from a real ACME server (`pebble`) through the actual ACME flow; a rollout
//! under a steady request loop fails no request; Caddy killed and restarted gets its routes
//! back; a removed Service's route goes; a bad domain is refused whole while the old route
//! serves; two environments share one host with prefixed containers and `$ENV` domains.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::{container, node_yaml, spawn_agent};
use test_support::caddy::{Caddy, Pebble};
use test_support::docker::{Guard, docker_ok};
use test_support::free_port;
use test_support::git::Remote;

/// Serves `GREETING` at `/` and `ok` at `/health`, on port 80, with no host port.
fn web_yaml(node: &str, name: &str, greeting: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: orun-test/busybox:1\n  nodes: [{node}]\n  command: [\"sh\", \"-c\", \"mkdir -p /www && echo \\\"$GREETING\\\" > /www/index.html && echo ok > /www/health && exec httpd -f -p 80 -h /www\"]\n  ports:\n    - containerPort: 80\n  env:\n    GREETING: {greeting}\n  health:\n    readiness:\n      http: localhost:80/health\n      periodSeconds: 1\n  rollout:\n    minHealthySeconds: 1\n    drainSeconds: 1\n"
    )
}

fn service_yaml(name: &str, deployment: &str, domain: &str, env_domain: &str, ssl: bool) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  deployment: {deployment}\n  ingress:\n    domain:\n      default: {domain}\n      environment: {env_domain}\n    ssl: {ssl}\n"
    )
}

/// `GET /` through the proxy at `port` with `Host: domain`: the status and body.
fn through(port: u16, domain: &str) -> Option<(u16, String)> {
    let a = status_http::request(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "GET",
        "/",
        &[("Host", domain)],
        None,
        Duration::from_secs(3),
    )
    .ok()?;
    Some((a.code, a.body.trim().to_owned()))
}

/// `GET /` over HTTPS through the proxy at `port`, with SNI and Host `domain`.
fn through_tls(port: u16, domain: &str) -> Option<(u16, String)> {
    let a = status_http::get_https(
        SocketAddr::from(([127, 0, 0, 1], port)),
        domain,
        "/",
        Duration::from_secs(3),
    )
    .ok()?;
    Some((a.code, a.body.trim().to_owned()))
}

fn commit(remote: &Remote, msg: &str, files: &[(String, String)]) -> String {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    remote.commit(msg, &refs)
}

/// A steady request loop through the proxy: every answer must be 200 with one of the
/// greetings a rollout moves between.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Requests `domain` at `port`, over HTTPS when `tls`.
    fn start(port: u16, domain: &str, accepted: &[&str], tls: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let domain = domain.to_owned();
        let accepted: Vec<String> = accepted.iter().map(|a| (*a).to_owned()).collect();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let answer = if tls {
                    through_tls(port, &domain)
                } else {
                    through(port, &domain)
                };
                match answer {
                    Some((200, body)) if accepted.contains(&body) => {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    other => f.lock().unwrap().push(format!("{other:?}")),
                }
                // The pace of a steady client (about 150 requests a second), not a wait.
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), failed)
    }
}

/// The agent's flags for the test's host Caddy, with certificates from pebble.
fn host_ingress(caddy: &Caddy, pebble: &Pebble) -> Vec<String> {
    [
        "--ingress",
        "host",
        "--ingress-admin",
        &caddy.admin().to_string(),
        "--ingress-http-port",
        &caddy.http_port().to_string(),
        "--ingress-https-port",
        &caddy.https_port().to_string(),
        "--acme-ca",
        &pebble.directory(),
        "--acme-ca-root",
        &pebble.ca_cert_path().display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Waits until the load loop has had some answers.
fn agent_wait_tls(load: &Load) {
    test_support::wait::wait("requests flowing", Duration::from_secs(30))
        .until_true(|| load.ok.load(Ordering::SeqCst) > 20);
}

fn service<'a>(status: &'a Value, name: &str) -> &'a Value {
    &status["services"][name]
}

#[test]
fn services_route_through_host_caddy_with_acme_certificates_and_switch_without_errors() {
    if !Caddy::available() || !Pebble::available() {
        return;
    }
    let mut caddy = Caddy::start();
    let pebble = Pebble::start();
    let id = std::process::id();
    let node = format!("ing-{id}");
    let _guard = Guard(format!("orun.node={node}"));
    let web = format!("ing{id}-web");
    let (secure, plain) = (
        format!("secure-{id}.orun.test"),
        format!("plain-{id}.orun.test"),
    );
    let remote = Remote::new();
    let files = |greeting: &str, with_plain: bool, secure_domain: &str| {
        let mut v = vec![
            (format!("nodes/{node}.yaml"), node_yaml(&node)),
            (
                format!("deployments/{web}.yaml"),
                web_yaml(&node, &web, greeting),
            ),
            (
                "services/secure.yaml".to_owned(),
                service_yaml("secure", &web, secure_domain, "s.$ENV.orun.test", true),
            ),
        ];
        if with_plain {
            v.push((
                "services/plain.yaml".to_owned(),
                service_yaml("plain", &web, &plain, "p.$ENV.orun.test", false),
            ));
        }
        v
    };
    let c1 = commit(&remote, "first", &files("v1", true, &secure));
    let data_root = tempfile::tempdir().unwrap();
    let data = data_root.path().join("data");
    let (http, https) = (caddy.http_port(), caddy.https_port());
    let mut args = host_ingress(&caddy, &pebble);
    args.extend(["--acme-email".to_owned(), "ops@orun.test".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = spawn_agent(&remote.file_url(), &node, &data, free_port(), &args);

    // 1. Plain HTTP by Host header; HTTP of the HTTPS domain redirects; HTTPS answers with
    //    a certificate pebble issued through the ACME flow.
    agent.converged(&c1);
    agent
        .wait("the plain route")
        .until(|| (through(http, &plain)? == (200, "v1".to_owned())).then_some(()));
    let redirect = status_http::request(
        SocketAddr::from(([127, 0, 0, 1], http)),
        "GET",
        "/x?y=1",
        &[("Host", &secure)],
        None,
        Duration::from_secs(3),
    )
    .unwrap();
    assert_eq!(redirect.code, 308, "{redirect:?}");
    agent
        .wait("HTTPS with pebble's certificate")
        .until(|| (through_tls(https, &secure)? == (200, "v1".to_owned())).then_some(()));
    let status = agent.wait_status("the certificate in /status", |s| {
        service(s, "secure")["certificate"]["issuer"]
            .as_str()
            .is_some_and(|i| i.contains("Pebble"))
    });
    let upstream = service(&status, "secure")["upstream"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(upstream, web);
    assert_eq!(service(&status, "secure")["route"], "routed");
    assert_eq!(service(&status, "plain")["route"], "routed");
    assert_eq!(service(&status, "plain")["domain"], plain.as_str());
    let metrics = agent.get("/metrics").unwrap().body;
    assert!(
        metrics.contains(&format!(
            "orun_route_up{{domain=\"{secure}\",service=\"secure\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "orun_certificate_expiry_timestamp_seconds{{domain=\"{secure}\"}}"
        )),
        "{metrics}"
    );
    // An unknown host is not served by any container.
    assert_eq!(through(http, "nobody.orun.test").map(|a| a.0), Some(404));

    // 2. A rollout under a steady request loop: zero failed requests.
    let (old_id, _) = container(&web).unwrap();
    let load = Load::start(http, &plain, &["v1", "v2"], false);
    agent
        .wait("requests flowing before the rollout")
        .until(|| (load.ok.load(Ordering::SeqCst) > 20).then_some(()));
    let c2 = commit(&remote, "v2", &files("v2", true, &secure));
    agent.converged(&c2);
    agent.wait("the old container gone").until_true(|| {
        container(&web).is_some_and(|(id, _)| id != old_id)
            && docker_ok(&["inspect", &old_id]).is_none()
    });
    agent
        .wait("v2 through the proxy")
        .until(|| (through(http, &plain)? == (200, "v2".to_owned())).then_some(()));
    let (ok, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok
    );
    assert!(ok > 50, "only {ok} requests made it");

    // 2b. A release that never turns ready is rolled back under the same loop: the route
    //     never moved, so no request notices.
    let load = Load::start(http, &plain, &["v2"], false);
    agent
        .wait("requests flowing before the broken release")
        .until(|| (load.ok.load(Ordering::SeqCst) > 20).then_some(()));
    let mut broken = files("v2", true, &secure);
    broken[1].1 = web_yaml(&node, &web, "v9")
        .replace("http: localhost:80/health", "http: localhost:80/missing")
        .replace(
            "    drainSeconds: 1\n",
            "    drainSeconds: 1\n    healthyDeadlineSeconds: 4\n",
        );
    let c3 = commit(&remote, "never ready", &broken);
    agent.wait_status("the broken release rolled back", |s| {
        s["deployments"][web.as_str()]["state"] == "failed, rolled back"
    });
    let (ok, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rollback: {failed:?}",
        failed.len(),
        ok
    );
    assert!(ok > 50, "only {ok} requests made it");

    // 3. Caddy killed and started again, empty: the agent loads its routes back, and the
    //    certificate is served from Caddy's storage.
    caddy.kill();
    caddy.restart();
    agent
        .wait("routes back after Caddy restarted")
        .until(|| (through(http, &plain)? == (200, "v2".to_owned())).then_some(()));
    agent
        .wait("HTTPS back after Caddy restarted")
        .until(|| (through_tls(https, &secure)? == (200, "v2".to_owned())).then_some(()));

    // 4. A bad domain is refused whole; the old routes keep serving.
    let bad = commit(
        &remote,
        "bad domain",
        &files("v3", true, "bad_domain!.orun.test"),
    );
    let s = agent.wait_status("the bad domain refused", |s| {
        s["node"]["sync_error"].as_str().is_some_and(|e| {
            e.contains(&bad[..12]) && e.contains("services/secure.yaml:") && e.contains("domain")
        })
    });
    assert_eq!(s["node"]["git_head"], c3.as_str(), "{s}");
    assert_eq!(through(http, &plain), Some((200, "v2".to_owned())));

    // A deployment publishing the ingress's own port would stop every route: refused whole.
    let clash = web_yaml(&node, &web, "v3").replace(
        "    - containerPort: 80\n",
        &format!("    - containerPort: 80\n      port: {http}\n"),
    );
    let mut clashing = files("v3", true, &secure);
    clashing[1].1 = clash;
    let bad = commit(&remote, "ingress port", &clashing);
    agent.wait_status("the ingress port refused", |s| {
        s["node"]["sync_error"].as_str().is_some_and(|e| {
            e.contains(&bad[..12])
                && e.contains(&format!("host port {http} is this node's ingress port"))
        })
    });
    assert_eq!(through(http, &plain), Some((200, "v2".to_owned())));

    // 5. A Service removed: its route goes with it.
    std::fs::remove_file(remote.work().join("services/plain.yaml")).unwrap();
    let c4 = commit(&remote, "no plain", &files("v2", false, &secure));
    agent.converged(&c4);
    agent
        .wait("the removed Service's route gone")
        .until(|| (through(http, &plain)?.0 == 404).then_some(()));
    let status = agent.status().unwrap();
    assert!(status["services"].get("plain").is_none(), "{status}");

    // 6. A fresh process (`--once`) rolls out under load: it has loaded nothing itself, and
    //    moves the route Caddy serves before the old container drains.
    drop(agent);
    let load = Load::start(https, &secure, &["v2", "v5"], true);
    agent_wait_tls(&load);
    let (old_id, _) = container(&web).unwrap();
    let c5 = commit(&remote, "v5", &files("v5", false, &secure));
    let out = std::process::Command::new(support::bin("orun-agent"))
        .args([
            "--repo",
            &remote.file_url(),
            "--node",
            &node,
            "--once",
            "--data-dir",
        ])
        .arg(&data)
        .args(host_ingress(&caddy, &pebble))
        .env("ORUN_LOG_FORMAT", "text")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains(&c5[..12]), "{log}");
    assert!(log.contains("route switched to the new container"), "{log}");
    assert!(
        docker_ok(&["inspect", &old_id]).is_none(),
        "the old container is gone"
    );
    let (ok, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}\n{log}",
        failed.len(),
        ok
    );
    assert_eq!(through_tls(https, &secure), Some((200, "v5".to_owned())));
    remove_networks(&node);
}

/// Removes the ingress networks `node`'s agent made, once no container uses them (another
/// test's may still: then they stay, as Docker refuses).
fn remove_networks(node: &str) {
    let _ = docker_ok(&[
        "container",
        "prune",
        "-f",
        "--filter",
        &format!("label=orun.node={node}"),
    ]);
    if let Some(ids) = docker_ok(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=orun.ingress={node}"),
    ]) {
        for id in ids.split_whitespace() {
            let _ = docker_ok(&["network", "rm", id]);
        }
    }
}

#[test]
fn two_environments_share_a_host_with_caddy_in_a_container() {
    if !test_support::required()
        && docker_ok(&["image", "inspect", "orun-test/caddy:deb"]).is_none()
    {
        return;
    }
    if !Caddy::available() {
        return;
    }
    let host_caddy = Caddy::start();
    let id = std::process::id();
    let (prod_node, staging_node) = (format!("ie-{id}"), format!("ies-{id}"));
    let _guards = (
        Guard(format!("orun.node={prod_node}")),
        Guard(format!("orun.node={staging_node}")),
        Guard(format!("orun.ingress={prod_node}")),
    );
    let web = format!("ie{id}-web");
    let domain = format!("app-{id}.orun.test");
    let remote = Remote::new();
    // Both nodes run the deployment; each Node manifest names its own branch.
    let staging_node_yaml =
        node_yaml(&staging_node).replace("gitBranch: main", "gitBranch: staging");
    let files = |greeting: &str| {
        vec![
            (format!("nodes/{prod_node}.yaml"), node_yaml(&prod_node)),
            (
                format!("nodes/{staging_node}.yaml"),
                staging_node_yaml.clone(),
            ),
            (
                format!("deployments/{web}.yaml"),
                web_yaml(&prod_node, &web, greeting).replace(
                    &format!("nodes: [{prod_node}]"),
                    &format!("nodes: [{prod_node}, {staging_node}]"),
                ),
            ),
            (
                "services/app.yaml".to_owned(),
                service_yaml(
                    "app",
                    &web,
                    &domain,
                    &format!("app-{id}.$ENV.orun.test"),
                    false,
                ),
            ),
        ]
    };
    let c1 = commit(&remote, "prod", &files("production"));
    test_support::git::git(&remote.work(), &["checkout", "-q", "-b", "staging"]);
    let s1 = commit(&remote, "staging", &files("staging"));
    let url = remote.file_url();
    test_support::git::git(&remote.work(), &["push", "-q", &url, "staging"]);
    test_support::git::git(&remote.work(), &["checkout", "-q", "main"]);

    let data_root = tempfile::tempdir().unwrap();
    let (admin, http, https) = (free_port(), free_port(), free_port());
    let prod = spawn_agent(
        &url,
        &prod_node,
        &data_root.path().join("prod"),
        free_port(),
        &[
            "--branch",
            "main",
            "--ingress",
            "container",
            "--ingress-image",
            "orun-test/caddy:deb",
            "--ingress-admin",
            &format!("127.0.0.1:{admin}"),
            "--ingress-http-port",
            &http.to_string(),
            "--ingress-https-port",
            &https.to_string(),
            "--acme-ca",
            "internal",
        ],
    );
    let staging = spawn_agent(
        &url,
        &staging_node,
        &data_root.path().join("staging"),
        free_port(),
        &[
            "--branch",
            "staging",
            "--ingress",
            "host",
            "--ingress-admin",
            &host_caddy.admin().to_string(),
            "--ingress-http-port",
            &host_caddy.http_port().to_string(),
            "--ingress-https-port",
            &host_caddy.https_port().to_string(),
            "--acme-ca",
            "internal",
        ],
    );
    prod.converged(&c1);
    staging.converged(&s1);
    // Prefixed container names, each environment on its own network.
    assert!(container(&web).is_some());
    assert!(container(&format!("staging.{web}")).is_some());
    prod.wait("production through the agent's own Caddy")
        .until(|| (through(http, &domain)? == (200, "production".to_owned())).then_some(()));
    let staging_domain = format!("app-{id}.staging.orun.test");
    staging.wait("staging on its $ENV domain").until(|| {
        (through(host_caddy.http_port(), &staging_domain)? == (200, "staging".to_owned()))
            .then_some(())
    });
    // Each proxy serves its own environment only.
    assert_eq!(through(http, &staging_domain).map(|a| a.0), Some(404));
    let status = staging.status().unwrap();
    assert_eq!(service(&status, "app")["domain"], staging_domain.as_str());
    assert_eq!(
        service(&status, "app")["upstream"],
        format!("staging.{web}").as_str()
    );

    // The agent's Caddy container killed: Docker or the agent starts it again, and the agent
    // loads its routes back.
    docker_ok(&["kill", "orun-caddy"]).expect("the agent's Caddy container runs");
    prod.wait("routes back after the Caddy container was killed")
        .until(|| (through(http, &domain)? == (200, "production".to_owned())).then_some(()));
    drop(prod);
    // The container and its certificate volume are the agent's: removed by label here.
    if let Some(v) = docker_ok(&["volume", "ls", "-q", "--filter", "name=orun-caddy-data"]) {
        for v in v.split_whitespace() {
            let _ = docker_ok(&["rm", "-f", "orun-caddy"]);
            let _ = docker_ok(&["volume", "rm", v]);
        }
    }
    drop(staging);
    for c in [format!("staging.{web}"), web.clone()] {
        let _ = docker_ok(&["rm", "-f", &c]);
    }
    remove_networks(&prod_node);
    remove_networks(&staging_node);
}

/// The Done-when of the ingress: the `examples/` repository as it is, on node `web-01`, its
/// Service answering on its domain through Caddy over HTTP (a redirect) and HTTPS, with a
/// certificate the ACME server issued.
#[test]
fn the_examples_service_answers_over_http_and_https() {
    if !Caddy::available() || !Pebble::available() {
        return;
    }
    let caddy = Caddy::start();
    let pebble = Pebble::start();
    let guard = Guard("orun.node=web-01".to_owned());
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let read = |p: &str| std::fs::read_to_string(examples.join(p)).unwrap();
    let remote = Remote::new();
    // Every file, the built deployment's code included: the repository as it is.
    let mut paths = Vec::new();
    let mut dirs = vec![examples.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path.strip_prefix(&examples).unwrap();
                paths.push(rel.to_str().unwrap().to_owned());
            }
        }
    }
    let files: Vec<(String, String)> = paths.iter().map(|p| (p.clone(), read(p))).collect();
    let c1 = commit(&remote, "examples", &files);
    let data = tempfile::tempdir().unwrap();
    let (http, https) = (caddy.http_port(), caddy.https_port());
    let args = host_ingress(&caddy, &pebble);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = spawn_agent(
        &remote.file_url(),
        "web-01",
        &data.path().join("data"),
        free_port(),
        &args,
    );
    agent.converged(&c1);
    // The deployment built on the node from the commit serves its own page.
    let built = status_http::get(
        SocketAddr::from(([127, 0, 0, 1], 8082)),
        "/",
        Duration::from_secs(3),
    )
    .unwrap();
    assert_eq!(built.body.trim(), "hello from a build on the node");
    let domain = "hello-world.localhost";
    agent.wait("HTTPS with pebble's certificate").until(|| {
        (through_tls(https, domain)? == (200, "hello from orun".to_owned())).then_some(())
    });
    let redirect = status_http::request(
        SocketAddr::from(([127, 0, 0, 1], http)),
        "GET",
        "/",
        &[("Host", domain)],
        None,
        Duration::from_secs(3),
    )
    .unwrap();
    assert_eq!(redirect.code, 308, "{redirect:?}");
    let status = agent.wait_status("the certificate in /status", |s| {
        service(s, "hello-world")["certificate"]["issuer"]
            .as_str()
            .is_some_and(|i| i.contains("Pebble"))
    });
    assert_eq!(service(&status, "hello-world")["route"], "routed");
    assert_eq!(service(&status, "hello-world")["upstream"], "hello-world");
    drop(agent);
    // The containers first: Docker keeps an image a container uses, even with `-f`.
    drop(guard);
    remove_networks("web-01");
    for id in docker_ok(&["images", "-q", "orun-build/greeter"])
        .unwrap_or_default()
        .lines()
    {
        let _ = docker_ok(&["rmi", "-f", id]);
    }
}

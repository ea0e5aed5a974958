//! End to end with real secrets: a repository made by the real `sops` and `age` (a
//! `secrets.yaml`, a Deployment whose `env` sops encrypted in place, a `secretRef`) converges
//! on a node holding the key, each container gets exactly its values, re-encryption restarts
//! nothing and rotation replaces only what uses the value; on a node holding the wrong key
//! the revision is refused whole while the old containers keep serving, until the right key
//! is installed. A canary value a failing container prints is never shown: not in the
//! agent's log, `/status`, `/events`, `/metrics`, `orun plan`, nor anywhere in the data dir.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use support::{bin, container, node_yaml, spawn_agent};
use test_support::docker::Guard;
use test_support::free_port;
use test_support::git::Remote;
use test_support::sops;

const CANARY: &str = "canary-7d41e0b9";
const INLINE: &str = "inline-5ac2f81e";
const TOKEN: &str = "token-30c9d4a7";

/// Serves `/env`: the secret values it was given, so the test sees what reached it.
fn web_yaml(node: &str, name: &str, port: u16) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: orun-test/busybox:1\n  nodes: [{node}]\n  command: [\"sh\", \"-c\", \"mkdir -p /www && echo \\\"$PASSWORD ${{API_TOKEN:-none}}\\\" > /www/env && exec httpd -f -p 80 -h /www\"]\n  ports:\n    - containerPort: 80\n      port: {port}\n      hostIP: 127.0.0.1\n  env:\n    PASSWORD:\n      secretRef: DB_PASS\n  rollout:\n    minHealthySeconds: 1\n"
    )
}

/// Holds the token only; rotating it replaces this one alone.
fn tokened_yaml(node: &str, name: &str) -> String {
    worker(node, name, "    T:\n      secretRef: API_TOKEN\n")
}

/// Its own value, inline: sops encrypts this file's `env` in place.
fn inline_yaml(node: &str, name: &str) -> String {
    worker(
        node,
        name,
        &format!("    INLINE_KEY: {INLINE}\n    MODE: plain\n"),
    )
}

fn worker(node: &str, name: &str, env: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: orun-test/busybox:1\n  nodes: [{node}]\n  command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n  env:\n{env}  rollout:\n    minHealthySeconds: 1\n"
    )
}

/// Prints its secret and fails: the failure report quotes its log.
fn leaky_yaml(node: &str, name: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: orun-test/busybox:1\n  nodes: [{node}]\n  command: [\"sh\", \"-c\", \"echo leaking $P; echo again:$P:end; exit 3\"]\n  env:\n    P:\n      secretRef: DB_PASS\n  rollout:\n    minHealthySeconds: 1\n"
    )
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        std::time::Duration::from_secs(1),
    )
    .ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.lines().next().unwrap_or("");
    (status.starts_with("HTTP/1.") && status.contains(" 200 "))
        .then(|| out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned())
}

/// Every file under `dir`, as bytes, that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn real_sops_secrets_converge_rotate_refuse_and_never_show() {
    if !sops::available() {
        return;
    }
    let id = std::process::id();
    let node = format!("e2s-{id}");
    let _guard = Guard(format!("orun.node={node}"));
    let (web, tokened, inline, leaky) = (
        format!("e2s{id}-web"),
        format!("e2s{id}-tok"),
        format!("e2s{id}-inline"),
        format!("e2s{id}-leaky"),
    );
    let port = free_port();
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient) = sops::keygen(keys.path(), "node");
    let (wrong, _) = sops::keygen(keys.path(), "wrong");

    // Only what a deployment names reaches it: the offer to all is switched off.
    let node_file = format!("{}  offerSecrets: false\n", node_yaml(&node));
    let secrets = |token: &str| {
        sops::encrypt(
            "secrets.yaml",
            &format!("DB_PASS: {CANARY}\nAPI_TOKEN: {token}\n"),
            &recipient,
            &[],
        )
    };
    let sealed = || {
        sops::encrypt(
            "inline.yaml",
            &inline_yaml(&node, &inline),
            &recipient,
            &["--encrypted-regex", "^env$"],
        )
    };
    let remote = Remote::new();
    let files = |secrets_yaml: String, inline_file: String, with_leaky: bool| {
        let mut v = vec![
            (format!("nodes/{node}.yaml"), node_file.clone()),
            ("secrets.yaml".to_owned(), secrets_yaml),
            (
                format!("deployments/{web}.yaml"),
                web_yaml(&node, &web, port),
            ),
            (format!("deployments/{inline}.yaml"), inline_file),
            (
                format!("deployments/{tokened}.yaml"),
                tokened_yaml(&node, &tokened),
            ),
        ];
        if with_leaky {
            v.push((
                format!("deployments/{leaky}.yaml"),
                leaky_yaml(&node, &leaky),
            ));
        }
        v
    };
    let commit = |remote: &Remote, msg: &str, files: Vec<(String, String)>| {
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        remote.commit(msg, &refs)
    };
    let c1 = commit(&remote, "first", files(secrets(TOKEN), sealed(), true));
    let data_root = tempfile::tempdir().unwrap();
    let data = data_root.path().join("data");
    let status_port = free_port();
    let url = remote.file_url();

    // 1. The node with the key converges; each container gets exactly its values.
    let key_arg = key.display().to_string();
    let agent = spawn_agent(
        &url,
        &node,
        &data,
        status_port,
        &["--age-key-path", &key_arg],
    );
    agent.wait_status("web serving and leaky failed", |s| {
        s["node"]["git_head"] == c1.as_str()
            && s["deployments"][&web]["state"] == "running"
            && s["deployments"][&leaky]["last_error"].is_string()
    });
    let served = agent
        .wait("web's /env")
        .until(|| http_get(port, "/env"))
        .trim()
        .to_owned();
    assert_eq!(
        served,
        format!("{CANARY} none"),
        "only what it names reaches it"
    );
    let inline_env = test_support::docker::docker(&[
        "inspect",
        "-f",
        "{{range .Config.Env}}{{.}} {{end}}",
        &inline,
    ]);
    assert!(
        inline_env.contains(&format!("INLINE_KEY={INLINE} "))
            && inline_env.contains("MODE=plain")
            && !inline_env.contains(CANARY),
        "{inline_env}"
    );
    let (inline_id, _) = container(&inline).unwrap();
    let leak_report = agent.status().unwrap()["deployments"][&leaky]["last_error"].to_string();
    assert!(
        leak_report.contains("leaking ***") && leak_report.contains("again:***:end"),
        "{leak_report}"
    );
    let (web_id, _) = container(&web).unwrap();
    let (tok_id, _) = container(&tokened).unwrap();

    // 2. Re-encrypted, unchanged: nothing restarts. (The leaky one leaves.)
    std::fs::remove_file(remote.work().join(format!("deployments/{leaky}.yaml"))).unwrap();
    let c2 = commit(
        &remote,
        "re-encrypted",
        files(secrets(TOKEN), sealed(), false),
    );
    agent.converged(&c2);
    assert_eq!(
        container(&web).unwrap().0,
        web_id,
        "re-encryption restarted web"
    );
    assert_eq!(
        container(&tokened).unwrap().0,
        tok_id,
        "re-encryption restarted tok"
    );
    assert_eq!(
        container(&inline).unwrap().0,
        inline_id,
        "re-encryption restarted inline"
    );

    // 3. Rotated: only what uses the value is replaced.
    let c3 = commit(
        &remote,
        "rotated",
        files(secrets("token-rotated-1"), sealed(), false),
    );
    agent.converged(&c3);
    assert_eq!(
        container(&web).unwrap().0,
        web_id,
        "web does not use the token"
    );
    assert_ne!(container(&tokened).unwrap().0, tok_id, "tok uses the token");
    let (tok_id, _) = container(&tokened).unwrap();

    // 4. A node holding the wrong key refuses the next revision whole; the old containers
    //    keep serving their values. Installing the right key is picked up without a restart.
    drop(agent);
    let node_key = data.join("keys/age.key");
    std::fs::create_dir_all(node_key.parent().unwrap()).unwrap();
    std::fs::copy(&wrong, &node_key).unwrap();
    let c4 = commit(
        &remote,
        "after the key changed",
        files(secrets("token-rotated-2"), sealed(), false),
    );
    let agent = spawn_agent(&url, &node, &data, status_port, &[]);
    let s = agent.wait_status("the revision refused for the key", |s| {
        s["node"]["sync_error"]
            .as_str()
            .is_some_and(|e| e.contains("no age identity held by this node"))
    });
    assert_ne!(s["node"]["git_head"], c4.as_str(), "{s}");
    assert_eq!(
        container(&tokened).unwrap().0,
        tok_id,
        "refused: nothing changes"
    );
    assert_eq!(
        http_get(port, "/env").unwrap().trim(),
        served,
        "old containers serve"
    );
    std::fs::copy(&key, &node_key).unwrap();
    agent.converged(&c4);
    assert_ne!(
        container(&tokened).unwrap().0,
        tok_id,
        "the right key: the revision runs"
    );

    // 5. `orun plan` on the node: with the keys it sees no change; without them it says
    //    what it could not check.
    let plan = |extra: &[&str]| {
        let out = Command::new(bin("orun"))
            .args(["plan", "--node", &node, "--repo"])
            .arg(remote.work())
            .args(["--data-dir", &data.display().to_string()])
            .args(extra)
            .env_remove("SOPS_AGE_KEY_FILE")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, with_key) = plan(&["--age-key-path", &key_arg, "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{with_key}");
    let (code, without) = plan(&["--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{without}");
    assert!(
        without.contains("were not checked: no age key"),
        "{without}"
    );

    // 6. The canary and the other values were never shown, nor written to the data dir.
    let status_body = agent.get("/status").unwrap().body;
    let events = agent.get("/events").unwrap().body;
    let metrics = agent.get("/metrics").unwrap().body;
    let logs = agent.logs();
    for value in [CANARY, INLINE, TOKEN, "token-rotated-1", "token-rotated-2"] {
        for (what, text) in [
            ("status", &status_body),
            ("events", &events),
            ("metrics", &metrics),
            ("logs", &logs),
            ("plan", &with_key),
            ("plan", &without),
        ] {
            assert!(!text.contains(value), "{value} appears in {what}");
        }
        let holding = files_holding(&data, value.as_bytes());
        assert!(holding.is_empty(), "{value} is written in {holding:?}");
    }
    assert!(
        events.contains("leaking ***"),
        "the failure report is kept, masked: {events}"
    );
}

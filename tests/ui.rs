//! The status page in a real browser: headless Chromium loads `GET /` from the real
//! `orun-agent` running real containers, and the test reads the DOM after the page's script
//! ran (structure and words of each part, not pixels): the node, its branch, commit and
//! subject, converged or not, each deployment's state, health, restarts, image and age, the
//! timeline. Then a commit is pushed and the page shows it, then a release that crashes and
//! the page says in plain words that it was rolled back and what to do. Screenshots of each
//! state (desktop light and dark, phone) land in `target/ui/`.
//!
//! Run with `cargo xtask e2e` (it builds the binaries, starts Docker and installs Chromium).
//! Without `chromium` the test is skipped, unless `ORUN_REQUIRE_ALL` is set. Every wait polls
//! with a deadline; containers are removed by label when the test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{Agent, node_yaml, spawn_agent};
use test_support::docker::Guard;
use test_support::git::Remote;
use test_support::wait::wait;
use test_support::{free_port, required};

/// Longest one browser run may take (start, load, scripts, dump or screenshot).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);
/// A value in a deployment's env: the page shows no env value, ever.
const ENV_MARKER: &str = "ui-env-value-never-shown";

/// A busybox web server answering `ok` on `/health`; it stops at once on SIGTERM.
fn web(node: &str, name: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: orun-test/busybox:1\n  nodes: [{node}]\n  command: [\"sh\", \"-c\", \"mkdir -p /www && echo ok > /www/health && httpd -f -p 80 -h /www & trap 'kill $!; exit 0' TERM; wait\"]\n  health:\n    readiness:\n      http: localhost:80/health\n      periodSeconds: 1\n      timeoutSeconds: 1\n      failureThreshold: 1\n  rollout:\n    minHealthySeconds: 2\n    healthyDeadlineSeconds: 30\n"
    )
}

/// The same deployment, released so that it prints a line and exits 3 at once.
fn crashing(node: &str, name: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: orun-test/busybox:1\n  nodes: [{node}]\n  command: [\"sh\", \"-c\", \"echo boom: missing config; exit 3\"]\n  rollout:\n    minHealthySeconds: 2\n    healthyDeadlineSeconds: 30\n"
    )
}

/// A long-running worker that stops at once on SIGTERM, with `marker` in its env.
fn worker(node: &str, name: &str, marker: &str) -> String {
    format!(
        "apiVersion: run.orcra.dev/v0alpha\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  image: orun-test/busybox:1\n  nodes: [{node}]\n  command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do sleep 1; done\"]\n  env:\n    MARKER: \"{marker}\"\n  rollout:\n    minHealthySeconds: 1\n"
    )
}

/// The Debian package's browser, when installed.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
}

/// A browser process, killed if it outlives its deadline or the test.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Headless Chromium, each run with a fresh private profile.
struct Browser {
    bin: PathBuf,
    scratch: tempfile::TempDir,
    shots: PathBuf,
}

impl Browser {
    /// One run with `args`; its standard output, or `None` when it failed or overstayed.
    fn run(&self, args: &[String]) -> Option<String> {
        let profile = tempfile::tempdir_in(self.scratch.path()).unwrap();
        let out = profile.path().join("stdout");
        let mut command = Command::new(&self.bin);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--force-color-profile=srgb",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null());
        let mut child = Running(command.spawn().unwrap());
        let status = wait("chromium to finish", BROWSER_TIMEOUT)
            .every(Duration::from_millis(100))
            .until(|| child.0.try_wait().ok().flatten());
        drop(child);
        status
            .success()
            .then(|| std::fs::read_to_string(&out).ok())
            .flatten()
    }

    /// The DOM after the page's scripts ran for a few (virtual) seconds: long enough for its
    /// refresh to fetch and swap in `<main>` once.
    fn dom(&self, url: &str) -> Option<String> {
        self.run(&[
            "--virtual-time-budget=4500".to_owned(),
            "--dump-dom".to_owned(),
            url.to_owned(),
        ])
        .filter(|d| d.contains("</main>"))
    }

    /// A screenshot of `url` at `width`×`height`, in dark mode when asked, as
    /// `target/ui/<name>.png`.
    fn screenshot(&self, url: &str, name: &str, (width, height): (u32, u32), dark: bool) {
        let path = self.shots.join(format!("{name}.png"));
        let mut args = vec![
            format!("--screenshot={}", path.display()),
            format!("--window-size={width},{height}"),
            "--virtual-time-budget=1000".to_owned(),
        ];
        if dark {
            args.push("--force-dark-mode".to_owned());
            args.push("--blink-settings=preferredColorScheme=0".to_owned());
        }
        args.push(url.to_owned());
        let _ = std::fs::remove_file(&path);
        self.run(&args);
        assert!(
            path.metadata().is_ok_and(|m| m.len() > 1000),
            "no screenshot {}",
            path.display()
        );
    }

    /// Desktop (light and dark) and phone screenshots of one state.
    fn shots(&self, url: &str, state: &str) {
        self.screenshot(url, &format!("{state}-desktop"), (1000, 800), false);
        self.screenshot(url, &format!("{state}-desktop-dark"), (1000, 800), true);
        self.screenshot(url, &format!("{state}-phone"), (390, 844), false);
    }
}

/// The text between `<section id="ID"` and its `</section>`.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let Some(start) = html.find(&format!("<section id=\"{id}\"")) else {
        panic!("no section {id} in\n{html}");
    };
    let end = html[start..].find("</section>").unwrap() + start;
    &html[start..end]
}

/// The `<tr>` with `attr="value"`, if any.
fn row<'a>(html: &'a str, attr: &str) -> Option<&'a str> {
    let start = html.find(&format!("<tr {attr}"))?;
    let end = html[start..].find("</tr>")? + start;
    Some(&html[start..end])
}

fn assert_has(part: &str, words: &[&str]) {
    for w in words {
        assert!(part.contains(w), "{w:?} missing from\n{part}");
    }
}

/// The page's DOM, polled until `f` accepts it.
fn page_until(
    agent: &Agent,
    browser: &Browser,
    url: &str,
    what: &str,
    mut f: impl FnMut(&str) -> bool,
) -> String {
    agent.wait(what).until(|| browser.dom(url).filter(|d| f(d)))
}

/// The age column holds a whole unit: `12s`, `3m`.
fn is_age(cell: &str) -> bool {
    ["s</span>", "m</span>"].iter().any(|u| {
        cell.find(u).is_some_and(|i| {
            cell[..i]
                .rsplit('>')
                .next()
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
    })
}

#[test]
fn the_status_page_shows_the_node_and_follows_commits_and_failures() {
    let Some(bin) = chromium() else {
        assert!(
            !required(),
            "chromium is not installed (apt-get install -y chromium)"
        );
        eprintln!("skipped: chromium is not installed (apt-get install -y chromium)");
        return;
    };
    if !test_support::docker::available() {
        return;
    }
    let shots = test_support::target_dir().join("ui");
    std::fs::create_dir_all(&shots).unwrap();
    let browser = Browser {
        bin,
        scratch: tempfile::tempdir().unwrap(),
        shots,
    };

    let id = std::process::id();
    let node = format!("ui-{id}");
    let _guard = Guard(format!("orun.node={node}"));
    let (app, jobs) = (format!("ui{id}-web"), format!("ui{id}-worker"));
    let remote = Remote::new();
    let c1 = remote.commit(
        "First release: web and worker",
        &[
            (&format!("nodes/{node}.yaml"), &node_yaml(&node)),
            (&format!("deployments/{app}.yaml"), &web(&node, &app)),
            (
                &format!("deployments/{jobs}.yaml"),
                &worker(&node, &jobs, &format!("{ENV_MARKER}-1")),
            ),
        ],
    );
    let data = tempfile::tempdir().unwrap();
    let agent = spawn_agent(&remote.file_url(), &node, data.path(), free_port(), &[]);
    let url = format!("http://{}/", agent.addr);
    agent.converged(&c1);

    // 1. Converged on the first commit: every part, with its words.
    let dom = page_until(
        &agent,
        &browser,
        &url,
        "the page to show the first commit",
        |d| d.contains(&c1[..8]) && d.contains(">converged</span>") && d.contains("promote"),
    );
    assert_has(
        &dom,
        &[
            &format!("<h1 id=\"node\">{node}</h1>"),
            "<span id=\"converged\" class=\"badge ok\">converged</span>",
            "<link rel=\"stylesheet\" href=\"/page.css\">",
        ],
    );
    // The script ran under the page's CSP, fetched `/?part=main` and swapped it in.
    assert!(
        dom.contains("data-refreshed="),
        "the page's script did not refresh:\n{dom}"
    );
    assert_has(section(&dom, "problems"), &["No problems."]);
    assert_has(
        section(&dom, "git"),
        &[
            "<code>main</code>",
            &format!("<code title=\"{c1}\">{}</code>", &c1[..8]),
            "<span id=\"subject\">First release: web and worker</span>",
        ],
    );
    let deployments = section(&dom, "deployments");
    for name in [&app, &jobs] {
        let r = row(deployments, &format!("data-deployment=\"{name}\""))
            .unwrap_or_else(|| panic!("no row for {name}:\n{deployments}"));
        assert_has(
            r,
            &[
                &format!("<strong>{name}</strong>"),
                "class=\"badge ok\">running</span>",
                "class=\"restarts \">0</td>",
                "<code>orun-test/busybox:1</code>",
            ],
        );
        let age = r.split("class=\"age\">").nth(1).unwrap_or("");
        assert!(is_age(age), "no age in\n{r}");
        let cid = r.split("class=\"container\"><code>").nth(1).unwrap_or("");
        assert!(
            cid.len() > 12 && cid[..12].bytes().all(|b| b.is_ascii_hexdigit()),
            "{r}"
        );
    }
    assert_has(section(&dom, "routes"), &["No Services on this node."]);
    let timeline = section(&dom, "timeline");
    assert_has(
        timeline,
        &[
            &format!("<strong>{app}</strong>"),
            &format!("<strong>{jobs}</strong>"),
            ">promote<",
            "class=\"badge ok\">ok</span>",
            &format!("<code>{}</code>", &c1[..8]),
        ],
    );
    assert!(
        !dom.contains(ENV_MARKER),
        "an env value reached the page:\n{dom}"
    );
    browser.shots(&url, "1-converged");

    // 2. A new commit: the page follows it, with its subject, without a reload.
    let c2 = remote.commit(
        "worker: raise the marker to 2",
        &[(
            &format!("deployments/{jobs}.yaml"),
            &worker(&node, &jobs, &format!("{ENV_MARKER}-2")),
        )],
    );
    let dom = page_until(
        &agent,
        &browser,
        &url,
        "the page to show the second commit",
        |d| {
            d.contains(&format!("<code title=\"{c2}\">"))
                && d.contains(">converged</span>")
                && row(d, &format!("data-deployment=\"{jobs}\""))
                    .is_some_and(|r| r.contains(">running</span>"))
        },
    );
    assert_has(
        section(&dom, "git"),
        &["<span id=\"subject\">worker: raise the marker to 2</span>"],
    );
    assert_has(
        section(&dom, "timeline"),
        &[&format!("<code>{}</code>", &c2[..8]), ">replace<"],
    );
    assert!(
        !dom.contains(ENV_MARKER),
        "an env value reached the page:\n{dom}"
    );
    browser.shots(&url, "2-new-commit");

    // 3. A release that crashes: rolled back, and the page says so in plain words.
    let c3 = remote.commit(
        "web: new release that cannot start",
        &[(&format!("deployments/{app}.yaml"), &crashing(&node, &app))],
    );
    let dom = page_until(
        &agent,
        &browser,
        &url,
        "the page to show the failure",
        |d| {
            d.contains(&format!("<code title=\"{c3}\">"))
                && row(d, &format!("data-deployment=\"{app}\""))
                    .is_some_and(|r| r.contains(">failed, rolled back</span>"))
        },
    );
    assert_has(
        &dom,
        &["<span id=\"converged\" class=\"badge bad\">not converged</span>"],
    );
    assert_has(
        section(&dom, "problems"),
        &[
            &format!(
                "Deployment <strong>{app}</strong>: the new release failed, so it was rolled back and the previous container serves again."
            ),
            &format!("<code>orun events --deployment {app}</code>"),
            "code 3",
            "boom: missing config",
        ],
    );
    assert_has(
        section(&dom, "timeline"),
        &[
            "class=\"badge bad\">rolled-back</span>",
            "boom: missing config",
        ],
    );
    browser.shots(&url, "3-rolled-back");
    // The whole page, timeline included, for docs/observability.md.
    browser.screenshot(&url, "3-rolled-back-full", (1000, 1500), false);
}

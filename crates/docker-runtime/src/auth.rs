//! Registry credentials: Docker client config files (inline `auths`, the `credsStore` and
//! `credHelpers` credential helpers) and a node-local file of the same format that wins.
//!
//! The agent runs where `docker login` was run by the operator (or where a provisioning tool
//! wrote `config.json`): `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. A node may
//! also carry a file of its own in the same format, for logins that belong to the node rather
//! than to whoever runs `docker` there.
//!
//! For one registry, each file is asked as Docker's client would ask it: `credHelpers[host]`,
//! then `auths[host]`, then `credsStore`. The node-local file is asked first; the Docker config
//! only when the node-local file has no login for that registry.
//!
//! Helpers (`docker-credential-<name> get`) run when a registry is contacted, not at load, so
//! a token a helper rotates is picked up; each run is bounded in time and in output. Files are
//! read once, at load.
//!
//! Credentials go to the daemon in the `X-Registry-Auth` header and nowhere else: not into a
//! log, an error or `Debug` output. A helper's stdout (which may hold a secret) is never shown.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use reconcile_core::Secret;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::RuntimeError;

/// How long a credential helper may take before it is killed: helpers ask keychains and cloud
/// APIs, which answer in well under a second when they work at all.
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// The most a helper may write to stdout: a credential is a few KiB at most (cloud tokens
/// included), and more would only be held in memory for nothing.
const HELPER_STDOUT_CAP: u64 = 64 * 1024;

/// The key Docker's client stores Docker Hub's login under, in files and in helpers.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// The user name by which a helper says its secret is an identity token (Docker's rule).
const TOKEN_USERNAME: &str = "<token>";

/// Registry logins: from a Docker config file, a node-local file, and the credential helpers
/// they name.
///
/// # Guarantees
/// `Debug` shows registries and helper names, never a user name, password or token.
#[derive(Clone)]
pub struct RegistryAuth {
    /// The files, the one asked first first.
    files: Vec<ConfigFile>,
    /// Where helper programs are looked for, and the `PATH` they run with; `None` is the
    /// agent's own `PATH`.
    helper_path: Option<OsString>,
    helper_timeout: Duration,
}

impl Default for RegistryAuth {
    /// No logins at all: every pull is anonymous.
    fn default() -> Self {
        Self {
            files: Vec::new(),
            helper_path: None,
            helper_timeout: HELPER_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hosts and helper names only: never the user names, passwords or tokens.
        let hosts: BTreeSet<&str> = self
            .files
            .iter()
            .flat_map(|c| c.auths.keys())
            .map(String::as_str)
            .collect();
        let helpers: BTreeMap<&str, &str> = self
            .files
            .iter()
            .rev()
            .flat_map(|c| c.cred_helpers.iter())
            .map(|(host, (_, helper))| (host.as_str(), helper.as_str()))
            .collect();
        let stores: Vec<&str> = self
            .files
            .iter()
            .filter_map(|c| c.creds_store.as_deref())
            .collect();
        f.debug_struct("RegistryAuth")
            .field("hosts", &hosts)
            .field("helpers", &helpers)
            .field("stores", &stores)
            .field("helper_timeout", &self.helper_timeout)
            .finish()
    }
}

/// One config file as parsed: the three ways it can name a login.
#[derive(Clone, Default)]
struct ConfigFile {
    /// Inline logins by normalised host.
    auths: HashMap<String, Login>,
    /// Per-registry helpers by normalised host: the key as the file spells it (what the
    /// helper stored the login under) and the helper's name.
    cred_helpers: HashMap<String, (String, String)>,
    /// The helper for every registry without an entry of its own.
    creds_store: Option<String>,
}

/// One login. Not `Debug`: nothing here may be printed.
#[derive(Clone)]
struct Login {
    username: Option<String>,
    password: Option<Secret>,
    identity_token: Option<Secret>,
}

impl Login {
    fn into_credentials(self, registry: &str) -> DockerCredentials {
        DockerCredentials {
            username: self.username,
            password: self.password.map(|p| p.expose().to_owned()),
            identitytoken: self.identity_token.map(|t| t.expose().to_owned()),
            serveraddress: Some(registry.to_owned()),
            ..Default::default()
        }
    }
}

impl RegistryAuth {
    /// The config file Docker's client would use: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
    }

    /// Reads logins from the Docker config file at `path`; a missing file means no logins.
    ///
    /// # Errors
    /// As [`RegistryAuth::load_with`].
    pub fn load(path: &Path) -> Result<Self, RuntimeError> {
        Self::load_with(Some(path), None)
    }

    /// Reads logins from a Docker config file and a node-local file of the same format
    /// (`auths`, `credsStore`, `credHelpers`). For each registry the node-local file is asked
    /// first; the Docker config only when it has no login there. A missing file (or `None`)
    /// means no logins from it.
    ///
    /// # Errors
    /// [`RuntimeError::Config`] when a file exists but cannot be read or is not a Docker
    /// config. The message names the file and never its content.
    pub fn load_with(
        docker_config: Option<&Path>,
        node_local: Option<&Path>,
    ) -> Result<Self, RuntimeError> {
        let mut files = Vec::new();
        for path in [node_local, docker_config].into_iter().flatten() {
            if let Some(file) = read_config(path)? {
                files.push(file);
            }
        }
        Ok(Self {
            files,
            ..Self::default()
        })
    }

    /// Looks for helper programs in `path` (a `PATH`-style list of folders) instead of the
    /// agent's `PATH`, and runs them with it as their `PATH`.
    #[must_use]
    pub fn with_helper_path(mut self, path: impl Into<OsString>) -> Self {
        self.helper_path = Some(path.into());
        self
    }

    /// Kills a helper that has not answered within `timeout` (10 s unless set).
    #[must_use]
    pub fn with_helper_timeout(mut self, timeout: Duration) -> Self {
        self.helper_timeout = timeout;
        self
    }

    /// Registries with a login of their own (inline, or a helper named for them), in any
    /// file. Registries reached only through a `credsStore` are not listed: only the helper
    /// knows them.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        let hosts: BTreeSet<&str> = self
            .files
            .iter()
            .flat_map(|c| c.auths.keys().chain(c.cred_helpers.keys()))
            .map(String::as_str)
            .collect();
        hosts.into_iter()
    }

    /// The credentials for `registry` (as [`crate::registry_of`] names it), running a helper
    /// if a file says so; `None` when no file has a login for it.
    ///
    /// # Errors
    /// [`RuntimeError::CredentialHelper`] when a helper cannot be run, times out, or fails
    /// other than by saying it has no credentials for the registry.
    pub(crate) async fn credentials(
        &self,
        registry: &str,
    ) -> Result<Option<DockerCredentials>, RuntimeError> {
        for file in &self.files {
            if let Some(login) = self.login_in(file, registry).await? {
                return Ok(Some(login.into_credentials(registry)));
            }
        }
        Ok(None)
    }

    /// Docker's order within one file: the registry's own helper, its inline login, the
    /// default store.
    async fn login_in(
        &self,
        file: &ConfigFile,
        registry: &str,
    ) -> Result<Option<Login>, RuntimeError> {
        // Helpers hold Docker Hub's login under its v1 URL, as `docker login` stored it there
        // whatever the config's key; other registries under the host as written.
        let hub = (registry == "docker.io").then_some(DOCKER_HUB_SERVER);
        if let Some((key, helper)) = file.cred_helpers.get(registry) {
            return self.ask_helper(helper, hub.unwrap_or(key), registry).await;
        }
        if let Some(login) = file.auths.get(registry) {
            return Ok(Some(login.clone()));
        }
        if let Some(store) = &file.creds_store {
            return self
                .ask_helper(store, hub.unwrap_or(registry), registry)
                .await;
        }
        Ok(None)
    }

    /// The helper program `docker-credential-<name>`, from the helper path.
    fn find_helper(&self, name: &str) -> Option<PathBuf> {
        let path = self
            .helper_path
            .clone()
            .or_else(|| std::env::var_os("PATH"))?;
        let program = format!("docker-credential-{name}");
        std::env::split_paths(&path)
            .map(|dir| dir.join(&program))
            .find(|p| p.is_file())
    }

    /// Runs `docker-credential-<helper> get` with `server` on stdin, as Docker's client does.
    /// `Ok(None)` when the helper says it has no credentials for it.
    async fn ask_helper(
        &self,
        helper: &str,
        server: &str,
        registry: &str,
    ) -> Result<Option<Login>, RuntimeError> {
        let fail = |reason: String| RuntimeError::CredentialHelper {
            helper: format!("docker-credential-{helper}"),
            registry: registry.to_owned(),
            reason,
        };
        let program = self
            .find_helper(helper)
            .ok_or_else(|| fail("it is not on the search path".to_owned()))?;
        let mut command = tokio::process::Command::new(&program);
        command
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its stderr is neither read nor passed on: it may echo what it was given or got.
            .stderr(Stdio::null())
            // Whatever happens to this future, the helper does not outlive it.
            .kill_on_drop(true);
        if let Some(path) = &self.helper_path {
            command.env("PATH", path);
        }
        let mut child = command
            .spawn()
            .map_err(|e| fail(format!("it cannot be started: {e}")))?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(fail("its pipes were not opened".to_owned()));
        };
        let talk = async {
            // A helper that exits without reading its stdin closes the pipe early; its exit
            // status says what went wrong, not this write.
            let _ = stdin.write_all(server.as_bytes()).await;
            drop(stdin);
            let mut out = Vec::new();
            stdout
                .take(HELPER_STDOUT_CAP + 1)
                .read_to_end(&mut out)
                .await?;
            if out.len() as u64 > HELPER_STDOUT_CAP {
                return Ok(None);
            }
            Ok::<_, std::io::Error>(Some((child.wait().await?, out)))
        };
        let answer = tokio::time::timeout(self.helper_timeout, talk).await;
        let (status, out) = match answer {
            Ok(Ok(Some(answer))) => answer,
            Ok(Ok(None)) => {
                let _ = child.kill().await;
                return Err(fail(format!(
                    "it wrote more than {} KiB",
                    HELPER_STDOUT_CAP / 1024
                )));
            }
            Ok(Err(e)) => {
                let _ = child.kill().await;
                return Err(fail(format!("talking to it failed: {e}")));
            }
            Err(_) => {
                // Killed and reaped here, not left to `kill_on_drop`, so it is gone when the
                // error is returned.
                let _ = child.kill().await;
                return Err(fail(format!(
                    "it did not answer within {:?} and was killed",
                    self.helper_timeout
                )));
            }
        };
        if !status.success() {
            if says_not_found(&out) {
                return Ok(None);
            }
            // Only the status: its stdout may hold a secret, even in an error.
            return Err(fail(format!("it exited with {status}")));
        }
        parse_helper_answer(&out).map_err(|()| {
            fail("its answer is not a credential (JSON with Username and Secret)".to_owned())
        })
    }
}

/// Whether a failed helper's output is the protocol's "credentials not found" message.
fn says_not_found(out: &[u8]) -> bool {
    String::from_utf8_lossy(out)
        .to_ascii_lowercase()
        .contains("credentials not found")
}

/// A helper's `{"ServerURL", "Username", "Secret"}`; `Ok(None)` for an empty secret, which
/// some helpers answer instead of "not found".
fn parse_helper_answer(out: &[u8]) -> Result<Option<Login>, ()> {
    let doc: serde_json::Value = serde_json::from_slice(out).map_err(|_| ())?;
    let username = doc.get("Username").and_then(|u| u.as_str()).ok_or(())?;
    let secret = doc.get("Secret").and_then(|s| s.as_str()).ok_or(())?;
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if username == TOKEN_USERNAME {
        Login {
            username: None,
            password: None,
            identity_token: Some(Secret::new(secret)),
        }
    } else {
        Login {
            username: Some(username.to_owned()),
            password: Some(Secret::new(secret)),
            identity_token: None,
        }
    }))
}

/// Reads a config file; `Ok(None)` when it does not exist.
fn read_config(path: &Path) -> Result<Option<ConfigFile>, RuntimeError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RuntimeError::Config(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    parse(&text)
        .map(Some)
        .map_err(|why| RuntimeError::Config(format!("{}: {why}", path.display())))
}

/// Parses a Docker client config: `{"auths": {"host": {"auth": base64("user:pass")}},
/// "credHelpers": {"host": "name"}, "credsStore": "name"}`. Messages name hosts, never
/// values.
fn parse(text: &str) -> Result<ConfigFile, String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "not valid JSON".to_owned())?;
    let mut file = ConfigFile::default();
    if let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) {
        for (host, entry) in auths {
            if let Some(login) = inline_login(host, entry)? {
                file.auths.insert(normalise_host(host), login);
            }
        }
    }
    if let Some(helpers) = doc.get("credHelpers").and_then(|h| h.as_object()) {
        for (host, name) in helpers {
            let name = name
                .as_str()
                .ok_or_else(|| format!("the credHelpers entry for {host} is not a string"))?;
            check_helper_name(name).map_err(|why| format!("credHelpers for {host}: {why}"))?;
            file.cred_helpers
                .insert(normalise_host(host), (host.clone(), name.to_owned()));
        }
    }
    match doc.get("credsStore") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(s)) if s.is_empty() => {}
        Some(serde_json::Value::String(name)) => {
            check_helper_name(name).map_err(|why| format!("credsStore: {why}"))?;
            file.creds_store = Some(name.clone());
        }
        Some(_) => return Err("credsStore is not a string".to_owned()),
    }
    Ok(file)
}

/// A helper name becomes part of a program name looked up on a path: it must not be a path.
fn check_helper_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) {
        return Err("a helper name must be a plain name, not empty and without `/`");
    }
    Ok(())
}

/// One `auths` entry: `auth` (base64 `user:password`), or `username` and `password`, and an
/// `identitytoken` that replaces the password. `None` for an entry with none of them (what
/// `docker login` leaves when a helper holds the login).
fn inline_login(host: &str, entry: &serde_json::Value) -> Result<Option<Login>, String> {
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let (mut username, mut password) = (None, None);
    if let Some(auth) = field("auth") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| format!("the auth entry for {host} is not base64"))?;
        let text = String::from_utf8(raw)
            .map_err(|_| format!("the auth entry for {host} is not UTF-8"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| format!("the auth entry for {host} is not user:password"))?;
        username = Some(user.to_owned()).filter(|u| !u.is_empty());
        password = Some(Secret::new(pass)).filter(|p| !p.expose().is_empty());
    } else if let (Some(u), Some(p)) = (field("username"), field("password")) {
        username = Some(u.to_owned());
        password = Some(Secret::new(p));
    }
    let identity_token = field("identitytoken").map(Secret::new);
    if identity_token.is_some() {
        // Docker's client sends the token instead of the password.
        password = None;
    }
    if password.is_none() && identity_token.is_none() {
        return Ok(None);
    }
    Ok(Some(Login {
        username,
        password,
        identity_token,
    }))
}

/// Docker Hub's config key is a URL; every other registry is `host[:port]`.
fn normalise_host(key: &str) -> String {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        h => h.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> RegistryAuth {
        RegistryAuth {
            files: vec![parse(text).unwrap()],
            ..RegistryAuth::default()
        }
    }

    fn inline(auth: &RegistryAuth, registry: &str) -> Option<DockerCredentials> {
        auth.files
            .iter()
            .find_map(|f| f.auths.get(registry).cloned())
            .map(|l| l.into_credentials(registry))
    }

    #[test]
    fn config_files_give_logins_by_host_and_debug_hides_them() {
        let auth = parsed(
            r#"{"auths": {
                "127.0.0.1:5000": {"auth": "dXNlcjpodW50ZXIy"},
                "https://index.docker.io/v1/": {"username": "u", "password": "p"},
                "reg.example": {"auth": "dXNlcjo=", "identitytoken": "tok-secret"},
                "ghcr.io": {}
            }, "credsStore": "desktop", "credHelpers": {"https://gcr.io": "gcloud"}}"#,
        );
        let c = inline(&auth, "127.0.0.1:5000").unwrap();
        assert_eq!(c.username.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some("hunter2"));
        assert!(inline(&auth, "docker.io").is_some());
        assert!(inline(&auth, "ghcr.io").is_none());
        let t = inline(&auth, "reg.example").unwrap();
        assert_eq!(
            (t.identitytoken.as_deref(), t.password),
            (Some("tok-secret"), None)
        );
        assert_eq!(
            auth.hosts().collect::<Vec<_>>(),
            ["127.0.0.1:5000", "docker.io", "gcr.io", "reg.example"]
        );
        let shown = format!("{auth:?}");
        for secret in ["hunter2", "user", "tok-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("gcloud") && shown.contains("desktop"),
            "{shown}"
        );
    }

    #[test]
    fn malformed_files_are_refused_naming_the_entry_not_the_value() {
        let refused = |text: &str| parse(text).err().unwrap();
        assert_eq!(refused("{"), "not valid JSON");
        assert_eq!(
            refused(r#"{"auths": {"h": {"auth": "!!"}}}"#),
            "the auth entry for h is not base64"
        );
        assert!(refused(r#"{"credHelpers": {"h": "../../bin/sh"}}"#).contains("plain name"));
        assert!(refused(r#"{"credsStore": "a/b"}"#).contains("plain name"));
        assert_eq!(
            refused(r#"{"credsStore": 1}"#),
            "credsStore is not a string"
        );
        // An empty store is what Docker writes when none is set.
        assert!(
            parse(r#"{"credsStore": ""}"#)
                .unwrap()
                .creds_store
                .is_none()
        );
    }

    #[test]
    fn helper_answers_as_the_protocol_defines_them() {
        let login = parse_helper_answer(br#"{"ServerURL":"h","Username":"u","Secret":"s"}"#)
            .unwrap()
            .unwrap()
            .into_credentials("h");
        assert_eq!(
            (login.username.as_deref(), login.password.as_deref()),
            (Some("u"), Some("s"))
        );
        let token = parse_helper_answer(br#"{"Username":"<token>","Secret":"t"}"#)
            .unwrap()
            .unwrap()
            .into_credentials("h");
        assert_eq!(
            (
                token.username,
                token.password,
                token.identitytoken.as_deref()
            ),
            (None, None, Some("t"))
        );
        assert!(
            parse_helper_answer(br#"{"Username":"","Secret":""}"#)
                .unwrap()
                .is_none()
        );
        assert!(parse_helper_answer(b"user:pass").is_err());
        assert!(parse_helper_answer(br#"{"Username":"u"}"#).is_err());
        assert!(says_not_found(
            b"credentials not found in native keychain\n"
        ));
        assert!(!says_not_found(b"keychain locked"));
    }

    /// Helpers in a temporary folder: `echo` answers with the server address it was given as
    /// the secret, `none` has nothing.
    fn helpers() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        for (name, script) in [
            (
                "echo",
                "read server\nprintf '{\"Username\":\"echo\",\"Secret\":\"%s\"}' \"$server\"\n",
            ),
            (
                "none",
                "echo 'credentials not found in native keychain'\nexit 1\n",
            ),
        ] {
            let path = dir.path().join(format!("docker-credential-{name}"));
            std::fs::write(&path, format!("#!/bin/sh\n{script}")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    /// Who answered for `registry`: `user/secret`, or `-` for no login.
    async fn answer(auth: &RegistryAuth, registry: &str) -> String {
        match auth.credentials(registry).await.unwrap() {
            None => "-".to_owned(),
            Some(c) => format!(
                "{}/{}",
                c.username.unwrap_or_default(),
                c.password.unwrap_or_default()
            ),
        }
    }

    #[tokio::test]
    async fn lookup_follows_dockers_order_and_the_node_local_file_first() {
        let dir = helpers();
        let with = |files: &[&str]| {
            RegistryAuth {
                files: files.iter().map(|t| parse(t).unwrap()).collect(),
                ..RegistryAuth::default()
            }
            .with_helper_path(dir.path())
        };
        let inline = r#""h:5000": {"username": "file", "password": "pw"}"#;

        // The registry's own helper, then its inline login, then the store.
        let all = with(&[&format!(
            r#"{{"auths": {{{inline}}}, "credHelpers": {{"h:5000": "echo"}}, "credsStore": "none"}}"#
        )]);
        assert_eq!(answer(&all, "h:5000").await, "echo/h:5000");
        let no_helper = with(&[&format!(
            r#"{{"auths": {{{inline}}}, "credsStore": "echo"}}"#
        )]);
        assert_eq!(answer(&no_helper, "h:5000").await, "file/pw");
        assert_eq!(
            answer(&no_helper, "other.example").await,
            "echo/other.example"
        );
        // Docker Hub is asked for by its v1 URL, whatever the config's key.
        assert_eq!(
            answer(&no_helper, "docker.io").await,
            format!("echo/{DOCKER_HUB_SERVER}")
        );
        let hub_helper = with(&[r#"{"credHelpers": {"index.docker.io": "echo"}}"#]);
        assert_eq!(
            answer(&hub_helper, "docker.io").await,
            format!("echo/{DOCKER_HUB_SERVER}")
        );

        // The node-local file first; a registry it has nothing for falls to the Docker config.
        let docker_config = format!(r#"{{"auths": {{{inline}}}}}"#);
        let node_local = r#"{"credHelpers": {"h:5000": "none", "n:1": "echo"}}"#;
        let both = with(&[node_local, &docker_config]);
        assert_eq!(answer(&both, "h:5000").await, "file/pw");
        assert_eq!(answer(&both, "n:1").await, "echo/n:1");
        assert_eq!(answer(&both, "elsewhere").await, "-");
        let overriding = with(&[
            &docker_config.replace("\"pw\"", "\"local\""),
            &docker_config,
        ]);
        assert_eq!(answer(&overriding, "h:5000").await, "file/local");
    }
}

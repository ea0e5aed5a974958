//! Pulling images, with registry credentials read from the Docker client's config file.
//!
//! The agent runs where `docker login` was run by the operator (or where a provisioning tool
//! wrote `config.json`): `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. Only the
//! inline `auths` entries are used; credential helpers (`credsStore`, `credHelpers`) would mean
//! running another program and are not supported. Credentials go to the daemon in the
//! `X-Registry-Auth` header and are never logged or put in an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt as _;

use crate::{Docker, RuntimeError};

/// Registry logins from a Docker config file.
#[derive(Clone, Default)]
pub struct RegistryAuth {
    by_host: HashMap<String, (String, String)>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hosts only: never the user names or passwords.
        let mut hosts: Vec<&String> = self.by_host.keys().collect();
        hosts.sort();
        f.debug_struct("RegistryAuth")
            .field("hosts", &hosts)
            .finish()
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

    /// Reads logins from `path`; a missing file means no logins.
    ///
    /// # Errors
    /// When the file exists but cannot be read or is not a Docker config. The message names
    /// the file and never its content.
    pub fn load(path: &Path) -> Result<Self, RuntimeError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(RuntimeError::Config(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        Self::parse(&text).map_err(|why| RuntimeError::Config(format!("{}: {why}", path.display())))
    }

    /// Parses a Docker client config (`{"auths": {"host": {"auth": base64("user:pass")}}}`).
    fn parse(text: &str) -> Result<Self, String> {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|_| "not valid JSON".to_owned())?;
        let mut by_host = HashMap::new();
        let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
            return Ok(Self { by_host });
        };
        for (host, entry) in auths {
            let pair = if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| format!("the auth entry for {host} is not base64"))?;
                let text = String::from_utf8(raw)
                    .map_err(|_| format!("the auth entry for {host} is not UTF-8"))?;
                let (user, pass) = text
                    .split_once(':')
                    .ok_or_else(|| format!("the auth entry for {host} is not user:password"))?;
                (user.to_owned(), pass.to_owned())
            } else if let (Some(u), Some(p)) = (
                entry.get("username").and_then(|u| u.as_str()),
                entry.get("password").and_then(|p| p.as_str()),
            ) {
                (u.to_owned(), p.to_owned())
            } else {
                continue;
            };
            by_host.insert(normalise_host(host), pair);
        }
        Ok(Self { by_host })
    }

    /// Registries with a login.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.by_host.keys().map(String::as_str)
    }

    fn credentials(&self, registry: &str) -> Option<DockerCredentials> {
        let (user, pass) = self.by_host.get(registry)?;
        Some(DockerCredentials {
            username: Some(user.clone()),
            password: Some(pass.clone()),
            serveraddress: Some(registry.to_owned()),
            ..Default::default()
        })
    }
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

/// The registry an image reference points at (Docker's rule: a first component with a dot,
/// a colon or `localhost` is a host; otherwise Docker Hub).
pub fn registry_of(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// Splits `reference` into what `POST /images/create` takes: the name, and a tag or digest.
/// A reference without either means `latest`, never "every tag".
fn split_reference(reference: &str) -> (&str, &str) {
    if let Some((name, digest)) = reference.split_once('@') {
        return (name, digest);
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.rsplit_once(':') {
        Some((_, tag)) => (&reference[..reference.len() - tag.len() - 1], tag),
        None => (reference, "latest"),
    }
}

impl Docker {
    /// Pulls `reference` and returns the local image id.
    ///
    /// # Errors
    /// [`RuntimeError::Pull`] with the registry's reason (not found, unauthorised, network),
    /// or a transport error.
    pub async fn pull(&self, reference: &str, auth: &RegistryAuth) -> Result<String, RuntimeError> {
        let (name, tag) = split_reference(reference);
        let options = CreateImageOptionsBuilder::default()
            .from_image(name)
            .tag(tag)
            .build();
        let credentials = auth.credentials(registry_of(reference));
        let mut stream = self.api.create_image(Some(options), None, credentials);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        return Err(RuntimeError::Pull {
                            image: reference.to_owned(),
                            message: detail,
                        });
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(RuntimeError::Pull {
                        image: reference.to_owned(),
                        message: error,
                    });
                }
                Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                    return Err(RuntimeError::Pull {
                        image: reference.to_owned(),
                        message,
                    });
                }
                Err(e) => return Err(RuntimeError::from_bollard(e)),
            }
        }
        self.image_id(reference)
            .await?
            .ok_or_else(|| RuntimeError::Pull {
                image: reference.to_owned(),
                message: "the pull finished but the image is not on the host".to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_like_docker_does() {
        assert_eq!(split_reference("nginx"), ("nginx", "latest"));
        assert_eq!(split_reference("nginx:1.27"), ("nginx", "1.27"));
        assert_eq!(
            split_reference("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", "latest")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/app:2"),
            ("127.0.0.1:5000/app", "2")
        );
        assert_eq!(
            split_reference("reg:5000/app@sha256:abc"),
            ("reg:5000/app", "sha256:abc")
        );
        assert_eq!(registry_of("nginx:1"), "docker.io");
        assert_eq!(registry_of("library/nginx"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/app:2"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(registry_of("ghcr.io/o/app"), "ghcr.io");
    }

    #[test]
    fn config_files_give_logins_by_host_and_debug_hides_them() {
        let auth = RegistryAuth::parse(
            r#"{"auths": {
                "127.0.0.1:5000": {"auth": "dXNlcjpodW50ZXIy"},
                "https://index.docker.io/v1/": {"username": "u", "password": "p"},
                "ghcr.io": {}
            }, "credsStore": "desktop"}"#,
        )
        .unwrap();
        let c = auth.credentials("127.0.0.1:5000").unwrap();
        assert_eq!(c.username.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some("hunter2"));
        assert!(auth.credentials("docker.io").is_some());
        assert!(auth.credentials("ghcr.io").is_none());
        let shown = format!("{auth:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("user"),
            "{shown}"
        );
        assert!(RegistryAuth::parse("{").is_err());
        assert!(RegistryAuth::parse(r#"{"auths": {"h": {"auth": "!!"}}}"#).is_err());
    }
}

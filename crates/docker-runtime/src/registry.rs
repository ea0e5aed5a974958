//! The moved-tag check asked of the registry itself: one `HEAD` of the tag's manifest,
//! whose `Docker-Content-Digest` is the digest a pull would get. Docker Hub does not count a
//! `HEAD` against its pull limit; dockerd's own `/distribution` check adds a `GET` of the
//! manifest, which it does count.
//!
//! The registry's Distribution API, as Docker's client speaks it: the login goes as HTTP
//! Basic, or is exchanged for a bearer token at the realm the registry names; HTTPS with the
//! certificate verified against the system's roots and Docker's own per-registry CAs
//! (`/etc/docker/certs.d/<host>/*.crt`); plain HTTP only for a registry on loopback (which
//! Docker also allows without TLS). Whatever this cannot do (a token only a helper can
//! refresh, an `insecure-registries` entry, a mirror) the caller asks dockerd instead.

use std::time::Duration;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use status_http::{Reply, Transport};

use crate::{RegistryAuth, RuntimeError, pull::split_reference, registry_of};

/// Per request.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The manifest types a check accepts, as Docker's client sends them: a multi-platform
/// tag answers with its index, whose digest is what `RepoDigests` records.
const ACCEPT: &str = "application/vnd.docker.distribution.manifest.list.v2+json, \
                      application/vnd.oci.image.index.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.oci.image.manifest.v1+json";

/// Where a tag's manifest is.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    https: bool,
    repository: String,
    tag: String,
}

/// The registry, repository and tag of `reference`; `None` for a digest reference.
fn target(reference: &str) -> Option<Target> {
    let (name, tag) = split_reference(reference);
    if reference.contains('@') {
        return None;
    }
    let registry = registry_of(reference);
    let (registry, repository) = if registry == "docker.io" {
        let path = name.strip_prefix("docker.io/").unwrap_or(name);
        let path = if path.contains('/') {
            path.to_owned()
        } else {
            format!("library/{path}")
        };
        ("registry-1.docker.io", path)
    } else {
        (
            registry,
            name.strip_prefix(registry)?
                .trim_start_matches('/')
                .to_owned(),
        )
    };
    let (host, port) = split_host_port(registry)?;
    let https = !is_loopback(&host);
    let port = port.unwrap_or(if https { 443 } else { 80 });
    Some(Target {
        host,
        port,
        https,
        repository,
        tag: tag.to_owned(),
    })
}

/// `host`, `host:port`, `[v6]:port`.
fn split_host_port(registry: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = registry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':').map(str::parse).transpose().ok()?;
        return Some((host.to_owned(), port));
    }
    match registry.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), Some(port.parse().ok()?))),
        None => Some((registry.to_owned(), None)),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why the direct check did not answer; the caller then asks dockerd.
fn unanswered(reference: &str, why: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Pull {
        image: reference.to_owned(),
        message: format!("the registry's manifest check did not answer: {why}"),
    }
}

/// The digest the registry serves for `reference` now, from one `HEAD` of its manifest
/// (two, and a token request, when the registry asks for a login).
///
/// # Errors
/// [`RuntimeError::CredentialHelper`] when a helper fails; otherwise a
/// [`RuntimeError::Pull`] saying why there is no answer (the caller asks dockerd then).
pub async fn head_digest(reference: &str, auth: &RegistryAuth) -> Result<String, RuntimeError> {
    let Some(t) = target(reference) else {
        return Err(unanswered(reference, "a digest reference is not checked"));
    };
    let credentials = auth.credentials(registry_of(reference)).await?;
    let reference_owned = reference.to_owned();
    tokio::task::spawn_blocking(move || head_blocking(&t, credentials.as_ref()))
        .await
        .map_err(|e| unanswered(&reference_owned, e))?
        .map_err(|why| unanswered(&reference_owned, why))
}

fn head_blocking(t: &Target, credentials: Option<&DockerCredentials>) -> Result<String, String> {
    let transport = transport(&t.host, t.https);
    let path = format!("/v2/{}/manifests/{}", t.repository, t.tag);
    let head = |authorization: Option<&str>| -> Result<Reply, String> {
        let mut headers = vec![("Accept", ACCEPT)];
        if let Some(a) = authorization {
            headers.push(("Authorization", a));
        }
        status_http::call(
            &t.host, t.port, &transport, "HEAD", &path, &headers, TIMEOUT,
        )
        .map_err(|e| e.to_string())
    };
    let mut reply = head(None)?;
    if reply.code == 401 {
        let challenge = reply
            .header("www-authenticate")
            .ok_or("a 401 without a challenge")?
            .to_owned();
        let authorization = answer_challenge(&challenge, &t.repository, credentials)?;
        reply = head(Some(&authorization))?;
    }
    match reply.code {
        200 => reply
            .header("docker-content-digest")
            .filter(|d| d.starts_with("sha256:"))
            .map(str::to_owned)
            .ok_or_else(|| "the registry named no digest".to_owned()),
        code => Err(format!("the registry answered HTTP {code}")),
    }
}

fn transport(host: &str, https: bool) -> Transport {
    if !https {
        return Transport::Http;
    }
    // Docker's own trust for this registry: every `*.crt` under certs.d/<host>.
    let mut extra_roots = Vec::new();
    if let Ok(dir) = std::fs::read_dir(format!("/etc/docker/certs.d/{host}")) {
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "crt")
                && let Ok(pem) = std::fs::read(&path)
            {
                extra_roots.extend_from_slice(&pem);
                extra_roots.push(b'\n');
            }
        }
    }
    Transport::Https { extra_roots }
}

/// The `Authorization` value answering a `WWW-Authenticate` challenge.
fn answer_challenge(
    challenge: &str,
    repository: &str,
    credentials: Option<&DockerCredentials>,
) -> Result<String, String> {
    let basic = credentials.and_then(|c| match (&c.username, &c.password) {
        (Some(u), Some(p)) => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )),
        _ => None,
    });
    let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return basic.ok_or_else(|| "the registry asks for a login and there is none".to_owned());
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(format!("an unknown challenge scheme {scheme}"));
    }
    if credentials.is_some() && basic.is_none() {
        // An identity token is exchanged by an OAuth flow this check does not speak.
        return Err("the login is a token only dockerd can use".to_owned());
    }
    let param = |name: &str| challenge_param(params, name);
    let realm = param("realm").ok_or("a bearer challenge without a realm")?;
    let mut url = format!(
        "{realm}?scope={}",
        encode(&format!("repository:{repository}:pull"))
    );
    if let Some(service) = param("service") {
        url.push_str(&format!("&service={}", encode(&service)));
    }
    let token = fetch_token(&url, basic.as_deref())?;
    Ok(format!("Bearer {token}"))
}

/// A `key="value"` (or `key=value`) parameter of a challenge.
fn challenge_param(params: &str, name: &str) -> Option<String> {
    let mut rest = params;
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ']);
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(value.to_owned());
        }
        rest = next;
    }
    None
}

/// Percent-encoding of a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A pull token from the realm `url`, with the Basic login when there is one.
fn fetch_token(url: &str, basic: Option<&str>) -> Result<String, String> {
    let (scheme, rest) = url.split_once("://").ok_or("a realm that is not a URL")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = split_host_port(authority).ok_or("a realm with a bad host")?;
    let https = match scheme {
        "https" => true,
        // A token over plain HTTP only from loopback, as for the registry itself.
        "http" if is_loopback(&host) => false,
        _ => return Err("a realm that is not HTTPS".to_owned()),
    };
    let port = port.unwrap_or(if https { 443 } else { 80 });
    let mut headers = vec![("Accept", "application/json")];
    if let Some(b) = basic {
        headers.push(("Authorization", b));
    }
    let reply = status_http::call(
        &host,
        port,
        &transport(&host, https),
        "GET",
        path,
        &headers,
        TIMEOUT,
    )
    .map_err(|e| e.to_string())?;
    if reply.code != 200 {
        return Err(format!("the token service answered HTTP {}", reply.code));
    }
    let doc: serde_json::Value = serde_json::from_slice(&reply.body)
        .map_err(|_| "the token service's answer is not JSON")?;
    doc.get("token")
        .or_else(|| doc.get("access_token"))
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| "the token service gave no token".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_their_manifest() {
        let t = target("nginx:1.27").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.https,
                t.repository.as_str(),
                t.tag.as_str()
            ),
            ("registry-1.docker.io", 443, true, "library/nginx", "1.27")
        );
        let t = target("docker.io/org/app").unwrap();
        assert_eq!(
            (t.repository.as_str(), t.tag.as_str()),
            ("org/app", "latest")
        );
        let t = target("127.0.0.1:5000/team/app:2").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.https, t.repository.as_str()),
            ("127.0.0.1", 5000, false, "team/app")
        );
        let t = target("ghcr.io/o/a:v1").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.https), ("ghcr.io", 443, true));
        assert!(target("app@sha256:abc").is_none());
        assert_eq!(
            split_host_port("[::1]:5000"),
            Some(("::1".to_owned(), Some(5000)))
        );
    }

    #[test]
    fn challenges_are_answered_as_docker_answers_them() {
        let c = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#;
        let (_, params) = c.split_once(' ').unwrap();
        assert_eq!(
            challenge_param(params, "realm").as_deref(),
            Some("https://auth.docker.io/token")
        );
        assert_eq!(
            challenge_param(params, "service").as_deref(),
            Some("registry.docker.io")
        );
        assert_eq!(challenge_param(params, "nope"), None);
        let creds = DockerCredentials {
            username: Some("u".into()),
            password: Some("p".into()),
            ..Default::default()
        };
        assert_eq!(
            answer_challenge(r#"Basic realm="r""#, "a", Some(&creds)).unwrap(),
            "Basic dTpw"
        );
        assert!(answer_challenge(r#"Basic realm="r""#, "a", None).is_err());
        // A realm that would send the login in clear is refused.
        assert!(
            answer_challenge(
                r#"Bearer realm="http://auth.example.com/t""#,
                "a",
                Some(&creds)
            )
            .is_err()
        );
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }
}

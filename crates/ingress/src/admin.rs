//! Caddy's admin API, driven with one bounded blocking request per call: load a config, read
//! the current one back, reload only on drift, and read the certificate Caddy serves.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use status_http::ClientError;

use crate::{IngressError, MESSAGE_CAP};

/// A running Caddy's admin API, at `admin`, each request bounded by `timeout` per read or
/// write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caddy {
    /// The admin API's address (the `admin.listen` of the configs rendered for it).
    pub admin: SocketAddr,
    /// Bound of each read or write of a request. A load returns once Caddy has started the
    /// new config, which takes milliseconds, but on a loaded host allow seconds.
    pub timeout: Duration,
}

/// What [`Caddy::ensure`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Caddy already ran this config; nothing was sent.
    Unchanged,
    /// Caddy ran another config (or none), and now runs this one.
    Loaded,
}

/// The certificate Caddy serves for a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// The issuer's common name (`R11`, `Pebble Intermediate CA 1a2b3c`, `Caddy Local
    /// Authority - ECC Intermediate`), or its whole name when it has no common name.
    pub issuer: String,
    /// Start of validity, in Unix seconds.
    pub not_before: i64,
    /// End of validity, in Unix seconds.
    pub not_after: i64,
}

impl Caddy {
    /// The admin API at `admin`.
    pub fn new(admin: SocketAddr, timeout: Duration) -> Self {
        Self { admin, timeout }
    }

    /// Replaces Caddy's whole config with `config` (`POST /load`). Caddy answers once the new
    /// config runs (its listeners bound, its routes live) and the old servers' shutdown has
    /// started, not finished: for a moment after, a new connection may still meet the old
    /// routes (Caddy 2.6.2's `App.Stop` says as much). Certificates it must still obtain
    /// arrive in the background.
    ///
    /// # Errors
    /// [`IngressError::Refused`] with Caddy's message when it rejects the config; the config
    /// it ran before keeps serving. [`IngressError::Unreachable`] when the admin API cannot
    /// be reached.
    pub fn load(&self, config: &Value) -> Result<(), IngressError> {
        // Serialized once, straight into the request body.
        let body =
            serde_json::to_vec(config).map_err(|_| IngressError::Malformed { addr: self.admin })?;
        let answer = status_http::request(
            self.admin,
            "POST",
            "/load",
            &[],
            Some(("application/json", &body)),
            self.timeout,
        )
        .map_err(|e| self.failed(e))?;
        refused(answer.code, &answer.body)
    }

    /// The config Caddy runs (`GET /config/`): `null` when it runs none.
    ///
    /// # Errors
    /// When the admin API cannot be reached, answers an error, or answers something that is
    /// not JSON.
    pub fn current(&self) -> Result<Value, IngressError> {
        let answer =
            status_http::get(self.admin, "/config/", self.timeout).map_err(|e| self.failed(e))?;
        refused(answer.code, &answer.body)?;
        serde_json::from_str(&answer.body).map_err(|_| IngressError::Malformed { addr: self.admin })
    }

    /// The routes Caddy serves now, by domain ([`crate::routes_in`] of [`Caddy::current`]):
    /// what `orun plan` compares the Services with.
    ///
    /// # Errors
    /// As [`Caddy::current`].
    pub fn routes(
        &self,
    ) -> Result<std::collections::BTreeMap<String, reconcile_core::RouteNow>, IngressError> {
        Ok(crate::routes_in(&self.current()?))
    }

    /// Makes Caddy run `config`: loads it only when the config Caddy runs differs as JSON
    /// (key order and spacing aside). This is how the agent repairs drift: Caddy restarted
    /// with its initial config, or someone loaded another one.
    ///
    /// # Errors
    /// As [`Caddy::current`] and [`Caddy::load`].
    pub fn ensure(&self, config: &Value) -> Result<Applied, IngressError> {
        if self.current()? == *config {
            tracing::debug!(admin = %self.admin, "Caddy runs the ingress config already");
            return Ok(Applied::Unchanged);
        }
        self.load(config)?;
        tracing::info!(admin = %self.admin, "loaded the ingress config into Caddy");
        Ok(Applied::Loaded)
    }

    /// The certificate Caddy's HTTPS listener at `https` serves for `domain` (sent as SNI),
    /// as a browser would get it; not verified, since the point is to report what is served.
    ///
    /// `None` when none is served for that name yet: the handshake fails (Caddy has no
    /// certificate to offer), or the certificate offered names neither `domain` nor a
    /// wildcard covering it (a fallback certificate).
    ///
    /// # Errors
    /// [`IngressError::Unreachable`] when nothing answers at `https`;
    /// [`IngressError::Malformed`] when the certificate offered cannot be read.
    pub fn certificate(
        &self,
        https: SocketAddr,
        domain: &str,
    ) -> Result<Option<Certificate>, IngressError> {
        let seen = match status_http::peer_certificate(https, domain, self.timeout) {
            Ok(seen) => seen,
            // A TLS alert, or a connection closed or reset during the handshake: Caddy
            // listens but has nothing to offer for this name (yet).
            Err(ClientError::Io { source, .. })
                if matches!(
                    source.kind(),
                    ErrorKind::InvalidData | ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(None);
            }
            Err(ClientError::Malformed { addr }) => return Err(IngressError::Malformed { addr }),
            Err(source) => {
                return Err(IngressError::Unreachable {
                    addr: https,
                    source,
                });
            }
        };
        let covers = seen.subject_names.iter().any(|name| names(name, domain));
        Ok(covers.then_some(Certificate {
            issuer: seen.issuer,
            not_before: seen.not_before,
            not_after: seen.not_after,
        }))
    }

    fn failed(&self, error: ClientError) -> IngressError {
        match error {
            ClientError::Malformed { addr } => IngressError::Malformed { addr },
            source => IngressError::Unreachable {
                addr: self.admin,
                source,
            },
        }
    }
}

/// Whether the certificate name `name` (`example.com`, `*.example.com`) covers `domain`,
/// as TLS clients match them: ASCII case aside, a wildcard standing for one whole label.
fn names(name: &str, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    if name.eq_ignore_ascii_case(domain) {
        return true;
    }
    match (name.strip_prefix("*."), domain.split_once('.')) {
        (Some(parent), Some((label, rest))) => {
            !label.is_empty() && parent.eq_ignore_ascii_case(rest)
        }
        _ => false,
    }
}

/// `Ok` for a 2xx answer; otherwise [`IngressError::Refused`] with Caddy's message: the
/// `error` of its JSON answer when there is one, else the body, on one line, capped.
fn refused(code: u16, body: &str) -> Result<(), IngressError> {
    if (200..300).contains(&code) {
        return Ok(());
    }
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    Err(IngressError::Refused {
        code,
        message: one_line(&message, MESSAGE_CAP),
    })
}

/// `text` with control characters (line breaks included) as spaces, trimmed, cut to at most
/// `cap` bytes on a character boundary, `…` marking a cut.
fn one_line(text: &str, cap: usize) -> String {
    let flat: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.len() <= cap {
        return flat;
    }
    let mut end = cap.saturating_sub('…'.len_utf8());
    while !flat.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &flat[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caddy_messages_are_read_from_its_json_one_line_and_capped() {
        let err = refused(
            400,
            r#"{"error":"loading config: loading new config: unknown module: http.handlers.nope"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the admin API refused the request (HTTP 400): loading config: loading new config: \
             unknown module: http.handlers.nope"
        );
        let err = refused(403, "host not allowed\r\nX-Other: 1").unwrap_err();
        assert!(
            matches!(&err, IngressError::Refused { code: 403, message } if message == "host not allowed  X-Other: 1"),
            "{err:?}"
        );
        let long = format!("{{\"error\":\"{}\"}}", "é".repeat(400));
        let Err(IngressError::Refused { message, .. }) = refused(400, &long) else {
            panic!("a 400 is refused");
        };
        assert!(message.len() <= MESSAGE_CAP, "{}", message.len());
        assert!(message.ends_with("é…"), "{message}");
        assert!(refused(200, "").is_ok());
    }

    #[test]
    fn certificate_names_cover_a_domain_as_tls_clients_match_them() {
        for (name, domain, covers) in [
            ("www.example.com", "www.example.com", true),
            ("WWW.Example.com", "www.example.com.", true),
            ("*.example.com", "www.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("example.com", "www.example.com", false),
            ("www.example.com", "example.com", false),
        ] {
            assert_eq!(names(name, domain), covers, "{name} for {domain}");
        }
    }
}

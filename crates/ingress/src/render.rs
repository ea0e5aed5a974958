//! Routes and settings in, Caddy's whole JSON config out: pure, deterministic, no IO.
//!
//! The layout was checked by hand against Caddy 2.6.2 and is held by the tests against the
//! real Caddy (`tests/caddy.rs`); the snapshots below pin it byte for byte.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use reconcile_core::RouteNow;
use serde_json::{Map, Value, json};

/// Let's Encrypt's production ACME directory, the default issuer.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// One domain routed to one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The Service's name, shown in the 503 answer when it has no serving container.
    pub service: String,
    /// The domain Caddy matches on the `Host` header (and, with `ssl`, gets a certificate for).
    pub domain: String,
    /// Whether the domain is served over HTTPS (HTTP then redirects to it).
    pub ssl: bool,
    /// Where requests go: the serving container's address. `None` when the Service's
    /// deployment has no serving container; the route then answers 503.
    pub upstream: Option<SocketAddr>,
}

/// Where certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issuer {
    /// An ACME CA (Let's Encrypt, or a private one).
    Acme {
        /// The ACME directory URL.
        directory: String,
        /// The account's contact address, if any.
        email: Option<String>,
        /// PEM files trusted for the ACME directory's own TLS, beside the system's roots:
        /// for private ACME servers (pebble, step-ca) whose API certificate no public CA
        /// signed. Empty for public CAs.
        trusted_roots: Vec<PathBuf>,
    },
    /// Caddy's internal CA, for private networks: certificates no browser trusts unless its
    /// root is installed by hand. Caddy is told never to install that root into the host's
    /// trust store itself.
    Internal,
}

impl Default for Issuer {
    /// Let's Encrypt's production directory, no email, the system's roots.
    fn default() -> Self {
        Self::Acme {
            directory: LETS_ENCRYPT.to_owned(),
            email: None,
            trusted_roots: Vec::new(),
        }
    }
}

/// How Caddy runs on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Caddy's admin API. Repeated in every config, or a load would move it to Caddy's
    /// default (`localhost:2019`).
    pub admin: SocketAddr,
    /// The port plain HTTP is served on (80).
    pub http_port: u16,
    /// The port HTTPS is served on (443); redirects name it when it is not 443.
    pub https_port: u16,
    /// Where certificates come from (Let's Encrypt by default).
    pub issuer: Issuer,
    /// How long the proxy keeps retrying to dial an upstream before answering 502, in
    /// milliseconds (2000): a container being replaced is briefly unreachable.
    pub try_duration_ms: u64,
}

impl Default for Settings {
    /// Caddy's own default admin address, ports 80 and 443, Let's Encrypt, 2 s of retries.
    fn default() -> Self {
        Self {
            admin: SocketAddr::from(([127, 0, 0, 1], 2019)),
            http_port: 80,
            https_port: 443,
            issuer: Issuer::default(),
            try_duration_ms: 2000,
        }
    }
}

/// Caddy's whole config for `routes` under `settings`.
///
/// The agent owns Caddy's config entirely, so this is all of it: the `admin` block, the
/// `http` app with a server `http` (plain routes, redirects of HTTPS domains, a final 404)
/// and, when some route has `ssl`, a server `https` (its routes, a final 404), the `tls` app's
/// automation policy for the HTTPS domains, and the `pki` app's local CA without trust-store
/// installation.
///
/// # Guarantees
/// - Deterministic: routes are ordered by domain (then Service), whatever their input order.
/// - Every request gets a real answer, never Caddy's empty 200: a route without upstream
///   answers 503 `no healthy container for <service>`, an unknown host 404.
/// - The `http` server listens only on the HTTP port, so Caddy applies no automatic HTTPS to
///   it: plain domains get no certificate. The `https` server's own redirects are off; the
///   `http` server redirects (308, method and body kept) only the HTTPS domains.
/// - Caddy's local CA never installs its root into the host's trust store (Caddy runs as
///   root, and would otherwise do so the first time it issues a certificate itself).
///
/// Service names and domains are used as given: the agent passes names and domains that
/// `manifest-model` validated (DNS labels and names), which hold no Caddy placeholder.
pub fn render(settings: &Settings, routes: &[Route]) -> Value {
    let mut sorted: Vec<&Route> = routes.iter().collect();
    sorted.sort_by(|a, b| (&a.domain, &a.service).cmp(&(&b.domain, &b.service)));
    let try_duration = format!("{}ms", settings.try_duration_ms);

    let mut plain = Vec::new();
    let mut secure = Vec::new();
    let mut subjects = Vec::new();
    for route in &sorted {
        let serve = host_route(&route.domain, handler(route, &try_duration));
        if route.ssl {
            secure.push(serve);
            subjects.push(Value::from(route.domain.as_str()));
            plain.push(host_route(&route.domain, redirect(settings.https_port)));
        } else {
            plain.push(serve);
        }
    }
    plain.push(not_found());

    let mut servers = Map::new();
    servers.insert(
        "http".to_owned(),
        json!({
            "listen": [format!(":{}", settings.http_port)],
            "routes": plain,
        }),
    );
    let mut apps = Map::new();
    if !secure.is_empty() {
        secure.push(not_found());
        servers.insert(
            "https".to_owned(),
            json!({
                "listen": [format!(":{}", settings.https_port)],
                "routes": secure,
                "automatic_https": {"disable_redirects": true},
            }),
        );
        apps.insert(
            "tls".to_owned(),
            json!({
                "automation": {
                    "policies": [{"subjects": subjects, "issuers": [issuer(&settings.issuer)]}],
                },
            }),
        );
    }
    apps.insert(
        "http".to_owned(),
        json!({
            "http_port": settings.http_port,
            "https_port": settings.https_port,
            "servers": servers,
        }),
    );
    apps.insert(
        "pki".to_owned(),
        json!({"certificate_authorities": {"local": {"install_trust": false}}}),
    );
    json!({
        "admin": {"listen": settings.admin.to_string()},
        "apps": apps,
    })
}

/// Points the route of `domain` in a config of [`render`]'s shape at `upstream`, leaving
/// every other route as it is: how a switch moves one deployment's routes when the agent does
/// not hold the rest (a fresh process, whose Caddy serves what the last one loaded). Returns
/// whether a route of `domain` was found (a redirect to HTTPS is not one).
pub fn retarget(
    settings: &Settings,
    config: &mut Value,
    domain: &str,
    upstream: SocketAddr,
) -> bool {
    let try_duration = format!("{}ms", settings.try_duration_ms);
    let route = Route {
        service: String::new(),
        domain: domain.to_owned(),
        ssl: false,
        upstream: Some(upstream),
    };
    let mut found = false;
    for server in ["https", "http"] {
        let Some(routes) = config["apps"]["http"]["servers"][server]["routes"].as_array_mut()
        else {
            continue;
        };
        for r in routes {
            if r["match"][0]["host"][0].as_str() != Some(domain) {
                continue;
            }
            let h = &r["handle"][0];
            let ours = h["handler"] == "reverse_proxy"
                || (h["handler"] == "static_response" && h["status_code"] == 503);
            if ours {
                r["handle"] = Value::Array(vec![handler(&route, &try_duration)]);
                found = true;
            }
        }
    }
    found
}

/// The routes a config of [`render`]'s shape serves, by domain: what `orun plan` compares
/// the Services with. Routes of any other shape (someone else's config) are left out.
pub fn routes_in(config: &Value) -> BTreeMap<String, RouteNow> {
    let mut out = BTreeMap::new();
    let servers = &config["apps"]["http"]["servers"];
    for (server, ssl) in [("https", true), ("http", false)] {
        let Some(routes) = servers[server]["routes"].as_array() else {
            continue;
        };
        for r in routes {
            let Some(domain) = r["match"][0]["host"][0].as_str() else {
                continue;
            };
            let h = &r["handle"][0];
            let upstream = match (h["handler"].as_str(), h["status_code"].as_u64()) {
                (Some("reverse_proxy"), _) => h["upstreams"][0]["dial"]
                    .as_str()
                    .and_then(|d| d.parse().ok()),
                (Some("static_response"), Some(503)) => None,
                // A redirect to the HTTPS server, or something not ours.
                _ => continue,
            };
            out.entry(domain.to_owned())
                .or_insert(RouteNow { ssl, upstream });
        }
    }
    out
}

/// A route matching `domain` on the `Host` header, ending the chain.
fn host_route(domain: &str, handle: Value) -> Value {
    json!({
        "match": [{"host": [domain]}],
        "handle": [handle],
        "terminal": true,
    })
}

/// The reverse proxy to the route's upstream, or its 503 when it has none.
fn handler(route: &Route, try_duration: &str) -> Value {
    match route.upstream {
        Some(upstream) => json!({
            "handler": "reverse_proxy",
            "upstreams": [{"dial": upstream.to_string()}],
            "load_balancing": {"try_duration": try_duration},
        }),
        None => json!({
            "handler": "static_response",
            "status_code": 503,
            "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
            "body": format!("no healthy container for {}", route.service),
        }),
    }
}

/// 308 to the same host and URI over HTTPS (308 keeps the method and body, unlike 301).
fn redirect(https_port: u16) -> Value {
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    json!({
        "handler": "static_response",
        "status_code": 308,
        "headers": {"Location": [format!("https://{{http.request.host}}{port}{{http.request.uri}}")]},
    })
}

/// The last route of a server: any host no route matched gets 404, not Caddy's empty 200.
fn not_found() -> Value {
    json!({"handle": [{"handler": "static_response", "status_code": 404}]})
}

/// The automation policy's issuer module.
fn issuer(issuer: &Issuer) -> Value {
    match issuer {
        Issuer::Acme {
            directory,
            email,
            trusted_roots,
        } => {
            let mut acme = Map::new();
            acme.insert("module".to_owned(), "acme".into());
            acme.insert("ca".to_owned(), directory.as_str().into());
            if let Some(email) = email {
                acme.insert("email".to_owned(), email.as_str().into());
            }
            if !trusted_roots.is_empty() {
                let files: Vec<Value> = trusted_roots
                    .iter()
                    .map(|p| p.display().to_string().into())
                    .collect();
                acme.insert("trusted_roots_pem_files".to_owned(), files.into());
            }
            Value::Object(acme)
        }
        Issuer::Internal => json!({"module": "internal"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn route(service: &str, domain: &str, ssl: bool, upstream: Option<&str>) -> Route {
        Route {
            service: service.to_owned(),
            domain: domain.to_owned(),
            ssl,
            upstream: upstream.map(|u| u.parse().unwrap()),
        }
    }

    fn check(settings: &Settings, routes: &[Route], expected: Expect) {
        let rendered = render(settings, routes);
        expected.assert_eq(&serde_json::to_string_pretty(&rendered).unwrap());
    }

    #[test]
    fn retarget_moves_one_route_and_leaves_the_rest() {
        let settings = Settings::default();
        let routes = [
            route("web", "www.example.com", true, Some("172.17.0.2:8080")),
            route("api", "api.example.com", false, None),
        ];
        let mut config = render(&settings, &routes);
        let new: SocketAddr = "172.17.0.9:8080".parse().unwrap();
        assert!(retarget(&settings, &mut config, "www.example.com", new));
        assert!(retarget(&settings, &mut config, "api.example.com", new));
        assert!(!retarget(&settings, &mut config, "nobody.example.com", new));
        let mut moved = routes.clone();
        moved[0].upstream = Some(new);
        moved[1].upstream = Some(new);
        assert_eq!(config, render(&settings, &moved));
    }

    #[test]
    fn routes_read_back_as_rendered() {
        let routes = [
            route("web", "www.example.com", true, Some("172.17.0.2:8080")),
            route("api", "api.example.com", false, None),
            route("doc", "doc.example.com", false, Some("172.17.0.3:80")),
        ];
        let back = routes_in(&render(&Settings::default(), &routes));
        let want: BTreeMap<String, RouteNow> = routes
            .iter()
            .map(|r| {
                (
                    r.domain.clone(),
                    RouteNow {
                        ssl: r.ssl,
                        upstream: r.upstream,
                    },
                )
            })
            .collect();
        assert_eq!(back, want);
        assert!(routes_in(&serde_json::json!({"admin": {}})).is_empty());
    }

    #[test]
    fn plain_routes_a_503_and_the_final_404() {
        check(
            &Settings::default(),
            &[
                route("web", "www.example.com", false, Some("172.17.0.2:8080")),
                route("api", "api.example.com", false, None),
            ],
            expect![[r#"
                {
                  "admin": {
                    "listen": "127.0.0.1:2019"
                  },
                  "apps": {
                    "http": {
                      "http_port": 80,
                      "https_port": 443,
                      "servers": {
                        "http": {
                          "listen": [
                            ":80"
                          ],
                          "routes": [
                            {
                              "handle": [
                                {
                                  "body": "no healthy container for api",
                                  "handler": "static_response",
                                  "headers": {
                                    "Content-Type": [
                                      "text/plain; charset=utf-8"
                                    ]
                                  },
                                  "status_code": 503
                                }
                              ],
                              "match": [
                                {
                                  "host": [
                                    "api.example.com"
                                  ]
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "handler": "reverse_proxy",
                                  "load_balancing": {
                                    "try_duration": "2000ms"
                                  },
                                  "upstreams": [
                                    {
                                      "dial": "172.17.0.2:8080"
                                    }
                                  ]
                                }
                              ],
                              "match": [
                                {
                                  "host": [
                                    "www.example.com"
                                  ]
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "handler": "static_response",
                                  "status_code": 404
                                }
                              ]
                            }
                          ]
                        }
                      }
                    },
                    "pki": {
                      "certificate_authorities": {
                        "local": {
                          "install_trust": false
                        }
                      }
                    }
                  }
                }"#]],
        );
    }

    #[test]
    fn https_routes_redirects_and_the_acme_policy() {
        let settings = Settings {
            admin: "127.0.0.1:2999".parse().unwrap(),
            http_port: 8080,
            https_port: 8443,
            issuer: Issuer::Acme {
                directory: "https://127.0.0.1:14000/dir".to_owned(),
                email: Some("ops@example.com".to_owned()),
                trusted_roots: vec![PathBuf::from("/etc/orun/pebble.pem")],
            },
            try_duration_ms: 500,
        };
        check(
            &settings,
            &[
                route("web", "www.example.com", true, Some("[::1]:3000")),
                route("docs", "docs.example.com", false, Some("10.0.0.5:80")),
            ],
            expect![[r#"
                {
                  "admin": {
                    "listen": "127.0.0.1:2999"
                  },
                  "apps": {
                    "http": {
                      "http_port": 8080,
                      "https_port": 8443,
                      "servers": {
                        "http": {
                          "listen": [
                            ":8080"
                          ],
                          "routes": [
                            {
                              "handle": [
                                {
                                  "handler": "reverse_proxy",
                                  "load_balancing": {
                                    "try_duration": "500ms"
                                  },
                                  "upstreams": [
                                    {
                                      "dial": "10.0.0.5:80"
                                    }
                                  ]
                                }
                              ],
                              "match": [
                                {
                                  "host": [
                                    "docs.example.com"
                                  ]
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "handler": "static_response",
                                  "headers": {
                                    "Location": [
                                      "https://{http.request.host}:8443{http.request.uri}"
                                    ]
                                  },
                                  "status_code": 308
                                }
                              ],
                              "match": [
                                {
                                  "host": [
                                    "www.example.com"
                                  ]
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "handler": "static_response",
                                  "status_code": 404
                                }
                              ]
                            }
                          ]
                        },
                        "https": {
                          "automatic_https": {
                            "disable_redirects": true
                          },
                          "listen": [
                            ":8443"
                          ],
                          "routes": [
                            {
                              "handle": [
                                {
                                  "handler": "reverse_proxy",
                                  "load_balancing": {
                                    "try_duration": "500ms"
                                  },
                                  "upstreams": [
                                    {
                                      "dial": "[::1]:3000"
                                    }
                                  ]
                                }
                              ],
                              "match": [
                                {
                                  "host": [
                                    "www.example.com"
                                  ]
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "handler": "static_response",
                                  "status_code": 404
                                }
                              ]
                            }
                          ]
                        }
                      }
                    },
                    "pki": {
                      "certificate_authorities": {
                        "local": {
                          "install_trust": false
                        }
                      }
                    },
                    "tls": {
                      "automation": {
                        "policies": [
                          {
                            "issuers": [
                              {
                                "ca": "https://127.0.0.1:14000/dir",
                                "email": "ops@example.com",
                                "module": "acme",
                                "trusted_roots_pem_files": [
                                  "/etc/orun/pebble.pem"
                                ]
                              }
                            ],
                            "subjects": [
                              "www.example.com"
                            ]
                          }
                        ]
                      }
                    }
                  }
                }"#]],
        );
    }

    #[test]
    fn the_internal_ca_and_the_default_https_port() {
        let settings = Settings {
            issuer: Issuer::Internal,
            ..Settings::default()
        };
        let rendered = render(&settings, &[route("web", "web.lan", true, None)]);
        let compact = |v: &Value| serde_json::to_string(v).unwrap();
        expect![[r#"{"policies":[{"issuers":[{"module":"internal"}],"subjects":["web.lan"]}]}"#]]
            .assert_eq(&compact(&rendered["apps"]["tls"]["automation"]));
        // At 443 the redirect names no port; a Service without container answers 503 over
        // HTTPS too.
        expect![[r#"[{"handle":[{"handler":"static_response","headers":{"Location":["https://{http.request.host}{http.request.uri}"]},"status_code":308}],"match":[{"host":["web.lan"]}],"terminal":true},{"handle":[{"handler":"static_response","status_code":404}]}]"#]]
            .assert_eq(&compact(&rendered["apps"]["http"]["servers"]["http"]["routes"]));
        expect![[r#"{"body":"no healthy container for web","handler":"static_response","headers":{"Content-Type":["text/plain; charset=utf-8"]},"status_code":503}"#]]
            .assert_eq(&compact(
                &rendered["apps"]["http"]["servers"]["https"]["routes"][0]["handle"][0],
            ));
    }

    #[test]
    fn input_order_does_not_change_the_config() {
        let routes = [
            route("b", "b.example.com", true, Some("10.0.0.2:80")),
            route("a", "a.example.com", false, Some("10.0.0.1:80")),
            route("c", "c.example.com", true, None),
            route("a2", "a.example.com", false, Some("10.0.0.3:80")),
        ];
        let settings = Settings::default();
        let forward = render(&settings, &routes);
        let mut reversed = routes.to_vec();
        reversed.reverse();
        assert_eq!(forward, render(&settings, &reversed));
        assert_eq!(
            forward["apps"]["tls"]["automation"]["policies"][0]["subjects"],
            json!(["b.example.com", "c.example.com"])
        );
    }

    #[test]
    fn no_route_is_a_server_that_answers_404() {
        let rendered = render(&Settings::default(), &[]);
        assert_eq!(
            rendered["apps"]["http"]["servers"]["http"]["routes"],
            json!([not_found()])
        );
        assert!(rendered["apps"]["http"]["servers"].get("https").is_none());
        assert!(rendered["apps"].get("tls").is_none());
    }
}

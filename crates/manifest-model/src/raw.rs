//! Raw serde shapes of the manifest files: exactly what YAML may say, nothing more.
//!
//! Every struct denies unknown fields (RELIABILITY A8), `metadata` aside (see [`Metadata`]),
//! and leaves that validation needs to point at carry their source position (`Sp`). These types are parsed, then validated into the
//! domain types of `model`; nothing outside this crate sees them.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::Spanned;

/// A value with the place it was written.
pub(crate) type Sp<T> = Spanned<T>;

/// The envelope shared by every manifest: `apiVersion`, `kind`, `metadata`, `spec`.
///
/// Top-level keys starting with `x-` are accepted and ignored, as in compose files, so a
/// manifest can hold YAML anchors to reuse (RELIABILITY A3). Any other unknown key is an error.
#[derive(Debug)]
pub(crate) struct Envelope<S> {
    pub api_version: Sp<String>,
    pub kind: Sp<String>,
    pub metadata: Metadata,
    pub spec: S,
    /// The file carries a top-level `sops` block: sops encrypted some of its values.
    pub sops: bool,
}

/// `metadata`: the name, and any other key, kept only to be warned about.
///
/// Orcra Run read `metadata.name` alone and let other keys be (manifests copied from
/// Kubernetes carry `labels`, `annotations`, `namespace`), so they are accepted and ignored
/// with a warning. A misspelt `name` cannot slip through this way: `name` is required.
#[derive(Debug)]
pub(crate) struct Metadata {
    pub name: Sp<String>,
    /// Other keys, with where their values start, in the written order.
    pub ignored: Vec<(String, Sp<IgnoredAny>)>,
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Metadata;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping with `name`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut name = None;
                let mut ignored = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "name" {
                        name = Some(map.next_value()?);
                    } else {
                        ignored.push((key, map.next_value()?));
                    }
                }
                Ok(Metadata {
                    name: name.ok_or_else(|| de::Error::missing_field("name"))?,
                    ignored,
                })
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// Why a quoted `"true"` or `"false"` is refused in a boolean field (shown as written: see
/// `yaml::plain_words`).
pub(crate) const QUOTED_BOOLEAN: &str =
    "a quoted boolean is a string: write true or false without quotes";

/// A boolean field's value, and whether it was written as a YAML 1.1 word.
///
/// YAML 1.2 booleans are `true` and `false` (also `True`, `TRUE`, ...). Orcra Run, a Go
/// program, read the YAML 1.1 words too when the field is a boolean (`y`, `yes`, `on` and
/// `n`, `no`, `off`, in lower, title or upper case, quoted or not), so they are read the same
/// way and the validator warns. Anything else (`1`, `enabled`) is refused.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flag {
    pub value: bool,
    /// Written as a YAML 1.1 word rather than `true` or `false`.
    pub yaml11: bool,
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`true` or `false`")
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Flag, E> {
                Ok(Flag {
                    value,
                    yaml11: false,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                // The words Go's YAML decoder (gopkg.in/yaml.v3) takes into a bool.
                let value = match v {
                    "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => true,
                    "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => false,
                    // Go refuses a quoted `"true"` in a boolean as well; say why, since it
                    // reads like the right word.
                    _ if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") => {
                        return Err(de::Error::custom(QUOTED_BOOLEAN));
                    }
                    _ => return Err(de::Error::invalid_value(de::Unexpected::Str(v), &self)),
                };
                Ok(Flag {
                    value,
                    yaml11: true,
                })
            }
        }
        // Read as whatever the scalar is: with strict booleans the parser hands the YAML 1.1
        // words over as strings, which `visit_str` judges.
        deserializer.deserialize_any(V)
    }
}

const ENVELOPE_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];

impl<'de, S: Deserialize<'de>> Deserialize<'de> for Envelope<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<S>(PhantomData<S>);
        impl<'de, S: Deserialize<'de>> Visitor<'de> for V<S> {
            type Value = Envelope<S>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a manifest with apiVersion, kind, metadata and spec")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut api_version, mut kind, mut metadata, mut spec) = (None, None, None, None);
                let mut sops = false;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "apiVersion" => api_version = Some(map.next_value()?),
                        "kind" => kind = Some(map.next_value()?),
                        "metadata" => metadata = Some(map.next_value()?),
                        "spec" => spec = Some(map.next_value()?),
                        k if k.starts_with("x-") => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        // SOPS metadata: the loader reads the file again as a SOPS document.
                        "sops" => {
                            map.next_value::<IgnoredAny>()?;
                            sops = true;
                        }
                        other => return Err(de::Error::unknown_field(other, ENVELOPE_FIELDS)),
                    }
                }
                Ok(Envelope {
                    api_version: api_version
                        .ok_or_else(|| de::Error::missing_field("apiVersion"))?,
                    kind: kind.ok_or_else(|| de::Error::missing_field("kind"))?,
                    metadata: metadata.ok_or_else(|| de::Error::missing_field("metadata"))?,
                    spec: spec.ok_or_else(|| de::Error::missing_field("spec"))?,
                    sops,
                })
            }
        }
        deserializer.deserialize_map(V(PhantomData))
    }
}

/// A value in a string map (`env`, `labels`, `nodeSelector`, `build.args`) that may be left
/// empty (`KEY:`, a YAML null): Orcra Run's Go decoder read that as the empty string, and so
/// does the validator, with a warning.
pub(crate) type MapValue = Sp<Option<String>>;

/// A string-keyed mapping in the written order. Keys stay plain strings so error paths name
/// them (`spec.env.DB_PASSWORD`); problems with a key are reported at its value.
///
/// Duplicate keys never reach here: the parser refuses them (RELIABILITY A6).
#[derive(Debug)]
pub(crate) struct Entries<V>(pub Vec<(String, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Vis<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
                let mut seen = std::collections::HashSet::new();
                while let Some(k) = map.next_key::<String>()? {
                    // The parser tells `1` from `"1"`; as names they are one key, and the
                    // second must not silently win (RELIABILITY A6).
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(
                            "duplicate key: a key may appear only once",
                        ));
                    }
                    out.push((k, map.next_value()?));
                }
                Ok(Entries(out))
            }
        }
        deserializer.deserialize_map(Vis(PhantomData))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NodeSpec {
    pub host: Sp<String>,
    pub user: Option<Sp<String>>,
    pub ssh_key_path: Option<Sp<String>>,
    pub git_repo: Sp<String>,
    pub git_branch: Option<Sp<String>>,
    pub poll_interval: Option<Sp<String>>,
    pub data_dir: Option<Sp<String>>,
    pub code_dir: Option<Sp<String>>,
    pub production_branch: Option<Sp<String>>,
    pub offer_secrets: Option<bool>,
    #[serde(default)]
    pub labels: Entries<MapValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DeploymentSpec {
    pub image: Option<Sp<String>>,
    pub build: Option<Sp<Build>>,
    #[serde(default)]
    pub ports: Vec<Sp<Port>>,
    #[serde(default)]
    pub volumes: Vec<Sp<Volume>>,
    #[serde(default)]
    pub env: Entries<Sp<EnvValue>>,
    pub health: Option<Health>,
    pub pull: Option<Sp<String>>,
    pub command: Option<Vec<Sp<String>>>,
    pub args: Option<Vec<Sp<String>>>,
    pub nodes: Option<Vec<Sp<String>>>,
    #[serde(default)]
    pub node_selector: Entries<MapValue>,
    pub restart: Option<Sp<String>>,
    pub resources: Option<Resources>,
    pub rollout: Option<Rollout>,
    #[serde(default)]
    pub labels: Entries<MapValue>,
    pub suspend: Option<Sp<Flag>>,
}

/// An `env` value: text, or `{secretRef: key}`.
#[derive(Debug)]
pub(crate) enum EnvValue {
    /// A string the parser kept as written.
    Text(String),
    /// A plain scalar the parser typed (`8080`, `1.10`, `yes`): its spelling is taken from
    /// the source text by its span, since the value must reach the container as written.
    Typed,
    /// `{secretRef: key}`.
    SecretRef(String),
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or {secretRef: key}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<EnvValue, E> {
                Ok(EnvValue::Text(v))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<EnvValue, E> {
                Ok(EnvValue::Typed)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<EnvValue, E> {
                Ok(EnvValue::Typed)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<EnvValue, E> {
                Ok(EnvValue::Typed)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<EnvValue, E> {
                Ok(EnvValue::Typed)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<EnvValue, E> {
                Ok(EnvValue::Typed)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<EnvValue, E> {
                Ok(EnvValue::Typed)
            }
            // `KEY:` or `KEY: ~`: as written, like every other plain scalar.
            fn visit_unit<E: de::Error>(self) -> Result<EnvValue, E> {
                Ok(EnvValue::Typed)
            }
            fn visit_none<E: de::Error>(self) -> Result<EnvValue, E> {
                Ok(EnvValue::Typed)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnvValue, A::Error> {
                let mut key = None;
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "secretRef" if key.is_none() => key = Some(map.next_value::<String>()?),
                        "secretRef" => {
                            return Err(de::Error::custom(
                                "duplicate key: a key may appear only once",
                            ));
                        }
                        other => return Err(de::Error::unknown_field(other, &["secretRef"])),
                    }
                }
                key.map(EnvValue::SecretRef)
                    .ok_or_else(|| de::Error::missing_field("secretRef"))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Build {
    pub context: Sp<String>,
    pub dockerfile: Option<Sp<String>>,
    #[serde(default)]
    pub args: Entries<MapValue>,
    pub build_mode: Option<Sp<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Port {
    pub container_port: Sp<i64>,
    pub port: Option<Sp<i64>>,
    #[serde(rename = "hostIP")]
    pub host_ip: Option<Sp<String>>,
    pub protocol: Option<Sp<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Volume {
    pub host_path: Sp<String>,
    pub container_path: Sp<String>,
    pub read_only: Option<Sp<Flag>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Health {
    pub readiness: Option<Probe>,
    pub liveness: Option<Probe>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Probe {
    pub http: Sp<String>,
    pub period_seconds: Option<Sp<i64>>,
    pub timeout_seconds: Option<Sp<i64>>,
    pub failure_threshold: Option<Sp<i64>>,
    pub initial_delay_seconds: Option<Sp<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Resources {
    pub memory: Option<Sp<String>>,
    pub cpus: Option<Sp<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Rollout {
    pub strategy: Option<Sp<String>>,
    pub min_healthy_seconds: Option<Sp<i64>>,
    pub healthy_deadline_seconds: Option<Sp<i64>>,
    pub drain_seconds: Option<Sp<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceSpec {
    pub deployment: Sp<String>,
    pub ingress: Ingress,
    pub port: Option<Sp<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Ingress {
    pub domain: Domain,
    pub ssl: Option<Sp<Flag>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Domain {
    pub default: Sp<String>,
    pub environment: Option<Sp<String>>,
}

/// `secrets.yaml`: flat key/value pairs plus the `sops` metadata block.
#[derive(Debug)]
pub(crate) struct SecretsFile {
    pub entries: Vec<(String, Sp<String>)>,
    /// Where the `sops` block is; its content is read by `sops_age`.
    pub sops: Option<Sp<IgnoredAny>>,
}

impl<'de> Deserialize<'de> for SecretsFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretsFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SOPS file of flat key/value pairs")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                let mut sops = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "sops" {
                        sops = Some(map.next_value()?);
                    } else {
                        entries.push((key, map.next_value()?));
                    }
                }
                Ok(SecretsFile { entries, sops })
            }
        }
        deserializer.deserialize_map(V)
    }
}

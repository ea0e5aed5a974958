//! A parsed document as SOPS walks it: mappings in document order, typed scalars.
//!
//! SOPS' MAC is a hash over every leaf in document order, and a cleartext leaf enters it by
//! its type (`1.50` is hashed as `1.5`), so the tree keeps both the order of keys and the
//! type of each scalar. It deserializes from any serde format (YAML, JSON), which keeps this
//! crate free of a parser of its own.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One node of a document.
#[derive(Clone, PartialEq)]
pub enum Value {
    /// A mapping, keys in document order.
    Map(Vec<(String, Value)>),
    /// A sequence.
    List(Vec<Value>),
    /// A string: an `ENC[...]` value, or cleartext.
    Str(String),
    /// An integer.
    Int(i128),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// `null`: SOPS neither encrypts nor hashes it.
    Null,
}

/// Cleartext leaves may be secrets too (a file mixes them): only the shape is printed.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Map(entries) => f
                .debug_map()
                .entries(entries.iter().map(|(k, v)| (k, v)))
                .finish(),
            Value::List(items) => f.debug_list().entries(items).finish(),
            Value::Str(_) => f.write_str("str(***)"),
            Value::Int(_) => f.write_str("int(***)"),
            Value::Float(_) => f.write_str("float(***)"),
            Value::Bool(_) => f.write_str("bool(***)"),
            Value::Null => f.write_str("null"),
        }
    }
}

impl Value {
    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`, which SOPS uses for a float's bytes: the
/// shortest digits that read back the same, never an exponent. Rust's `Display` is the same
/// for finite values; only the spellings of infinity differ.
pub(crate) fn go_float(f: f64) -> String {
    if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{f}")
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a document")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Key>()? {
            entries.push((k.0, map.next_value()?));
        }
        Ok(Value::Map(entries))
    }
}

/// A mapping key: SOPS joins keys as text, so a scalar key is taken by its spelling.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(go_float(v)))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_does() {
        for (f, want) in [
            (1.5, "1.5"),
            (1_234_568_000.0, "1234568000"),
            (25.4, "25.4"),
            (1e21, "1000000000000000000000"),
            (0.000_1, "0.0001"),
            (-0.0, "-0"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(go_float(f), want);
        }
    }

    #[test]
    fn keys_keep_document_order_and_scalars_their_type() {
        let v: Value =
            serde_json::from_str(r#"{"b": 1, "a": [true, 2.5, null, "x"], "c": {"z": 1}}"#)
                .unwrap();
        let Value::Map(entries) = &v else { panic!() };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "c"]);
        assert_eq!(
            v.get("a"),
            Some(&Value::List(vec![
                Value::Bool(true),
                Value::Float(2.5),
                Value::Null,
                Value::Str("x".into())
            ]))
        );
        assert_eq!(
            format!("{:?}", v.get("a").unwrap()),
            "[bool(***), float(***), null, str(***)]"
        );
    }
}

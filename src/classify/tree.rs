//! A borrowed JSON tree for request bodies.
//!
//! Classification reads every mutation body once, on the request path. `serde_json::Value`
//! allocates a `String` per key and per string and a `BTreeMap` per object; this tree borrows
//! keys and strings from the body when they carry no escapes and keeps objects as vectors of
//! pairs, which roughly halves the cost of reading a manifest (see `benches/classify.rs`).
//!
//! Objects keep their keys in body order, duplicates included; [`Node::get`] returns the
//! *last* value of a key, as Go's decoders do. Depth is bounded by the decoders themselves
//! (`serde_json` and `serde_yaml` both stop at 128 levels), so walking the tree recursively is
//! safe.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON number as decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    Uint(u64),
    Float(f64),
}

impl Number {
    /// The value as an `i64`, when it is an integer that fits (a float never is, as in Go).
    pub(crate) fn as_i64(self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(i),
            Number::Uint(u) => i64::try_from(u).ok(),
            Number::Float(_) => None,
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Uint(u) => write!(f, "{u}"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

/// One JSON value, borrowing from the body where it can.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// The last value of `key` in an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows object keys.
    pub(crate) fn at(&self, keys: &[&str]) -> Option<&Node<'a>> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            Node::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub(crate) fn as_array(&self) -> Option<&[Node<'a>]> {
        match self {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }

    pub(crate) fn as_object(&self) -> Option<&[(Cow<'a, str>, Node<'a>)]> {
        match self {
            Node::Object(entries) => Some(entries),
            _ => None,
        }
    }

    pub(crate) fn is_object(&self) -> bool {
        matches!(self, Node::Object(_))
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    NotUtf8,
    Json(serde_json::Error),
    Yaml(serde_yaml::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotUtf8 => f.write_str("the body is not UTF-8"),
            ReadError::Json(e) => e.fmt(f),
            ReadError::Yaml(e) => e.fmt(f),
        }
    }
}

/// Reads a JSON body. The body is checked as UTF-8 once, up front, rather than string by
/// string.
pub(crate) fn from_json(body: &[u8]) -> Result<Node<'_>, ReadError> {
    let text = std::str::from_utf8(body).map_err(|_| ReadError::NotUtf8)?;
    serde_json::from_str(text).map_err(ReadError::Json)
}

/// Reads a YAML body (a single document).
pub(crate) fn from_yaml(body: &[u8]) -> Result<Node<'_>, ReadError> {
    serde_yaml::from_slice(body).map_err(ReadError::Yaml)
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Node::Number(Number::Int(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Node::Number(match i64::try_from(v) {
            Ok(i) => Number::Int(i),
            Err(_) => Number::Uint(v),
        }))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Node::Number(Number::Float(v)))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Node::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Node::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Node::String(Cow::Owned(v)))
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Node::Null)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(Key(key)) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Object(entries))
    }
}

/// An object key: borrowed when the body allows. A YAML scalar key (`1:`) is read as its
/// text, as the apiserver's YAML-to-JSON conversion stringifies it; a sequence or mapping
/// key is refused.
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_borrowing_plain_strings() {
        let body = br#"{"a":"plain","b":"esc\"aped","c":[1,-2,1.5,18446744073709551615,true,null],"a":"last"}"#;
        let node = from_json(body).unwrap();
        assert!(matches!(node.get("b"), Some(Node::String(Cow::Owned(s))) if s == "esc\"aped"));
        assert_eq!(
            node.get("a").and_then(Node::as_str),
            Some("last"),
            "last key wins"
        );
        let Some(Node::Object(entries)) = Some(&node) else {
            panic!()
        };
        assert!(matches!(
            entries[0],
            (Cow::Borrowed("a"), Node::String(Cow::Borrowed("plain")))
        ));
        let items = node.get("c").and_then(Node::as_array).unwrap();
        assert_eq!(items[0].as_i64(), Some(1));
        assert_eq!(items[1].as_i64(), Some(-2));
        assert_eq!(items[2].as_i64(), None, "floats are not integers");
        assert_eq!(items[3].as_i64(), None, "beyond i64");
        assert_eq!(items[4].as_bool(), Some(true));
        assert!(items[5].is_null());
    }

    #[test]
    fn reads_yaml_and_refuses_non_scalar_keys() {
        let node = from_yaml(b"spec:\n  replicas: 3\n  paused: false\n").unwrap();
        assert_eq!(
            node.at(&["spec", "replicas"]).and_then(Node::as_i64),
            Some(3)
        );
        assert_eq!(
            from_yaml(b"1: a\n")
                .unwrap()
                .get("1")
                .and_then(Node::as_str),
            Some("a")
        );
        assert!(from_yaml(b"[a]: 1\n").is_err());
        assert!(from_yaml(b"{a: 1}: 1\n").is_err());
        assert!(
            from_yaml(b"a: 1\n---\nb: 2\n").is_err(),
            "one document only"
        );
    }

    #[test]
    fn depth_is_bounded_by_the_decoders() {
        let deep = "[".repeat(10_000);
        assert!(from_json(deep.as_bytes()).is_err());
        let deep = "- ".repeat(10_000) + "1";
        assert!(from_yaml(deep.as_bytes()).is_err());
    }
}

//! A borrowed JSON tree for request bodies, read from JSON or YAML within bounds.
//!
//! Classification reads every mutation body once, on the request path. `serde_json::Value`
//! allocates a `String` per key and per string and a `BTreeMap` per object; this tree borrows
//! keys and strings from the body when they carry no escapes and keeps objects as vectors of
//! pairs, which roughly halves the cost of reading a manifest (see `benches/classify.rs`).
//!
//! Objects keep their keys in body order, duplicates included; [`Node::get`] returns the
//! *last* value of a key, as Go's JSON decoder does. (A YAML body with a repeated key is
//! refused instead: see `yaml`.)
//!
//! # Bounds
//!
//! A body may nest at most [`MAX_NESTING`] arrays and objects; past that it is refused
//! ([`ReadError::TooDeep`], which the proxy answers with a 400 `Status`), whatever the
//! syntax. The bound is `serde_json`'s own recursion limit (its `unbounded_depth` feature
//! must stay off); the YAML reader counts the same way, as events arrive, so a deep body
//! costs no more than its first few hundred bytes. The apiserver itself accepts 10,000 levels
//! (Go's `encoding/json`, go-yaml's `max_flow_level`/`max_indents`); no object a Kubernetes
//! client writes comes near 127. Walking the tree recursively is therefore safe.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

mod yaml;

pub(crate) use yaml::{from_json_as_yaml, from_yaml};

/// The most arrays and objects a body may nest (`serde_json`'s recursion limit: 128
/// `[` fail, 127 pass).
pub(crate) const MAX_NESTING: usize = 127;

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
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// Not UTF-8. The apiserver still reads such bodies, in ways pathgate does not: Go's
    /// JSON decoder replaces invalid bytes in strings with U+FFFD, and go-yaml reads UTF-16
    /// with a byte-order mark. pathgate refuses it.
    #[error(
        "the body is not UTF-8 (the apiserver would still read it: invalid bytes in JSON \
         strings become U+FFFD, and YAML may be UTF-16)"
    )]
    NotUtf8,
    /// Not JSON: the apiserver refuses it too.
    #[error("{0}")]
    Json(serde_json::Error),
    /// Not YAML, or YAML without a JSON form: the apiserver refuses it too.
    #[error("{0}")]
    Yaml(String),
    /// Nested deeper than [`MAX_NESTING`]: pathgate refuses it.
    #[error("the body nests arrays and objects more than {MAX_NESTING} levels deep")]
    TooDeep,
    /// YAML that the apiserver would read differently than a plain reading does (merge
    /// keys, anchors, aliases, tags, repeated keys, ...): pathgate refuses it.
    #[error("{0}")]
    Ambiguous(String),
}

impl ReadError {
    /// Whether pathgate refuses the request itself (a bound, or a body the apiserver reads
    /// in a way pathgate does not) rather than letting the apiserver answer a body it cannot
    /// decode either.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(
            self,
            ReadError::NotUtf8 | ReadError::TooDeep | ReadError::Ambiguous(_)
        )
    }
}

/// Reads a JSON body. The body is checked as UTF-8 once, up front, rather than string by
/// string.
pub(crate) fn from_json(body: &[u8]) -> Result<Node<'_>, ReadError> {
    let text = std::str::from_utf8(body).map_err(|_| ReadError::NotUtf8)?;
    serde_json::from_str(text).map_err(|e| {
        // Only a failed parse pays for the scans (serde_json's error names no code).
        if nests_deeper_than(body, MAX_NESTING) {
            ReadError::TooDeep
        } else if has_surrogate_escape(body) {
            // serde_json refuses a lone `\ud800`; Go's decoder reads it as U+FFFD.
            ReadError::Ambiguous(
                "the body escapes a lone UTF-16 surrogate (\\uD800-\\uDFFF), which the \
                 apiserver reads as U+FFFD"
                    .to_owned(),
            )
        } else {
            ReadError::Json(e)
        }
    })
}

/// Whether a JSON text holds a `\uD800`-`\uDFFF` escape (a surrogate, paired or not).
fn has_surrogate_escape(body: &[u8]) -> bool {
    body.windows(4).any(|w| {
        matches!(
            w,
            [b'\\', b'u', b'd' | b'D', b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F']
        )
    })
}

/// Whether a JSON text opens more than `limit` arrays and objects at once (brackets inside
/// strings do not count).
fn nests_deeper_than(body: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
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
    fn nesting_is_bounded_at_and_past_the_limit() {
        let nested = |open: &str, close: &str, n: usize| open.repeat(n) + &close.repeat(n);
        assert!(from_json(nested("[", "]", MAX_NESTING).as_bytes()).is_ok());
        let objects = "{\"a\":".repeat(MAX_NESTING) + "1" + &"}".repeat(MAX_NESTING);
        assert!(from_json(objects.as_bytes()).is_ok());
        for body in [
            nested("[", "]", MAX_NESTING + 1),
            "[".repeat(70_000),
            nested("[", "]", 70_000),
            "{\"a\":".repeat(MAX_NESTING + 1) + "1" + &"}".repeat(MAX_NESTING + 1),
        ] {
            assert!(
                matches!(from_json(body.as_bytes()), Err(ReadError::TooDeep)),
                "{}",
                &body[..40]
            );
        }
        let in_strings = format!("[\"{}\", \"\\\"[[\"]", "[".repeat(500));
        assert!(
            from_json(in_strings.as_bytes()).is_ok(),
            "brackets in strings"
        );
        assert!(matches!(
            from_json(format!("[\"{}\"", "[".repeat(500)).as_bytes()),
            Err(ReadError::Json(_))
        ));
        // A lone surrogate: serde_json refuses it, Go reads U+FFFD.
        for lone in [r#"{"a":"\ud800"}"#, r#"{"a":"\uDFFFx"}"#] {
            assert!(matches!(
                from_json(lone.as_bytes()),
                Err(ReadError::Ambiguous(_))
            ));
        }
        assert!(
            from_json(r#"{"a":"\ud83d\ude00"}"#.as_bytes()).is_ok(),
            "a pair"
        );
        assert!(matches!(
            from_json(br#"{"a":"\u00e9"#),
            Err(ReadError::Json(_))
        ));

        assert!(from_yaml(nested("[", "]", MAX_NESTING).as_bytes()).is_ok());
        let block = |n: usize| "- ".repeat(n) + "1";
        assert!(from_yaml(block(MAX_NESTING).as_bytes()).is_ok());
        for body in [
            nested("[", "]", MAX_NESTING + 1),
            "[".repeat(70_000),
            nested("[", "]", 70_000),
            "[\n".repeat(70_000),
            "x: ".to_owned() + &"{".repeat(100_000),
            block(MAX_NESTING + 1),
            block(100_000),
            (0..=MAX_NESTING)
                .map(|i| format!("{}k:\n", "  ".repeat(i)))
                .collect::<String>(),
        ] {
            let started = std::time::Instant::now();
            let result = from_yaml(body.as_bytes());
            assert!(
                matches!(result, Err(ReadError::TooDeep)),
                "{}: {result:?}",
                &body[..40]
            );
            assert!(started.elapsed() < std::time::Duration::from_millis(500));
        }
    }
}

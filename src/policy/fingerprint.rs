//! Request fingerprints: what makes two requests "the same request" for PG010 (a dry run
//! then the real thing), PG015 (retries) and confirmation tokens.
//!
//! A fingerprint hashes the verb, group, version, resource, subresource, namespace, name,
//! the query parameters except `dryRun` (sorted), and the body: a DeleteOptions body
//! (deletes, evictions) is re-serialised with sorted keys and without a top-level `dryRun`
//! field (kubectl puts `dryRun: ["All"]` into the DeleteOptions body of
//! `kubectl delete --dry-run=server`); any other body is hashed as sent. kubectl sends byte-identical bodies for
//! `kubectl apply --dry-run=server -f x.yaml` and the following `kubectl apply -f x.yaml`
//! (the patch is computed against the same live object, which the dry run did not change),
//! so the two share a fingerprint.

use std::borrow::Cow;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::classify::{RequestInfo, Verb};

/// A SHA-256 over the normalised request (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Fingerprints a request from its info, raw query string and body.
    pub fn of(info: &RequestInfo, query: Option<&str>, body: &[u8]) -> Fingerprint {
        let mut hasher = Sha256::new();
        // Fields are length-prefixed so that no two different requests hash the same
        // concatenation ("ab"+"c" vs "a"+"bc").
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        field(info.verb.as_str().as_bytes());
        field(info.method.as_bytes());
        field(info.path.as_bytes());
        for part in [
            &info.api_group,
            &info.api_version,
            &info.namespace,
            &info.resource,
            &info.subresource,
            &info.name,
        ] {
            field(part.as_bytes());
        }
        let mut params: Vec<(String, String)> =
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .filter(|(key, _)| key != "dryRun")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        params.sort();
        field(&(params.len() as u64).to_be_bytes());
        for (key, value) in &params {
            field(key.as_bytes());
            field(value.as_bytes());
        }
        // Only DeleteOptions bodies (deletes, evictions) can carry the `dryRun` that must
        // not count; every other body is hashed as sent, which spares a second parse of
        // large apply bodies on the request path. kubectl sends byte-identical bodies for
        // the dry run and the real request, so nothing is lost for it; a client that
        // reorders keys between the two requests is treated as sending another request.
        let carries_delete_options = matches!(info.verb, Verb::Delete | Verb::DeleteCollection)
            || info.subresource == "eviction";
        if carries_delete_options {
            field(&normalised_body(body));
        } else {
            field(body);
        }
        Fingerprint(hasher.finalize().into())
    }

    /// Builds a fingerprint from raw bytes (tests, or a stored value).
    pub fn from_bytes(bytes: [u8; 32]) -> Fingerprint {
        Fingerprint(bytes)
    }

    /// The full hash as lowercase hex.
    pub fn to_hex(&self) -> String {
        crate::trace::hex(&self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for Fingerprint {
    /// The first 16 hex digits: enough to tell requests apart in logs and the ledger.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex()[..16])
    }
}

/// A JSON body with sorted keys and no top-level `dryRun`; any other body as sent.
fn normalised_body(body: &[u8]) -> Vec<u8> {
    // `Canon` borrows the body's strings instead of building a `serde_json::Value` (a map
    // node and a `String` per key): this runs for every mutation, on bodies of up to
    // megabytes. It writes exactly what the `Value` round trip wrote (see the tests).
    let Ok(mut value) = serde_json::from_slice::<Canon<'_>>(body) else {
        return body.to_vec();
    };
    if let Canon::Object(entries) = &mut value {
        entries.retain(|(key, _)| key != "dryRun");
    }
    let mut out = Vec::with_capacity(body.len());
    value.write(&mut out);
    out
}

/// A parsed JSON value that borrows its strings from the body where it can.
#[derive(Debug)]
enum Canon<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Array(Vec<Canon<'a>>),
    /// Entries in body order; sorted when written.
    Object(Vec<(Cow<'a, str>, Canon<'a>)>),
}

impl Canon<'_> {
    /// Serialises with object keys sorted. A key that appears twice keeps its last value,
    /// as a parsed `serde_json::Value` would.
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Canon::Null => out.extend_from_slice(b"null"),
            Canon::Bool(b) => write_json(b, out),
            Canon::U64(n) => write_json(n, out),
            Canon::I64(n) => write_json(n, out),
            Canon::F64(n) => write_json(n, out),
            Canon::Str(s) => write_json(s.as_ref(), out),
            Canon::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Canon::Object(entries) => {
                let mut sorted: Vec<&(Cow<'_, str>, Canon<'_>)> = entries.iter().collect();
                // Stable: among equal keys the body's last one stays last, and wins.
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                out.push(b'{');
                let mut first = true;
                for (i, (key, item)) in sorted.iter().map(|e| (&e.0, &e.1)).enumerate() {
                    if sorted.get(i + 1).is_some_and(|next| next.0 == *key) {
                        continue;
                    }
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    write_json(key.as_ref(), out);
                    out.push(b':');
                    item.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Canon<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CanonVisitor)
    }
}

struct CanonVisitor;

impl<'de> serde::de::Visitor<'de> for CanonVisitor {
    type Value = Canon<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Canon::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Canon::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Canon::U64(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Canon::I64(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Canon::F64(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Canon::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Canon::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Canon::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Canon::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(Key(key)) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Canon::Object(entries))
    }
}

use crate::classify::BorrowedKey as Key;

/// Appends one JSON scalar or string, escaped as serde_json writes it, without an
/// intermediate `String`.
fn write_json<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, value).expect("writing JSON into a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::builders::req;

    #[test]
    fn dry_run_query_and_delete_options_do_not_change_the_fingerprint() {
        let info = req(Verb::Delete, "pods").ns("shop").name("web-1").info();
        let real = Fingerprint::of(&info, None, br#"{"propagationPolicy":"Background"}"#);
        let dry = Fingerprint::of(
            &info,
            Some("dryRun=All"),
            br#"{"propagationPolicy":"Background","dryRun":["All"]}"#,
        );
        assert_eq!(real, dry);
    }

    #[test]
    fn apply_and_its_server_dry_run_share_a_fingerprint() {
        let info = req(Verb::Patch, "deployments")
            .group("apps")
            .ns("shop")
            .name("web")
            .info();
        let body = br#"{"spec":{"replicas":3}}"#;
        let apply = Fingerprint::of(&info, Some("fieldManager=kubectl-client-side-apply"), body);
        let dry = Fingerprint::of(
            &info,
            Some("dryRun=All&fieldManager=kubectl-client-side-apply"),
            body,
        );
        assert_eq!(apply, dry);
    }

    #[test]
    fn delete_options_key_order_does_not_matter_but_values_do() {
        let info = req(Verb::Delete, "pods").ns("shop").name("web").info();
        let a = Fingerprint::of(&info, None, br#"{"a":1,"b":{"c":2,"d":3}}"#);
        let b = Fingerprint::of(&info, None, br#"{"b":{"d":3,"c":2},"a":1}"#);
        let c = Fingerprint::of(&info, None, br#"{"b":{"d":3,"c":2},"a":2}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn other_bodies_are_hashed_as_sent() {
        let info = req(Verb::Patch, "deployments")
            .ns("shop")
            .name("web")
            .info();
        let a = Fingerprint::of(&info, None, br#"{"a":1,"b":2}"#);
        assert_eq!(a, Fingerprint::of(&info, None, br#"{"a":1,"b":2}"#));
        assert_ne!(a, Fingerprint::of(&info, None, br#"{"b":2,"a":1}"#));
    }

    #[test]
    fn target_and_other_parameters_change_the_fingerprint() {
        let body = br#"{"spec":{"replicas":3}}"#;
        let web = req(Verb::Patch, "deployments")
            .ns("shop")
            .name("web")
            .info();
        let api = req(Verb::Patch, "deployments")
            .ns("shop")
            .name("api")
            .info();
        let other_ns = req(Verb::Patch, "deployments")
            .ns("prod")
            .name("web")
            .info();
        let base = Fingerprint::of(&web, None, body);
        assert_ne!(base, Fingerprint::of(&api, None, body));
        assert_ne!(base, Fingerprint::of(&other_ns, None, body));
        assert_ne!(base, Fingerprint::of(&web, Some("force=true"), body));
        assert_eq!(
            Fingerprint::of(&web, Some("a=1&b=2"), body),
            Fingerprint::of(&web, Some("b=2&a=1"), body)
        );
    }

    /// The normalisation as first written: a `serde_json::Value` round trip. The borrowed
    /// `Canon` must write the same bytes, so fingerprints did not change with it.
    fn reference(body: &[u8]) -> Vec<u8> {
        fn write(value: &serde_json::Value, out: &mut Vec<u8>) {
            match value {
                serde_json::Value::Object(map) => {
                    let mut entries: Vec<_> = map.iter().collect();
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                    out.push(b'{');
                    for (i, (key, item)) in entries.into_iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        let key = serde_json::Value::from(key.as_str()).to_string();
                        out.extend_from_slice(key.as_bytes());
                        out.push(b':');
                        write(item, out);
                    }
                    out.push(b'}');
                }
                serde_json::Value::Array(items) => {
                    out.push(b'[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        write(item, out);
                    }
                    out.push(b']');
                }
                scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
            }
        }
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return body.to_vec();
        };
        if let Some(object) = value.as_object_mut() {
            object.remove("dryRun");
        }
        let mut out = Vec::new();
        write(&value, &mut out);
        out
    }

    #[test]
    fn normalisation_writes_what_a_value_round_trip_writes() {
        let bodies: [&[u8]; 14] = [
            br#"{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0,"propagationPolicy":"Background","dryRun":["All"]}"#,
            br#"{"spec":{"template":{"spec":{"containers":[{"image":"nginx:1.27","name":"web"}]}}}}"#,
            br#" { "b" : [1, -2, 3.5, 1e3, -0.0, 18446744073709551615, -9223372036854775808, 1.7976931348623157e308] , "a" : null } "#,
            br#"{"esc\"aped\\key":"va\nl\u00e9\ud83d\ude00","plain":"\/slash","t":true,"f":false}"#,
            br#"{"dup":1,"x":{"dup":"first","dup":"second"},"dup":2}"#,
            br#"{"nested":{"dryRun":["All"]},"dryRun":"x","dryRun":"y"}"#,
            br#"[{"dryRun":1},{"b":2,"a":1}]"#,
            br#""just a string""#,
            br#"12345678901234567890123"#,
            br#"{}"#,
            br#"{"a":{}, "b":[], "c":[[]]}"#,
            b"not json",
            br#"{"trailing":1} x"#,
            b"k8s\x00\x0a\x02v1\x12\x09ConfigMap",
        ];
        for body in bodies {
            assert_eq!(
                String::from_utf8_lossy(&normalised_body(body)),
                String::from_utf8_lossy(&reference(body)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Nesting past serde_json's recursion limit is not JSON to either: hashed as sent.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(normalised_body(deep.as_bytes()), deep.as_bytes());
        assert_eq!(reference(deep.as_bytes()), deep.as_bytes());
    }

    #[test]
    fn non_json_bodies_hash_as_sent() {
        let info = req(Verb::Patch, "deployments")
            .ns("shop")
            .name("web")
            .info();
        let yaml_a = Fingerprint::of(&info, None, b"spec:\n  replicas: 3\n");
        let yaml_b = Fingerprint::of(&info, None, b"spec:\n  replicas: 4\n");
        assert_ne!(yaml_a, yaml_b);
        assert_eq!(
            yaml_a,
            Fingerprint::of(&info, None, b"spec:\n  replicas: 3\n")
        );
        assert_eq!(yaml_a.to_string().len(), 16);
    }
}

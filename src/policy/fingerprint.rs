//! Request fingerprints: what makes two requests "the same request" for PG010 (a dry run
//! then the real thing), PG015 (retries) and confirmation tokens.
//!
//! A fingerprint hashes the verb, group, version, resource, subresource, namespace, name,
//! the query parameters except `dryRun` (sorted), and the body normalised: a JSON body is
//! re-serialised with sorted keys and without a top-level `dryRun` field (kubectl puts
//! `dryRun: ["All"]` into the DeleteOptions body of `kubectl delete --dry-run=server`);
//! any other body is hashed as sent. kubectl sends byte-identical bodies for
//! `kubectl apply --dry-run=server -f x.yaml` and the following `kubectl apply -f x.yaml`
//! (the patch is computed against the same live object, which the dry run did not change),
//! so the two share a fingerprint.

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
        field(verb_name(info.verb).as_bytes());
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
        field(&normalised_body(body));
        Fingerprint(hasher.finalize().into())
    }

    /// Builds a fingerprint from raw bytes (tests, or a stored value).
    pub fn from_bytes(bytes: [u8; 32]) -> Fingerprint {
        Fingerprint(bytes)
    }

    /// The full hash as lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
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

fn verb_name(verb: Verb) -> &'static str {
    match verb {
        Verb::Get => "get",
        Verb::List => "list",
        Verb::Watch => "watch",
        Verb::Create => "create",
        Verb::Update => "update",
        Verb::Patch => "patch",
        Verb::Delete => "delete",
        Verb::DeleteCollection => "deletecollection",
        Verb::Connect => "connect",
        Verb::NonResource => "nonresource",
    }
}

/// A JSON body with sorted keys and no top-level `dryRun`; any other body as sent.
fn normalised_body(body: &[u8]) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.to_vec();
    };
    if let Some(object) = value.as_object_mut() {
        object.remove("dryRun");
    }
    let mut out = Vec::with_capacity(body.len());
    write_canonical(&value, &mut out);
    out
}

/// Serialises with object keys sorted, whatever map type serde_json was built with.
fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(serde_json::Value::from(key.as_str()).to_string().as_bytes());
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
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
    fn json_key_order_does_not_matter_but_values_do() {
        let info = req(Verb::Patch, "deployments")
            .ns("shop")
            .name("web")
            .info();
        let a = Fingerprint::of(&info, None, br#"{"a":1,"b":{"c":2,"d":3}}"#);
        let b = Fingerprint::of(&info, None, br#"{"b":{"d":3,"c":2},"a":1}"#);
        let c = Fingerprint::of(&info, None, br#"{"b":{"d":3,"c":2},"a":2}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
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

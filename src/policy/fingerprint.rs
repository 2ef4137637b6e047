//! Request fingerprints: what makes two requests "the same request" for PG010 (a dry run
//! then the real thing), PG015 (retries) and confirmation tokens.
//!
//! Two requests share a fingerprint only when the apiserver would do the same with them.
//! A fingerprint hashes:
//!
//! - the request line as classified: verb, method, path, group, version, resource,
//!   subresource, namespace, name;
//! - every query parameter except `dryRun`, sorted (so `fieldManager`, `force`,
//!   `fieldValidation`, `gracePeriodSeconds`, `propagationPolicy` ... all count);
//! - the `Content-Type` as sent: the same bytes sent as `strategic-merge-patch+json` and as
//!   `merge-patch+json` are two different patches (a merge patch replaces the lists a
//!   strategic one merges by key);
//! - the `Impersonate-*` headers (names and values, sorted): who acts changes what admission
//!   allows and what the object records;
//! - the body. DeleteOptions (a DELETE's body, an eviction's `deleteOptions`) are hashed as
//!   the apiserver decoded them, whatever the format (JSON, YAML, protobuf), without their
//!   `dryRun`: kubectl puts `dryRun: ["All"]` into the DeleteOptions body of
//!   `kubectl delete --dry-run=server` and into an eviction's `deleteOptions` for
//!   `kubectl drain --dry-run=server`, and client-go does the same in protobuf. Every other
//!   body is hashed as sent: kubectl sends byte-identical bodies for
//!   `kubectl apply --dry-run=server -f x.yaml` and the following `kubectl apply -f x.yaml`
//!   (the patch is computed against the same live object, which the dry run did not change).

use std::fmt;

use sha2::{Digest, Sha256};

use crate::classify::{Analysis, DeleteOptions, RequestInfo, Verb};

/// A SHA-256 over the normalised request (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

/// Feeds length-prefixed fields to the hash, so that no two different requests hash the
/// same concatenation ("ab"+"c" vs "a"+"bc").
struct Fields(Sha256);

impl Fields {
    /// A hash fed with the request line as classified, the query without `dryRun` (sorted)
    /// and the `Content-Type`.
    fn request(info: &RequestInfo, query: Option<&str>, content_type: Option<&str>) -> Fields {
        let mut fields = Fields(Sha256::new());
        fields.bytes(info.verb.as_str().as_bytes());
        fields.bytes(info.method.as_bytes());
        fields.bytes(info.path.as_bytes());
        for part in [
            &info.api_group,
            &info.api_version,
            &info.namespace,
            &info.resource,
            &info.subresource,
            &info.name,
        ] {
            fields.bytes(part.as_bytes());
        }
        let mut params: Vec<(String, String)> =
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .filter(|(key, _)| key != "dryRun")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        params.sort();
        fields.count(params.len());
        for (key, value) in &params {
            fields.bytes(key.as_bytes());
            fields.bytes(value.as_bytes());
        }
        fields.optional(content_type);
        fields
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn count(&mut self, n: usize) {
        self.bytes(&(n as u64).to_be_bytes());
    }

    fn optional(&mut self, value: Option<&str>) {
        match value {
            None => self.count(0),
            Some(value) => {
                self.count(1);
                self.bytes(value.as_bytes());
            }
        }
    }
}

impl Fingerprint {
    /// Fingerprints a request from its info, its analysis, the raw query string, its
    /// headers (`Content-Type`, `Impersonate-*`) and its body.
    pub fn of(
        info: &RequestInfo,
        analysis: &Analysis,
        query: Option<&str>,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Fingerprint {
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        let mut fields = Fields::request(info, query, content_type.as_deref());
        let mut impersonation: Vec<(&str, &[u8])> = headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("impersonate-"))
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        impersonation.sort();
        fields.count(impersonation.len());
        for (name, value) in impersonation {
            fields.bytes(name.as_bytes());
            fields.bytes(value);
        }
        body_fields(&mut fields, info, analysis, body);
        Fingerprint(fields.0.finalize().into())
    }

    /// The fingerprint [`Fingerprint::of`] gives a request without a body and without
    /// `Impersonate-*` headers, from what the request path keeps of it after forwarding:
    /// its info, query and `Content-Type` (the first one, as text). Lets a read whose
    /// session never needs its fingerprint skip computing one.
    pub fn without_body(
        info: &RequestInfo,
        query: Option<&str>,
        content_type: Option<&str>,
    ) -> Fingerprint {
        let mut fields = Fields::request(info, query, content_type);
        // No `Impersonate-*` header, and the empty body.
        fields.count(0);
        sent_body_fields(&mut fields, &[]);
        Fingerprint(fields.0.finalize().into())
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

/// A request's fingerprint, computed the first time it is asked for: a read's session
/// memory needs it only when the session remembers a dry run or a failure, when a
/// confirmation token is bound to it, or when the read fails (see
/// [`super::SessionStore::decide_lazily`]).
pub struct LazyFingerprint<'a> {
    value: std::cell::OnceCell<Fingerprint>,
    compute: Option<&'a dyn Fn() -> Fingerprint>,
}

impl<'a> LazyFingerprint<'a> {
    /// A fingerprint already computed.
    pub fn known(fingerprint: Fingerprint) -> Self {
        LazyFingerprint {
            value: std::cell::OnceCell::from(fingerprint),
            compute: None,
        }
    }

    /// A fingerprint `compute` gives when first asked for.
    pub fn deferred(compute: &'a dyn Fn() -> Fingerprint) -> Self {
        LazyFingerprint {
            value: std::cell::OnceCell::new(),
            compute: Some(compute),
        }
    }

    /// The fingerprint, computed now if it was not yet.
    pub fn get(&self) -> Fingerprint {
        *self.value.get_or_init(|| match self.compute {
            Some(compute) => compute(),
            None => unreachable!("a known fingerprint is set when made"),
        })
    }

    /// The fingerprint, if it has been computed.
    pub fn computed(&self) -> Option<Fingerprint> {
        self.value.get().copied()
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

/// A body hashed as sent, the empty one included (no DeleteOptions read from it).
fn sent_body_fields(fields: &mut Fields, body: &[u8]) {
    fields.count(0);
    fields.bytes(body);
}

/// The body: decoded DeleteOptions (without `dryRun`) where the body carries them and was
/// understood, the bytes as sent otherwise (including every body pathgate could not decode).
fn body_fields(fields: &mut Fields, info: &RequestInfo, analysis: &Analysis, body: &[u8]) {
    let carries_options = !body.is_empty()
        && analysis.opaque_reason.is_none()
        && (matches!(info.verb, Verb::Delete | Verb::DeleteCollection) || info.is_pod_eviction());
    let options = analysis.delete_options.as_ref().filter(|_| carries_options);
    let Some(options) = options else {
        sent_body_fields(fields, body);
        return;
    };
    fields.count(1);
    delete_options_fields(fields, options);
    // An eviction names its pod in its own metadata too (the apiserver refuses a mismatch).
    let identity = analysis.object.as_ref();
    fields.optional(identity.and_then(|o| o.name.as_deref()));
    fields.optional(identity.and_then(|o| o.namespace.as_deref()));
}

/// Every DeleteOptions field that changes what a delete does; `dryRun` is what the dry run
/// and the real request differ in, and is left out.
fn delete_options_fields(fields: &mut Fields, options: &DeleteOptions) {
    let DeleteOptions {
        grace_period_seconds,
        propagation_policy,
        orphan_dependents,
        precondition_uid,
        precondition_resource_version,
        dry_run: _,
        ignore_store_read_error_with_cluster_breaking_potential: ignore_read_error,
        source: _,
        query_ignored: _,
    } = options;
    let text = |value: Option<i64>| value.map(|v| v.to_string());
    let flag = |value: Option<bool>| value.map(|v| v.to_string());
    fields.optional(text(*grace_period_seconds).as_deref());
    fields.optional(propagation_policy.as_deref());
    fields.optional(flag(*orphan_dependents).as_deref());
    fields.optional(precondition_uid.as_deref());
    fields.optional(precondition_resource_version.as_deref());
    fields.optional(flag(*ignore_read_error).as_deref());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{analyse, request_info};

    /// A request as the proxy sees it: method, path?query, Content-Type, body.
    struct Wire<'a> {
        method: &'a str,
        target: &'a str,
        content_type: Option<&'a str>,
        extra: &'a [(&'a str, &'a str)],
        body: &'a [u8],
    }

    fn wire<'a>(
        method: &'a str,
        target: &'a str,
        content_type: &'a str,
        body: &'a [u8],
    ) -> Wire<'a> {
        Wire {
            method,
            target,
            content_type: Some(content_type),
            extra: &[],
            body,
        }
    }

    impl Wire<'_> {
        /// The fingerprint, and whether the analysis calls it a dry run.
        fn print(&self) -> (Fingerprint, bool) {
            let (path, query) = match self.target.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (self.target, None),
            };
            let mut headers = http::HeaderMap::new();
            if let Some(content_type) = self.content_type {
                headers.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
            }
            for (name, value) in self.extra {
                headers.append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            let method = http::Method::from_bytes(self.method.as_bytes()).unwrap();
            let info = request_info(&method, path, query, &headers).unwrap();
            let analysis = analyse(&info, query, self.content_type, self.body);
            let print = Fingerprint::of(&info, &analysis, query, &headers, self.body);
            (print, analysis.dry_run)
        }
    }

    const POD: &str = "/api/v1/namespaces/shop/pods/web-1";
    const EVICT: &str = "/api/v1/namespaces/shop/pods/web-1/eviction";
    const DEPLOY: &str = "/apis/apps/v1/namespaces/shop/deployments/web";
    const JSON: &str = "application/json";
    const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
    const STRATEGIC: &str = "application/strategic-merge-patch+json";
    const MERGE: &str = "application/merge-patch+json";

    /// A protobuf DeleteOptions (`k8s\0` envelope) with a grace period and, for a dry run,
    /// `dryRun: ["All"]` (field 5), laid out as client-go's marshaller writes it.
    fn protobuf_delete_options(grace: u8, dry_run: bool) -> Vec<u8> {
        fn field(number: u8, bytes: &[u8], out: &mut Vec<u8>) {
            out.push(number << 3 | 2);
            out.push(u8::try_from(bytes.len()).unwrap());
            out.extend_from_slice(bytes);
        }
        let mut options = vec![1 << 3, grace];
        field(4, b"Background", &mut options);
        if dry_run {
            field(5, b"All", &mut options);
        }
        let mut type_meta = Vec::new();
        field(1, b"meta.k8s.io/v1", &mut type_meta);
        field(2, b"DeleteOptions", &mut type_meta);
        let mut body = b"k8s\x00".to_vec();
        field(1, &type_meta, &mut body);
        field(2, &options, &mut body);
        body
    }

    #[test]
    fn a_request_without_body_fingerprints_the_same_from_what_is_kept_of_it() {
        let reads = [
            ("GET", POD, None),
            (
                "GET",
                "/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb&limit=5",
                None,
            ),
            (
                "GET",
                "/api/v1/namespaces/shop/pods?dryRun=All&b=2&a=1",
                Some(JSON),
            ),
            (
                "GET",
                "/apis/apps/v1/deployments?watch=true&resourceVersion=7",
                None,
            ),
            (
                "GET",
                "/api/v1/namespaces/shop/pods/web-1/log?container=a",
                Some("text/plain"),
            ),
            ("GET", "/apis", None),
            ("DELETE", POD, Some(JSON)),
        ];
        for (method, target, content_type) in reads {
            let request = Wire {
                method,
                target,
                content_type,
                extra: &[],
                body: b"",
            };
            let (path, query) = match target.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (target, None),
            };
            let method = http::Method::from_bytes(method.as_bytes()).unwrap();
            let info = request_info(&method, path, query, &http::HeaderMap::new()).unwrap();
            assert_eq!(
                Fingerprint::without_body(&info, query, content_type),
                request.print().0,
                "{method} {target} {content_type:?}"
            );
        }
        let other_type = Fingerprint::without_body(
            &request_info(&http::Method::GET, POD, None, &http::HeaderMap::new()).unwrap(),
            None,
            Some(JSON),
        );
        assert_ne!(other_type, wire("GET", POD, "text/plain", b"").print().0);
    }

    #[test]
    fn a_delete_and_its_dry_run_share_a_fingerprint_in_every_body_format() {
        let real = wire(
            "DELETE",
            POD,
            JSON,
            br#"{"propagationPolicy":"Background"}"#,
        )
        .print();
        let dry = wire(
            "DELETE",
            &format!("{POD}?dryRun=All"),
            JSON,
            br#"{"propagationPolicy":"Background","dryRun":["All"]}"#,
        )
        .print();
        assert_eq!((real.0, real.1, dry.1), (dry.0, false, true));

        // client-go configured for protobuf puts dryRun into the protobuf body.
        let pb_real = protobuf_delete_options(30, false);
        let pb_dry = protobuf_delete_options(30, true);
        let real = wire("DELETE", POD, PROTOBUF, &pb_real).print();
        let dry = wire("DELETE", POD, PROTOBUF, &pb_dry).print();
        assert_eq!((real.0, real.1, dry.1), (dry.0, false, true));
        let other_grace = protobuf_delete_options(45, false);
        assert_ne!(
            real.0,
            wire("DELETE", POD, PROTOBUF, &other_grace).print().0
        );
    }

    #[test]
    fn delete_options_values_count_but_not_their_key_order() {
        let a = wire(
            "DELETE",
            POD,
            JSON,
            br#"{"gracePeriodSeconds":30,"propagationPolicy":"Foreground"}"#,
        );
        let b = wire(
            "DELETE",
            POD,
            JSON,
            br#"{"propagationPolicy":"Foreground","gracePeriodSeconds":30}"#,
        );
        let c = wire(
            "DELETE",
            POD,
            JSON,
            br#"{"propagationPolicy":"Foreground","gracePeriodSeconds":0}"#,
        );
        let d = wire(
            "DELETE",
            POD,
            JSON,
            br#"{"propagationPolicy":"Orphan","gracePeriodSeconds":30}"#,
        );
        let e = wire("DELETE", POD, JSON, br#"{"gracePeriodSeconds":30,"propagationPolicy":"Foreground","preconditions":{"uid":"u-1"}}"#);
        assert_eq!(a.print().0, b.print().0);
        for other in [c, d, e] {
            assert_ne!(a.print().0, other.print().0);
        }
    }

    #[test]
    fn an_eviction_and_its_dry_run_share_a_fingerprint() {
        // kubectl drain --dry-run=server puts dryRun into the eviction's deleteOptions.
        let real = wire(
            "POST",
            EVICT,
            JSON,
            br#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-1","namespace":"shop"},"deleteOptions":{"gracePeriodSeconds":30}}"#,
        )
        .print();
        let dry = wire(
            "POST",
            EVICT,
            JSON,
            br#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-1","namespace":"shop"},"deleteOptions":{"gracePeriodSeconds":30,"dryRun":["All"]}}"#,
        )
        .print();
        assert_eq!((real.0, real.1, dry.1), (dry.0, false, true));
        let zero = wire(
            "POST",
            EVICT,
            JSON,
            br#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-1","namespace":"shop"},"deleteOptions":{"gracePeriodSeconds":0}}"#,
        );
        assert_ne!(
            real.0,
            zero.print().0,
            "another grace period is another eviction"
        );
    }

    #[test]
    fn the_media_type_is_part_of_the_request() {
        // The same bytes are another patch as a merge patch: it replaces the containers
        // list a strategic merge patch merges by name.
        let body = br#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.27"}]}}}}"#;
        let strategic = wire("PATCH", &format!("{DEPLOY}?dryRun=All"), STRATEGIC, body).print();
        let merge = wire("PATCH", DEPLOY, MERGE, body).print();
        assert!(strategic.1);
        assert_ne!(strategic.0, merge.0);
        assert_eq!(
            strategic.0,
            wire("PATCH", DEPLOY, STRATEGIC, body).print().0
        );

        // A create as JSON and the same bytes declared as YAML: decoded by another decoder.
        let configmap = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#;
        let collection = "/api/v1/namespaces/shop/configmaps";
        assert_ne!(
            wire("POST", collection, JSON, configmap).print().0,
            wire("POST", collection, "application/yaml", configmap)
                .print()
                .0
        );
        let mut bare = wire("POST", collection, JSON, configmap);
        bare.content_type = None;
        assert_ne!(
            bare.print().0,
            wire("POST", collection, JSON, configmap).print().0
        );
    }

    #[test]
    fn apply_options_and_other_parameters_are_part_of_the_request() {
        let body = b"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\"},\"spec\":{\"replicas\":3}}";
        let apply = "application/apply-patch+yaml";
        let base = wire(
            "PATCH",
            &format!("{DEPLOY}?fieldManager=kubectl&force=false"),
            apply,
            body,
        )
        .print()
        .0;
        let dry = wire(
            "PATCH",
            &format!("{DEPLOY}?fieldManager=kubectl&dryRun=All&force=false"),
            apply,
            body,
        )
        .print();
        assert_eq!((base, true), (dry.0, dry.1));
        for other in [
            format!("{DEPLOY}?fieldManager=kubectl&force=true"),
            format!("{DEPLOY}?fieldManager=other&force=false"),
            format!("{DEPLOY}?fieldManager=kubectl&force=false&fieldValidation=Ignore"),
            format!("{DEPLOY}/scale?fieldManager=kubectl&force=false"),
            "/apis/apps/v1/namespaces/prod/deployments/web?fieldManager=kubectl&force=false"
                .to_string(),
        ] {
            assert_ne!(
                base,
                wire("PATCH", &other, apply, body).print().0,
                "{other}"
            );
        }
        assert_eq!(
            wire("PATCH", &format!("{DEPLOY}?a=1&b=2"), STRATEGIC, b"{}")
                .print()
                .0,
            wire("PATCH", &format!("{DEPLOY}?b=2&a=1"), STRATEGIC, b"{}")
                .print()
                .0
        );
    }

    #[test]
    fn who_is_impersonated_is_part_of_the_request() {
        let body = br#"{"spec":{"replicas":3}}"#;
        let plain = wire("PATCH", DEPLOY, STRATEGIC, body);
        let mut alice = wire("PATCH", DEPLOY, STRATEGIC, body);
        alice.extra = &[("impersonate-user", "alice")];
        let mut bob = wire("PATCH", DEPLOY, STRATEGIC, body);
        bob.extra = &[("impersonate-user", "bob")];
        let mut masters = wire("PATCH", DEPLOY, STRATEGIC, body);
        masters.extra = &[
            ("impersonate-user", "alice"),
            ("impersonate-group", "system:masters"),
        ];
        let prints = [
            plain.print().0,
            alice.print().0,
            bob.print().0,
            masters.print().0,
        ];
        for (i, a) in prints.iter().enumerate() {
            for b in &prints[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let mut other_header = wire("PATCH", DEPLOY, STRATEGIC, body);
        other_header.extra = &[("user-agent", "kubectl/v1.37.2")];
        assert_eq!(
            other_header.print().0,
            prints[0],
            "other headers do not count"
        );
    }

    #[test]
    fn other_bodies_are_hashed_as_sent() {
        let a = wire("PATCH", DEPLOY, MERGE, br#"{"a":1,"b":2}"#).print().0;
        assert_eq!(
            a,
            wire("PATCH", DEPLOY, MERGE, br#"{"a":1,"b":2}"#).print().0
        );
        assert_ne!(
            a,
            wire("PATCH", DEPLOY, MERGE, br#"{"b":2,"a":1}"#).print().0
        );
        let yaml = "application/apply-patch+yaml";
        let three = wire("PATCH", DEPLOY, yaml, b"spec:\n  replicas: 3\n")
            .print()
            .0;
        assert_ne!(
            three,
            wire("PATCH", DEPLOY, yaml, b"spec:\n  replicas: 4\n")
                .print()
                .0
        );
        assert_eq!(three.to_string().len(), 16);
        // An undecodable DeleteOptions body is hashed as sent, never as "no options".
        let opaque = wire("DELETE", POD, PROTOBUF, b"k8s\x00\xff\xff").print().0;
        assert_ne!(
            opaque,
            wire("DELETE", POD, PROTOBUF, b"k8s\x00\xff\xfe").print().0
        );
    }
}

//! Table tests for [`request_info`]. The first tables restate the facts of the apiserver's own
//! `requestinfo_test.go` (same URLs, same expected readings); the later ones cover pathgate's
//! additions (connect, discovery, reviews) and the refusals.

use super::*;

/// method, path?query, apiserver verb, pathgate verb, prefix, group, version, namespace,
/// resource, subresource, name
type Row = (
    &'static str,
    &'static str,
    &'static str,
    Verb,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

fn classify(method: &str, url: &str) -> Result<RequestInfo, ClassifyError> {
    classify_with(method, url, &http::HeaderMap::new())
}

fn classify_with(
    method: &str,
    url: &str,
    headers: &http::HeaderMap,
) -> Result<RequestInfo, ClassifyError> {
    let method = http::Method::from_bytes(method.as_bytes()).expect("test method");
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    request_info(&method, path, query, headers)
}

fn check_rows(rows: &[Row]) {
    for &(method, url, apiserver_verb, verb, prefix, group, version, ns, resource, sub, name) in
        rows
    {
        let info = classify(method, url).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let got = (
            info.is_resource_request,
            info.apiserver_verb.as_str(),
            info.verb,
            info.api_prefix.as_str(),
            info.api_group.as_str(),
            info.api_version.as_str(),
            info.namespace.as_str(),
            info.resource.as_str(),
            info.subresource.as_str(),
            info.name.as_str(),
        );
        let want = (
            true,
            apiserver_verb,
            verb,
            prefix,
            group,
            version,
            ns,
            resource,
            sub,
            name,
        );
        assert_eq!(got, want, "{method} {url}");
    }
}

#[test]
#[rustfmt::skip]
fn resource_paths_as_the_apiserver_reads_them() {
    use Verb::*;
    check_rows(&[
        // resource paths
        ("GET", "/api/v1/namespaces", "list", List, "api", "", "v1", "", "namespaces", "", ""),
        ("GET", "/api/v1/namespaces/other", "get", Get, "api", "", "v1", "other", "namespaces", "", "other"),
        ("GET", "/api/v1/namespaces/other/pods", "list", List, "api", "", "v1", "other", "pods", "", ""),
        ("GET", "/api/v1/namespaces/other/pods/foo", "get", Get, "api", "", "v1", "other", "pods", "", "foo"),
        ("HEAD", "/api/v1/namespaces/other/pods/foo", "get", Get, "api", "", "v1", "other", "pods", "", "foo"),
        ("GET", "/api/v1/pods", "list", List, "api", "", "v1", "", "pods", "", ""),
        ("HEAD", "/api/v1/pods", "list", List, "api", "", "v1", "", "pods", "", ""),
        ("PATCH", "/api/v1/namespaces/new-namespace", "patch", Patch, "api", "", "v1", "new-namespace", "namespaces", "", "new-namespace"),
        // special verbs
        ("GET", "/api/v1/proxy/namespaces/other/pods/foo", "proxy", Connect, "api", "", "v1", "other", "pods", "", "foo"),
        ("GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", "proxy", Connect, "api", "", "v1", "other", "pods", "", "foo"),
        ("GET", "/api/v1/watch/pods", "watch", Watch, "api", "", "v1", "", "pods", "", ""),
        ("GET", "/api/v1/pods?watch=true", "watch", Watch, "api", "", "v1", "", "pods", "", ""),
        ("GET", "/api/v1/pods?watch=false", "list", List, "api", "", "v1", "", "pods", "", ""),
        ("GET", "/api/v1/watch/namespaces/other/pods", "watch", Watch, "api", "", "v1", "other", "pods", "", ""),
        ("GET", "/api/v1/namespaces/other/pods?watch=1", "watch", Watch, "api", "", "v1", "other", "pods", "", ""),
        ("GET", "/api/v1/namespaces/other/pods?watch=0", "list", List, "api", "", "v1", "other", "pods", "", ""),
        // subresource identification
        ("GET", "/api/v1/namespaces/other/pods/foo/status", "get", Get, "api", "", "v1", "other", "pods", "status", "foo"),
        ("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", "get", Connect, "api", "", "v1", "other", "pods", "proxy", "foo"),
        ("PUT", "/api/v1/namespaces/other/finalize", "update", Update, "api", "", "v1", "other", "namespaces", "finalize", "other"),
        ("PUT", "/api/v1/namespaces/other/status", "update", Update, "api", "", "v1", "other", "namespaces", "status", "other"),
        // verb identification
        ("PATCH", "/api/v1/namespaces/other/pods/foo", "patch", Patch, "api", "", "v1", "other", "pods", "", "foo"),
        ("DELETE", "/api/v1/namespaces/other/pods/foo", "delete", Delete, "api", "", "v1", "other", "pods", "", "foo"),
        ("POST", "/api/v1/namespaces/other/pods", "create", Create, "api", "", "v1", "other", "pods", "", ""),
        // deletecollection verb identification
        ("DELETE", "/api/v1/nodes", "deletecollection", DeleteCollection, "api", "", "v1", "", "nodes", "", ""),
        ("DELETE", "/api/v1/namespaces", "deletecollection", DeleteCollection, "api", "", "v1", "", "namespaces", "", ""),
        ("DELETE", "/api/v1/namespaces/other/pods", "deletecollection", DeleteCollection, "api", "", "v1", "other", "pods", "", ""),
        ("DELETE", "/apis/extensions/v1/namespaces/other/pods", "deletecollection", DeleteCollection, "apis", "extensions", "v1", "other", "pods", "", ""),
        // api group and version identification
        ("POST", "/apis/extensions/v1/namespaces/other/pods", "create", Create, "apis", "extensions", "v1", "other", "pods", "", ""),
        ("POST", "/apis/extensions/v1beta3/namespaces/other/pods", "create", Create, "apis", "extensions", "v1beta3", "other", "pods", "", ""),
        // the apiserver's non-resource table, resource side
        ("GET", "/api/version/resource", "list", List, "api", "", "version", "", "resource", "", ""),
        ("GET", "/apis/group/version/resource/name/subresource", "get", Get, "apis", "group", "version", "", "resource", "subresource", "name"),
        ("GET", "/api/version/resource/name/subresource", "get", Get, "api", "", "version", "", "resource", "subresource", "name"),
        ("GET", "/apis/batch/v1/job", "list", List, "apis", "batch", "v1", "", "job", "", ""),
        ("GET", "/apis/batch/v1/job/foo", "get", Get, "apis", "batch", "v1", "", "job", "", "foo"),
        ("GET", "/apis/batch/v1/job/foo/scale", "get", Get, "apis", "batch", "v1", "", "job", "scale", "foo"),
    ]);
}

#[test]
#[rustfmt::skip]
fn field_selector_names_and_watch_values() {
    use Verb::*;
    check_rows(&[
        // The apiserver's selector table.
        ("GET", "/apis/group/version/resource", "list", List, "apis", "group", "version", "", "resource", "", ""),
        ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1", "list", List, "apis", "group", "version", "", "resource", "", "name1"),
        ("GET", "/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1", "watch", Watch, "apis", "group", "version", "", "resource", "", "name1"),
        ("GET", "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux", "list", List, "apis", "group", "version", "", "resource", "", ""),
        ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo", "list", List, "apis", "group", "version", "", "resource", "", ""),
        ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true", "watch", Watch, "apis", "group", "version", "", "resource", "", ""),
        ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false", "list", List, "apis", "group", "version", "", "resource", "", ""),
        ("DELETE", "/apis/group/version/resource?fieldSelector=metadata.name=foo", "deletecollection", DeleteCollection, "apis", "group", "version", "", "resource", "", ""),
        ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=foo&fieldSelector=metadata.name=bar", "list", List, "apis", "group", "version", "", "resource", "", "foo"),
        ("GET", "/apis/group/version/resource/name?fieldSelector=foo=bar", "get", Get, "apis", "group", "version", "", "resource", "", "name"),
        ("GET", "/apis/group/version/watch/resource?fieldSelector=metadata.name=foo", "watch", Watch, "apis", "group", "version", "", "resource", "", ""),
        ("GET", "/apis/group/version/watch/resource/name?fieldSelector=metadata.name=foo", "watch", Watch, "apis", "group", "version", "", "resource", "", "name"),
        // Encoded selector as client-go sends it; kubectl's wait-for-deletion watch.
        ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dweb-0&watch=true", "watch", Watch, "api", "", "v1", "default", "pods", "", "web-0"),
        // Names the apiserver refuses as path segments stay out.
        ("GET", "/api/v1/pods?fieldSelector=metadata.name%3D..", "list", List, "api", "", "v1", "", "pods", "", ""),
        // A list query that does not decode loses the selector's name, keeps the watch.
        ("GET", "/api/v1/pods?fieldSelector=metadata.name%3Dweb&limit=ten&watch=1", "watch", Watch, "api", "", "v1", "", "pods", "", ""),
        // Any watch value but 0/false is a watch, even an empty one; the first value counts.
        ("GET", "/api/v1/pods?watch", "watch", Watch, "api", "", "v1", "", "pods", "", ""),
        ("GET", "/api/v1/pods?watch=", "watch", Watch, "api", "", "v1", "", "pods", "", ""),
        ("GET", "/api/v1/pods?watch=FALSE", "list", List, "api", "", "v1", "", "pods", "", ""),
        ("GET", "/api/v1/pods?watch=yes", "watch", Watch, "api", "", "v1", "", "pods", "", ""),
        ("GET", "/api/v1/pods?watch=0&watch=1", "list", List, "api", "", "v1", "", "pods", "", ""),
        // watch on a named object is a get (only the legacy prefix watches one object).
        ("GET", "/api/v1/namespaces/default/pods/web?watch=true", "get", Get, "api", "", "v1", "default", "pods", "", "web"),
    ]);
}

#[test]
#[rustfmt::skip]
fn connect_subresources_whatever_the_method() {
    use Verb::*;
    check_rows(&[
        ("POST", "/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true", "create", Connect, "api", "", "v1", "default", "pods", "exec", "web"),
        ("GET", "/api/v1/namespaces/default/pods/web/exec?command=sh", "get", Connect, "api", "", "v1", "default", "pods", "exec", "web"),
        ("POST", "/api/v1/namespaces/default/pods/web/attach", "create", Connect, "api", "", "v1", "default", "pods", "attach", "web"),
        ("POST", "/api/v1/namespaces/default/pods/web/portforward", "create", Connect, "api", "", "v1", "default", "pods", "portforward", "web"),
        ("GET", "/api/v1/namespaces/default/services/web:80/proxy/healthz", "get", Connect, "api", "", "v1", "default", "services", "proxy", "web:80"),
        ("GET", "/api/v1/nodes/node-1/proxy/metrics", "get", Connect, "api", "", "v1", "", "nodes", "proxy", "node-1"),
        ("GET", "/api/v1/namespaces/default/pods/web/log", "get", Get, "api", "", "v1", "default", "pods", "log", "web"),
    ]);
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::UPGRADE, "WebSocket".parse().unwrap());
    let info = classify_with(
        "GET",
        "/api/v1/namespaces/default/pods/web/exec?command=ls",
        &headers,
    )
    .unwrap();
    assert!(info.is_connect());
    assert_eq!(info.upgrade.as_deref(), Some("websocket"));
    assert!(!info.is_mutation());
    assert!(!info.is_read());
}

#[test]
fn non_resource_paths_and_discovery() {
    // (method, path, is_discovery)
    let rows: &[(&str, &str, bool)] = &[
        ("GET", "/", false),
        ("GET", "/api", true),
        ("GET", "/api/", true),
        ("GET", "/api/v1", true),
        ("GET", "/api/v1/", true),
        ("GET", "/apis", true),
        ("GET", "/apis/apps", true),
        ("GET", "/apis/apps/v1", true),
        ("GET", "/apis/extensions/v1beta1/", true),
        ("HEAD", "/apis/apps/v1", true),
        ("GET", "/openapi/v2", true),
        ("GET", "/openapi/v3", true),
        ("GET", "/openapi/v3/apis/apps/v1", true),
        ("GET", "/version", true),
        ("GET", "/.well-known/openid-configuration", true),
        ("GET", "/healthz", false),
        ("GET", "/livez/etcd", false),
        ("GET", "/metrics", false),
        ("GET", "/not-api/version/resource", false),
        ("GET", "/apis/version/resource", true),
        ("POST", "/apis", false),
        ("POST", "/version", false),
    ];
    for &(method, path, discovery) in rows {
        let info = classify(method, path).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(!info.is_resource_request, "{method} {path}");
        assert_eq!(info.verb, Verb::NonResource, "{method} {path}");
        assert_eq!(info.apiserver_verb, method.to_ascii_lowercase());
        assert_eq!(info.is_discovery, discovery, "{method} {path}");
        assert_eq!(info.path, path);
        assert!(!info.is_mutation(), "{method} {path}");
        assert_eq!(info.is_read(), method == "GET" || method == "HEAD");
    }
    // Resource requests are never discovery.
    assert!(!classify("GET", "/api/v1/pods").unwrap().is_discovery);
}

#[test]
fn mutations_and_questions() {
    let rows: &[(&str, &str, bool)] = &[
        ("POST", "/api/v1/namespaces/default/pods", true),
        (
            "PUT",
            "/apis/apps/v1/namespaces/default/deployments/web",
            true,
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
            true,
        ),
        ("DELETE", "/api/v1/namespaces/default/pods/web", true),
        ("DELETE", "/api/v1/namespaces/default/pods", true),
        ("POST", "/api/v1/namespaces/default/pods/web/eviction", true),
        (
            "POST",
            "/api/v1/namespaces/default/serviceaccounts/default/token",
            true,
        ),
        (
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            false,
        ),
        (
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            false,
        ),
        (
            "POST",
            "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews",
            false,
        ),
        (
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            false,
        ),
        ("POST", "/apis/authentication.k8s.io/v1/tokenreviews", false),
        (
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            false,
        ),
        // The same resource name in another group is an ordinary create.
        ("POST", "/apis/example.com/v1/tokenreviews", true),
        // Deleting a review is still a delete.
        (
            "DELETE",
            "/apis/authentication.k8s.io/v1/tokenreviews/x",
            true,
        ),
        ("GET", "/api/v1/namespaces/default/pods", false),
        ("GET", "/api/v1/namespaces/default/pods/web", false),
        ("POST", "/api/v1/namespaces/default/pods/web/exec", false),
    ];
    for &(method, path, mutation) in rows {
        let info = classify(method, path).unwrap();
        assert_eq!(info.is_mutation(), mutation, "{method} {path}");
    }
    assert!(classify("GET", "/api/v1/pods?watch=1").unwrap().is_watch());
    assert!(!classify("GET", "/api/v1/pods").unwrap().is_watch());
    assert!(classify("GET", "/api/v1/pods").unwrap().is_read());
    assert!(!classify("DELETE", "/api/v1/pods").unwrap().is_read());
}

#[test]
fn percent_escapes_are_decoded_like_go_url_path() {
    let info = classify(
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Anode",
    )
    .unwrap();
    assert_eq!(info.name, "system:node");
    assert_eq!(
        info.path,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:node"
    );
    let info = classify("GET", "/api/v1/namespaces/caf%C3%A9/pods").unwrap();
    assert_eq!(info.namespace, "café");
    // '+' is literal in a path.
    let info = classify("GET", "/api/v1/namespaces/a+b/pods").unwrap();
    assert_eq!(info.namespace, "a+b");
}

#[test]
fn ambiguous_paths_are_refused() {
    let refused = [
        "",
        "api/v1/pods",
        "//api/v1/pods",
        "/api//v1/pods",
        "/api/v1/pods//",
        "/api/v1/namespaces/default/pods//web",
        "/api/v1/namespaces/default/pods/./web",
        "/api/v1/namespaces/default/pods/../secrets",
        "/api/v1/namespaces/default/pods/..",
        "/api/v1/namespaces/default/pods/.",
        "/api/v1/namespaces%2Fdefault/pods",
        "/api/v1/namespaces/default/pods%2fweb",
        "/api/v1/namespaces/default/pods/%2E%2E",
        "/api/v1/namespaces/default/pods/web%2e",
        "/api/v1/namespaces/default/pods/web%25",
        "/api/v1/namespaces/default/pods/web%",
        "/api/v1/namespaces/default/pods/web%4",
        "/api/v1/namespaces/default/pods/web%zz",
        "/api/v1/namespaces/default/pods/web%00",
        "/api/v1/namespaces/default/pods/web%0a",
        "/api/v1/namespaces/default/pods/web%5C..",
        "/api/v1/namespaces/default/pods/web\\..",
        "/api/v1/namespaces/default/pods/web\u{0}",
        "/api/v1/namespaces/default/pods/web\n",
        "/api/v1/namespaces/default/pods/web%ff",
        "/api/v1/pods#frag",
        "/version/../api/v1/secrets",
    ];
    for path in refused {
        let method = http::Method::GET;
        match request_info(&method, path, None, &http::HeaderMap::new()) {
            Err(ClassifyError::AmbiguousPath { .. }) => {}
            other => panic!("{path:?} should be refused as ambiguous, got {other:?}"),
        }
    }
    // One trailing slash is what the apiserver trims too.
    let info = classify("GET", "/api/v1/namespaces/default/pods/").unwrap();
    assert_eq!((info.verb, info.resource.as_str()), (Verb::List, "pods"));
}

#[test]
fn ambiguous_paths_name_their_reason_with_or_without_an_escape_elsewhere() {
    let cases = [
        ("/api/v1/pods/web\\x", "which some servers read as '/'"),
        ("/api/v1/pods/web?x", "'?' or '#'"),
        ("/api/v1/pods/web\u{7f}", "a control character"),
        ("/api/v1//pods", "an empty segment"),
        ("/api/v1/pods/../secrets", "a '.' or '..' segment"),
        ("/api/v1/pods/web%2F", "a percent-encoded '/'"),
    ];
    for (path, reason) in cases {
        // `%70` is `p`: the same path once more, decoded through the escape-reading loop.
        for path in [path.to_string(), path.replacen("/api", "/a%70i", 1)] {
            match request_info(&http::Method::GET, &path, None, &http::HeaderMap::new()) {
                Err(ClassifyError::AmbiguousPath { reason: got, .. }) => {
                    assert!(got.contains(reason), "{path:?}: {got}")
                }
                other => panic!("{path:?} should be refused as ambiguous, got {other:?}"),
            }
        }
    }
    let escaped = classify("GET", "/a%70i/v1/namespaces/d%65fault/pods/web").unwrap();
    let plain = classify("GET", "/api/v1/namespaces/default/pods/web").unwrap();
    assert_eq!(escaped, plain);
}

#[test]
fn malformed_queries_are_refused() {
    for query in ["watch=1;x=2", "labelSelector=%zz", "a=%"] {
        let got = request_info(
            &http::Method::GET,
            "/api/v1/pods",
            Some(query),
            &http::HeaderMap::new(),
        );
        assert!(
            matches!(got, Err(ClassifyError::BadQuery(_))),
            "{query:?}: {got:?}"
        );
    }
}

#[test]
fn requests_the_apiserver_cannot_classify_are_refused() {
    for (method, path) in [
        ("OPTIONS", "/api/v1/pods"),
        ("TRACE", "/api/v1/namespaces/default/pods/web"),
        ("get", "/api/v1/pods"),
        ("GET", "/api/v1/watch"),
        ("GET", "/apis/apps/v1/proxy/"),
    ] {
        match classify(method, path) {
            Err(ClassifyError::Unclassifiable { .. }) => {}
            other => panic!("{method} {path}: {other:?}"),
        }
    }
    // Non-resource paths take any method (the apiserver answers them itself).
    assert_eq!(
        classify("OPTIONS", "/healthz").unwrap().verb,
        Verb::NonResource
    );
}

#[test]
fn errors_explain_themselves() {
    let err = classify("GET", "/api/v1/namespaces/default/pods/..").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ambiguous") && text.contains(".."), "{text}");
}

#[test]
fn never_panics_on_arbitrary_paths_and_queries() {
    // Deterministic xorshift: varied input without a dependency.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet: Vec<char> = "/%.az09AZ?&=;+~\\#:\u{0}\u{7f}é2F2e25".chars().collect();
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    let mut accepted = 0;
    for _ in 0..20_000 {
        let len = (next() % 40) as usize;
        let mut path: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        if next() % 2 == 0 {
            path.insert_str(
                0,
                ["/api/v1/", "/apis/apps/v1/", "/"][(next() % 3) as usize],
            );
        }
        let query: String = (0..(next() % 20))
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let method = http::Method::from_bytes(methods[(next() % 7) as usize].as_bytes()).unwrap();
        if let Ok(info) = request_info(&method, &path, Some(&query), &http::HeaderMap::new()) {
            accepted += 1;
            // Whatever is accepted has no ambiguous segment left.
            assert!(!info.path.contains("//"), "{path:?}");
            assert!(
                !info.path.split('/').any(|s| s == "." || s == ".."),
                "{path:?}"
            );
            let _ = crate::classify::analyse(&info, Some(&query), None, path.as_bytes());
        }
    }
    assert!(
        accepted > 100,
        "the generator should produce some valid requests: {accepted}"
    );
}

#[test]
fn verb_as_str_is_its_serialized_spelling() {
    // The ledger writes `as_str`; the schema (and earlier entries) used the serde spelling.
    for verb in [
        Verb::Get,
        Verb::List,
        Verb::Watch,
        Verb::Create,
        Verb::Update,
        Verb::Patch,
        Verb::Delete,
        Verb::DeleteCollection,
        Verb::Connect,
        Verb::NonResource,
    ] {
        assert_eq!(
            serde_json::to_value(verb).unwrap(),
            serde_json::Value::from(verb.as_str())
        );
    }
}

// ---- what the apiserver does beyond the path: scope, dry runs, evictions ----

#[test]
fn scope_comes_from_the_resource_not_the_path_or_body() {
    let rows: [(&str, &str, Scope); 14] = [
        (
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Scope::Cluster,
        ),
        (
            "PATCH",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/x",
            Scope::Cluster,
        ),
        // A namespaced path does not make a cluster-scoped resource namespaced.
        (
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/a/clusterroles",
            Scope::Cluster,
        ),
        ("PATCH", "/api/v1/nodes/n1", Scope::Cluster),
        ("POST", "/api/v1/persistentvolumes", Scope::Cluster),
        (
            "POST",
            "/apis/storage.k8s.io/v1/storageclasses",
            Scope::Cluster,
        ),
        (
            "POST",
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            Scope::Cluster,
        ),
        (
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            Scope::Cluster,
        ),
        (
            "POST",
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
            Scope::Cluster,
        ),
        ("DELETE", "/api/v1/namespaces/a", Scope::Cluster),
        (
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/a/rolebindings",
            Scope::Namespaced,
        ),
        ("POST", "/api/v1/configmaps", Scope::Namespaced),
        (
            "POST",
            "/apis/example.com/v1/namespaces/a/widgets",
            Scope::Unknown,
        ),
        ("GET", "/version", Scope::Unknown),
    ];
    for (method, url, scope) in rows {
        assert_eq!(
            classify(method, url).unwrap().scope(),
            scope,
            "{method} {url}"
        );
    }
}

#[test]
fn only_endpoints_that_honour_dry_run_are_trusted_with_one() {
    let rows: [(&str, &str, bool); 18] = [
        ("POST", "/api/v1/namespaces/a/configmaps", true),
        ("PATCH", "/apis/apps/v1/namespaces/a/deployments/web", true),
        ("DELETE", "/api/v1/namespaces/a/pods/p", true),
        ("DELETE", "/api/v1/namespaces/a/pods", true),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/web/scale",
            true,
        ),
        ("PUT", "/api/v1/namespaces/a/pods/p/status", true),
        ("POST", "/api/v1/namespaces/a/pods/p/eviction", true),
        ("POST", "/api/v1/namespaces/a/pods/p/binding", true),
        (
            "PATCH",
            "/api/v1/namespaces/a/pods/p/ephemeralcontainers",
            true,
        ),
        (
            "PUT",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/c/approval",
            true,
        ),
        ("PUT", "/api/v1/namespaces/a/finalize", true),
        (
            "PATCH",
            "/apis/example.com/v1/namespaces/a/widgets/w/status",
            true,
        ),
        ("POST", "/apis/example.com/v1/namespaces/a/widgets", true),
        // TokenREST.Create never reads options.DryRun.
        (
            "POST",
            "/api/v1/namespaces/a/serviceaccounts/sa/token",
            false,
        ),
        // Unknown subresources are not trusted.
        (
            "POST",
            "/apis/apps/v1/namespaces/a/deployments/web/rollback",
            false,
        ),
        (
            "POST",
            "/apis/example.com/v1/namespaces/a/widgets/w/approve",
            false,
        ),
        // Connects refuse dryRun; reads take none.
        ("POST", "/api/v1/namespaces/a/pods/p/exec", false),
        ("GET", "/api/v1/namespaces/a/pods/p", false),
    ];
    for (method, url, honours) in rows {
        let info = classify(method, url).unwrap();
        assert_eq!(info.honours_dry_run(), honours, "{method} {url}");
        let query = Some("dryRun=All");
        let body = if method == "DELETE" || method == "GET" {
            &b""[..]
        } else {
            b"{}"
        };
        let content_type = match method {
            "PATCH" => "application/merge-patch+json",
            _ => "application/json",
        };
        let analysis = super::super::analyse(&info, query, Some(content_type), body);
        if info.verb.takes_dry_run() {
            assert_eq!(
                (analysis.dry_run, analysis.dry_run_ignored),
                (honours, !honours),
                "{method} {url}"
            );
        }
    }
}

#[test]
fn an_eviction_is_a_pod_delete() {
    let evict = classify("POST", "/api/v1/namespaces/a/pods/p/eviction").unwrap();
    assert!(evict.is_pod_eviction() && evict.deletes_pod() && evict.is_mutation());
    assert_eq!(
        (evict.verb, evict.effect_verb()),
        (Verb::Create, Verb::Delete)
    );
    let delete = classify("DELETE", "/api/v1/namespaces/a/pods/p").unwrap();
    assert!(delete.deletes_pod() && !delete.is_pod_eviction());
    assert_eq!(delete.effect_verb(), Verb::Delete);
    for (method, url) in [
        ("DELETE", "/api/v1/namespaces/a/pods"),
        ("POST", "/api/v1/namespaces/a/pods/p/binding"),
        ("DELETE", "/api/v1/namespaces/a/configmaps/c"),
        ("POST", "/apis/example.com/v1/namespaces/a/pods/p/eviction"),
    ] {
        let info = classify(method, url).unwrap();
        assert!(!info.deletes_pod(), "{method} {url}");
        assert_eq!(info.effect_verb(), info.verb, "{method} {url}");
    }
}
